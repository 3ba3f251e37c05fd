package ec2sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// serveJSON answers the JSON 1.1 protocol (the Pricing and SSM APIs) by
// X-Amz-Target, and hands SQS, which speaks JSON 1.0 with its own error
// form, to serveSQS.
func (s *Server) serveJSON(w http.ResponseWriter, r *http.Request, target string, body []byte) {
	if strings.HasPrefix(target, "AmazonSQS.") {
		s.serveSQS(w, r, target, body)
		return
	}
	action := target
	if f, ok := s.takeFault(action); ok {
		s.jsonError(w, f.code, f.status, "injected by the simulator")
		return
	}
	switch target {
	case "AWSPriceListService.GetProducts":
		s.getProducts(w, body)
	case "AmazonSSM.GetParameter":
		s.getParameter(w, body)
	default:
		s.jsonError(w, "UnknownOperationException", 400, fmt.Sprintf("the simulator does not implement %s", target))
	}
}

type getProductsInput struct {
	ServiceCode string `json:"ServiceCode"`
	Filters     []struct {
		Field string `json:"Field"`
		Type  string `json:"Type"`
		Value string `json:"Value"`
	} `json:"Filters"`
	MaxResults int    `json:"MaxResults"`
	NextToken  string `json:"NextToken"`
}

// getProducts returns one Linux, shared-tenancy, on-demand price document per
// instance type of the scenario's region, in the Price List format.
func (s *Server) getProducts(w http.ResponseWriter, body []byte) {
	var in getProductsInput
	if err := json.Unmarshal(body, &in); err != nil {
		s.jsonError(w, "InvalidParameterException", 400, "parsing request: "+err.Error())
		return
	}
	if in.ServiceCode != "AmazonEC2" {
		s.jsonError(w, "InvalidParameterException", 400, fmt.Sprintf("service code %q is not simulated", in.ServiceCode))
		return
	}
	want := map[string]string{}
	for _, f := range in.Filters {
		if f.Type != "TERM_MATCH" {
			s.jsonError(w, "InvalidParameterException", 400, fmt.Sprintf("filter type %q is not supported", f.Type))
			return
		}
		want[f.Field] = f.Value
	}
	// Only what nodewright asks for exists here: Linux, no pre-installed
	// software, shared tenancy, capacity that is used (not reservations).
	for field, value := range map[string]string{"operatingSystem": "Linux", "preInstalledSw": "NA", "tenancy": "Shared", "capacitystatus": "Used"} {
		if v, ok := want[field]; ok && v != value {
			writeJSON(w, map[string]any{"FormatVersion": "aws_v1", "PriceList": []string{}})
			return
		}
	}
	if region, ok := want["regionCode"]; ok && region != s.scenario.Region {
		writeJSON(w, map[string]any{"FormatVersion": "aws_v1", "PriceList": []string{}})
		return
	}
	var docs []string
	for _, t := range s.regionTypes() {
		r := t.Regions[s.scenario.Region]
		if r.OnDemand == 0 {
			continue
		}
		if it, ok := want["instanceType"]; ok && it != t.Name {
			continue
		}
		sku := fmt.Sprintf("SIM%s%s", s.scenario.Region, t.Name)
		doc, _ := json.Marshal(map[string]any{
			"product": map[string]any{"productFamily": "Compute Instance", "sku": sku, "attributes": map[string]string{
				"instanceType": t.Name, "regionCode": s.scenario.Region, "operatingSystem": "Linux",
				"preInstalledSw": "NA", "tenancy": "Shared", "capacitystatus": "Used", "vcpu": strconv.Itoa(int(t.VCPU)),
			}},
			"terms": map[string]any{"OnDemand": map[string]any{sku + ".JRTCKXETXF": map[string]any{
				"offerTermCode": "JRTCKXETXF", "sku": sku,
				"priceDimensions": map[string]any{sku + ".JRTCKXETXF.6YS6EN2CT7": map[string]any{
					"unit": "Hrs", "description": fmt.Sprintf("$%.4f per On Demand Linux %s Instance Hour", r.OnDemand, t.Name),
					"pricePerUnit": map[string]string{"USD": strconv.FormatFloat(r.OnDemand, 'f', 10, 64)},
				}},
			}}},
		})
		docs = append(docs, string(doc))
	}
	limit := in.MaxResults
	if limit <= 0 || limit > 100 {
		limit = 100
	}
	start := 0
	if in.NextToken != "" {
		n, err := strconv.Atoi(in.NextToken)
		if err != nil || n < 0 || n > len(docs) {
			s.jsonError(w, "InvalidNextTokenException", 400, "the token is not valid")
			return
		}
		start = n
	}
	end := min(start+limit, len(docs))
	out := map[string]any{"FormatVersion": "aws_v1", "PriceList": docs[start:end]}
	if end < len(docs) {
		out["NextToken"] = strconv.Itoa(end)
	}
	writeJSON(w, out)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(v)
}
