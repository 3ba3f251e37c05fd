package aws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/nodewright/nodewright/pkg/cloudprovider"
)

// InterruptionQueue reads the SQS queue that EventBridge rules feed with
// EC2's notices about the cluster's instances: spot interruption warnings,
// interruptible capacity reservation interruption warnings, rebalance
// recommendations, instance state changes and AWS Health
// scheduled changes. The queue is the user's (the install guide names the
// rules); nodewright only receives and deletes. Notices from another
// account or region than nodewright's own come back as ForeignInterruption.
type InterruptionQueue struct {
	sqs    *sqs.Client
	sts    *sts.Client
	name   string
	region string
	// wait is the long-poll wait per Receive; SQS allows at most 20 s.
	wait int32

	mu      sync.Mutex
	url     string
	account string
}

// NewInterruptionQueue reads the queue named name (a name, or a queue URL)
// for the events of region and of the account clients' credentials belong
// to.
func NewInterruptionQueue(clients *Clients, region, name string) *InterruptionQueue {
	q := &InterruptionQueue{sqs: clients.SQS, sts: clients.STS, name: name, region: region, wait: 20}
	if strings.HasPrefix(name, "https://") || strings.HasPrefix(name, "http://") {
		q.url = name
	}
	return q
}

// Name is the queue's name as configured.
func (q *InterruptionQueue) Name() string { return q.name }

// queueURL resolves the queue's URL once; a failure is retried on the next
// call, so a queue created after nodewright started is found.
func (q *InterruptionQueue) queueURL(ctx context.Context) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.url != "" {
		return q.url, nil
	}
	out, err := q.sqs.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(q.name)})
	if err != nil {
		return "", fmt.Errorf("finding interruption queue %q: %w", q.name, err)
	}
	q.url = aws.ToString(out.QueueUrl)
	return q.url, nil
}

// origin is nodewright's own account and region. The account is asked of
// STS once; until it answers, nothing is received, so no message is acted
// on unchecked (they wait in the queue).
func (q *InterruptionQueue) origin(ctx context.Context) (Origin, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.account == "" {
		out, err := q.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			return Origin{}, fmt.Errorf("finding the account nodewright runs in, to check interruption messages against: %w", err)
		}
		q.account = aws.ToString(out.Account)
	}
	return Origin{Account: q.account, Region: q.region}, nil
}

// Receive long-polls for up to ten messages and reads each. A message that
// cannot be read comes back as an UnknownInterruption carrying its body, and
// one from another account or region as a ForeignInterruption, so the
// caller can log and delete it instead of receiving it forever.
func (q *InterruptionQueue) Receive(ctx context.Context) ([]cloudprovider.Interruption, error) {
	own, err := q.origin(ctx)
	if err != nil {
		return nil, err
	}
	url, err := q.queueURL(ctx)
	if err != nil {
		return nil, err
	}
	out, err := q.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: q.wait,
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameSentTimestamp},
	})
	if err != nil {
		var missing *sqstypes.QueueDoesNotExist
		if errors.As(err, &missing) {
			// Forget the URL: the queue may be recreated under the same name.
			q.mu.Lock()
			if q.url != q.name {
				q.url = ""
			}
			q.mu.Unlock()
		}
		return nil, fmt.Errorf("receiving from interruption queue %q: %w", q.name, err)
	}
	msgs := make([]cloudprovider.Interruption, 0, len(out.Messages))
	for _, m := range out.Messages {
		in := ParseInterruption(aws.ToString(m.Body), own)
		in.ID, in.Handle = aws.ToString(m.MessageId), aws.ToString(m.ReceiptHandle)
		msgs = append(msgs, in)
	}
	return msgs, nil
}

// Delete removes a handled message from the queue.
func (q *InterruptionQueue) Delete(ctx context.Context, m cloudprovider.Interruption) error {
	url, err := q.queueURL(ctx)
	if err != nil {
		return err
	}
	if _, err := q.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: aws.String(m.Handle)}); err != nil {
		return fmt.Errorf("deleting message %s from interruption queue %q: %w", m.ID, q.name, err)
	}
	return nil
}

// eventBridgeEvent is the envelope EventBridge delivers to SQS.
type eventBridgeEvent struct {
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Account    string          `json:"account"`
	Region     string          `json:"region"`
	Time       time.Time       `json:"time"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
}

// Origin is an account and region: nodewright's own, whose events it acts
// on.
type Origin struct{ Account, Region string }

// The detail-types of the notices nodewright acts on, as EventBridge names
// them.
const (
	detailSpotInterruption        = "EC2 Spot Instance Interruption Warning"
	detailReservationInterruption = "EC2 Capacity Reservation Instance Interruption Warning"
	detailRebalance               = "EC2 Instance Rebalance Recommendation"
	detailStateChange             = "EC2 Instance State-change Notification"
	detailHealth                  = "AWS Health Event"
)

// spotNotice is how long EC2 gives between a spot interruption warning, or
// an interruptible reservation's interruption warning, and reclaiming the
// instance.
const spotNotice = 2 * time.Minute

// maxDetail bounds the text of a message nodewright cannot use that goes
// into logs: enough to recognise it, not a flood.
const maxDetail = 512

// instanceIDPattern is EC2's instance id: i- and 8 (older) or 17 hex digits.
var instanceIDPattern = regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`)

// ParseInterruption reads one EventBridge event. An event from another
// account or region than own is a ForeignInterruption naming no instance.
// Anything it cannot read, or an event of a kind nodewright does not act on,
// is an UnknownInterruption whose Detail says why (with the body cut to 512
// bytes).
func ParseInterruption(body string, own Origin) cloudprovider.Interruption {
	unknown := func(why string) cloudprovider.Interruption {
		return cloudprovider.Interruption{Kind: cloudprovider.UnknownInterruption, Detail: cut(why) + ": " + cut(body)}
	}
	var ev eventBridgeEvent
	if err := json.Unmarshal([]byte(body), &ev); err != nil {
		return unknown("not an EventBridge event (" + err.Error() + ")")
	}
	if ev.Account != own.Account || ev.Region != own.Region {
		return cloudprovider.Interruption{Kind: cloudprovider.ForeignInterruption, SentAt: ev.Time,
			Detail: cut(fmt.Sprintf("%q from account %q, region %q; nodewright runs in account %q, region %q",
				ev.DetailType, ev.Account, ev.Region, own.Account, own.Region))}
	}
	in := cloudprovider.Interruption{SentAt: ev.Time}
	switch {
	case ev.Source == "aws.ec2" && (ev.DetailType == detailSpotInterruption || ev.DetailType == detailReservationInterruption ||
		ev.DetailType == detailRebalance || ev.DetailType == detailStateChange):
		var d struct {
			InstanceID string `json:"instance-id"`
			State      string `json:"state"`
			Action     string `json:"instance-action"`
			// TerminationTime is when a reservation's instance goes, as
			// its warning says.
			TerminationTime string `json:"instance-termination-time"`
		}
		if err := json.Unmarshal(ev.Detail, &d); err != nil || d.InstanceID == "" {
			return unknown(ev.DetailType + " without detail.instance-id")
		}
		if !instanceIDPattern.MatchString(d.InstanceID) {
			return unknown(fmt.Sprintf("%s naming %q, not an instance id", ev.DetailType, d.InstanceID))
		}
		in.InstanceIDs = []string{d.InstanceID}
		switch ev.DetailType {
		case detailSpotInterruption:
			in.Kind, in.Detail = cloudprovider.SpotInterruption, cut("instance-action "+d.Action)
			if !ev.Time.IsZero() {
				in.TerminatesAt = ev.Time.Add(spotNotice)
			}
		case detailReservationInterruption:
			in.Kind, in.Detail = cloudprovider.CapacityReservationInterruption, cut("instance-action "+d.Action)
			if t, err := time.Parse(time.RFC3339, d.TerminationTime); err == nil {
				in.TerminatesAt = t.UTC()
			} else if !ev.Time.IsZero() {
				in.TerminatesAt = ev.Time.Add(spotNotice)
			}
		case detailRebalance:
			in.Kind = cloudprovider.RebalanceRecommendation
		default:
			if d.State == "" {
				return unknown(ev.DetailType + " without detail.state")
			}
			in.Kind, in.State, in.Detail = cloudprovider.StateChange, d.State, cut("state "+d.State)
		}
	case ev.Source == "aws.health" && ev.DetailType == detailHealth:
		var d struct {
			Service           string `json:"service"`
			EventTypeCode     string `json:"eventTypeCode"`
			EventTypeCategory string `json:"eventTypeCategory"`
			StartTime         string `json:"startTime"`
			AffectedEntities  []struct {
				EntityValue string `json:"entityValue"`
			} `json:"affectedEntities"`
		}
		if err := json.Unmarshal(ev.Detail, &d); err != nil {
			return unknown("AWS Health Event with unreadable detail (" + err.Error() + ")")
		}
		if d.Service != "EC2" || d.EventTypeCategory != "scheduledChange" {
			return unknown(fmt.Sprintf("AWS Health Event of service %q category %q", d.Service, d.EventTypeCategory))
		}
		for _, e := range d.AffectedEntities {
			if instanceIDPattern.MatchString(e.EntityValue) {
				in.InstanceIDs = append(in.InstanceIDs, e.EntityValue)
			}
		}
		if len(in.InstanceIDs) == 0 {
			return unknown("AWS Health Event naming no instance")
		}
		in.Kind, in.Detail = cloudprovider.ScheduledChange, cut(d.EventTypeCode)
		if t, err := time.Parse(time.RFC1123, d.StartTime); err == nil {
			in.TerminatesAt = t.UTC()
		} else if t, err := time.Parse(time.RFC3339, d.StartTime); err == nil {
			in.TerminatesAt = t.UTC()
		}
	default:
		return unknown(fmt.Sprintf("event %q from %q", ev.DetailType, ev.Source))
	}
	return in
}

// cut shortens s to maxDetail bytes (and a mark), never inside a UTF-8
// sequence.
func cut(s string) string {
	if len(s) <= maxDetail {
		return s
	}
	n := maxDetail
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
