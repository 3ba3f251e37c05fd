package state

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/harness"
)

var cp *harness.ControlPlane

func TestMain(m *testing.M) { harness.Main(m, harness.Options{}, &cp) }

func unschedulable(p *corev1.Pod) *corev1.Pod {
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable}}
	return p
}

func TestProvisionable(t *testing.T) {
	base := func() *corev1.Pod {
		return unschedulable(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: corev1.PodStatus{Phase: corev1.PodPending}})
	}
	if !Provisionable(base()) {
		t.Fatal("an unschedulable pending pod is not provisionable")
	}
	for name, mutate := range map[string]func(*corev1.Pod){
		"bound":          func(p *corev1.Pod) { p.Spec.NodeName = "n" },
		"preempting":     func(p *corev1.Pod) { p.Status.NominatedNodeName = "n" },
		"gated":          func(p *corev1.Pod) { p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "g"}} },
		"terminating":    func(p *corev1.Pod) { now := metav1.Now(); p.DeletionTimestamp = &now },
		"daemonset":      func(p *corev1.Pod) { p.OwnerReferences = []metav1.OwnerReference{{Kind: "DaemonSet", Name: "d"}} },
		"not yet tried":  func(p *corev1.Pod) { p.Status.Conditions = nil },
		"finished":       func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded },
		"other reason":   func(p *corev1.Pod) { p.Status.Conditions[0].Reason = "SchedulerError" },
		"scheduled true": func(p *corev1.Pod) { p.Status.Conditions[0].Status = corev1.ConditionTrue },
	} {
		p := base()
		mutate(p)
		if Provisionable(p) {
			t.Errorf("%s pod is provisionable", name)
		}
	}
}

// In-flight capacity must be visible: a claim not launched yet counts with
// its planned requests, a launched one with its allocatable, a registering
// node without the taints that go away at startup, and a claim the cache
// has not seen yet still counts; deleting claims do not.
func TestSnapshotSeesInFlightCapacity(t *testing.T) {
	ctx := context.Background()
	ns := cp.Namespace(t)
	pool := harness.Name("pool")
	mk := func(name string, launched bool) *v1.NodeClaim {
		nc := &v1.NodeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: harness.Name(name), Labels: map[string]string{v1.NodePoolLabelKey: pool}},
			Spec: v1.NodeClaimSpec{
				NodeClassRef: &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"},
				Requirements: []v1.NodeSelectorRequirementWithMinValues{
					{Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"zone-a"}},
					{Key: corev1.LabelInstanceTypeStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"m5.large", "m5.xlarge"}},
				},
				Resources: v1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m")}},
				Taints:    []corev1.Taint{{Key: "team", Value: "a", Effect: corev1.TaintEffectNoSchedule}},
			},
		}
		if err := cp.Client.Create(ctx, nc); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cp.Client.Delete(ctx, nc) })
		if launched {
			nc.Status.ProviderID = "aws:///zone-a/i-" + nc.Name
			nc.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3920m"), corev1.ResourcePods: resource.MustParse("58")}
			nc.Status.Conditions = []metav1.Condition{{Type: v1.ConditionTypeLaunched, Status: metav1.ConditionTrue, Reason: "Launched", LastTransitionTime: metav1.Now()}}
			if err := cp.Client.Status().Update(ctx, nc); err != nil {
				t.Fatal(err)
			}
		}
		return nc
	}
	planned := mk("planned", false)
	registering := mk("registering", true)
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: harness.Name("node"), Labels: map[string]string{corev1.LabelInstanceTypeStable: "m5.xlarge"}},
		Spec:       corev1.NodeSpec{ProviderID: registering.Status.ProviderID, Taints: []corev1.Taint{v1.UnregisteredNoExecuteTaint}},
	}
	if err := cp.Client.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(ctx, node) })
	pod := unschedulable(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "waiting", Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}})
	status := pod.Status
	if err := cp.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status = status
	if err := cp.Client.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}

	cluster := NewCluster(cp.Client)
	unseen := planned.DeepCopy()
	unseen.Name = harness.Name("unseen")
	cluster.ClaimCreated(unseen)

	snap, err := cluster.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	views := map[string]bool{}
	for _, n := range snap.Nodes {
		views[n.Name] = true
		switch n.Name {
		case planned.Name, unseen.Name:
			if n.Allocatable.Cpu().MilliValue() != 1500 || n.Labels[corev1.LabelTopologyZone] != "zone-a" || n.Labels[corev1.LabelInstanceTypeStable] != "" {
				t.Errorf("unlaunched claim %s seen as %+v; want its requests, its one zone, no single type", n.Name, n)
			}
		case node.Name:
			if len(n.Taints) != 1 || n.Taints[0].Key != "team" || n.Labels[v1.NodePoolLabelKey] != pool {
				t.Errorf("registering node seen with taints %v labels %v; want the claim's taints and labels", n.Taints, n.Labels)
			}
		case registering.Name:
			t.Errorf("claim %s counted twice: as itself and as its node", n.Name)
		}
	}
	for _, want := range []string{planned.Name, unseen.Name, node.Name} {
		if !views[want] {
			t.Errorf("%s missing from the snapshot", want)
		}
	}
	found := false
	for _, p := range snap.Pending {
		found = found || p.Name == "waiting" && p.Namespace == ns
	}
	if !found {
		t.Error("the unschedulable pod is not pending in the snapshot")
	}

	// Once a claim is created for it, the pod counts on that claim, not as
	// pending: a later round must not plan it again. Mutation tried:
	// ClaimCreated ignoring its pods (the pod stayed pending, and the
	// provisioning test TestCustomKeysResolvedOntoTheClaim launched an
	// extra claim in about one run of three).
	cluster.ClaimCreated(planned, pod)
	snap, err = cluster.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pendingNamed(snap, "waiting") {
		t.Error("a pod planned onto a claim in flight is still pending")
	}
	onClaim := false
	for _, n := range snap.Nodes {
		onClaim = onClaim || n.Name == planned.Name && len(n.Pods) == 1 && n.Pods[0].Name == "waiting"
	}
	if !onClaim {
		t.Error("the nominated pod is not on its claim's node")
	}

	if err := cp.Client.Delete(ctx, planned); err != nil {
		t.Fatal(err)
	}
	snap, err = cluster.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range snap.Nodes {
		if n.Name == planned.Name {
			t.Error("a deleted claim still offers capacity")
		}
	}
	if !pendingNamed(snap, "waiting") {
		t.Error("the pod of a deleted claim is not pending again")
	}
}

func pendingNamed(snap *Snapshot, name string) bool {
	for _, p := range snap.Pending {
		if p.Name == name {
			return true
		}
	}
	return false
}

// The pods of a node being deleted that a controller will recreate are
// planned for before they are evicted; DaemonSet, bare and finished pods
// are not. Room for them on running nodes is what lets a replacement-first
// drain begin, and a node still starting is not running.
func TestPodsOfDeletingNodesNeedRoom(t *testing.T) {
	ctx := context.Background()
	ns := cp.Namespace(t)
	zone := harness.Name("zone")
	mkNode := func(name string, initialized bool) (*v1.NodeClaim, *corev1.Node) {
		nc := &v1.NodeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: harness.Name(name), Labels: map[string]string{v1.NodePoolLabelKey: "p"}, Finalizers: []string{v1.TerminationFinalizer}},
			Spec: v1.NodeClaimSpec{NodeClassRef: &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"},
				Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: v1.NodePoolLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{"p"}}}},
		}
		if err := cp.Client.Create(ctx, nc); err != nil {
			t.Fatal(err)
		}
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nc.Name, Labels: map[string]string{corev1.LabelTopologyZone: zone, v1.NodePoolLabelKey: "p"}},
			Spec: corev1.NodeSpec{ProviderID: "aws:///" + zone + "/i-" + nc.Name}}
		if err := cp.Client.Create(ctx, node); err != nil {
			t.Fatal(err)
		}
		node.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourcePods: resource.MustParse("110")}
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		if err := cp.Client.Status().Update(ctx, node); err != nil {
			t.Fatal(err)
		}
		// Admission taints a new node not-ready; a kubelet's Ready node loses it.
		node.Spec.Taints = nil
		if err := cp.Client.Update(ctx, node); err != nil {
			t.Fatal(err)
		}
		nc.Status.ProviderID, nc.Status.NodeName = node.Spec.ProviderID, node.Name
		nc.Status.Conditions = []metav1.Condition{{Type: v1.ConditionTypeLaunched, Status: metav1.ConditionTrue, Reason: "Launched", LastTransitionTime: metav1.Now()}}
		if initialized {
			nc.Status.Conditions = append(nc.Status.Conditions, metav1.Condition{Type: v1.ConditionTypeInitialized, Status: metav1.ConditionTrue, Reason: "Initialized", LastTransitionTime: metav1.Now()})
		}
		if err := cp.Client.Status().Update(ctx, nc); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cp.Client.Delete(ctx, node)
			nc.Finalizers = nil
			_ = cp.Client.Update(ctx, nc)
			_ = cp.Client.Delete(ctx, nc)
		})
		return nc, node
	}
	leaving, leavingNode := mkNode("leaving", true)
	staying, stayingNode := mkNode("staying", false)
	pod := func(name, node, cpu, ownerKind string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.PodSpec{NodeName: node, NodeSelector: map[string]string{corev1.LabelTopologyZone: zone},
				Containers: []corev1.Container{{Name: "c", Image: "i", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}}}}}
		if ownerKind != "" {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: ownerKind, Name: "owner", UID: "0000-" + types.UID(name), Controller: ptr.To(true)}}
		}
		if err := cp.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	web := pod("web", leavingNode.Name, "1", "ReplicaSet")
	pod("agent", leavingNode.Name, "100m", "DaemonSet")
	pod("bare", leavingNode.Name, "100m", "")
	done := pod("done", leavingNode.Name, "100m", "Job")
	done.Status.Phase = corev1.PodSucceeded
	if err := cp.Client.Status().Update(ctx, done); err != nil {
		t.Fatal(err)
	}
	pod("resident", stayingNode.Name, "1", "ReplicaSet")
	if err := cp.Client.Delete(ctx, leaving); err != nil {
		t.Fatal(err)
	}

	lists := &countingReader{Reader: cp.Client}
	cluster := NewCluster(lists)
	clock := time.Now()
	cluster.now = func() time.Time { return clock }
	snap, err := cluster.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, p := range snap.Pending {
		if p.Namespace == ns {
			ours = append(ours, p.Name)
		}
	}
	if len(ours) != 1 || ours[0] != "web" || snap.Rescheduling < 1 {
		t.Errorf("pods needing room: %v (rescheduling %d), want only web", ours, snap.Rescheduling)
	}
	for _, n := range snap.Nodes {
		if n.Name == leavingNode.Name {
			t.Error("the deleting node still offers capacity")
		}
	}
	if !snap.Starting[stayingNode.Name] {
		t.Error("a node whose claim is not initialized is not reported starting")
	}
	fits := func() bool {
		ok, err := cluster.FitsElsewhere(ctx, []*corev1.Pod{web})
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if fits() {
		t.Error("room counted on a node still starting")
	}
	// Claims waiting at once share one snapshot: fails when roomInput
	// snapshots on every call (tried: the reuse check removed).
	before := lists.count()
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() { defer wg.Done(); fits() }()
	}
	wg.Wait()
	if n := lists.count() - before; n != 0 {
		t.Errorf("20 checks within the reuse window listed %d times, want none", n)
	}
	clock = clock.Add(roomTTL)
	meta.SetStatusCondition(&staying.Status.Conditions, metav1.Condition{Type: v1.ConditionTypeInitialized, Status: metav1.ConditionTrue, Reason: "Initialized"})
	if err := cp.Client.Status().Update(ctx, staying); err != nil {
		t.Fatal(err)
	}
	if !fits() {
		t.Error("no room found on the running node with 3 CPUs free")
	}
	if lists.count() == before {
		t.Error("the room was not looked at again after the reuse window")
	}
	big := web.DeepCopy()
	big.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("3500m")
	if ok, err := cluster.FitsElsewhere(ctx, []*corev1.Pod{big}); err != nil || ok {
		t.Errorf("3.5 CPUs fit next to the resident's 1 of 4: %v %v", ok, err)
	}
}

// countingReader counts the List calls that reach the API.
type countingReader struct {
	client.Reader
	mu sync.Mutex
	n  int
}

func (r *countingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	r.mu.Lock()
	r.n++
	r.mu.Unlock()
	return r.Reader.List(ctx, list, opts...)
}

func (r *countingReader) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}
