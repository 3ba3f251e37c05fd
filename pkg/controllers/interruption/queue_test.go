package interruption

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/nodewright/nodewright/pkg/cloudprovider"
	"github.com/nodewright/nodewright/pkg/cloudprovider/aws"
	"github.com/nodewright/nodewright/pkg/controllers"
	"github.com/nodewright/nodewright/pkg/controllers/disruption"
	"github.com/nodewright/nodewright/pkg/metrics"
	"github.com/nodewright/nodewright/test/ec2sim"
)

// simQueue is the real SQS reader on a simulator with an empty queue.
func simQueue(t *testing.T) (*ec2sim.Server, *aws.InterruptionQueue) {
	t.Helper()
	sim, err := ec2sim.StartRegion("ap-northeast-2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	if err := ec2sim.UseSimulatorCredentials(); err != nil {
		t.Fatal(err)
	}
	clients, err := aws.NewClients(context.Background(), aws.ClientOptions{Region: sim.Scenario().Region, Endpoint: sim.URL})
	if err != nil {
		t.Fatal(err)
	}
	sim.CreateQueue("interruptions")
	return sim, aws.NewInterruptionQueue(clients, sim.Scenario().Region, "interruptions")
}

// ec2Event is an EventBridge body as EC2 sends it, sent at sent.
func ec2Event(account, detailType, detail string, sent time.Time) string {
	return fmt.Sprintf(`{"version":"0","id":"%d","detail-type":%q,"source":"aws.ec2","account":%q,"time":%q,"region":"ap-northeast-2","resources":[],"detail":%s}`,
		sent.UnixNano(), detailType, account, sent.UTC().Format(time.RFC3339), detail)
}

func messages(kind cloudprovider.InterruptionKind) float64 {
	return testutil.ToFloat64(metrics.InterruptionMessages.WithLabelValues(string(kind)))
}

// Messages as SQS delivers them, through the real reader on the simulator:
// a spot warning twice (at-least-once delivery), an instance's shutting-down
// state change before its own spot warning (out of order), a spot warning
// from another account naming one of our instances, and a body that is not
// an event (poison). Every message is deleted, none retried; only our
// account's notices disrupt, each claim once; the late warning does not
// push the drain back; the foreign and poison messages are counted.
// Mutations tried: dropping ParseInterruption's account check fails with
// the foreign message's claim deleted; Handle returning an error for
// unknown messages (so Start keeps them) fails with the poison message
// still queued.
func TestQueueDuplicatesOutOfOrderForeignAndPoison(t *testing.T) {
	sim, q := simQueue(t)
	own := sim.Scenario().AccountID
	dup, late, foreign := launchedClaim(t, "dup-pool"), launchedClaim(t, "late-pool"), launchedClaim(t, "foreign-pool")
	spot := func(account string, id string) string {
		return ec2Event(account, "EC2 Spot Instance Interruption Warning",
			fmt.Sprintf(`{"instance-id":%q,"instance-action":"terminate"}`, id), now.Add(-30*time.Second))
	}
	id := func(nc interface{ GetName() string }) string { return instanceID(nc.GetName()) }
	bodies := []string{
		spot(own, id(dup)), spot(own, id(dup)),
		ec2Event(own, "EC2 Instance State-change Notification", fmt.Sprintf(`{"instance-id":%q,"state":"shutting-down"}`, id(late)), now.Add(-10*time.Second)),
		spot(own, id(late)),
		spot("999999999999", id(foreign)),
		`{"detail-type": "EC2 Spot Instance Interruption Warning", "detail": {"instance-id": `,
	}
	for _, b := range bodies {
		if err := sim.SendRaw("interruptions", b); err != nil {
			t.Fatal(err)
		}
	}
	beforeDup := decisions("dup-pool", "spot_interrupted", "replace")
	beforeForeign, beforeUnknown := messages(cloudprovider.ForeignInterruption), messages(cloudprovider.UnknownInterruption)

	c, _, _ := newController(false)
	c.Queue = q
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return len(sim.QueueMessages("interruptions")) == 0, nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("messages left in the queue: %+v", sim.QueueMessages("interruptions"))
	}

	if got := get(t, dup); got.DeletionTimestamp.IsZero() {
		t.Error("the spot warning did not disrupt its claim")
	}
	if d := decisions("dup-pool", "spot_interrupted", "replace") - beforeDup; d != 1 {
		t.Errorf("a warning delivered twice counted %v decisions, want 1", d)
	}
	got := get(t, late)
	if by, waits := disruption.DrainBy(got); got.DeletionTimestamp.IsZero() || waits && by.After(now) {
		t.Errorf("shutting down, then a spot warning: deleting %v, drain by %v, want now", !got.DeletionTimestamp.IsZero(), by)
	}
	if !get(t, foreign).DeletionTimestamp.IsZero() {
		t.Error("another account's message disrupted our claim")
	}
	if d := messages(cloudprovider.ForeignInterruption) - beforeForeign; d != 1 {
		t.Errorf("foreign messages counted %v, want 1", d)
	}
	if d := messages(cloudprovider.UnknownInterruption) - beforeUnknown; d != 1 {
		t.Errorf("unreadable messages counted %v, want 1", d)
	}
	if controllers.InstanceID(foreign.Status.ProviderID) != id(foreign) {
		t.Fatalf("the test's instance ids do not match the claims' provider ids")
	}
}
