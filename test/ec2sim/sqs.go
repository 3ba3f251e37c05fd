package ec2sim

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SQS here is what an interruption controller needs of it: standard queues
// (no FIFO), messages with a body and no message attributes, visibility
// timeouts and retention on the simulated clock, and long polling in real
// time, since a long poll holds a connection open and Advance cannot shorten
// it. aws-sdk-go-v2 speaks the AWS JSON 1.0 protocol to SQS; errors carry
// the modelled shape in __type and SQS's older Query code in the
// x-amzn-query-error header, which the SDK reports as ErrorCode.

// Limits and defaults of a standard queue, as SQS documents them.
const (
	sqsMaxBodyBytes      = 262144
	sqsMaxBatch          = 10
	sqsPurgeInterval     = 60 * time.Second
	sqsMaxWaitSeconds    = 20
	sqsMaxVisibilitySecs = 43200
)

// queueAttributeBounds are the numeric attributes CreateQueue sets, with
// SQS's bounds (seconds or bytes) and defaults.
var queueAttributeBounds = map[string]struct{ least, most, def int }{
	"DelaySeconds":                  {0, 900, 0},
	"MaximumMessageSize":            {1024, sqsMaxBodyBytes, sqsMaxBodyBytes},
	"MessageRetentionPeriod":        {60, 1209600, 345600},
	"ReceiveMessageWaitTimeSeconds": {0, sqsMaxWaitSeconds, 0},
	"VisibilityTimeout":             {0, sqsMaxVisibilitySecs, 30},
}

// opaqueQueueAttributes are accepted and echoed by GetQueueAttributes, with no
// effect here: policies, redrive and encryption change nothing a receiver sees.
var opaqueQueueAttributes = map[string]bool{
	"Policy": true, "RedrivePolicy": true, "RedriveAllowPolicy": true,
	"KmsMasterKeyId": true, "KmsDataKeyReusePeriodSeconds": true, "SqsManagedSseEnabled": true,
}

// computedQueueAttributes are the read-only attributes GetQueueAttributes
// reports; fifoQueueAttributes exist in SQS but only for FIFO queues.
var (
	computedQueueAttributes = []string{
		"QueueArn", "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
		"ApproximateNumberOfMessagesDelayed", "CreatedTimestamp", "LastModifiedTimestamp",
	}
	fifoQueueAttributes = map[string]bool{"FifoQueue": true, "ContentBasedDeduplication": true, "DeduplicationScope": true, "FifoThroughputLimit": true}
)

// queue is a standard SQS queue.
type queue struct {
	name     string
	created  time.Time
	attrs    map[string]string // settable attributes, defaults filled in
	messages []*message        // oldest first
	purged   time.Time         // last PurgeQueue, for its once a minute limit
	// wake is closed (and replaced) when a message may have become visible,
	// to rouse long polls; receivers counts the long polls waiting.
	wake      chan struct{}
	receivers int
	// delivery holds the liberties SetDeliveryFaults lets the queue take;
	// duplicates counts its deletes for the Duplicate share.
	delivery   DeliveryFaults
	duplicates rate
}

// DeliveryFaults are liberties SQS documents a standard queue may take, which
// a consumer must tolerate: at-least-once delivery (a deleted message can
// come back, when a copy on a server that missed the delete survives it) and
// best-effort ordering (a receive may return any visible message, not the
// oldest first).
type DeliveryFaults struct {
	// Duplicate is the share of deleted messages delivered once more, spread
	// evenly over the deletes (0.5: every second one): the copy has the same
	// MessageId, body and SentTimestamp and a new receipt handle. A copy is
	// not copied again.
	Duplicate float64
	// Reorder makes every receive take the visible messages in a random
	// order.
	Reorder bool
}

// message is a message in a queue. It is visible once visibleAt has passed;
// before that it is delayed (never received) or in flight.
type message struct {
	id, body, md5 string
	sent          time.Time
	visibleAt     time.Time
	receives      int
	firstReceive  time.Time
	handle        string // the latest receive's receipt handle
	// redelivered marks the copy a Duplicate fault brought back.
	redelivered bool
}

// QueueMessage is a message of a queue as a test sees it.
type QueueMessage struct {
	ID   string
	Body string
	// ReceiveCount is how many times ReceiveMessage returned the message.
	ReceiveCount int
	// InFlight: a receiver holds the message; its visibility timeout has not
	// run out, so no other receive returns it.
	InFlight bool
	SentTime time.Time
}

// CreateQueue creates a standard queue with SQS's default attributes, or
// finds the one of that name, and returns its URL, so a test can set up the
// queue a controller is configured with without an SDK client. The name is
// not checked.
func (s *Server) CreateQueue(name string) (url string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queueURL(s.ensureQueueLocked(name, nil).name)
}

// QueueMessages returns the messages of the named queue, visible and in
// flight, oldest first (nil if there is no such queue), for tests to assert
// what a controller left behind.
func (s *Server) QueueMessages(name string) []QueueMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.queues[name]
	if !ok {
		return nil
	}
	now := s.clock.now()
	q.expireLocked(now)
	out := make([]QueueMessage, 0, len(q.messages))
	for _, m := range q.messages {
		out = append(out, QueueMessage{ID: m.id, Body: m.body, ReceiveCount: m.receives, InFlight: m.receives > 0 && m.visibleAt.After(now), SentTime: m.sent})
	}
	return out
}

// SendRaw puts body on the named queue as SendMessage would, for tests of
// messages no AWS service sends (malformed or unknown events). It fails where
// SQS would refuse the body.
func (s *Server) SendRaw(queueName, body string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.queues[queueName]
	if !ok {
		return fmt.Errorf("sending to %s: no such queue", queueName)
	}
	if _, err := s.enqueueLocked(q, body, -1); err != nil {
		return fmt.Errorf("sending to %s: %s", queueName, err.message)
	}
	return nil
}

// SetDeliveryFaults makes the named queue take the liberties in f from now
// on, until Heal or another call; the zero DeliveryFaults delivers each
// message once, oldest first.
func (s *Server) SetDeliveryFaults(queueName string, f DeliveryFaults) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.queues[queueName]
	if !ok {
		return fmt.Errorf("setting delivery faults of %s: no such queue", queueName)
	}
	q.delivery, q.duplicates = f, rate{fraction: min(max(f.Duplicate, 0), 1)}
	return nil
}

// redeliverLocked brings a deleted message back when the queue's Duplicate
// share says so.
func (s *Server) redeliverLocked(q *queue, m *message) {
	if m.redelivered || q.delivery.Duplicate <= 0 || !q.duplicates.hit() {
		return
	}
	q.messages = append(q.messages, &message{id: m.id, body: m.body, md5: m.md5, sent: m.sent, visibleAt: s.clock.now(), redelivered: true})
	q.wakeLocked()
}

func (s *Server) queueURL(name string) string {
	return s.URL + "/" + s.scenario.AccountID + "/" + name
}

// ensureQueueLocked returns the named queue, creating it with attrs over the
// defaults if it does not exist.
func (s *Server) ensureQueueLocked(name string, attrs map[string]string) *queue {
	if q, ok := s.queues[name]; ok {
		return q
	}
	q := &queue{name: name, created: s.clock.now(), attrs: map[string]string{}, wake: make(chan struct{})}
	for k, b := range queueAttributeBounds {
		q.attrs[k] = strconv.Itoa(b.def)
	}
	for k, v := range attrs {
		q.attrs[k] = v
	}
	s.queues[name] = q
	return q
}

// seconds reads a numeric attribute.
func (q *queue) seconds(attr string) int {
	n, _ := strconv.Atoi(q.attrs[attr])
	return n
}

// expireLocked drops the messages older than the retention period.
func (q *queue) expireLocked(now time.Time) {
	retention := time.Duration(q.seconds("MessageRetentionPeriod")) * time.Second
	q.messages = slices.DeleteFunc(q.messages, func(m *message) bool { return !now.Before(m.sent.Add(retention)) })
}

// wakeLocked rouses the queue's long polls to look again.
func (q *queue) wakeLocked() {
	close(q.wake)
	q.wake = make(chan struct{})
}

// wakeReceiversLocked rouses every long poll, for when simulated time jumps
// and in-flight messages may have become visible.
func (s *Server) wakeReceiversLocked() {
	for _, q := range s.queues {
		q.wakeLocked()
	}
}

// enqueueLocked adds a message after checking the body as SQS does; delay <0
// takes the queue's DelaySeconds.
func (s *Server) enqueueLocked(q *queue, body string, delay int) (*message, *sqsError) {
	switch {
	case body == "":
		return nil, missingParameter("MessageBody")
	case len(body) > q.seconds("MaximumMessageSize"):
		return nil, invalidValue("One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", q.seconds("MaximumMessageSize"))
	case strings.IndexFunc(body, notSQSChar) >= 0:
		return nil, &sqsError{"InvalidMessageContents", "InvalidMessageContents", 400, "Invalid binary character in the message body. Valid characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF."}
	}
	if delay < 0 {
		delay = q.seconds("DelaySeconds")
	}
	now := s.clock.now()
	q.expireLocked(now)
	sum := md5.Sum([]byte(body))
	m := &message{id: s.newUUIDLocked(), body: body, md5: hex.EncodeToString(sum[:]), sent: now, visibleAt: now.Add(time.Duration(delay) * time.Second)}
	q.messages = append(q.messages, m)
	q.wakeLocked()
	return m, nil
}

// notSQSChar reports the characters SQS refuses in a body.
func notSQSChar(r rune) bool {
	switch {
	case r == 0x9 || r == 0xA || r == 0xD:
		return false
	case r >= 0x20 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= 0x10FFFF:
		return false
	}
	return true
}

// sqsError is an SQS error answer: the shape the JSON protocol names in
// __type and SQS's Query-era code, which it repeats in x-amzn-query-error
// and the SDK reports as ErrorCode (for QueueDoesNotExist it is
// AWS.SimpleQueueService.NonExistentQueue).
type sqsError struct {
	shape, query string
	status       int
	message      string
}

func invalidValue(format string, args ...any) *sqsError {
	return &sqsError{"InvalidParameterValue", "InvalidParameterValue", 400, fmt.Sprintf(format, args...)}
}

func missingParameter(name string) *sqsError {
	return &sqsError{"MissingParameter", "MissingParameter", 400, fmt.Sprintf("The request must contain the parameter %s.", name)}
}

func noSuchQueue() *sqsError {
	return &sqsError{"QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", 400, "The specified queue does not exist."}
}

// sqsHandlers answer AmazonSQS.<operation>; each gets the request's context
// (long polls end with it) and its JSON body.
var sqsHandlers = map[string]func(*Server, context.Context, []byte) (any, *sqsError){
	"CreateQueue":        (*Server).createQueue,
	"GetQueueUrl":        (*Server).getQueueURL,
	"GetQueueAttributes": (*Server).getQueueAttributes,
	"SendMessage":        (*Server).sendMessage,
	"ReceiveMessage":     (*Server).receiveMessage,
	"DeleteMessage":      (*Server).deleteMessage,
	"DeleteMessageBatch": (*Server).deleteMessageBatch,
	"PurgeQueue":         (*Server).purgeQueue,
}

// serveSQS answers the AWS JSON 1.0 protocol of SQS by X-Amz-Target.
func (s *Server) serveSQS(w http.ResponseWriter, r *http.Request, target string, body []byte) {
	if f, ok := s.takeFault(target); ok {
		s.sqsError(w, &sqsError{f.code, f.code, f.status, "injected by the simulator"})
		return
	}
	handler, ok := sqsHandlers[strings.TrimPrefix(target, "AmazonSQS.")]
	if !ok {
		s.sqsError(w, &sqsError{"UnknownOperationException", "UnknownOperationException", 400, fmt.Sprintf("the simulator does not implement %s", target)})
		return
	}
	out, apiErr := handler(s, r.Context(), body)
	if apiErr != nil {
		s.sqsError(w, apiErr)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("X-Amzn-Requestid", s.requestID())
	_ = json.NewEncoder(w).Encode(out)
}

// sqsError writes SQS's JSON 1.0 error.
func (s *Server) sqsError(w http.ResponseWriter, e *sqsError) {
	noteError(w, e.query)
	fault := "Sender"
	if e.status >= 500 {
		fault = "Receiver"
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("X-Amzn-Requestid", s.requestID())
	w.Header().Set("X-Amzn-Query-Error", e.query+";"+fault)
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazonaws.sqs#" + e.shape, "message": e.message})
}

// decode reads a request body; SQS answers a body it cannot read this way.
func decode(body []byte, v any) *sqsError {
	if err := json.Unmarshal(body, v); err != nil {
		return &sqsError{"SerializationException", "SerializationException", 400, "reading the request: " + err.Error()}
	}
	return nil
}

// queueByURLLocked finds the queue a QueueUrl (<endpoint>/<account>/<name>)
// names; SQS looks only at the path.
func (s *Server) queueByURLLocked(raw string) (*queue, *sqsError) {
	if raw == "" {
		return nil, missingParameter("QueueUrl")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, noSuchQueue()
	}
	account, name, _ := strings.Cut(strings.Trim(u.Path, "/"), "/")
	q, ok := s.queues[name]
	if !ok || account != s.scenario.AccountID {
		return nil, noSuchQueue()
	}
	q.expireLocked(s.clock.now())
	return q, nil
}

var queueNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

func (s *Server) createQueue(_ context.Context, body []byte) (any, *sqsError) {
	var in struct {
		QueueName  string
		Attributes map[string]string
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	if strings.HasSuffix(in.QueueName, ".fifo") || in.Attributes["FifoQueue"] == "true" {
		return nil, invalidValue("the simulator does not implement FIFO queues")
	}
	if !queueNamePattern.MatchString(in.QueueName) {
		return nil, invalidValue("Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length")
	}
	for name, value := range in.Attributes {
		if b, ok := queueAttributeBounds[name]; ok {
			if n, err := strconv.Atoi(value); err != nil || n < b.least || n > b.most {
				return nil, &sqsError{"InvalidAttributeValue", "InvalidAttributeValue", 400, fmt.Sprintf("Invalid value for the parameter %s.", name)}
			}
		} else if !opaqueQueueAttributes[name] && !fifoQueueAttributes[name] {
			return nil, &sqsError{"InvalidAttributeName", "InvalidAttributeName", 400, fmt.Sprintf("Unknown Attribute %s.", name)}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Creating a queue that exists is how callers find it, unless they ask
	// for different attributes.
	if q, ok := s.queues[in.QueueName]; ok {
		for name, value := range in.Attributes {
			if q.attrs[name] != value {
				return nil, &sqsError{"QueueNameExists", "QueueAlreadyExists", 400, fmt.Sprintf("A queue already exists with the same name and a different value for attribute %s", name)}
			}
		}
	}
	q := s.ensureQueueLocked(in.QueueName, in.Attributes)
	return map[string]string{"QueueUrl": s.queueURL(q.name)}, nil
}

func (s *Server) getQueueURL(_ context.Context, body []byte) (any, *sqsError) {
	var in struct {
		QueueName              string
		QueueOwnerAWSAccountId string
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	if in.QueueName == "" {
		return nil, missingParameter("QueueName")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.queues[in.QueueName]; !ok || (in.QueueOwnerAWSAccountId != "" && in.QueueOwnerAWSAccountId != s.scenario.AccountID) {
		return nil, noSuchQueue()
	}
	return map[string]string{"QueueUrl": s.queueURL(in.QueueName)}, nil
}

func (s *Server) getQueueAttributes(_ context.Context, body []byte) (any, *sqsError) {
	var in struct {
		QueueUrl       string
		AttributeNames []string
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, e := s.queueByURLLocked(in.QueueUrl)
	if e != nil {
		return nil, e
	}
	now := s.clock.now()
	all := map[string]string{
		"QueueArn":         fmt.Sprintf("arn:aws:sqs:%s:%s:%s", s.scenario.Region, s.scenario.AccountID, q.name),
		"CreatedTimestamp": strconv.FormatInt(q.created.Unix(), 10), "LastModifiedTimestamp": strconv.FormatInt(q.created.Unix(), 10),
	}
	visible, inFlight, delayed := 0, 0, 0
	for _, m := range q.messages {
		switch {
		case !m.visibleAt.After(now):
			visible++
		case m.receives > 0:
			inFlight++
		default:
			delayed++
		}
	}
	all["ApproximateNumberOfMessages"] = strconv.Itoa(visible)
	all["ApproximateNumberOfMessagesNotVisible"] = strconv.Itoa(inFlight)
	all["ApproximateNumberOfMessagesDelayed"] = strconv.Itoa(delayed)
	for k, v := range q.attrs {
		all[k] = v
	}
	out := map[string]string{}
	for _, name := range in.AttributeNames {
		if name == "All" {
			out = all
			break
		}
		_, settable := queueAttributeBounds[name]
		if !settable && !opaqueQueueAttributes[name] && !fifoQueueAttributes[name] && !slices.Contains(computedQueueAttributes, name) {
			return nil, &sqsError{"InvalidAttributeName", "InvalidAttributeName", 400, fmt.Sprintf("Unknown Attribute %s.", name)}
		}
		if v, ok := all[name]; ok {
			out[name] = v
		}
	}
	return map[string]any{"Attributes": out}, nil
}

func (s *Server) sendMessage(_ context.Context, body []byte) (any, *sqsError) {
	var in struct {
		QueueUrl     string
		MessageBody  string
		DelaySeconds *int
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	delay := -1
	if in.DelaySeconds != nil {
		if *in.DelaySeconds < 0 || *in.DelaySeconds > 900 {
			return nil, invalidValue("Value %d for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900.", *in.DelaySeconds)
		}
		delay = *in.DelaySeconds
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, e := s.queueByURLLocked(in.QueueUrl)
	if e != nil {
		return nil, e
	}
	m, e := s.enqueueLocked(q, in.MessageBody, delay)
	if e != nil {
		return nil, e
	}
	// The SDK checks MD5OfMessageBody against the body it sent.
	return map[string]string{"MessageId": m.id, "MD5OfMessageBody": m.md5}, nil
}

type receivedMessage struct {
	MessageID     string            `json:"MessageId"`
	ReceiptHandle string            `json:"ReceiptHandle"`
	MD5OfBody     string            `json:"MD5OfBody"`
	Body          string            `json:"Body"`
	Attributes    map[string]string `json:"Attributes,omitempty"`
}

// receiveMessage returns up to MaxNumberOfMessages visible messages, waiting
// up to WaitTimeSeconds of real time for one when there are none. A waiting
// poll wakes when a message is sent, when Advance may have made one visible,
// when an in-flight one's visibility timeout runs out, and gives up (empty)
// when the request's context ends or the server closes.
func (s *Server) receiveMessage(ctx context.Context, body []byte) (any, *sqsError) {
	var in struct {
		QueueUrl                    string
		MaxNumberOfMessages         *int
		WaitTimeSeconds             *int
		VisibilityTimeout           *int
		AttributeNames              []string
		MessageSystemAttributeNames []string
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	limit := 1
	if n := in.MaxNumberOfMessages; n != nil {
		if *n < 1 || *n > sqsMaxBatch {
			return nil, invalidValue("Value %d for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.", *n)
		}
		limit = *n
	}
	if n := in.WaitTimeSeconds; n != nil && (*n < 0 || *n > sqsMaxWaitSeconds) {
		return nil, invalidValue("Value %d for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.", *n)
	}
	if n := in.VisibilityTimeout; n != nil && (*n < 0 || *n > sqsMaxVisibilitySecs) {
		return nil, invalidValue("Value %d for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200, if provided.", *n)
	}
	wanted := map[string]bool{}
	for _, name := range append(in.AttributeNames, in.MessageSystemAttributeNames...) {
		wanted[name] = true
	}

	s.mu.Lock()
	q, e := s.queueByURLLocked(in.QueueUrl)
	if e != nil {
		s.mu.Unlock()
		return nil, e
	}
	wait := q.seconds("ReceiveMessageWaitTimeSeconds")
	if in.WaitTimeSeconds != nil {
		wait = *in.WaitTimeSeconds
	}
	visibility := q.seconds("VisibilityTimeout")
	if in.VisibilityTimeout != nil {
		visibility = *in.VisibilityTimeout
	}
	s.mu.Unlock()

	deadline := time.Now().Add(time.Duration(wait) * time.Second)
	for {
		s.mu.Lock()
		now := s.clock.now()
		q.expireLocked(now)
		got := s.receiveLocked(q, now, limit, time.Duration(visibility)*time.Second, wanted)
		if len(got) > 0 {
			s.mu.Unlock()
			return map[string]any{"Messages": got}, nil
		}
		if !time.Now().Before(deadline) {
			s.mu.Unlock()
			// SQS leaves Messages out when there are none.
			return struct{}{}, nil
		}
		// The simulated clock runs at the wall clock's pace, so the next
		// in-flight message is due after the same real time.
		pause := time.Until(deadline)
		for _, m := range q.messages {
			if m.visibleAt.After(now) {
				pause = min(pause, m.visibleAt.Sub(now))
			}
		}
		wake := q.wake
		q.receivers++
		s.mu.Unlock()

		timer := time.NewTimer(pause)
		select {
		case <-wake:
		case <-timer.C:
		case <-ctx.Done():
		case <-s.closed:
		}
		timer.Stop()
		s.mu.Lock()
		q.receivers--
		s.mu.Unlock()
		if ctx.Err() != nil || s.isClosed() {
			return struct{}{}, nil
		}
	}
}

func (s *Server) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// receiveLocked hands out up to limit visible messages, hiding each for the
// visibility timeout under a new receipt handle.
func (s *Server) receiveLocked(q *queue, now time.Time, limit int, visibility time.Duration, wanted map[string]bool) []receivedMessage {
	var out []receivedMessage
	order := slices.Clone(q.messages)
	if q.delivery.Reorder {
		for i := len(order) - 1; i > 0; i-- {
			j := int(s.nextRandomLocked() % uint64(i+1))
			order[i], order[j] = order[j], order[i]
		}
	}
	for _, m := range order {
		if len(out) == limit {
			break
		}
		if m.visibleAt.After(now) {
			continue
		}
		m.receives++
		if m.firstReceive.IsZero() {
			m.firstReceive = now
		}
		m.visibleAt = now.Add(visibility)
		m.handle = receiptHandle(q.name, m.id, m.receives)
		r := receivedMessage{MessageID: m.id, ReceiptHandle: m.handle, MD5OfBody: m.md5, Body: m.body}
		attrs := map[string]string{
			"ApproximateReceiveCount":          strconv.Itoa(m.receives),
			"ApproximateFirstReceiveTimestamp": strconv.FormatInt(m.firstReceive.UnixMilli(), 10),
			"SentTimestamp":                    strconv.FormatInt(m.sent.UnixMilli(), 10),
			"SenderId":                         s.scenario.AccountID,
		}
		// SQS returns only the system attributes asked for.
		for name, v := range attrs {
			if wanted["All"] || wanted[name] {
				if r.Attributes == nil {
					r.Attributes = map[string]string{}
				}
				r.Attributes[name] = v
			}
		}
		out = append(out, r)
	}
	return out
}

// receiptHandle names one receive of a message: a new one each time, so a
// receiver that lost the message to another cannot delete it.
func receiptHandle(queueName, messageID string, receive int) string {
	return base64.RawURLEncoding.EncodeToString([]byte(queueName + "/" + messageID + "/" + strconv.Itoa(receive)))
}

// deleteLocked deletes the message a receipt handle names, which the
// queue's Duplicate fault may bring back. A message already gone (deleted,
// purged, expired) is no error, as in SQS; a handle from an earlier receive
// of a message received again is.
func (s *Server) deleteLocked(q *queue, handle string) *sqsError {
	raw, err := base64.RawURLEncoding.DecodeString(handle)
	parts := strings.Split(string(raw), "/")
	if err != nil || len(parts) != 3 || parts[0] != q.name {
		return &sqsError{"ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", 400, fmt.Sprintf("The input receipt handle %q is not a valid receipt handle.", handle)}
	}
	i := slices.IndexFunc(q.messages, func(m *message) bool { return m.id == parts[1] })
	if i < 0 {
		return nil
	}
	m := q.messages[i]
	if m.handle != handle {
		return &sqsError{"ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", 400, "The receipt handle has expired: the message was received again."}
	}
	q.messages = slices.Delete(q.messages, i, i+1)
	s.redeliverLocked(q, m)
	return nil
}

func (s *Server) deleteMessage(_ context.Context, body []byte) (any, *sqsError) {
	var in struct {
		QueueUrl      string
		ReceiptHandle string
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	if in.ReceiptHandle == "" {
		return nil, missingParameter("ReceiptHandle")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, e := s.queueByURLLocked(in.QueueUrl)
	if e != nil {
		return nil, e
	}
	if e := s.deleteLocked(q, in.ReceiptHandle); e != nil {
		return nil, e
	}
	return struct{}{}, nil
}

var batchEntryIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

func (s *Server) deleteMessageBatch(_ context.Context, body []byte) (any, *sqsError) {
	var in struct {
		QueueUrl string
		Entries  []struct{ Id, ReceiptHandle string }
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	switch {
	case len(in.Entries) == 0:
		return nil, &sqsError{"EmptyBatchRequest", "AWS.SimpleQueueService.EmptyBatchRequest", 400, "There should be at least one DeleteMessageBatchRequestEntry in the request."}
	case len(in.Entries) > sqsMaxBatch:
		return nil, &sqsError{"TooManyEntriesInBatchRequest", "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", 400, fmt.Sprintf("Maximum number of entries per request are 10. You have sent %d.", len(in.Entries))}
	}
	seen := map[string]bool{}
	for _, entry := range in.Entries {
		if !batchEntryIDPattern.MatchString(entry.Id) {
			return nil, &sqsError{"InvalidBatchEntryId", "AWS.SimpleQueueService.InvalidBatchEntryId", 400, "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long."}
		}
		if seen[entry.Id] {
			return nil, &sqsError{"BatchEntryIdsNotDistinct", "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", 400, fmt.Sprintf("Id %s repeated.", entry.Id)}
		}
		seen[entry.Id] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, e := s.queueByURLLocked(in.QueueUrl)
	if e != nil {
		return nil, e
	}
	type failed struct {
		ID          string `json:"Id"`
		SenderFault bool   `json:"SenderFault"`
		Code        string `json:"Code"`
		Message     string `json:"Message"`
	}
	successful, failures := []map[string]string{}, []failed{}
	for _, entry := range in.Entries {
		if e := s.deleteLocked(q, entry.ReceiptHandle); e != nil {
			failures = append(failures, failed{entry.Id, true, e.query, e.message})
			continue
		}
		successful = append(successful, map[string]string{"Id": entry.Id})
	}
	return map[string]any{"Successful": successful, "Failed": failures}, nil
}

func (s *Server) purgeQueue(_ context.Context, body []byte) (any, *sqsError) {
	var in struct{ QueueUrl string }
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, e := s.queueByURLLocked(in.QueueUrl)
	if e != nil {
		return nil, e
	}
	now := s.clock.now()
	if !q.purged.IsZero() && now.Sub(q.purged) < sqsPurgeInterval {
		return nil, &sqsError{"PurgeQueueInProgress", "AWS.SimpleQueueService.PurgeQueueInProgress", 403, fmt.Sprintf("Only one PurgeQueue operation on %s is allowed every 60 seconds.", q.name)}
	}
	q.purged, q.messages = now, nil
	return struct{}{}, nil
}

// newUUIDLocked returns an id shaped like a random (version 4) UUID, as SQS
// message ids and EventBridge event ids are; it is derived from the
// simulator's address and a counter, so a run repeats.
func (s *Server) newUUIDLocked() string {
	a, b := s.nextRandomLocked(), s.nextRandomLocked()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", a>>32, (a>>16)&0xffff, a&0xfff, (b>>48)&0x3fff|0x8000, b&0xffffffffffff)
}

// nextRandomLocked is a splitmix64 step over the simulator's id base.
func (s *Server) nextRandomLocked() uint64 {
	s.randSeq++
	z := s.idBase + s.randSeq*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// compactJSON marshals v without escaping <, > and &, as AWS services write
// JSON, and without a trailing newline.
func compactJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
