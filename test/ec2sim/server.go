package ec2sim

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nodewright/nodewright/pkg/catalog"
)

// Server is a running simulator.
type Server struct {
	// URL is the endpoint to give the SDK clients as BaseEndpoint.
	URL string

	scenario *Scenario
	snapshot *catalog.Snapshot
	listener net.Listener
	http     *http.Server

	mu     sync.Mutex
	faults map[string][]fault // action -> queued faults, consumed in order
	always map[string]fault   // action -> fault on every call
	spot   map[spotKey]float64
	calls  map[string]int
	reqID  atomic.Uint64
}

type fault struct {
	code   string
	status int
}

type spotKey struct{ instanceType, zone string }

// Start serves the scenario on a loopback port until Close.
func Start(scenario *Scenario, snapshot *catalog.Snapshot) (*Server, error) {
	if err := scenario.Validate(); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening: %w", err)
	}
	s := &Server{
		URL: "http://" + l.Addr().String(), scenario: scenario, snapshot: snapshot, listener: l,
		faults: map[string][]fault{}, always: map[string]fault{}, spot: map[spotKey]float64{}, calls: map[string]int{},
	}
	s.http = &http.Server{Handler: s}
	go func() { _ = s.http.Serve(l) }()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error { return s.http.Close() }

// Throttle makes the next n calls of action fail with RequestLimitExceeded
// (HTTP 503), which the SDK retries with backoff.
func (s *Server) Throttle(action string, n int) { s.FailNext(action, "RequestLimitExceeded", 503, n) }

// FailNext makes the next n calls of action fail with code and HTTP status.
func (s *Server) FailNext(action, code string, status, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[action] = append(s.faults[action], fault{code, status})
	}
}

// FailAlways makes every call of action fail with code until Heal.
func (s *Server) FailAlways(action, code string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.always[action] = fault{code, status}
}

// Heal removes every injected fault.
func (s *Server) Heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults, s.always = map[string][]fault{}, map[string]fault{}
}

// SetSpotPrice overrides the spot price of a type in a zone (by name).
func (s *Server) SetSpotPrice(instanceType, zone string, price float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spot[spotKey{instanceType, zone}] = price
}

// Calls returns how many requests of action arrived, failed ones included.
func (s *Server) Calls(action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[action]
}

// ServeHTTP dispatches EC2 Query requests by Action and Pricing requests by
// X-Amz-Target.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		s.serveJSON(w, r, target)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		s.ec2Error(w, "InvalidRequest", 400, "reading body: "+err.Error())
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		s.ec2Error(w, "InvalidRequest", 400, "parsing form: "+err.Error())
		return
	}
	action := form.Get("Action")
	if f, ok := s.takeFault(action); ok {
		s.ec2Error(w, f.code, f.status, "injected by the simulator")
		return
	}
	handler, ok := ec2Handlers[action]
	if !ok {
		s.ec2Error(w, "InvalidAction", 400, fmt.Sprintf("the simulator does not implement %s", action))
		return
	}
	resp, apiErr := handler(s, params(form))
	if apiErr != nil {
		s.ec2Error(w, apiErr.Code, apiErr.Status, apiErr.Message)
		return
	}
	s.writeXML(w, action, resp)
}

// takeFault counts the call and returns the fault to inject, if any.
func (s *Server) takeFault(action string) (fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[action]++
	if f, ok := s.always[action]; ok {
		return f, true
	}
	if q := s.faults[action]; len(q) > 0 {
		s.faults[action] = q[1:]
		return q[0], true
	}
	return fault{}, false
}

// APIError is an EC2 error answer.
type APIError struct {
	Code    string
	Status  int
	Message string
}

func invalidParameter(format string, args ...any) *APIError {
	return &APIError{Code: "InvalidParameterValue", Status: 400, Message: fmt.Sprintf(format, args...)}
}

func (s *Server) requestID() string { return fmt.Sprintf("sim-%08d", s.reqID.Add(1)) }

// writeXML wraps resp in <ActionResponse xmlns=...> with a requestId.
func (s *Server) writeXML(w http.ResponseWriter, action string, resp any) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	body, err := xml.Marshal(resp)
	if err != nil {
		s.ec2Error(w, "InternalError", 500, err.Error())
		return
	}
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<%sResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>%s</requestId>`, action, s.requestID())
	// resp marshals as <r>...</r>; keep only its children.
	inner := strings.TrimSuffix(strings.TrimPrefix(string(body), "<r>"), "</r>")
	io.WriteString(w, inner)
	fmt.Fprintf(w, "</%sResponse>", action)
}

// ec2Error writes the EC2 Query error envelope.
func (s *Server) ec2Error(w http.ResponseWriter, code string, status int, message string) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	var msg strings.Builder
	_ = xml.EscapeText(&msg, []byte(message))
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`, code, msg.String(), s.requestID())
}

// jsonError writes the JSON 1.1 protocol's error.
func (s *Server) jsonError(w http.ResponseWriter, code string, status int, message string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Errortype", code)
	w.Header().Set("X-Amzn-Requestid", s.requestID())
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": message})
}

// params reads the EC2 Query encoding of lists (Name.1, Name.2) and filters
// (Filter.1.Name, Filter.1.Value.1).
type params url.Values

func (p params) get(key string) string { return url.Values(p).Get(key) }

func (p params) list(prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := p[prefix+"."+strconv.Itoa(i)]
		if !ok {
			return out
		}
		out = append(out, v[0])
	}
}

func (p params) filters() map[string][]string {
	out := map[string][]string{}
	for i := 1; ; i++ {
		name := p.get("Filter." + strconv.Itoa(i) + ".Name")
		if name == "" {
			return out
		}
		out[name] = append(out[name], p.list("Filter."+strconv.Itoa(i)+".Value")...)
	}
}

// page cuts items to one page: MaxResults (bounded by limit) from the offset
// in NextToken, returning the next token or "".
func page[T any](p params, items []T, limit int) ([]T, string, *APIError) {
	size := limit
	if v := p.get("MaxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 5 || n > limit {
			return nil, "", invalidParameter("MaxResults must be between 5 and %d, got %q", limit, v)
		}
		size = n
	}
	start := 0
	if tok := p.get("NextToken"); tok != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(tok, "sim-"))
		if err != nil || n < 0 || n > len(items) {
			return nil, "", &APIError{Code: "InvalidNextToken", Status: 400, Message: "the token is not valid"}
		}
		start = n
	}
	end := min(start+size, len(items))
	next := ""
	if end < len(items) {
		next = "sim-" + strconv.Itoa(end)
	}
	return items[start:end], next, nil
}
