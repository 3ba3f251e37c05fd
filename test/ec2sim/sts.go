package ec2sim

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
)

// STS: the one call nodewright makes, GetCallerIdentity, answered for the
// scenario's account. STS speaks the same Query protocol as EC2 on its own
// endpoint; here both share one, so a request is STS's when its SigV4
// credential scope names the sts service, as STS itself requires.

// scopeService finds the service in a SigV4 credential scope
// (Credential=AKID/date/region/service/aws4_request).
var scopeService = regexp.MustCompile(`Credential=[^/,\s]+/[^/]+/[^/]+/([^/]+)/aws4_request`)

// isSTS reports whether the request is signed for STS.
func isSTS(r *http.Request) bool {
	m := scopeService.FindStringSubmatch(r.Header.Get("Authorization"))
	return m != nil && m[1] == "sts"
}

// stsVersion is the API version STS requests carry.
const stsVersion = "2011-06-15"

// serveSTS answers an STS Query request.
func (s *Server) serveSTS(w http.ResponseWriter, form url.Values) {
	action := form.Get("Action")
	if f, ok := s.takeFault(action); ok {
		s.stsError(w, f.code, f.status, "injected by the simulator")
		return
	}
	if form.Get("Version") != stsVersion {
		s.stsError(w, "InvalidAction", 400, fmt.Sprintf("could not find operation %s for version %s", action, form.Get("Version")))
		return
	}
	if action != "GetCallerIdentity" {
		s.stsError(w, "InvalidAction", 400, fmt.Sprintf("the simulator does not implement STS %s", action))
		return
	}
	// The caller is whoever signed: one role of the scenario's account.
	type result struct {
		Arn     string `xml:"Arn"`
		UserID  string `xml:"UserId"`
		Account string `xml:"Account"`
	}
	type response struct {
		XMLName   xml.Name `xml:"GetCallerIdentityResponse"`
		Xmlns     string   `xml:"xmlns,attr"`
		Result    result   `xml:"GetCallerIdentityResult"`
		RequestID string   `xml:"ResponseMetadata>RequestId"`
	}
	body, err := xml.Marshal(response{
		Xmlns: "https://sts.amazonaws.com/doc/" + stsVersion + "/",
		Result: result{
			Arn:     fmt.Sprintf("arn:aws:sts::%s:assumed-role/nodewright/simulator", s.scenario.AccountID),
			UserID:  "AROASIMULATOR:simulator",
			Account: s.scenario.AccountID,
		},
		RequestID: s.requestID(),
	})
	if err != nil {
		s.stsError(w, "InternalFailure", 500, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	_, _ = w.Write(append([]byte(xml.Header), body...))
}

// stsError writes the Query protocol's error envelope as STS does.
func (s *Server) stsError(w http.ResponseWriter, code string, status int, message string) {
	s.queryError(w, "https://sts.amazonaws.com/doc/"+stsVersion+"/", code, status, message)
}

// queryError writes the error envelope STS and IAM share (the Query
// protocol's awsquery form, not EC2's): ErrorResponse > Error with a type.
func (s *Server) queryError(w http.ResponseWriter, xmlns, code string, status int, message string) {
	noteError(w, code)
	typ := "Sender"
	if status >= 500 {
		typ = "Receiver"
	}
	type queryErr struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	type envelope struct {
		XMLName   xml.Name `xml:"ErrorResponse"`
		Xmlns     string   `xml:"xmlns,attr"`
		Error     queryErr `xml:"Error"`
		RequestID string   `xml:"RequestId"`
	}
	body, _ := xml.Marshal(envelope{Xmlns: xmlns, Error: queryErr{typ, code, message}, RequestID: s.requestID()})
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	_, _ = w.Write(append([]byte(xml.Header), body...))
}
