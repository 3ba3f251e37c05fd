package aws

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/nodewright/nodewright/pkg/cloudprovider"
)

// EventBridge bodies as EC2 and AWS Health send them (shapes from the
// EventBridge and AWS Health event references).
const (
	spotWarning = `{"version":"0","id":"1e5527d7-bb36-4607-3370-4164db56a40e","detail-type":"EC2 Spot Instance Interruption Warning",
"source":"aws.ec2","account":"123456789012","time":"2026-11-23T10:00:00Z","region":"ap-northeast-2",
"resources":["arn:aws:ec2:ap-northeast-2a:instance/i-0b662ef9931388ba0"],"detail":{"instance-id":"i-0b662ef9931388ba0","instance-action":"terminate"}}`
	// The termination time is not the notice's time plus two minutes, to
	// tell it is read from the detail.
	reservationWarning = `{"version":"0","id":"2f6638e8-cc47-5718-4481-5275ec67b51f","detail-type":"EC2 Capacity Reservation Instance Interruption Warning",
"source":"aws.ec2","account":"123456789012","time":"2026-11-23T10:00:00Z","region":"ap-northeast-2",
"resources":["arn:aws:ec2:ap-northeast-2:123456789012:instance/i-0eee0000000000000"],
"detail":{"instance-id":"i-0eee0000000000000","instance-action":"terminate","instance-termination-time":"2026-11-23T10:02:05Z","azId":"apne2-az1"}}`
	rebalance = `{"version":"0","id":"5e1f3b0c","detail-type":"EC2 Instance Rebalance Recommendation","source":"aws.ec2",
"account":"123456789012","time":"2026-11-23T10:00:00Z","region":"ap-northeast-2","resources":["arn:aws:ec2:ap-northeast-2:123456789012:instance/i-0aaa0000000000000"],
"detail":{"instance-id":"i-0aaa0000000000000"}}`
	stateChange = `{"version":"0","id":"7bf73129","detail-type":"EC2 Instance State-change Notification","source":"aws.ec2",
"account":"123456789012","time":"2026-11-23T10:00:00Z","region":"ap-northeast-2","resources":["arn:aws:ec2:ap-northeast-2:123456789012:instance/i-0bbb0000000000000"],
"detail":{"instance-id":"i-0bbb0000000000000","state":"stopping"}}`
	health = `{"version":"0","id":"121345678-1234-1234-1234-123456789012","detail-type":"AWS Health Event","source":"aws.health",
"account":"123456789012","time":"2026-11-23T10:00:00Z","region":"ap-northeast-2","resources":["i-0ccc0000000000000","i-0ddd0000000000000"],
"detail":{"eventArn":"arn:aws:health:ap-northeast-2::event/EC2/AWS_EC2_PERSISTENT_INSTANCE_RETIREMENT_SCHEDULED/x","service":"EC2",
"eventTypeCode":"AWS_EC2_PERSISTENT_INSTANCE_RETIREMENT_SCHEDULED","eventTypeCategory":"scheduledChange",
"startTime":"Wed, 25 Nov 2026 19:00:00 GMT","endTime":"Wed, 25 Nov 2026 20:00:00 GMT",
"affectedEntities":[{"entityValue":"i-0ccc0000000000000"},{"entityValue":"i-0ddd0000000000000"}]}}`
)

// own is the account and region the bodies above come from.
var own = Origin{Account: "123456789012", Region: "ap-northeast-2"}

func TestParseInterruption(t *testing.T) {
	sent := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, body string
		kind       cloudprovider.InterruptionKind
		ids        []string
		state      string
		terminates time.Time
		detail     string
	}{
		{"spot warning", spotWarning, cloudprovider.SpotInterruption, []string{"i-0b662ef9931388ba0"}, "", sent.Add(2 * time.Minute), "instance-action terminate"},
		// Fails when the detail's termination time is ignored (tried: the
		// notice's time plus two minutes) and when the event is not
		// recognised (tried: dropping its detail-type from the EC2 case).
		{"reservation warning", reservationWarning, cloudprovider.CapacityReservationInterruption, []string{"i-0eee0000000000000"}, "",
			sent.Add(2*time.Minute + 5*time.Second), "instance-action terminate"},
		{"reservation warning without its time", strings.Replace(reservationWarning, `"instance-termination-time":"2026-11-23T10:02:05Z",`, "", 1),
			cloudprovider.CapacityReservationInterruption, []string{"i-0eee0000000000000"}, "", sent.Add(2 * time.Minute), "instance-action terminate"},
		{"rebalance", rebalance, cloudprovider.RebalanceRecommendation, []string{"i-0aaa0000000000000"}, "", time.Time{}, ""},
		{"state change", stateChange, cloudprovider.StateChange, []string{"i-0bbb0000000000000"}, "stopping", time.Time{}, "state stopping"},
		{"scheduled retirement", health, cloudprovider.ScheduledChange, []string{"i-0ccc0000000000000", "i-0ddd0000000000000"}, "",
			time.Date(2026, 11, 25, 19, 0, 0, 0, time.UTC), "AWS_EC2_PERSISTENT_INSTANCE_RETIREMENT_SCHEDULED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := ParseInterruption(tc.body, own)
			if in.Kind != tc.kind || strings.Join(in.InstanceIDs, ",") != strings.Join(tc.ids, ",") || in.State != tc.state ||
				!in.TerminatesAt.Equal(tc.terminates) || !in.SentAt.Equal(sent) || in.Detail != tc.detail {
				t.Errorf("got %+v", in)
			}
		})
	}
	for _, tc := range []struct{ name, body, why string }{
		{"not JSON", "hello", "not an EventBridge event"},
		{"other event", `{"detail-type":"EC2 AMI State Change","source":"aws.ec2","account":"123456789012","region":"ap-northeast-2","detail":{}}`,
			`event "EC2 AMI State Change" from "aws.ec2"`},
		{"no instance", `{"detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","account":"123456789012","region":"ap-northeast-2","detail":{}}`,
			"without detail.instance-id"},
		{"not an instance id", strings.ReplaceAll(rebalance, `"i-0aaa0000000000000"`, `"i-0aaa0000000000000/../x"`), `naming "i-0aaa0000000000000/../x", not an instance id`},
		{"health, other category", strings.Replace(health, `"scheduledChange"`, `"issue"`, 1), `category "issue"`},
		{"state change without state", strings.Replace(stateChange, `"state":"stopping"`, `"x":1`, 1), "without detail.state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := ParseInterruption(tc.body, own)
			if in.Kind != cloudprovider.UnknownInterruption || !strings.Contains(in.Detail, tc.why) || len(in.InstanceIDs) != 0 {
				t.Errorf("want unknown saying %q, got %+v", tc.why, in)
			}
		})
	}
	long := ParseInterruption(strings.Repeat("x", 2000), own)
	if len(long.Detail) > 2*maxDetail+8 {
		t.Errorf("an unreadable body is not cut: %d bytes of detail", len(long.Detail))
	}
}

// An event from another account or region, or without either (EventBridge
// always sets both), names no instance, whatever it says. Mutation tried:
// dropping the account and region check fails every case with a spot
// interruption of i-0b662ef9931388ba0.
func TestParseInterruptionIgnoresOtherAccountsAndRegions(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"other account", strings.Replace(spotWarning, `"account":"123456789012"`, `"account":"999999999999"`, 1)},
		{"other region", strings.Replace(spotWarning, `"region":"ap-northeast-2"`, `"region":"us-east-1"`, 1)},
		{"no account", strings.Replace(spotWarning, `"account":"123456789012",`, ``, 1)},
		{"health, other account", strings.Replace(health, `"account":"123456789012"`, `"account":"999999999999"`, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := ParseInterruption(tc.body, own)
			if in.Kind != cloudprovider.ForeignInterruption || len(in.InstanceIDs) != 0 || !strings.Contains(in.Detail, `nodewright runs in account "123456789012", region "ap-northeast-2"`) {
				t.Errorf("want a foreign message naming no instance, got %+v", in)
			}
		})
	}
}

// The queue is found by name, messages come back read and with a handle,
// and a deleted message is gone from the queue.
func TestInterruptionQueueReceivesAndDeletes(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e.sim.CreateQueue("interruptions")
	// The simulator's account, which STS names, and one that is not.
	ours := strings.Replace(spotWarning, `"account":"123456789012"`, `"account":"`+e.sim.Scenario().AccountID+`"`, 1)
	for _, body := range []string{ours, "not json", spotWarning} {
		if err := e.sim.SendRaw("interruptions", body); err != nil {
			t.Fatal(err)
		}
	}
	q := NewInterruptionQueue(e.clients, e.sim.Scenario().Region, "interruptions")
	var got []cloudprovider.Interruption
	for len(got) < 3 {
		msgs, err := q.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, msgs...)
	}
	kinds := map[cloudprovider.InterruptionKind]cloudprovider.Interruption{}
	for _, m := range got {
		if m.ID == "" || m.Handle == "" {
			t.Errorf("message without id or handle: %+v", m)
		}
		kinds[m.Kind] = m
	}
	if len(kinds[cloudprovider.SpotInterruption].InstanceIDs) != 1 || kinds[cloudprovider.SpotInterruption].InstanceIDs[0] != "i-0b662ef9931388ba0" ||
		!strings.Contains(kinds[cloudprovider.UnknownInterruption].Detail, "not json") ||
		!strings.Contains(kinds[cloudprovider.ForeignInterruption].Detail, `from account "123456789012"`) {
		t.Errorf("messages not read: %+v", got)
	}
	if n := e.sim.Calls("GetCallerIdentity"); n != 1 {
		t.Errorf("the account was asked of STS %d times, want once", n)
	}
	for _, m := range got {
		if err := q.Delete(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if left := e.sim.QueueMessages("interruptions"); len(left) != 0 {
		t.Errorf("deleted messages still queued: %+v", left)
	}

	missing := NewInterruptionQueue(e.clients, e.sim.Scenario().Region, "no-such-queue")
	if _, err := missing.Receive(ctx); err == nil || !strings.Contains(err.Error(), `"no-such-queue"`) {
		t.Errorf("a missing queue's error must name it: %v", err)
	}
}

// A fleet refused for a reason other than capacity, and an API call
// refused outright, carry EC2's error code for the launch failure metric.
func TestLaunchErrorsCarryTheEC2Code(t *testing.T) {
	e := newEnv(t)
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProvider(t, nc)
	e.sim.FailAlways("CreateFleet", "UnauthorizedOperation", 403)
	_, err := p.Create(context.Background(), newClaim(nc.Name, req(corev1.LabelInstanceTypeStable, "m5.xlarge")))
	if code := cloudprovider.ErrorCode(err); code != "UnauthorizedOperation" {
		t.Errorf("CreateFleet refused: code %q from %v", code, err)
	}
	if cloudprovider.IsInsufficientCapacity(err) {
		t.Errorf("an authorization failure is not a capacity shortage: %v", err)
	}
}
