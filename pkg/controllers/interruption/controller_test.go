package interruption

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodewright/nodewright/pkg/controllers/disruption"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
	"github.com/nodewright/nodewright/pkg/controllers"
	"github.com/nodewright/nodewright/pkg/metrics"
	"github.com/nodewright/nodewright/test/harness"
)

var cp *harness.ControlPlane

func TestMain(m *testing.M) { harness.Main(m, harness.Options{}, &cp) }

// byInstanceID stands in for the cache index: the API server cannot select
// NodeClaims by instance id, so the test's client filters them itself.
type byInstanceID struct{ client.Client }

func (c byInstanceID) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	o := &client.ListOptions{}
	o.ApplyOptions(opts)
	claims, ok := list.(*v1.NodeClaimList)
	if !ok || o.FieldSelector == nil {
		return c.Client.List(ctx, list, opts...)
	}
	if err := c.Client.List(ctx, claims); err != nil {
		return err
	}
	want, _ := o.FieldSelector.RequiresExactMatch(controllers.NodeClaimInstanceID)
	kept := claims.Items[:0]
	for _, nc := range claims.Items {
		if controllers.InstanceID(nc.Status.ProviderID) == want {
			kept = append(kept, nc)
		}
	}
	claims.Items = kept
	return nil
}

type event struct{ kind, reason, note, object string }

type recorder struct {
	mu     sync.Mutex
	events []event
}

func (r *recorder) Eventf(regarding runtime.Object, _ runtime.Object, typ, reason, _, note string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{typ, reason, fmt.Sprintf(note, args...), fmt.Sprintf("%T", regarding)})
}

func (r *recorder) reasons() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.object+":"+e.reason)
	}
	return strings.Join(out, ",")
}

var now = time.Date(2026, 11, 23, 10, 0, 30, 0, time.UTC)

// newController's offerings are the catalog's own cache, the one the solver
// reads, on a clock at now.
func newController(drainOnRebalance bool) (*Controller, *recorder, *catalog.UnavailableOfferings) {
	rec := &recorder{}
	offs := catalog.NewUnavailableOfferings(catalog.UnavailableOptions{Clock: clocktesting.NewFakePassiveClock(now)})
	return &Controller{Kube: byInstanceID{cp.Client}, Recorder: rec, Offerings: offs, DrainOnRebalance: drainOnRebalance,
		Now: func() time.Time { return now }}, rec, offs
}

// launchedClaim is a NodeClaim of pool on a running spot instance (with the
// termination finalizer, so deleting it leaves it visible, deleting).
func launchedClaim(t *testing.T, pool string) *v1.NodeClaim {
	t.Helper()
	ctx := context.Background()
	name := harness.Name("claim")
	nc := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.NodePoolLabelKey: pool,
			corev1.LabelInstanceTypeStable: "m5.large", corev1.LabelTopologyZone: "ap-northeast-2a", v1.CapacityTypeLabelKey: v1.CapacityTypeSpot}},
		Spec: v1.NodeClaimSpec{NodeClassRef: &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"},
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: v1.NodePoolLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{pool}}}},
	}
	controllerutil.AddFinalizer(nc, v1.TerminationFinalizer)
	if err := cp.Client.Create(ctx, nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cp.Client.Patch(ctx, &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: name}}, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))
		_ = cp.Client.Delete(ctx, &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: name}})
	})
	nc.Status.ProviderID = "aws:///ap-northeast-2a/" + instanceID(name)
	nc.Status.NodeName = "ip-10-0-0-1.ap-northeast-2.compute.internal"
	if err := cp.Client.Status().Update(ctx, nc); err != nil {
		t.Fatal(err)
	}
	return nc
}

// instanceID is an EC2-shaped instance id (i- and 17 hex digits) for a
// claim name, as the queue reader accepts.
func instanceID(name string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return fmt.Sprintf("i-%017x", h.Sum64())
}

func get(t *testing.T, nc *v1.NodeClaim) *v1.NodeClaim {
	t.Helper()
	out := &v1.NodeClaim{}
	if err := cp.Client.Get(context.Background(), client.ObjectKeyFromObject(nc), out); err != nil {
		t.Fatal(err)
	}
	return out
}

func decisions(pool, reason, decision string) float64 {
	return testutil.ToFloat64(metrics.DisruptionDecisions.WithLabelValues(pool, reason, decision))
}

// interrupt hands c a notice of kind for nc's instance, sent at sent and
// giving two minutes, and returns the claim, which must be deleting.
func interrupt(t *testing.T, c *Controller, kind cloudprovider.InterruptionKind, nc *v1.NodeClaim, sent time.Time) *v1.NodeClaim {
	t.Helper()
	err := c.Handle(context.Background(), cloudprovider.Interruption{ID: "m1", Kind: kind,
		InstanceIDs: []string{controllers.InstanceID(nc.Status.ProviderID)}, SentAt: sent, TerminatesAt: sent.Add(2 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	got := get(t, nc)
	if got.DeletionTimestamp.IsZero() {
		t.Fatal("the interrupted claim is not being deleted")
	}
	return got
}

// A spot interruption warning disrupts the claim replacement-first, with
// the drain starting a minute before the two minutes run out, and keeps its
// offering out of new launches.
func TestSpotInterruptionDisruptsReplacementFirst(t *testing.T) {
	c, rec, offs := newController(true)
	nc := launchedClaim(t, "spot-pool")
	sent := now.Add(-30 * time.Second)
	before := decisions("spot-pool", "spot_interrupted", "replace")
	got := interrupt(t, c, cloudprovider.SpotInterruption, nc, sent)
	if got.Annotations[disruption.DisruptionReasonAnnotation] != "spot_interrupted" {
		t.Errorf("reason annotation %v", got.Annotations)
	}
	if by, ok := disruption.DrainBy(got); !ok || !by.Equal(sent.Add(time.Minute)) {
		t.Errorf("drain by %v (%v), want a minute before the instance goes: %v", by, ok, sent.Add(time.Minute))
	}
	if !offs.IsUnavailable("m5.large", "ap-northeast-2a", v1.CapacityTypeSpot) || offs.Len() != 1 {
		t.Errorf("the reclaimed offering is not the one out: %d out", offs.Len())
	}
	if d := decisions("spot-pool", "spot_interrupted", "replace") - before; d != 1 {
		t.Errorf("disruption decisions counted %v, want 1", d)
	}
	if r := rec.reasons(); r != "*v1.NodeClaim:SpotInterrupted,*v1.Node:SpotInterrupted" {
		t.Errorf("events %s", r)
	}
	// The same warning again (SQS delivers at least once) changes nothing.
	if err := c.Handle(context.Background(), cloudprovider.Interruption{ID: "m1", Kind: cloudprovider.SpotInterruption,
		InstanceIDs: []string{controllers.InstanceID(nc.Status.ProviderID)}, SentAt: sent, TerminatesAt: sent.Add(2 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if d := decisions("spot-pool", "spot_interrupted", "replace") - before; d != 1 {
		t.Errorf("a redelivered warning counted again: %v", d)
	}
}

// A rebalance recommendation keeps new launches out of the node's pool
// whatever the gate says; only DrainOnRebalance also disrupts the node.
// Mutations tried: marking the pool only in the draining branch (the code
// before this test) fails with no offering out when the gate is off; draining
// whatever the gate fails with the claim deleted.
func TestRebalanceRecommendationAvoidsThePoolAndFollowsTheGate(t *testing.T) {
	ctx := context.Background()
	off, rec, offs := newController(false)
	nc := launchedClaim(t, "rebalance-pool")
	msg := cloudprovider.Interruption{ID: "m2", Kind: cloudprovider.RebalanceRecommendation, InstanceIDs: []string{controllers.InstanceID(nc.Status.ProviderID)}}
	if err := off.Handle(ctx, msg); err != nil {
		t.Fatal(err)
	}
	if got := get(t, nc); !got.DeletionTimestamp.IsZero() {
		t.Error("DrainOnRebalance=false must leave the claim")
	}
	if !offs.IsUnavailable("m5.large", "ap-northeast-2a", v1.CapacityTypeSpot) || offs.Len() != 1 {
		t.Errorf("the at-risk pool is not kept out of new launches: %d offerings out", offs.Len())
	}
	if r := rec.reasons(); r != "*v1.NodeClaim:RebalanceRecommendation,*v1.Node:RebalanceRecommendation" {
		t.Errorf("events for the recommendation: %s", r)
	}
	on, _, onOffs := newController(true)
	if err := on.Handle(ctx, msg); err != nil {
		t.Fatal(err)
	}
	got := get(t, nc)
	if by, ok := disruption.DrainBy(got); got.DeletionTimestamp.IsZero() || !ok || !by.Equal(now.Add(MaxReplaceWait)) {
		t.Errorf("DrainOnRebalance=true: deleting %v, drain by %v, want %v", !got.DeletionTimestamp.IsZero(), by, now.Add(MaxReplaceWait))
	}
	if !onOffs.IsUnavailable("m5.large", "ap-northeast-2a", v1.CapacityTypeSpot) {
		t.Error("DrainOnRebalance=true: the replacement may land in the at-risk pool")
	}
}

// Maintenance days ahead waits at most MaxReplaceWait; maintenance about to
// begin drains a minute before it.
func TestScheduledChangeDeadline(t *testing.T) {
	c, _, offs := newController(true)
	far, soon := launchedClaim(t, "maint-pool"), launchedClaim(t, "maint-pool")
	for _, tc := range []struct {
		nc   *v1.NodeClaim
		at   time.Time
		want time.Time
	}{
		{far, now.Add(72 * time.Hour), now.Add(MaxReplaceWait)},
		{soon, now.Add(90 * time.Second), now.Add(30 * time.Second)},
	} {
		if err := c.Handle(context.Background(), cloudprovider.Interruption{ID: "m3", Kind: cloudprovider.ScheduledChange,
			InstanceIDs: []string{controllers.InstanceID(tc.nc.Status.ProviderID)}, TerminatesAt: tc.at, Detail: "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"}); err != nil {
			t.Fatal(err)
		}
		got := get(t, tc.nc)
		if by, _ := disruption.DrainBy(got); got.Annotations[disruption.DisruptionReasonAnnotation] != "scheduled_change" || !by.Equal(tc.want) {
			t.Errorf("maintenance at %v: annotations %v, want drain by %v", tc.at, got.Annotations, tc.want)
		}
	}
	if offs.Len() != 0 {
		t.Errorf("maintenance says nothing of spot capacity, yet %d offerings are out", offs.Len())
	}
}

// An instance already stopping is drained at once; a state change to
// running, a message naming no managed instance and an unreadable message
// change nothing.
func TestStateChangesAndStrangers(t *testing.T) {
	ctx := context.Background()
	c, _, _ := newController(true)
	running, stopping := launchedClaim(t, "state-pool"), launchedClaim(t, "state-pool")
	before := decisions("state-pool", "instance_shutting_down", "delete")
	for _, m := range []cloudprovider.Interruption{
		{ID: "a", Kind: cloudprovider.StateChange, State: "running", InstanceIDs: []string{controllers.InstanceID(running.Status.ProviderID)}},
		{ID: "b", Kind: cloudprovider.StateChange, State: "shutting-down", InstanceIDs: []string{controllers.InstanceID(stopping.Status.ProviderID)}},
		{ID: "c", Kind: cloudprovider.SpotInterruption, InstanceIDs: []string{"i-notours"}},
		{ID: "d", Kind: cloudprovider.UnknownInterruption, Detail: "not an EventBridge event: hello"},
	} {
		if err := c.Handle(ctx, m); err != nil {
			t.Fatalf("message %s: %v", m.ID, err)
		}
	}
	if !get(t, running).DeletionTimestamp.IsZero() {
		t.Error("a claim whose instance reported running was deleted")
	}
	got := get(t, stopping)
	if _, waits := disruption.DrainBy(got); got.DeletionTimestamp.IsZero() || waits {
		t.Errorf("shutting-down instance: deleting %v, waits for replacement %v", !got.DeletionTimestamp.IsZero(), waits)
	}
	if d := decisions("state-pool", "instance_shutting_down", "delete") - before; d != 1 {
		t.Errorf("decision counted %v times", d)
	}
}

// queue hands out its messages once, then blocks; it records deletions.
type queue struct {
	mu       sync.Mutex
	batches  [][]cloudprovider.Interruption
	fail     int
	deleted  []string
	received chan struct{}
}

func (q *queue) Receive(ctx context.Context) ([]cloudprovider.Interruption, error) {
	q.mu.Lock()
	if q.fail > 0 {
		q.fail--
		q.mu.Unlock()
		return nil, errors.New("throttled")
	}
	if len(q.batches) > 0 {
		b := q.batches[0]
		q.batches = q.batches[1:]
		q.mu.Unlock()
		return b, nil
	}
	q.mu.Unlock()
	select {
	case q.received <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (q *queue) Delete(_ context.Context, m cloudprovider.Interruption) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deleted = append(q.deleted, m.ID)
	return nil
}

// Start survives a failed receive, handles each message and deletes it;
// a message whose handling fails stays in the queue for redelivery.
func TestStartHandlesAndDeletes(t *testing.T) {
	nc := launchedClaim(t, "loop-pool")
	q := &queue{fail: 1, received: make(chan struct{}, 1), batches: [][]cloudprovider.Interruption{{
		{ID: "ok", Kind: cloudprovider.SpotInterruption, InstanceIDs: []string{controllers.InstanceID(nc.Status.ProviderID)}},
		{ID: "junk", Kind: cloudprovider.UnknownInterruption},
	}}}
	c, _, _ := newController(true)
	c.Queue = q
	broken := *c
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }()
	select {
	case <-q.received:
	case <-ctx.Done():
		t.Fatal("the loop did not come back to Receive after the first batch")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	q.mu.Lock()
	deleted := strings.Join(q.deleted, ",")
	q.mu.Unlock()
	if deleted != "ok,junk" {
		t.Errorf("deleted %q, want ok,junk", deleted)
	}
	if get(t, nc).DeletionTimestamp.IsZero() {
		t.Error("the claim named by the message was not disrupted")
	}

	// A failing API server: the message is not deleted.
	broken.Kube = failingList{cp.Client}
	q2 := &queue{received: make(chan struct{}, 1), batches: [][]cloudprovider.Interruption{{{ID: "retry", Kind: cloudprovider.SpotInterruption, InstanceIDs: []string{"i-1"}}}}}
	broken.Queue = q2
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	go func() { done <- broken.Start(ctx2) }()
	select {
	case <-q2.received:
	case <-ctx2.Done():
		t.Fatal("the loop did not come back to Receive")
	}
	cancel2()
	<-done
	if len(q2.deleted) != 0 {
		t.Errorf("a message that failed was deleted: %v", q2.deleted)
	}
}

type failingList struct{ client.Client }

func (failingList) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("apiserver unavailable")
}

// A spot warning that finds the claim already deleting for a rebalance
// recommendation pulls its drain earlier; a later, less urgent notice never
// pushes it back; an instance shutting down pulls it to now. Mutation tried:
// Disrupt returning Unchanged for every deleting claim (the code before this
// test) fails here with the drain still five minutes out.
func TestNewerNoticeMovesTheDrainEarlier(t *testing.T) {
	ctx := context.Background()
	c, rec, _ := newController(true)
	nc := launchedClaim(t, "hasten-pool")
	id := controllers.InstanceID(nc.Status.ProviderID)
	if err := c.Handle(ctx, cloudprovider.Interruption{ID: "r", Kind: cloudprovider.RebalanceRecommendation, InstanceIDs: []string{id}}); err != nil {
		t.Fatal(err)
	}
	if by, _ := disruption.DrainBy(get(t, nc)); !by.Equal(now.Add(MaxReplaceWait)) {
		t.Fatalf("rebalance: drain by %v, want %v", by, now.Add(MaxReplaceWait))
	}
	before := decisions("hasten-pool", "spot_interrupted", "replace")
	sent := now.Add(-30 * time.Second)
	if err := c.Handle(ctx, cloudprovider.Interruption{ID: "s", Kind: cloudprovider.SpotInterruption, InstanceIDs: []string{id},
		SentAt: sent, TerminatesAt: sent.Add(2 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	got := get(t, nc)
	if by, _ := disruption.DrainBy(got); !by.Equal(sent.Add(time.Minute)) {
		t.Errorf("after the spot warning: drain by %v, want %v (a minute before the instance goes)", by, sent.Add(time.Minute))
	}
	if got.Annotations[disruption.DisruptionReasonAnnotation] != "rebalance_recommended" {
		t.Errorf("the first reason must stay (the metrics counted it): %v", got.Annotations)
	}
	if d := decisions("hasten-pool", "spot_interrupted", "replace") - before; d != 0 {
		t.Errorf("a hastened drain counted as a new decision: %v", d)
	}
	if !strings.Contains(rec.reasons(), "*v1.NodeClaim:SpotInterrupted") {
		t.Errorf("no event for the hastened drain: %s", rec.reasons())
	}

	// A later rebalance recommendation or scheduled change asks for later: ignored.
	for _, m := range []cloudprovider.Interruption{
		{ID: "r2", Kind: cloudprovider.RebalanceRecommendation, InstanceIDs: []string{id}},
		{ID: "m", Kind: cloudprovider.ScheduledChange, InstanceIDs: []string{id}, TerminatesAt: now.Add(72 * time.Hour)},
	} {
		if err := c.Handle(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if by, _ := disruption.DrainBy(get(t, nc)); !by.Equal(sent.Add(time.Minute)) {
		t.Errorf("a less urgent notice moved the drain to %v", by)
	}

	// The instance is shutting down: drain now.
	if err := c.Handle(ctx, cloudprovider.Interruption{ID: "x", Kind: cloudprovider.StateChange, State: "shutting-down", InstanceIDs: []string{id}}); err != nil {
		t.Fatal(err)
	}
	if by, _ := disruption.DrainBy(get(t, nc)); !by.Equal(now.Truncate(time.Second)) {
		t.Errorf("shutting down: drain by %v, want now (%v)", by, now)
	}
}
