package disruption

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/scheduling"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
	"github.com/nodewright/nodewright/pkg/state"
	"github.com/nodewright/nodewright/test/harness"
)

// planner serves the real us-east-1 catalog for the test's pools (on-demand
// m5 in us-east-1a) and records the replacements consolidation launches.
type planner struct {
	cat      *catalog.Catalog
	pools    []*v1.NodePool
	mu       sync.Mutex
	launched []*scheduling.NodeClaimPlan
}

func newPlanner(t *testing.T, pools ...*v1.NodePool) *planner {
	snap, err := catalog.EmbeddedSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.New(snap, "us-east-1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &planner{cat: cat, pools: pools}
}

func (p *planner) SolverPools(context.Context, *state.Snapshot) ([]scheduling.NodePool, map[string]*v1.NodePool, error) {
	var out []scheduling.NodePool
	templates := map[string]*v1.NodePool{}
	for _, np := range p.pools {
		reqs := requirements.Requirements{}
		reqs.Add(requirements.MustNew(corev1.LabelInstanceTypeStable, corev1.NodeSelectorOpIn, "m5.large", "m5.xlarge", "m5.2xlarge"))
		reqs.Add(requirements.MustNew(corev1.LabelTopologyZone, corev1.NodeSelectorOpIn, "us-east-1a"))
		reqs.Add(requirements.MustNew(v1.CapacityTypeLabelKey, corev1.NodeSelectorOpIn, v1.CapacityTypeOnDemand))
		out = append(out, scheduling.NodePool{Name: np.Name, Requirements: reqs, Catalog: p.cat})
		templates[np.Name] = np
	}
	return out, templates, nil
}

func (p *planner) Launch(_ context.Context, c *scheduling.NodeClaimPlan, np *v1.NodePool) (*v1.NodeClaim, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.launched = append(p.launched, c)
	return &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-replacement-%d", np.Name, len(p.launched))}}, nil
}

// runningNode creates an initialized claim of np and its registered Node,
// an on-demand instance of typ in us-east-1a, idle since idle, with pods
// (each asking cpu) bound to it.
func runningNode(t *testing.T, p *planner, np *v1.NodePool, typ string, idle time.Time, pods ...*corev1.Pod) (*v1.NodeClaim, *corev1.Node) {
	t.Helper()
	ctx := context.Background()
	it := p.cat.Get(typ)
	name := harness.Name("node")
	labels := map[string]string{v1.NodePoolLabelKey: np.Name, corev1.LabelInstanceTypeStable: typ, corev1.LabelTopologyZone: "us-east-1a",
		v1.CapacityTypeLabelKey: v1.CapacityTypeOnDemand, corev1.LabelHostname: name}
	nc := createClaim(t, np)
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-1a/i-" + nc.Name}}
	if err := cp.Client.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cp.Client.Patch(ctx, nc, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`)))
		_ = cp.Client.Delete(ctx, nc)
		_ = cp.Client.Delete(ctx, n)
	})
	// Ready, without the not-ready taint the API server put on it at
	// creation (no kubelet here to clear it).
	n.Spec.Taints = nil
	if err := cp.Client.Update(ctx, n); err != nil {
		t.Fatal(err)
	}
	n.Status.Allocatable, n.Status.Capacity = it.Allocatable, it.Capacity
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"}}
	if err := cp.Client.Status().Update(ctx, n); err != nil {
		t.Fatal(err)
	}
	nc.Status.NodeName, nc.Status.ProviderID = n.Name, n.Spec.ProviderID
	nc.Status.LastPodEventTime = metav1.NewTime(idle)
	nc.Status.Conditions = []metav1.Condition{{Type: v1.ConditionTypeInitialized, Status: metav1.ConditionTrue, Reason: "Initialized",
		LastTransitionTime: metav1.NewTime(idle.Add(-time.Hour))}}
	if err := cp.Client.Status().Update(ctx, nc); err != nil {
		t.Fatal(err)
	}
	ns := cp.Namespace(t)
	for _, p := range pods {
		p.Namespace, p.Spec.NodeName = ns, n.Name
		if err := cp.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	return nc, n
}

// workload is a ReplicaSet-owned pod asking cpu.
func workload(name, cpu string) *corev1.Pod {
	p := pod(name, "ReplicaSet")
	p.Labels = map[string]string{"app": name}
	p.Spec.Containers = []corev1.Container{{Name: "c", Image: "i", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("512Mi")}}}}
	return p
}

func consolidationPool(t *testing.T, policy v1.ConsolidationPolicy) *v1.NodePool {
	t.Helper()
	np := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: harness.Name("pool")}}
	np.Spec.Template.Spec.NodeClassRef = &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"}
	np.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{}
	np.Spec.Disruption.ConsolidateAfter = v1.MustParseNillableDuration("30s")
	np.Spec.Disruption.ConsolidationPolicy = policy
	np.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "100%"}}
	if err := cp.Client.Create(context.Background(), np); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), np) })
	return np
}

func consolidator(p *planner, rec *recorder, at *time.Time) *Controller {
	return &Controller{Kube: cp.Client, Recorder: rec, Now: func() time.Time { return *at }, Cluster: state.NewCluster(cp.Client),
		Planner: p, MinSavings: 0.1}
}

// A pod alone on an m5.2xlarge is moved to a cheaper node: the move is made
// only once it has stood for the validation delay, the replacement is
// launched first with no fallback as dear as the node, and the node waits
// for it before draining. Mutations tried: no validation (disrupted on the
// first pass); restrictPrice skipped (an m5.2xlarge fallback launched).
func TestConsolidationReplacesAfterValidation(t *testing.T) {
	ctx := context.Background()
	np := consolidationPool(t, v1.ConsolidationPolicyWhenEmptyOrUnderutilized)
	p := newPlanner(t, np)
	big, _ := runningNode(t, p, np, "m5.2xlarge", now.Add(-time.Hour), workload("web", "500m"))
	at := now
	c := consolidator(p, &recorder{reasons: map[string][]string{}}, &at)
	for _, step := range []time.Duration{0, 10 * time.Second} {
		at = now.Add(step)
		if got, err := c.Evaluate(ctx); err != nil || len(got) > 0 {
			t.Fatalf("at +%s: disrupted %v (%v) before the validation delay", step, names(got), err)
		}
	}
	at = now.Add(DefaultValidationDelay + time.Second)
	got, err := c.Evaluate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(names(got)) != fmt.Sprint([]string{big.Name}) {
		t.Fatalf("disrupted %v, want %s", names(got), big.Name)
	}
	if len(p.launched) != 1 {
		t.Fatalf("%d replacements launched, want 1", len(p.launched))
	}
	bigPrice, _ := p.cat.Price("m5.2xlarge", "us-east-1a", v1.CapacityTypeOnDemand)
	for _, it := range p.launched[0].InstanceTypes {
		if it.Type.Name == "m5.2xlarge" || it.Cheapest().Price >= bigPrice*0.9 {
			t.Errorf("the replacement may launch as %s at %v, against %v for the node", it.Type.Name, it.Cheapest().Price, bigPrice)
		}
	}
	fresh := &v1.NodeClaim{}
	if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(big), fresh); err != nil {
		t.Fatal(err)
	}
	drainBy, waits := DrainBy(fresh)
	if fresh.DeletionTimestamp.IsZero() || fresh.Annotations[DisruptionReasonAnnotation] != UnderutilizedAnnotation ||
		!waits || !drainBy.After(at) {
		t.Errorf("claim: deleting %v, annotations %v: want underutilized, draining only after its replacement", !fresh.DeletionTimestamp.IsZero(), fresh.Annotations)
	}
}

// A decision is dropped when the node changes before it is made: here a
// second pod arrives that no cheaper node holds.
// Mutation tried: executing the first decision without solving again.
func TestConsolidationDecisionDroppedWhenPodsArrive(t *testing.T) {
	ctx := context.Background()
	np := consolidationPool(t, v1.ConsolidationPolicyWhenEmptyOrUnderutilized)
	p := newPlanner(t, np)
	big, n := runningNode(t, p, np, "m5.2xlarge", now.Add(-time.Hour), workload("web", "500m"))
	at := now
	c := consolidator(p, &recorder{reasons: map[string][]string{}}, &at)
	if got, err := c.Evaluate(ctx); err != nil || len(got) > 0 || c.pending == nil {
		t.Fatalf("first pass: disrupted %v (%v), pending %v", names(got), err, c.pending)
	}
	late := workload("batch", "6")
	late.Namespace, late.Spec.NodeName = cp.Namespace(t), n.Name
	if err := cp.Client.Create(ctx, late); err != nil {
		t.Fatal(err)
	}
	at = now.Add(DefaultValidationDelay + time.Second)
	if got, err := c.Evaluate(ctx); err != nil || len(got) > 0 {
		t.Errorf("disrupted %v (%v) after a pod arrived that needs the node", names(got), err)
	}
	if len(p.launched) > 0 {
		t.Errorf("launched %d replacements", len(p.launched))
	}
	_ = big
}

// Of two half-used nodes, one's pod moves to the other: a delete, which
// drains at once and launches nothing.
func TestConsolidationDeletes(t *testing.T) {
	ctx := context.Background()
	np := consolidationPool(t, v1.ConsolidationPolicyWhenEmptyOrUnderutilized)
	p := newPlanner(t, np)
	a, _ := runningNode(t, p, np, "m5.xlarge", now.Add(-time.Hour), workload("a", "1"))
	b, _ := runningNode(t, p, np, "m5.xlarge", now.Add(-time.Hour), workload("b", "1"))
	at := now
	c := consolidator(p, &recorder{reasons: map[string][]string{}}, &at)
	c.ValidationDelay = time.Second
	_, _ = c.Evaluate(ctx)
	at = now.Add(2 * time.Second)
	got, err := c.Evaluate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || (got[0].Name != a.Name && got[0].Name != b.Name) || len(p.launched) > 0 {
		for _, l := range p.launched {
			t.Logf("launched %s for %d pods", l.InstanceTypes[0].Type.Name, len(l.Pods))
		}
		t.Fatalf("disrupted %v with %d launches, want one of the two deleted", names(got), len(p.launched))
	}
	if _, waits := DrainBy(got[0]); waits {
		t.Error("a delete waits for a replacement")
	}
}

// Why a node stays: a do-not-disrupt pod, a PodDisruptionBudget allowing
// nothing, a pod no controller recreates, a pod too recent. Each is said in
// an event on the Node and the NodeClaim and in the claim's Consolidatable
// condition. Mutation tried: dropping the PDB check (that node replaced).
func TestConsolidationSaysWhyNot(t *testing.T) {
	ctx := context.Background()
	np := consolidationPool(t, v1.ConsolidationPolicyWhenEmptyOrUnderutilized)
	p := newPlanner(t, np)
	held := workload("held", "500m")
	held.Annotations = map[string]string{v1.DoNotDisruptAnnotationKey: "true"}
	heldClaim, heldNode := runningNode(t, p, np, "m5.2xlarge", now.Add(-time.Hour), held)
	guarded := workload("guarded", "500m")
	guardedClaim, _ := runningNode(t, p, np, "m5.2xlarge", now.Add(-time.Hour), guarded)
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "guarded", Namespace: guarded.Namespace},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptrIntOrString(1), Selector: &metav1.LabelSelector{MatchLabels: guarded.Labels}}}
	if err := cp.Client.Create(ctx, pdb); err != nil {
		t.Fatal(err)
	}
	pdb.Status = policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: 0, CurrentHealthy: 1, DesiredHealthy: 1, ExpectedPods: 1}
	if err := cp.Client.Status().Update(ctx, pdb); err != nil {
		t.Fatal(err)
	}
	bareClaim, _ := runningNode(t, p, np, "m5.2xlarge", now.Add(-time.Hour), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bare"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}})
	recentClaim, _ := runningNode(t, p, np, "m5.2xlarge", now.Add(-10*time.Second), workload("recent", "500m"))

	rec := &recorder{reasons: map[string][]string{}}
	at := now
	c := consolidator(p, rec, &at)
	for _, step := range []time.Duration{0, DefaultValidationDelay + time.Second} {
		at = now.Add(step)
		if got, err := c.Evaluate(ctx); err != nil || len(got) > 0 {
			t.Fatalf("disrupted %v (%v)", names(got), err)
		}
	}
	for claim, want := range map[*v1.NodeClaim]string{heldClaim: "do-not-disrupt", guardedClaim: "PodDisruptionBudget guarded",
		bareClaim: "no controller", recentClaim: "consolidateAfter"} {
		fresh := &v1.NodeClaim{}
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(claim), fresh); err != nil {
			t.Fatal(err)
		}
		cond := meta.FindStatusCondition(fresh.Status.Conditions, v1.ConditionTypeConsolidatable)
		if cond == nil || !strings.Contains(cond.Message, want) {
			t.Errorf("claim %s: Consolidatable %+v, want a message naming %q", claim.Name, cond, want)
		}
		if !slices.Contains(rec.reasons[claim.Name], "Unconsolidatable") {
			t.Errorf("claim %s: events %v", claim.Name, rec.reasons[claim.Name])
		}
		if claim == recentClaim && (cond == nil || cond.Status != metav1.ConditionFalse) {
			t.Errorf("a node used 10 s ago is Consolidatable: %+v", cond)
		}
	}
	if !slices.Contains(rec.reasons[heldNode.Name], "Unconsolidatable") {
		t.Errorf("no event on node %s: %v", heldNode.Name, rec.reasons[heldNode.Name])
	}
}

func ptrIntOrString(n int) *intstr.IntOrString {
	v := intstr.FromInt32(int32(n))
	return &v
}
