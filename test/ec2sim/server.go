package ec2sim

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodewright/nodewright/pkg/catalog"
)

// Server is a running simulator.
type Server struct {
	// URL is the endpoint to give the SDK clients as BaseEndpoint.
	URL string

	scenario  *Scenario
	snapshot  *catalog.Snapshot
	types     map[string]catalog.SnapshotType // the region's types by name
	listener  net.Listener
	http      *http.Server
	closed    chan struct{}
	closeOnce sync.Once

	mu     sync.Mutex
	faults map[string][]fault // action -> queued faults, consumed in order
	always map[string]fault   // action -> fault on every call
	rates  map[string]*rate   // action -> throttled share of calls
	spot   map[spotKey]float64
	calls  map[string]int
	reqID  atomic.Uint64

	// The write side: see state.go for time and lifecycle, faults.go for the
	// capacity faults.
	clock     simClock
	settings  lifecycleSettings
	timer     *time.Timer
	seq       uint64 // orders instances by launch and names resources
	idBase    uint64 // from the port, so two simulators' ids and addresses differ
	instances map[string]*instance
	templates map[string]*LaunchTemplate  // by id
	ltQuota   int                         // launch templates the account may have; 0 = DefaultLaunchTemplateQuota
	tokens    map[string]idempotentAnswer // action + client token -> answer
	ips       map[string]*subnetIPs       // by subnet id
	held      map[string]int32            // a subnet's addresses held by others (ENIs, load balancers)
	params    map[string]parameter        // SSM parameters by name
	watchers  map[*watcher]struct{}
	capacity  map[Pool]int // remaining launches of a pool; absent = unlimited
	partial   partialFulfillment
	spotLimit int // active spot instances allowed; <0 unlimited

	// reservations are the account's capacity reservations by id: see
	// capacityreservations.go.
	reservations map[string]*CapacityReservation

	// placementGroups are the account's placement groups by id: see
	// placementgroups.go.
	placementGroups map[string]*PlacementGroup

	// audit records every call with the authorizations AWS would make for
	// it: see audit.go.
	audit []Call

	// IAM: see iam.go.
	roles    map[string]time.Time        // the scenario's roles, by name, with their creation time
	profiles map[string]*instanceProfile // by name

	// EKS: see eks.go.
	clusters map[string]EKSCluster // by name

	// SQS and the EventBridge feed: see sqs.go and events.go.
	queues     map[string]*queue // by name
	eventQueue string            // where events go; "" drops them
	randSeq    uint64            // advances the ids of messages and events
}

type fault struct {
	code   string
	status int
}

// rate throttles a share of an action's calls, spread evenly: with fraction
// 0.5 every second call, with 0.25 every fourth.
type rate struct {
	fraction float64
	calls    int
}

// hit counts a call and reports whether it is one of the throttled share.
func (r *rate) hit() bool {
	r.calls++
	const eps = 1e-9
	return math.Floor(float64(r.calls)*r.fraction+eps) > math.Floor(float64(r.calls-1)*r.fraction+eps)
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
		URL: "http://" + l.Addr().String(), scenario: scenario, snapshot: snapshot, listener: l, closed: make(chan struct{}),
		faults: map[string][]fault{}, always: map[string]fault{}, rates: map[string]*rate{}, spot: map[spotKey]float64{}, calls: map[string]int{},
		types: map[string]catalog.SnapshotType{}, settings: defaultLifecycleSettings(),
		instances: map[string]*instance{}, templates: map[string]*LaunchTemplate{},
		tokens: map[string]idempotentAnswer{}, ips: map[string]*subnetIPs{}, held: map[string]int32{}, params: map[string]parameter{},
		watchers: map[*watcher]struct{}{}, capacity: map[Pool]int{}, spotLimit: -1,
		queues: map[string]*queue{},
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(s.URL))
	s.idBase = h.Sum64()
	for _, t := range s.regionTypes() {
		s.types[t.Name] = t
	}
	s.seedIAM()
	for name, value := range scenario.SSMParameters {
		s.params[name] = parameter{value: value, version: 1, modified: s.clock.now()}
	}
	s.http = &http.Server{Handler: s}
	go func() { _ = s.http.Serve(l) }()
	return s, nil
}

// Close stops the server, its lifecycle timer and every Watch channel.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		close(s.closed)
		if s.timer != nil {
			s.timer.Stop()
		}
	})
	return s.http.Close()
}

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

// EveryAction, given to ThrottleRate for an action, throttles every EC2
// action that has no rate of its own, counting their calls together: the
// account-wide request rate limit EC2 applies when a whole account is busy.
const EveryAction = "*"

// ThrottleRate makes a share of action's calls fail with RequestLimitExceeded
// until Heal, spread evenly and deterministically (fraction 0.5 throttles every
// second call, 1 every call, 0 none), so a test of the SDK's retries is
// repeatable: each throttled call is followed by one that passes when
// fraction <= 0.5. Action EveryAction covers every EC2 action.
func (s *Server) ThrottleRate(action string, fraction float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fraction <= 0 {
		delete(s.rates, action)
		return
	}
	s.rates[action] = &rate{fraction: min(fraction, 1)}
}

// Heal removes every injected fault: queued and permanent errors, throttle
// rates, emptied or limited capacity pools, partial fulfilment, the spot
// instance limit and queues' delivery faults. Spot price overrides stay.
func (s *Server) Heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults, s.always, s.rates = map[string][]fault{}, map[string]fault{}, map[string]*rate{}
	s.capacity, s.partial, s.spotLimit = map[Pool]int{}, partialFulfillment{}, -1
	for _, q := range s.queues {
		q.delivery = DeliveryFaults{}
	}
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

// ServeHTTP dispatches EC2, STS and IAM Query requests by Action, Pricing, SSM
// and SQS requests by X-Amz-Target and EKS requests by path, recording each in
// the audit log.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		s.ec2Error(w, "InvalidRequest", 400, "reading body: "+err.Error())
		return
	}
	aw := s.startAudit(w, r, body)
	// A call that never answers (its client went away) is recorded too.
	defer aw.record()
	w = aw
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		s.serveJSON(w, r, target, body)
		return
	}
	if isEKS(r) {
		s.serveEKS(w, r)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		s.ec2Error(w, "InvalidRequest", 400, "parsing form: "+err.Error())
		return
	}
	if isSTS(r) {
		s.serveSTS(w, form)
		return
	}
	if isIAM(r) {
		s.serveIAM(w, form)
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
	// The simulator grants every permission, so a dry run always would have
	// succeeded; EC2 answers that with this error.
	if form.Get("DryRun") == "true" {
		s.ec2Error(w, "DryRunOperation", 412, "Request would have succeeded, but DryRun flag is set.")
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
	r, ok := s.rates[action]
	if !ok {
		r, ok = s.rates[EveryAction]
	}
	if ok && r.hit() {
		return fault{"RequestLimitExceeded", 503}, true
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
	noteError(w, code)
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	var msg strings.Builder
	_ = xml.EscapeText(&msg, []byte(message))
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`, code, msg.String(), s.requestID())
}

// jsonError writes the JSON 1.1 protocol's error.
func (s *Server) jsonError(w http.ResponseWriter, code string, status int, message string) {
	noteError(w, code)
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

// groups returns the prefixes of a list of structures (Tag.1, Tag.2 ... for
// prefix Tag) in index order, whatever their fields.
func (p params) groups(prefix string) []string {
	seen := map[int]bool{}
	for key := range p {
		rest, ok := strings.CutPrefix(key, prefix+".")
		if !ok {
			continue
		}
		index, _, _ := strings.Cut(rest, ".")
		if n, err := strconv.Atoi(index); err == nil && n > 0 {
			seen[n] = true
		}
	}
	indexes := make([]int, 0, len(seen))
	for n := range seen {
		indexes = append(indexes, n)
	}
	sort.Ints(indexes)
	out := make([]string, len(indexes))
	for i, n := range indexes {
		out[i] = prefix + "." + strconv.Itoa(n)
	}
	return out
}

// sub returns the fields under prefix, with the prefix cut off.
func (p params) sub(prefix string) params {
	out := params{}
	for key, v := range p {
		if rest, ok := strings.CutPrefix(key, prefix+"."); ok {
			out[rest] = v
		}
	}
	return out
}

// tags reads a list of Key/Value structures (Tag.1.Key, Tag.1.Value ...).
func (p params) tags(prefix string) map[string]string {
	out := map[string]string{}
	for _, g := range p.groups(prefix) {
		out[p.get(g+".Key")] = p.get(g + ".Value")
	}
	return out
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
	return pageWithin(p, items, 5, limit)
}

// pageWithin is page for actions whose smallest MaxResults is not EC2's usual 5.
func pageWithin[T any](p params, items []T, least, limit int) ([]T, string, *APIError) {
	size := limit
	if v := p.get("MaxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < least || n > limit {
			return nil, "", invalidParameter("MaxResults must be between %d and %d, got %q", least, limit, v)
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
