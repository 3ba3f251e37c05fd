package ec2sim

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// event is an EventBridge event as a controller would read it off the queue.
type event struct {
	Version    string          `json:"version"`
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Account    string          `json:"account"`
	Time       string          `json:"time"`
	Region     string          `json:"region"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
	body       string
}

// instanceDetail holds the fields of the EC2 events' details.
type instanceDetail struct {
	InstanceID     string `json:"instance-id"`
	InstanceAction string `json:"instance-action"`
	State          string `json:"state"`
}

func (ev event) ec2Detail(t *testing.T) instanceDetail {
	t.Helper()
	var d instanceDetail
	if err := json.Unmarshal(ev.Detail, &d); err != nil {
		t.Fatalf("detail of %s: %v", ev.body, err)
	}
	return d
}

// summary is "detail-type instance-id [state]", enough to compare sequences.
func (ev event) summary(t *testing.T) string {
	d := ev.ec2Detail(t)
	return strings.TrimSpace(ev.DetailType + " " + d.InstanceID + " " + d.State)
}

// feed is an events queue with a client to read it.
type feed struct {
	sqs *sqs.Client
	url string
}

func newFeed(t *testing.T, e *env) *feed {
	t.Helper()
	e.sim.RouteEventsTo("interruptions")
	client := newSQS(e.sim)
	out, err := client.GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: aws.String("interruptions")})
	if err != nil {
		t.Fatalf("RouteEventsTo did not create the queue: %v", err)
	}
	return &feed{client, aws.ToString(out.QueueUrl)}
}

// drain receives and deletes every message on the queue, in order. Events
// are sent before the simulator's call returns, so there is no waiting.
func (f *feed) drain(t *testing.T) []event {
	t.Helper()
	var out []event
	for {
		got := receive(t, f.sqs, &sqs.ReceiveMessageInput{QueueUrl: aws.String(f.url), MaxNumberOfMessages: 10})
		if len(got) == 0 {
			return out
		}
		var entries []sqstypes.DeleteMessageBatchRequestEntry
		for i, m := range got {
			ev := event{body: aws.ToString(m.Body)}
			if err := json.Unmarshal([]byte(ev.body), &ev); err != nil {
				t.Fatalf("message %s is not an event: %v", ev.body, err)
			}
			out = append(out, ev)
			entries = append(entries, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
		}
		if _, err := f.sqs.DeleteMessageBatch(context.Background(), &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(f.url), Entries: entries}); err != nil {
			t.Fatal(err)
		}
	}
}

func summaries(t *testing.T, events []event) string {
	var out []string
	for _, ev := range events {
		out = append(out, ev.summary(t))
	}
	return strings.Join(out, "\n")
}

// launchOne launches one c5.large in 2a from the template "nodes" and
// returns its id.
func (e *env) launchOne(t *testing.T, capacityType ec2types.DefaultTargetCapacityType) string {
	t.Helper()
	return launched(e.createFleet(t, fleetInput("nodes", capacityType, 1, override("c5.large", "ap-northeast-2a"))))[0]
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestSpotInterruptionEventsFollowTheInstance(t *testing.T) {
	e := newEnv(t)
	e.launchTemplate(t, "nodes", "")
	f := newFeed(t, e)
	id := e.launchOne(t, ec2types.DefaultTargetCapacityTypeSpot)
	if err := e.sim.Interrupt(id); err != nil {
		t.Fatal(err)
	}
	events := f.drain(t)
	want := fmt.Sprintf("EC2 Instance State-change Notification %[1]s pending\nEC2 Instance State-change Notification %[1]s running\nEC2 Spot Instance Interruption Warning %[1]s", id)
	if got := summaries(t, events); got != want {
		t.Fatalf("events:\n%s\nwant:\n%s", got, want)
	}

	// The warning, byte for byte: the contract the controller parses.
	warning := events[2]
	if !uuidPattern.MatchString(warning.ID) {
		t.Errorf("event id %q is not a UUID", warning.ID)
	}
	at := e.instance(t, id).InterruptionTime.UTC().Format("2006-01-02T15:04:05Z")
	wantBody := fmt.Sprintf(`{"version":"0","id":"%s","detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","account":"%s","time":"%s","region":"ap-northeast-2","resources":["arn:aws:ec2:ap-northeast-2:%s:instance/%s"],"detail":{"instance-id":"%s","instance-action":"terminate"}}`,
		warning.ID, e.sim.Scenario().AccountID, at, e.sim.Scenario().AccountID, id, id)
	if warning.body != wantBody {
		t.Errorf("warning body\n%s\nwant\n%s", warning.body, wantBody)
	}
	if events[0].ID == events[1].ID {
		t.Error("two events share an id")
	}

	// The notice runs out on the simulated clock.
	e.sim.Advance(SpotInterruptionNotice)
	want = fmt.Sprintf("EC2 Instance State-change Notification %[1]s shutting-down\nEC2 Instance State-change Notification %[1]s terminated", id)
	if got := summaries(t, f.drain(t)); got != want {
		t.Errorf("after the notice:\n%s\nwant:\n%s", got, want)
	}
}

func TestTerminateInstancesSendsStateChanges(t *testing.T) {
	e := newEnv(t)
	e.launchTemplate(t, "nodes", "")
	id := e.launchOne(t, ec2types.DefaultTargetCapacityTypeOnDemand)
	// Events before the route are dropped, as they would be before the rules existed.
	f := newFeed(t, e)
	e.sim.SetShutdownDelay(time.Minute)
	if _, err := e.ec2.TerminateInstances(context.Background(), &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatal(err)
	}
	events := f.drain(t)
	if got, want := summaries(t, events), "EC2 Instance State-change Notification "+id+" shutting-down"; got != want {
		t.Fatalf("events:\n%s\nwant:\n%s", got, want)
	}
	ev := events[0]
	if ev.Source != "aws.ec2" || ev.Version != "0" || ev.Account != e.sim.Scenario().AccountID || ev.Region != region ||
		len(ev.Resources) != 1 || ev.Resources[0] != "arn:aws:ec2:ap-northeast-2:"+e.sim.Scenario().AccountID+":instance/"+id {
		t.Errorf("envelope %s", ev.body)
	}
	if _, err := time.Parse(time.RFC3339, ev.Time); err != nil || !strings.HasSuffix(ev.Time, "Z") {
		t.Errorf("time %q is not RFC 3339 UTC", ev.Time)
	}
	e.sim.Advance(time.Minute)
	if got, want := summaries(t, f.drain(t)), "EC2 Instance State-change Notification "+id+" terminated"; got != want {
		t.Errorf("after the shutdown delay:\n%s\nwant:\n%s", got, want)
	}

	e.sim.RouteEventsTo("")
	e.launchOne(t, ec2types.DefaultTargetCapacityTypeOnDemand)
	if got := f.drain(t); len(got) != 0 {
		t.Errorf("routing stopped, yet %d events arrived", len(got))
	}
}

func TestRebalanceRecommendation(t *testing.T) {
	e := newEnv(t)
	e.launchTemplate(t, "nodes", "")
	id := e.launchOne(t, ec2types.DefaultTargetCapacityTypeSpot)
	onDemand := e.launchOne(t, ec2types.DefaultTargetCapacityTypeOnDemand)
	f := newFeed(t, e)
	if err := e.sim.Rebalance(onDemand); err == nil {
		t.Error("recommended rebalancing an on-demand instance")
	}
	if err := e.sim.Rebalance("i-0123456789abcdef0"); err == nil {
		t.Error("recommended rebalancing an unknown instance")
	}
	if err := e.sim.Rebalance(id); err != nil {
		t.Fatal(err)
	}
	events := f.drain(t)
	if got, want := summaries(t, events), "EC2 Instance Rebalance Recommendation "+id; got != want {
		t.Fatalf("events:\n%s\nwant:\n%s", got, want)
	}
	if want := `{"instance-id":"` + id + `"}`; string(events[0].Detail) != want || events[0].Source != "aws.ec2" {
		t.Errorf("event %s", events[0].body)
	}
	in := e.instance(t, id)
	if in.RebalanceRecommendationTime.IsZero() || in.State != StateRunning || !in.InterruptionTime.IsZero() {
		t.Errorf("after the recommendation: %+v", in)
	}
}

func TestScheduledEventSendsAHealthEvent(t *testing.T) {
	e := newEnv(t)
	e.launchTemplate(t, "nodes", "")
	id := e.launchOne(t, ec2types.DefaultTargetCapacityTypeOnDemand)
	gone := e.launchOne(t, ec2types.DefaultTargetCapacityTypeOnDemand)
	if _, err := e.ec2.TerminateInstances(context.Background(), &ec2.TerminateInstancesInput{InstanceIds: []string{gone}}); err != nil {
		t.Fatal(err)
	}
	f := newFeed(t, e)
	const code = "AWS_EC2_PERSISTENT_INSTANCE_RETIREMENT_SCHEDULED"
	if err := e.sim.ScheduleEvent(gone, code, e.sim.Now()); err == nil {
		t.Error("scheduled an event for a terminated instance")
	}
	start := time.Date(2021, 6, 5, 19, 0, 0, 0, time.UTC)
	if err := e.sim.ScheduleEvent(id, code, start); err != nil {
		t.Fatal(err)
	}
	events := f.drain(t)
	if len(events) != 1 {
		t.Fatalf("%d events: %s", len(events), summaries(t, events))
	}
	ev := events[0]
	if ev.Source != "aws.health" || ev.DetailType != "AWS Health Event" || len(ev.Resources) != 1 || ev.Resources[0] != id {
		t.Errorf("envelope %s", ev.body)
	}
	var d struct {
		EventARN          string `json:"eventArn"`
		Service           string `json:"service"`
		EventTypeCode     string `json:"eventTypeCode"`
		EventTypeCategory string `json:"eventTypeCategory"`
		StartTime         string `json:"startTime"`
		EndTime           string `json:"endTime"`
		AffectedEntities  []struct {
			EntityValue string `json:"entityValue"`
		} `json:"affectedEntities"`
	}
	if err := json.Unmarshal(ev.Detail, &d); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.EventARN, "arn:aws:health:ap-northeast-2::event/EC2/"+code+"/"+code+"_") || d.Service != "EC2" ||
		d.EventTypeCode != code || d.EventTypeCategory != "scheduledChange" ||
		d.StartTime != "Sat, 05 Jun 2021 19:00:00 GMT" || d.EndTime != "Sat, 05 Jun 2021 21:00:00 GMT" ||
		len(d.AffectedEntities) != 1 || d.AffectedEntities[0].EntityValue != id {
		t.Errorf("detail %s", ev.Detail)
	}
	if in := e.instance(t, id); in.State != StateRunning {
		t.Errorf("the scheduled event changed the instance: %s", in.State)
	}
}
