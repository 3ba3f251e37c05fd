package disruption

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/controllers"
	"github.com/nodewright/nodewright/test/harness"
)

var cp *harness.ControlPlane

func TestMain(m *testing.M) { harness.Main(m, harness.Options{}, &cp) }

type recorder struct {
	mu      sync.Mutex
	reasons map[string][]string
}

func (r *recorder) Eventf(regarding runtime.Object, _ runtime.Object, _, reason, _, _ string, _ ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons[regarding.(client.Object).GetName()] = append(r.reasons[regarding.(client.Object).GetName()], reason)
}

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func createPool(t *testing.T, consolidateAfter string, budgets ...v1.Budget) *v1.NodePool {
	t.Helper()
	np := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: harness.Name("pool")}}
	np.Spec.Template.Spec.NodeClassRef = &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"}
	np.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{}
	np.Spec.Disruption.ConsolidateAfter = v1.MustParseNillableDuration(consolidateAfter)
	np.Spec.Disruption.Budgets = budgets
	if err := cp.Client.Create(context.Background(), np); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), np) })
	return np
}

// createClaim creates a claim of np, with the termination finalizer.
func createClaim(t *testing.T, np *v1.NodePool) *v1.NodeClaim {
	t.Helper()
	nc := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: harness.Name("claim"), Labels: map[string]string{v1.NodePoolLabelKey: np.Name},
			Finalizers: []string{v1.TerminationFinalizer}},
		Spec: v1.NodeClaimSpec{NodeClassRef: np.Spec.Template.Spec.NodeClassRef,
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: v1.NodePoolLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{np.Name}}}},
	}
	if err := cp.Client.Create(context.Background(), nc); err != nil {
		t.Fatal(err)
	}
	return nc
}

// node creates an initialized claim of pool with its Node, idle since idle,
// and the pods (nil: none) bound to the node.
func node(t *testing.T, np *v1.NodePool, idle time.Time, annotations map[string]string, pods ...*corev1.Pod) *v1.NodeClaim {
	t.Helper()
	ctx := context.Background()
	nc := createClaim(t, np)
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: harness.Name("node"), Annotations: annotations}}
	if err := cp.Client.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cp.Client.Patch(ctx, nc, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`)))
		_ = cp.Client.Delete(ctx, nc)
		_ = cp.Client.Delete(ctx, n)
	})
	nc.Status.NodeName = n.Name
	nc.Status.ProviderID = "aws:///zone/i-" + nc.Name
	nc.Status.LastPodEventTime = metav1.NewTime(idle)
	nc.Status.Conditions = []metav1.Condition{{Type: v1.ConditionTypeInitialized, Status: metav1.ConditionTrue, Reason: "Initialized",
		LastTransitionTime: metav1.NewTime(idle.Add(-time.Hour))}}
	if err := cp.Client.Status().Update(ctx, nc); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		p.Namespace, p.Spec.NodeName = cp.Namespace(t), n.Name
		p.Spec.Containers = []corev1.Container{{Name: "c", Image: "i", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}
		if err := cp.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	return nc
}

func pod(name string, owner string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if owner != "" {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: owner, Name: "owner", UID: types.UID("u-" + name), Controller: ptr.To(true)}}
	}
	return p
}

func names(claims []*v1.NodeClaim) []string {
	out := make([]string, len(claims))
	for i, nc := range claims {
		out[i] = nc.Name
	}
	return out
}

// Empty nodes past consolidateAfter are deleted, the longest idle first and
// no more than the budget allows; a node with a workload pod, one idle for
// less than consolidateAfter and one annotated do-not-disrupt stay, and a
// DaemonSet pod does not make a node busy. Mutations tried:
// Allowed ignored (every empty node deleted in the first pass: 2 instead of
// 1), and workloadPods counting DaemonSet pods (the older empty node, which
// runs one, kept).
func TestEmptyNodesGoWithinTheBudget(t *testing.T) {
	ctx := context.Background()
	np := createPool(t, "30s", v1.Budget{Nodes: "1"})
	oldest := node(t, np, now.Add(-10*time.Minute), nil, pod("ds", "DaemonSet"))
	older := node(t, np, now.Add(-5*time.Minute), nil)
	busy := node(t, np, now.Add(-time.Hour), nil, pod("web", "ReplicaSet"))
	recent := node(t, np, now.Add(-10*time.Second), nil)
	held := node(t, np, now.Add(-2*time.Hour), map[string]string{v1.DoNotDisruptAnnotationKey: "true"})
	rec := &recorder{reasons: map[string][]string{}}
	c := &Controller{Kube: cp.Client, Recorder: rec, Now: func() time.Time { return now }}

	got, err := c.Evaluate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(names(got)) != fmt.Sprint([]string{oldest.Name}) {
		t.Fatalf("first pass disrupted %v, want only the longest idle %s (budget 1)", names(got), oldest.Name)
	}
	fresh := &v1.NodeClaim{}
	if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(oldest), fresh); err != nil {
		t.Fatal(err)
	}
	if fresh.DeletionTimestamp.IsZero() || fresh.Annotations[DisruptionReasonAnnotation] != "empty" {
		t.Errorf("claim %s: deleting %v, annotations %v", oldest.Name, !fresh.DeletionTimestamp.IsZero(), fresh.Annotations)
	}
	if _, waits := DrainBy(fresh); waits {
		t.Error("an empty node waits for a replacement")
	}
	if !slices.Contains(rec.reasons[oldest.Name], "DisruptionLaunched") {
		t.Errorf("events %v", rec.reasons)
	}
	// The empty node left for the budget says so; the busy one does not.
	// Mutation tried: setEmpty not called (no claim had the condition).
	for claim, want := range map[*v1.NodeClaim]bool{older: true, busy: false} {
		got := &v1.NodeClaim{}
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(claim), got); err != nil {
			t.Fatal(err)
		}
		if empty := meta.IsStatusConditionTrue(got.Status.Conditions, v1.ConditionTypeEmpty); empty != want {
			t.Errorf("claim %s: Empty condition %v, want %v", claim.Name, empty, want)
		}
	}

	// The budget is spent while the first is still terminating; the next
	// one says it waits for it.
	if got, err := c.Evaluate(ctx); err != nil || len(got) != 0 {
		t.Fatalf("second pass disrupted %v (%v) with the budget spent", names(got), err)
	}
	if !slices.Contains(rec.reasons[older.Name], "DisruptionBlocked") {
		t.Errorf("no DisruptionBlocked event on %s waiting for the budget: %v", older.Name, rec.reasons[older.Name])
	}
	// Once it is gone, the next empty one goes; the others never.
	if err := cp.Client.Patch(ctx, fresh, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`))); err != nil {
		t.Fatal(err)
	}
	cp.Eventually(t, 10*time.Second, "the first claim gone", func(ctx context.Context) (bool, error) {
		err := cp.Client.Get(ctx, client.ObjectKeyFromObject(oldest), &v1.NodeClaim{})
		return client.IgnoreNotFound(err) == nil && err != nil, nil
	})
	got, err = c.Evaluate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(names(got)) != fmt.Sprint([]string{older.Name}) {
		t.Errorf("third pass disrupted %v, want %s; busy %s, recent %s and held %s stay", names(got), older.Name, busy.Name, recent.Name, held.Name)
	}
}

// consolidateAfter: Never keeps empty nodes; a budget of 0 for Empty in its
// window blocks emptiness, and a broken budget stops the pool with an event.
func TestNeverAndBlockedBudgets(t *testing.T) {
	ctx := context.Background()
	never := createPool(t, "Never")
	node(t, never, now.Add(-time.Hour), nil)
	blocked := createPool(t, "0s", v1.Budget{Nodes: "0", Reasons: []v1.DisruptionReason{v1.DisruptionReasonEmpty}, Schedule: ptr.To("0 11 * * *"), Duration: v1.NewDuration(2 * time.Hour)})
	node(t, blocked, now.Add(-time.Hour), nil)
	rec := &recorder{reasons: map[string][]string{}}
	c := &Controller{Kube: cp.Client, Recorder: rec, Now: func() time.Time { return now }}
	got, err := c.Evaluate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, nc := range got {
		if l := nc.Labels[v1.NodePoolLabelKey]; l == never.Name || l == blocked.Name {
			t.Errorf("disrupted %s of pool %s", nc.Name, l)
		}
	}
	// After the window (13:00), the blocked pool's node goes.
	c.Now = func() time.Time { return now.Add(90 * time.Minute) }
	got, err = c.Evaluate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(got, func(nc *v1.NodeClaim) bool { return nc.Labels[v1.NodePoolLabelKey] == blocked.Name }) {
		t.Errorf("after its window the blocked pool's empty node stayed: %v", names(got))
	}
}

// unused makes node's claim one no pod has used since its initialization.
func unused(t *testing.T, nc *v1.NodeClaim, initialized time.Time) {
	t.Helper()
	nc.Status.LastPodEventTime = metav1.Time{}
	nc.Status.Conditions[0].LastTransitionTime = metav1.NewTime(initialized)
	if err := cp.Client.Status().Update(context.Background(), nc); err != nil {
		t.Fatal(err)
	}
}

// With consolidateAfter 0s (the CRD's default) a node that no pod has used
// yet stays for NewNodeGrace after its initialization, and longer while pods
// wait to move off a node being deleted (it may be their replacement).
// Mutations tried: without the grace the fresh node goes too, once the pod
// has moved; without the moving-pods hold the older unused node goes in the
// first pass.
func TestNewNodesAreNotDeletedBeforeUse(t *testing.T) {
	ctx := context.Background()
	np := createPool(t, "0s", v1.Budget{Nodes: "100%"})
	fresh := node(t, np, now, nil)
	unused(t, fresh, now.Add(-30*time.Second))
	older := node(t, np, now, nil)
	unused(t, older, now.Add(-2*time.Minute))
	// Elsewhere, a node being deleted whose pod has not moved yet.
	other := createPool(t, "Never")
	leaving := node(t, other, now.Add(-time.Hour), nil, pod("moving", "ReplicaSet"))
	if err := cp.Client.Delete(ctx, leaving); err != nil {
		t.Fatal(err)
	}
	c := &Controller{Kube: cp.Client, Recorder: &recorder{reasons: map[string][]string{}}, Now: func() time.Time { return now }}
	got, err := c.Evaluate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("disrupted %v while a pod waits to move and the nodes were never used", names(got))
	}
	// The pod moved (deleted here): the unused node past the grace goes, the
	// fresh one stays.
	var pods corev1.PodList
	if err := cp.Client.List(ctx, &pods, client.MatchingFields{controllers.PodNodeName: leaving.Status.NodeName}); err != nil {
		t.Fatal(err)
	}
	for i := range pods.Items {
		if err := cp.Client.Delete(ctx, &pods.Items[i], client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
	}
	cp.Eventually(t, 10*time.Second, "the moving pod gone", func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		err := cp.Client.List(ctx, &pods, client.MatchingFields{controllers.PodNodeName: leaving.Status.NodeName})
		return err == nil && len(pods.Items) == 0, err
	})
	got, err = c.Evaluate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(names(got)) != fmt.Sprint([]string{older.Name}) {
		t.Errorf("disrupted %v, want only %s (unused for 2 min); %s is 30 s old", names(got), older.Name, fresh.Name)
	}
}

// With consolidateAfter 0s an empty node still waits the validation delay
// since its last pod left: a pod bound as it emptied is not evicted with it.
// Mutation tried: no minimum wait (the node emptied 5 s ago went).
func TestEmptyNodeWaitsTheValidationDelay(t *testing.T) {
	ctx := context.Background()
	np := createPool(t, "0s", v1.Budget{Nodes: "100%"})
	recent := node(t, np, now.Add(-5*time.Second), nil)
	settled := node(t, np, now.Add(-DefaultValidationDelay-time.Second), nil)
	c := &Controller{Kube: cp.Client, Recorder: &recorder{reasons: map[string][]string{}}, Now: func() time.Time { return now }}
	got, err := c.Evaluate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(names(got)) != fmt.Sprint([]string{settled.Name}) {
		t.Errorf("disrupted %v, want only %s (empty for 16 s); %s emptied 5 s ago", names(got), settled.Name, recent.Name)
	}
}
