package provisioning

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/harness"
)

// onDemandPool is the seed pool narrowed to on-demand instances of types in
// ap-northeast-2a, consolidating after 5 s within a budget of all its nodes.
func onDemandPool(t *testing.T, types ...string) *v1.NodePool {
	np := seedPool(t, harness.Name("consolidate"))
	np.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{
		{Key: v1.CapacityTypeLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{v1.CapacityTypeOnDemand}},
		{Key: corev1.LabelInstanceTypeStable, Operator: corev1.NodeSelectorOpIn, Values: types},
		{Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"ap-northeast-2a"}},
	}
	np.Spec.Disruption.ConsolidateAfter = v1.MustParseNillableDuration("5s")
	np.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "100%"}}
	return np
}

// create makes obj and deletes it when the test ends, before the pool goes.
func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := cp.Client.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), obj) })
}

// watchHealthy watches a PodDisruptionBudget from the moment its pods are
// all healthy until stop, and returns the lowest currentHealthy it saw
// then: the PDB controller's own count of the available pods.
func watchHealthy(t *testing.T, ns, name string, all int32) (lowest func() int32, stop func()) {
	t.Helper()
	w, err := cp.Kube.PolicyV1().PodDisruptionBudgets(ns).Watch(context.Background(), metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	low, armed := all, false
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			pdb, ok := ev.Object.(*policyv1.PodDisruptionBudget)
			if !ok {
				continue
			}
			status := pdb.Status
			mu.Lock()
			if status.CurrentHealthy >= all {
				armed = true
			}
			if armed && status.CurrentHealthy < low {
				low = status.CurrentHealthy
			}
			mu.Unlock()
		}
	}()
	return func() int32 {
			mu.Lock()
			defer mu.Unlock()
			if !armed {
				return -1
			}
			return low
		}, func() {
			w.Stop()
			<-done
		}
}

// watchEviction returns when a watch of the namespace's pods first saw a
// pod on node marked for deletion (zero: not yet).
func watchEviction(t *testing.T, ns, node string) func() time.Time {
	t.Helper()
	w, err := cp.Kube.CoreV1().Pods(ns).Watch(context.Background(), metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var at time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || p.DeletionTimestamp.IsZero() {
				continue
			}
			mu.Lock()
			if at.IsZero() {
				// Not the DeletionTimestamp, which is the end of the grace
				// period: when the eviction happened.
				at = time.Now()
			}
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		w.Stop()
		<-done
	})
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return at
	}
}

// claimsOf lists the pool's claims.
func claimsOf(ctx context.Context, pool string) ([]v1.NodeClaim, error) {
	var claims v1.NodeClaimList
	err := cp.Client.List(ctx, &claims, client.MatchingLabels{v1.NodePoolLabelKey: pool})
	return claims.Items, err
}

// Thirty 1-CPU pods fill ten c5.xlarge nodes (three each); scaled to ten,
// one is left per node (the others cost less to delete). Consolidation packs them back onto the four
// nodes they need, and the PodDisruptionBudget (minAvailable 8), watched
// the whole time, never sees fewer than 8 healthy pods.
// Mutation tried: consolidation switched off (Planner nil): ten nodes stay
// (those the scale-down left empty go as empty), the wait times out.
func TestUnderusedNodesConsolidateWithinThePDB(t *testing.T) {
	ctx := context.Background()
	ns := cp.Namespace(t)
	np := onDemandPool(t, "c5.xlarge")
	createPool(t, np)
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}}
	eight := intstr.FromInt32(8)
	pdb.Spec.MinAvailable = &eight
	pdb.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	create(t, pdb)
	dep := deploymentOnPool(ns, "web", np.Name, 30)
	create(t, dep)
	cp.Eventually(t, 3*time.Minute, "30 pods running", func(ctx context.Context) (bool, error) {
		return true, running(ctx, ns, map[string]string{"app": "web"}, 30)
	})
	claims, err := claimsOf(ctx, np.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(claims) < 10 {
		t.Fatalf("%d nodes for 30 pods of 1 CPU on c5.xlarge, want 10", len(claims))
	}
	// One pod per node is worth keeping (pod-deletion-cost), so the
	// ReplicaSet's scale-down leaves every node a third full instead of
	// emptying some (which emptiness, not consolidation, would take).
	var pods corev1.PodList
	if err := cp.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app": "web"}); err != nil {
		t.Fatal(err)
	}
	kept := map[string]bool{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if kept[p.Spec.NodeName] {
			continue
		}
		kept[p.Spec.NodeName] = true
		patch := []byte(`{"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":"100"}}}`)
		if err := cp.Client.Patch(ctx, p, client.RawPatch("application/merge-patch+json", patch)); err != nil {
			t.Fatal(err)
		}
	}
	lowest, stop := watchHealthy(t, ns, "web", 10)
	defer stop()
	if err := cp.Client.Patch(ctx, dep, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"replicas":10}}`))); err != nil {
		t.Fatal(err)
	}
	cp.Eventually(t, 4*time.Minute, "ten pods on four nodes", func(ctx context.Context) (bool, error) {
		claims, err := claimsOf(ctx, np.Name)
		if err != nil {
			return false, err
		}
		if len(claims) != 4 {
			return false, fmt.Errorf("%d nodeclaims, want 4: %s", len(claims), summary(ctx, np))
		}
		return true, running(ctx, ns, map[string]string{"app": "web"}, 10)
	})
	if low := lowest(); low < 8 {
		t.Errorf("the PodDisruptionBudget saw %d healthy pods (-1: never all ten), under its minAvailable 8", low)
	}
	if n := metricWith(t, "nodewright_disruption_decisions_total", map[string]string{"nodepool": np.Name, "reason": "underutilized"}); n == 0 {
		t.Error("no node went as underutilized")
	}
}

// A 1-CPU pod on an m5d.xlarge: once the pool also allows m5ad.xlarge
// (8.6 % cheaper, under the 10 % minimum saving) the node stays and its
// NodeClaim says why; once it allows m5.large, the pod moves there, onto a
// replacement that was up before the pod was evicted.
// Mutations tried: MinSavings 0 (replaced by the m5ad.xlarge); the
// replacement not launched first (the drain-by wait ignored: the pod was
// evicted before the new node was initialized).
func TestCheaperNodeReplacesAnUnderusedOne(t *testing.T) {
	ctx := context.Background()
	ns := cp.Namespace(t)
	np := onDemandPool(t, "m5d.xlarge")
	createPool(t, np)
	create(t, deploymentOnPool(ns, "api", np.Name, 1))
	first := runningOnOneClaim(t, ns, "api", np.Name, 1)

	widen := func(types ...string) {
		t.Helper()
		fresh := &v1.NodePool{}
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(np), fresh); err != nil {
			t.Fatal(err)
		}
		fresh.Spec.Template.Spec.Requirements[1].Values = types
		if err := cp.Client.Update(ctx, fresh); err != nil {
			t.Fatal(err)
		}
	}
	widen("m5d.xlarge", "m5ad.xlarge")
	cp.Eventually(t, 2*time.Minute, "the claim says a replace saves too little", func(ctx context.Context) (bool, error) {
		nc := &v1.NodeClaim{}
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(&first), nc); err != nil {
			return false, err
		}
		cond := meta.FindStatusCondition(nc.Status.Conditions, v1.ConditionTypeConsolidatable)
		if cond == nil || !strings.Contains(cond.Message, "saving") {
			return false, fmt.Errorf("Consolidatable %+v", cond)
		}
		return nc.DeletionTimestamp.IsZero(), nil
	})

	// The replacement boots for 10 s: a pod evicted before it is up would
	// wait pending that long.
	e.Sim.SetLaunchDelay(10 * time.Second)
	t.Cleanup(func() { e.Sim.SetLaunchDelay(0) })
	evictedAt := watchEviction(t, ns, first.Status.NodeName)
	widen("m5d.xlarge", "m5ad.xlarge", "m5.large")
	var replaced time.Time
	cp.Eventually(t, 3*time.Minute, "the pod on an m5.large and the m5d.xlarge gone", func(ctx context.Context) (bool, error) {
		claims, err := claimsOf(ctx, np.Name)
		if err != nil {
			return false, err
		}
		if len(claims) != 1 || claims[0].Name == first.Name {
			return false, fmt.Errorf("%s", summary(ctx, np))
		}
		nc := claims[0]
		if typ := nc.Labels[corev1.LabelInstanceTypeStable]; typ != "m5.large" {
			return false, fmt.Errorf("the replacement is %s", typ)
		}
		if c := meta.FindStatusCondition(nc.Status.Conditions, v1.ConditionTypeInitialized); c != nil && c.Status == metav1.ConditionTrue {
			replaced = c.LastTransitionTime.Time
		}
		return true, running(ctx, ns, map[string]string{"app": "api"}, 1)
	})
	if evicted := evictedAt(); evicted.IsZero() || evicted.Before(replaced.Truncate(time.Second)) {
		t.Errorf("the pod was evicted at %s, before its replacement was initialized at %s", evicted, replaced)
	}
	if n := metricWith(t, "nodewright_disruption_decisions_total", map[string]string{"nodepool": np.Name, "reason": "underutilized", "decision": "replace"}); n != 1 {
		t.Errorf("%v replace decisions, want 1", n)
	}
}

// With spot out of capacity, a pod of a pool that prefers spot lands on an
// on-demand node; once spot has capacity again (and the catalog's 3-minute
// memory of the failure has passed), consolidation moves it to a spot node,
// replacement first.
// Mutation tried: consolidation off (no Planner): the on-demand node stays
// and the wait times out.
func TestOnDemandFallbackGoesBackToSpot(t *testing.T) {
	ns := cp.Namespace(t)
	np := onDemandPool(t, "c5.xlarge")
	np.Spec.Template.Spec.Requirements[0].Values = []string{v1.CapacityTypeSpot, v1.CapacityTypeOnDemand}
	createPool(t, np)
	e.Sim.InsufficientCapacity("c5.xlarge", "ap-northeast-2a", v1.CapacityTypeSpot)
	t.Cleanup(e.Sim.Heal)
	create(t, deploymentOnPool(ns, "fallback", np.Name, 1))
	first := runningOnOneClaim(t, ns, "fallback", np.Name, 1)
	if ct := first.Labels[v1.CapacityTypeLabelKey]; ct != v1.CapacityTypeOnDemand {
		t.Fatalf("with spot out of capacity the node is %s, want on-demand", ct)
	}
	e.Sim.Heal()
	cp.Eventually(t, 6*time.Minute, "the pod on a spot node and the on-demand node gone", func(ctx context.Context) (bool, error) {
		claims, err := claimsOf(ctx, np.Name)
		if err != nil {
			return false, err
		}
		if len(claims) != 1 || claims[0].Name == first.Name || claims[0].Labels[v1.CapacityTypeLabelKey] != v1.CapacityTypeSpot {
			return false, fmt.Errorf("%s", summary(ctx, np))
		}
		return true, running(ctx, ns, map[string]string{"app": "fallback"}, 1)
	})
	if n := metricWith(t, "nodewright_disruption_decisions_total", map[string]string{"nodepool": np.Name, "reason": "underutilized", "decision": "replace"}); n != 1 {
		t.Errorf("%v replace decisions, want 1", n)
	}
}

// Three pools, each with one 1-CPU pod on an m5.xlarge, then allowed the
// 19 % cheaper c5.xlarge: under WhenEmptyOrUnderutilized the node is
// replaced; under Balanced (a score of 0.19 for a one-node pool, under 0.5)
// it stays and its claim says why; and a pod annotated
// karpenter.sh/do-not-disrupt keeps its node under either.
// Mutation tried: the Balanced score check skipped (the balanced pool's
// node was replaced too, and the wait timed out).
func TestBalancedAndDoNotDisruptKeepNodesThatWhenUnderutilizedReplaces(t *testing.T) {
	ctx := context.Background()
	ns := cp.Namespace(t)
	type pool struct {
		np   *v1.NodePool
		app  string
		held bool
	}
	pools := []*pool{{app: "plain"}, {app: "balanced"}, {app: "held", held: true}}
	for _, p := range pools {
		p.np = onDemandPool(t, "m5.xlarge")
		if p.app == "balanced" {
			p.np.Spec.Disruption.ConsolidationPolicy = v1.ConsolidationPolicyBalanced
		}
		createPool(t, p.np)
		dep := deploymentOnPool(ns, p.app, p.np.Name, 1)
		if p.held {
			_ = unstructured.SetNestedStringMap(dep.Object, map[string]string{v1.DoNotDisruptAnnotationKey: "true"}, "spec", "template", "metadata", "annotations")
		}
		create(t, dep)
	}
	first := map[string]v1.NodeClaim{}
	for _, p := range pools {
		first[p.app] = runningOnOneClaim(t, ns, p.app, p.np.Name, 1)
	}
	for _, p := range pools {
		fresh := &v1.NodePool{}
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(p.np), fresh); err != nil {
			t.Fatal(err)
		}
		fresh.Spec.Template.Spec.Requirements[1].Values = []string{"m5.xlarge", "c5.xlarge"}
		if err := cp.Client.Update(ctx, fresh); err != nil {
			t.Fatal(err)
		}
	}
	cp.Eventually(t, 3*time.Minute, "plain replaced by a c5.xlarge; balanced and held kept, saying why", func(ctx context.Context) (bool, error) {
		claims, err := claimsOf(ctx, pools[0].np.Name)
		if err != nil {
			return false, err
		}
		if len(claims) != 1 || claims[0].Labels[corev1.LabelInstanceTypeStable] != "c5.xlarge" {
			return false, fmt.Errorf("plain: %s", summary(ctx, pools[0].np))
		}
		for app, want := range map[string]string{"balanced": "Balanced", "held": "do-not-disrupt"} {
			nc := &v1.NodeClaim{}
			if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(ptrTo(first[app])), nc); err != nil {
				return false, fmt.Errorf("%s: %w", app, err)
			}
			cond := meta.FindStatusCondition(nc.Status.Conditions, v1.ConditionTypeConsolidatable)
			if cond == nil || !strings.Contains(cond.Message, want) {
				return false, fmt.Errorf("%s: Consolidatable %+v, want a message naming %s", app, cond, want)
			}
		}
		return true, running(ctx, ns, map[string]string{"app": "plain"}, 1)
	})
	for _, app := range []string{"balanced", "held"} {
		nc := first[app]
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(&nc), &nc); err != nil || !nc.DeletionTimestamp.IsZero() {
			t.Errorf("%s: the node went (%v)", app, err)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
