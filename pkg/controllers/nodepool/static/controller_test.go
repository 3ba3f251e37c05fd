package static

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/samber/lo"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/test/harness"
)

var cp *harness.ControlPlane

func TestMain(m *testing.M) { harness.Main(m, harness.Options{}, &cp) }

// regionCatalog serves the embedded catalog of ap-northeast-2, the one
// the AWS provider builds its catalogs from.
type regionCatalog struct{ cat *catalog.Catalog }

func (r regionCatalog) Catalog(context.Context, *v1.NodePool) (*catalog.Catalog, *catalog.NodeSettings, error) {
	return r.cat, nil, nil
}

type recorder struct {
	mu      sync.Mutex
	reasons []string
}

func (r *recorder) Eventf(_ runtime.Object, _ runtime.Object, _, reason, _, _ string, _ ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons = append(r.reasons, reason)
}

func newController(t *testing.T) (*Controller, *recorder) {
	t.Helper()
	snap, err := catalog.EmbeddedSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.New(snap, "ap-northeast-2", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	return &Controller{Kube: cp.Client, Cloud: regionCatalog{cat}, Recorder: rec}, rec
}

// staticPool creates a static pool of m5 on-demand nodes.
func staticPool(t *testing.T, replicas int64, limitNodes string) *v1.NodePool {
	t.Helper()
	np := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: harness.Name("static")}}
	np.Spec.Replicas = ptr.To(replicas)
	np.Spec.Template.Spec.NodeClassRef = &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"}
	np.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{
		{Key: "karpenter.k8s.aws/instance-family", Operator: corev1.NodeSelectorOpIn, Values: []string{"m5"}},
		{Key: v1.CapacityTypeLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{v1.CapacityTypeOnDemand}},
	}
	if limitNodes != "" {
		np.Spec.Limits = v1.Limits{"nodes": resource.MustParse(limitNodes)}
	}
	if err := cp.Client.Create(context.Background(), np); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), np) })
	return np
}

func settle(t *testing.T, c *Controller, np *v1.NodePool) {
	t.Helper()
	if _, err := c.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(np)}); err != nil {
		t.Fatal(err)
	}
}

// claims lists the pool's claims: live and deleting.
func claims(t *testing.T, np *v1.NodePool) (live, deleting []*v1.NodeClaim) {
	t.Helper()
	var list v1.NodeClaimList
	if err := cp.Client.List(context.Background(), &list, client.MatchingLabels{v1.NodePoolLabelKey: np.Name}); err != nil {
		t.Fatal(err)
	}
	for _, nc := range lo.ToSlicePtr(list.Items) {
		if nc.DeletionTimestamp.IsZero() {
			live = append(live, nc)
		} else {
			deleting = append(deleting, nc)
		}
	}
	t.Cleanup(func() {
		for _, nc := range list.Items {
			if len(nc.Finalizers) > 0 {
				patch := client.MergeFrom(nc.DeepCopy())
				nc.Finalizers = nil
				_ = cp.Client.Patch(context.Background(), &nc, patch)
			}
		}
	})
	return live, deleting
}

// scale sets spec.replicas through the scale subresource, as `kubectl
// scale nodepool` does.
func scale(t *testing.T, np *v1.NodePool, replicas int32) {
	t.Helper()
	s := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: np.Name}, Spec: autoscalingv1.ScaleSpec{Replicas: replicas}}
	if err := cp.Client.SubResource("scale").Update(context.Background(), np, client.WithSubResourceBody(s)); err != nil {
		t.Fatal(err)
	}
}

// A static pool gets exactly replicas NodeClaims from its template, each
// launching as the cheapest type the template allows; a second look
// launches nothing more; scaled up through /scale it gets the difference,
// and scaled down it deletes first the claim with no Node and the empty
// node, keeping the nodes that run pods. Mutations tried: launching
// replicas instead of the missing ones launches 8 for 5; sorting the
// surplus by most pods first deletes the busy nodes.
func TestKeepsReplicasThroughScale(t *testing.T) {
	ctx := context.Background()
	c, _ := newController(t)
	np := staticPool(t, 3, "")
	settle(t, c, np)
	settle(t, c, np)
	live, _ := claims(t, np)
	if len(live) != 3 {
		t.Fatalf("%d claims for 3 replicas", len(live))
	}
	for _, nc := range live {
		var types []string
		for _, r := range nc.Spec.Requirements {
			if r.Key == corev1.LabelInstanceTypeStable {
				types = r.Values
			}
		}
		if !slices.Contains(types, "m5.large") || slices.ContainsFunc(types, func(s string) bool { return s[:3] != "m5." }) {
			t.Errorf("claim %s may launch as %v, want m5 types with m5.large", nc.Name, types)
		}
		if len(nc.OwnerReferences) != 1 || nc.OwnerReferences[0].UID != np.UID {
			t.Errorf("claim %s owners %v, want the pool", nc.Name, nc.OwnerReferences)
		}
	}

	scale(t, np, 5)
	settle(t, c, np)
	live, _ = claims(t, np)
	if len(live) != 5 {
		t.Fatalf("%d claims after scaling to 5", len(live))
	}
	// Four have a Node, three of them running a pod; one has none yet.
	ns := cp.Namespace(t)
	busy := map[string]bool{}
	for i, nc := range live[:4] {
		patch := client.MergeFrom(nc.DeepCopy())
		nc.Status.NodeName = nc.Name + "-node"
		if err := cp.Client.Status().Patch(ctx, nc, patch); err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			continue
		}
		busy[nc.Name] = true
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: harness.Name("work"), Namespace: ns},
			Spec: corev1.PodSpec{NodeName: nc.Status.NodeName, Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
		if err := cp.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	scale(t, np, 3)
	settle(t, c, np)
	live, _ = claims(t, np)
	if len(live) != 3 || !lo.EveryBy(live, func(nc *v1.NodeClaim) bool { return busy[nc.Name] }) {
		t.Errorf("after scaling to 3 the pool keeps %v, want the three busy nodes %v", lo.Map(live, func(nc *v1.NodeClaim, _ int) string { return nc.Name }), busy)
	}
}

// A claim being deleted (expired, interrupted, drifted) is replaced at
// once when limits.nodes leaves room, and only once it is gone when the
// limit is the replica count. Mutations tried: counting deleting claims as
// live launches no replacement ("room"); leaving them out of the limit
// launches one past it ("no room").
func TestReplacesDeletingClaimWithinLimit(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		limit     string
		replaced  bool
		liveAfter int
	}{
		{name: "room", limit: "3", replaced: true, liveAfter: 2},
		{name: "no room", limit: "2", replaced: false, liveAfter: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newController(t)
			np := staticPool(t, 2, tc.limit)
			settle(t, c, np)
			live, _ := claims(t, np)
			if len(live) != 2 {
				t.Fatalf("%d claims for 2 replicas", len(live))
			}
			going := live[0]
			patch := client.MergeFrom(going.DeepCopy())
			going.Finalizers = []string{v1.TerminationFinalizer}
			if err := cp.Client.Patch(ctx, going, patch); err != nil {
				t.Fatal(err)
			}
			if err := cp.Client.Delete(ctx, going); err != nil {
				t.Fatal(err)
			}
			settle(t, c, np)
			live, deleting := claims(t, np)
			if len(live) != tc.liveAfter || len(deleting) != 1 {
				t.Fatalf("while one claim is deleting: %d live, %d deleting; want %d live", len(live), len(deleting), tc.liveAfter)
			}
			// Gone: now there is room whatever the limit.
			patch = client.MergeFrom(deleting[0].DeepCopy())
			deleting[0].Finalizers = nil
			if err := cp.Client.Patch(ctx, deleting[0], patch); err != nil {
				t.Fatal(err)
			}
			settle(t, c, np)
			if live, deleting = claims(t, np); len(live) != 2 || len(deleting) != 0 {
				t.Errorf("after the deleted claim went: %d live, %d deleting; want 2 and 0", len(live), len(deleting))
			}
		})
	}
}

// replicas above limits.nodes launch up to the limit and say why, with an
// event naming both fields; a pool without replicas gets nothing from this
// controller. Mutation tried: dropping the limit check launches four.
func TestReplicasOverLimit(t *testing.T) {
	c, rec := newController(t)
	np := staticPool(t, 4, "2")
	settle(t, c, np)
	if live, _ := claims(t, np); len(live) != 2 {
		t.Errorf("%d claims for 4 replicas within limits.nodes 2", len(live))
	}
	if !slices.Contains(rec.reasons, "ReplicasOverLimit") {
		t.Errorf("events %v, want ReplicasOverLimit", rec.reasons)
	}

	dynamic := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: harness.Name("dynamic")}}
	dynamic.Spec.Template = np.Spec.Template
	if err := cp.Client.Create(context.Background(), dynamic); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), dynamic) })
	settle(t, c, dynamic)
	if live, _ := claims(t, dynamic); len(live) != 0 {
		t.Errorf("%d claims for a pool without replicas", len(live))
	}
}

// A static pool's nodes spread over its zones, counting the ones it has:
// one node, then scaled to two, is one in each zone the template allows.
// Mutation tried: planning without the live claims' zones puts the second
// node in the first one's (cheapest) zone.
func TestSpreadsOverZonesWithTheNodesItHas(t *testing.T) {
	c, _ := newController(t)
	np := staticPool(t, 1, "")
	settle(t, c, np)
	scale(t, np, 2)
	settle(t, c, np)
	live, _ := claims(t, np)
	zones := map[string]bool{}
	for _, nc := range live {
		z, ok := zoneOf(nc)
		if !ok {
			t.Fatalf("claim %s names no single zone: %v", nc.Name, nc.Spec.Requirements)
		}
		zones[z] = true
	}
	if len(live) != 2 || len(zones) != 2 {
		t.Errorf("%d claims in zones %v, want 2 in 2 zones", len(live), zones)
	}
}
