package disruption

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/harness"
)

// drifted marks nc Drifted, as the drift controller does.
func drifted(t *testing.T, nc *v1.NodeClaim) {
	t.Helper()
	meta.SetStatusCondition(&nc.Status.Conditions, metav1.Condition{Type: v1.ConditionTypeDrifted, Status: metav1.ConditionTrue, Reason: "AMIDrift", Message: "its image is no longer selected"})
	if err := cp.Client.Status().Update(context.Background(), nc); err != nil {
		t.Fatal(err)
	}
}

// Drifted nodes are replaced one Drifted budget at a time, busy or not and
// whatever consolidateAfter says, each waiting for its replacement; a
// do-not-disrupt pod holds its node. Mutations tried: Drift left out of the
// default methods (nothing disrupted); DrainWait 0 (no drain-by time).
func TestDriftedNodesAreReplacedWithinTheBudget(t *testing.T) {
	ctx := context.Background()
	np := createPool(t, "Never", v1.Budget{Nodes: "1", Reasons: []v1.DisruptionReason{v1.DisruptionReasonDrifted}})
	busy := node(t, np, now, nil, pod("web", "ReplicaSet"))
	drifted(t, busy)
	other := node(t, np, now, nil, pod("api", "ReplicaSet"))
	drifted(t, other)
	heldPod := pod("held", "ReplicaSet")
	heldPod.Annotations = map[string]string{v1.DoNotDisruptAnnotationKey: "true"}
	held := node(t, np, now, nil, heldPod)
	drifted(t, held)
	fine := node(t, np, now, nil, pod("ok", "ReplicaSet"))

	c := &Controller{Kube: cp.Client, Recorder: &recorder{reasons: map[string][]string{}}, Now: func() time.Time { return now }}
	got, err := c.Evaluate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || (got[0].Name != busy.Name && got[0].Name != other.Name) {
		t.Fatalf("disrupted %v, want one of the two drifted nodes (budget 1); %s is held, %s not drifted", names(got), held.Name, fine.Name)
	}
	if got[0].Annotations[DisruptionReasonAnnotation] != "drifted" {
		t.Errorf("reason %q", got[0].Annotations[DisruptionReasonAnnotation])
	}
	if by, waits := DrainBy(got[0]); !waits || !by.After(now) {
		t.Errorf("a drifted node does not wait for its replacement: drain-by %v", by)
	}
	if again, err := c.Evaluate(ctx); err != nil || len(again) != 0 {
		t.Errorf("second pass disrupted %v (%v) with the Drifted budget spent", names(again), err)
	}
}

// A static pool's drifted node is replaced (deleted, the static controller
// launching its replacement), but its empty node stays: static pools are
// not consolidated. Mutations tried: skipping static pools altogether (as
// before) disrupts nothing; running every method on them deletes the empty
// node too.
func TestStaticPoolDriftsButKeepsEmptyNodes(t *testing.T) {
	ctx := context.Background()
	np := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: harness.Name("static")}}
	np.Spec.Replicas = ptr.To[int64](2)
	np.Spec.Template.Spec.NodeClassRef = &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"}
	np.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{}
	np.Spec.Disruption.ConsolidateAfter = v1.MustParseNillableDuration("0s")
	np.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "100%"}}
	if err := cp.Client.Create(ctx, np); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(ctx, np) })
	busy := node(t, np, now.Add(-time.Hour), nil, pod("web", "ReplicaSet"))
	drifted(t, busy)
	empty := node(t, np, now.Add(-time.Hour), nil)

	c := &Controller{Kube: cp.Client, Recorder: &recorder{reasons: map[string][]string{}}, Now: func() time.Time { return now }}
	got, err := c.Evaluate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != busy.Name {
		t.Fatalf("disrupted %v in a static pool, want only the drifted %s (not the empty %s)", names(got), busy.Name, empty.Name)
	}
}
