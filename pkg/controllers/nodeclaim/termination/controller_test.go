package termination

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
	"github.com/nodewright/nodewright/pkg/controllers"
	"github.com/nodewright/nodewright/pkg/controllers/disruption"
	"github.com/nodewright/nodewright/test/harness"
)

var (
	cp *harness.ControlPlane
	// kube reads through an informer cache with the controllers' indexes,
	// as the manager's client does.
	kube client.Client
)

func TestMain(m *testing.M) {
	harness.Main(m, harness.Options{}, &cp, func(ctx context.Context) error {
		informers, err := cache.New(cp.Config, cache.Options{Scheme: cp.Scheme})
		if err != nil {
			return err
		}
		if err := controllers.Index(ctx, informers); err != nil {
			return err
		}
		go func() {
			if err := informers.Start(ctx); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}()
		if !informers.WaitForCacheSync(ctx) {
			return fmt.Errorf("informer cache did not sync")
		}
		kube, err = client.New(cp.Config, client.Options{Scheme: cp.Scheme, Cache: &client.CacheOptions{Reader: informers}})
		return err
	})
}

// cloud is the instances the controller terminates: running until Delete,
// then shutting down until the test says gone.
type cloud struct {
	mu          sync.Mutex
	terminating map[string]bool
	gone        map[string]bool
	gets, dels  int
}

func newCloud() *cloud { return &cloud{terminating: map[string]bool{}, gone: map[string]bool{}} }

func (c *cloud) Get(_ context.Context, id string) (*v1.NodeClaim, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gets++
	if c.gone[id] || c.terminating[id] {
		return nil, &cloudprovider.NotFoundError{ProviderID: id}
	}
	return &v1.NodeClaim{}, nil
}

func (c *cloud) Delete(_ context.Context, nc *v1.NodeClaim) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dels++
	id := nc.Status.ProviderID
	if c.gone[id] || c.terminating[id] {
		return &cloudprovider.NotFoundError{ProviderID: id}
	}
	c.terminating[id] = true
	return nil
}

func (c *cloud) calls() (gets, dels int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets, c.dels
}

type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) Eventf(regarding runtime.Object, _ runtime.Object, _, reason, _, note string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf("%s %s: %s", regarding.(client.Object).GetName(), reason, fmt.Sprintf(note, args...)))
}

func (r *recorder) count(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if strings.Contains(e, " "+reason+": ") {
			n++
		}
	}
	return n
}

// clock is the controller's time, moved by the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// fixture is a deleted claim whose Node runs pods, with the controller
// that terminates it.
type fixture struct {
	t     *testing.T
	ns    string
	nc    *v1.NodeClaim
	node  *corev1.Node
	cloud *cloud
	rec   *recorder
	clock *clock
	c     *Controller
}

// deletedClaim makes a claim (terminationGracePeriod tgp, none when 0) with
// its Node and the pods, then deletes the claim.
func deletedClaim(t *testing.T, tgp time.Duration, pods ...*corev1.Pod) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{t: t, ns: cp.Namespace(t), cloud: newCloud(), rec: &recorder{}, clock: &clock{}}
	name := harness.Name("claim")
	f.nc = &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.NodePoolLabelKey: "p"}, Finalizers: []string{v1.TerminationFinalizer}},
		Spec: v1.NodeClaimSpec{NodeClassRef: &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"},
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: v1.NodePoolLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{"p"}}}},
	}
	if tgp > 0 {
		f.nc.Spec.TerminationGracePeriod = v1.NewDuration(tgp)
	}
	if err := cp.Client.Create(ctx, f.nc); err != nil {
		t.Fatal(err)
	}
	f.node = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: v1.SchemeGroupVersion.String(), Kind: "NodeClaim", Name: name, UID: f.nc.UID}}},
		Spec: corev1.NodeSpec{ProviderID: "aws:///zone-a/i-" + name}}
	if err := cp.Client.Create(ctx, f.node); err != nil {
		t.Fatal(err)
	}
	f.nc.Status.ProviderID, f.nc.Status.NodeName = f.node.Spec.ProviderID, f.node.Name
	if err := cp.Client.Status().Update(ctx, f.nc); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		p.Namespace, p.Spec.NodeName = f.ns, f.node.Name
		p.Spec.Containers = []corev1.Container{{Name: "c", Image: "i"}}
		if err := cp.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		// Running and ready: the Eviction API lets a pending pod go
		// whatever its PDB says.
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		if err := cp.Client.Status().Update(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = cp.Client.Patch(ctx, f.nc, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))
		_ = cp.Client.Delete(ctx, f.nc)
		_ = cp.Client.Delete(ctx, f.node)
	})
	if err := cp.Client.Delete(ctx, f.nc); err != nil {
		t.Fatal(err)
	}
	// The informer cache sees the deletion and every pod before the first pass.
	cp.Eventually(t, 30*time.Second, "the cache to see the claim deleted and its pods", func(ctx context.Context) (bool, error) {
		if err := kube.Get(ctx, client.ObjectKeyFromObject(f.nc), f.nc); err != nil || f.nc.DeletionTimestamp.IsZero() {
			return false, err
		}
		var list corev1.PodList
		err := kube.List(ctx, &list, client.MatchingFields{controllers.PodNodeName: f.node.Name})
		return err == nil && len(list.Items) == len(pods), err
	})
	f.clock.set(f.nc.DeletionTimestamp.Time)
	f.c = &Controller{Kube: kube, Cloud: f.cloud, Recorder: f.rec, Now: f.clock.now}
	return f
}

// at runs one pass at d after the claim's deletion and returns its requeue.
func (f *fixture) at(d time.Duration) time.Duration {
	f.t.Helper()
	f.clock.set(f.nc.DeletionTimestamp.Add(d))
	res, err := f.c.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(f.nc)})
	if err != nil {
		f.t.Fatalf("pass at +%s: %v", d, err)
	}
	return res.RequeueAfter
}

// deletion reports the grace period a pod was deleted with, -1 while it is
// not being deleted; it waits for the cache to agree with the API server
// so the next pass sees what the test checked.
func (f *fixture) deletion(name string) int64 {
	f.t.Helper()
	var grace int64 = -1
	cp.Eventually(f.t, 10*time.Second, "the cache to catch up with pod "+name, func(ctx context.Context) (bool, error) {
		var live, cached corev1.Pod
		key := client.ObjectKey{Namespace: f.ns, Name: name}
		if err := cp.Client.Get(ctx, key, &live); err != nil {
			return false, err
		}
		if err := kube.Get(ctx, key, &cached); err != nil {
			return false, err
		}
		grace = ptr.Deref(live.DeletionGracePeriodSeconds, -1)
		return live.ResourceVersion == cached.ResourceVersion, nil
	})
	return grace
}

// blockingPDB selects app=web and allows no disruption: its status says so
// as the disruption controller (not running here) would write it.
func blockingPDB(t *testing.T, ns string, healthy int32) {
	t.Helper()
	ctx := context.Background()
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(0)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
	if err := cp.Client.Create(ctx, pdb); err != nil {
		t.Fatal(err)
	}
	pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, DisruptionsAllowed: 0,
		CurrentHealthy: healthy, DesiredHealthy: healthy, ExpectedPods: healthy}
	if err := cp.Client.Status().Update(ctx, pdb); err != nil {
		t.Fatal(err)
	}
}

func pod(name string, grace int64, labels, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: types.UID("rs-" + name), Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To(grace)}}
}

// At the terminationGracePeriod deadline every pod has already had its own
// grace period: each is deleted at (deadline - its grace), PDB and
// do-not-disrupt notwithstanding, one whose grace exceeds the whole period
// at once with what is left, and the instance goes only at the deadline.
// Fails when pods are deleted at the deadline in the same pass that
// terminates the instance (tried: deleteAt := deadline), and when the
// instance is terminated before the deadline while pods are still
// terminating (tried: the pass.left check dropped).
func TestPodsGetTheirGraceBeforeTheDeadline(t *testing.T) {
	web := map[string]string{"app": "web"}
	f := deletedClaim(t, 10*time.Minute,
		pod("quick", 30, web, nil),
		pod("slow", 300, web, nil),
		pod("pinned", 60, nil, map[string]string{v1.DoNotDisruptAnnotationKey: "true"}),
		pod("huge", 3600, web, nil),
	)
	blockingPDB(t, f.ns, 3)

	f.at(time.Second)
	if g := f.deletion("huge"); g < 590 || g > 600 {
		t.Errorf("a pod whose 3600 s grace outlasts the 10 min period: deleted with %d s, want what is left (599)", g)
	}
	for _, name := range []string{"quick", "slow", "pinned"} {
		if g := f.deletion(name); g != -1 {
			t.Errorf("%s deleted (grace %d) 1 s into a 10 min period", name, g)
		}
	}
	if n := f.rec.count("EvictionBlocked"); n != 4 {
		t.Errorf("%d EvictionBlocked events for the 2 PDB-blocked pods (claim and pod each), want 4: %v", n, f.rec.events)
	}
	if n := f.rec.count("DisruptionBlocked"); n != 1 {
		t.Errorf("%d DisruptionBlocked events for the do-not-disrupt pod, want 1", n)
	}
	f.at(2 * time.Second)
	if n := f.rec.count("EvictionBlocked"); n != 4 {
		t.Errorf("a second blocked pass repeated its events: %d", n)
	}

	f.at(5 * time.Minute)
	if g := f.deletion("slow"); g != 300 {
		t.Errorf("slow (300 s grace) at deadline-300s: deletion grace %d, want 300", g)
	}
	if g := f.deletion("quick"); g != -1 {
		t.Errorf("quick (30 s grace) deleted 5 min before the deadline")
	}
	f.at(9 * time.Minute)
	if g := f.deletion("pinned"); g != 60 {
		t.Errorf("the do-not-disrupt pod (60 s grace) at deadline-60s: deletion grace %d, want 60", g)
	}
	f.at(9*time.Minute + 30*time.Second)
	if g := f.deletion("quick"); g != 30 {
		t.Errorf("quick at deadline-30s: deletion grace %d, want 30", g)
	}
	if d := f.at(10*time.Minute - time.Second); d <= 0 || d > time.Second {
		t.Errorf("pods still terminating 1 s before the deadline: requeue %s, want at most the second left", d)
	}
	if _, dels := f.cloud.calls(); dels != 0 {
		t.Fatal("instance terminated before the deadline while pods were still in their grace periods")
	}
	f.at(10 * time.Minute)
	if _, dels := f.cloud.calls(); dels != 1 {
		t.Fatalf("instance not terminated at the deadline (%d terminate calls)", dels)
	}
	cp.Eventually(t, 10*time.Second, "Drained with the grace period elapsed", func(ctx context.Context) (bool, error) {
		nc := &v1.NodeClaim{}
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(f.nc), nc); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(nc.Status.Conditions, v1.ConditionTypeDrained)
		return c != nil && c.Reason == "TerminationGracePeriodElapsed", nil
	})
}

// Critical pods (system-cluster-critical, system-node-critical) are only
// evicted once the ordinary pods are gone. Fails when both waves drain
// together (tried: the ordinaryLeft check removed).
func TestCriticalPodsLeaveLast(t *testing.T) {
	dns := pod("dns", 30, nil, nil)
	dns.Spec.PriorityClassName = "system-cluster-critical"
	f := deletedClaim(t, 0, pod("app", 30, nil, nil), dns)

	f.at(time.Second)
	if f.deletion("app") == -1 {
		t.Fatal("the ordinary pod was not evicted")
	}
	if f.deletion("dns") != -1 {
		t.Fatal("the critical pod was evicted while an ordinary one was still terminating")
	}
	// The kubelet finishes the ordinary pod.
	if err := cp.Client.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: f.ns}}, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	cp.Eventually(t, 10*time.Second, "the cache to see the ordinary pod gone", func(ctx context.Context) (bool, error) {
		var list corev1.PodList
		err := kube.List(ctx, &list, client.MatchingFields{controllers.PodNodeName: f.node.Name})
		return err == nil && len(list.Items) == 1, err
	})
	f.at(2 * time.Second)
	if f.deletion("dns") == -1 {
		t.Fatal("the critical pod was not evicted once it was the last one")
	}
}

// A drain a PDB blocks backs off (2 s doubling to 30 s) instead of asking
// the Eviction API every 2 s, and describes the instance once a minute, not
// on every pass. Fails with a fixed requeue (tried: backoff returning
// minRequeue) and with the instance described on every pass (tried: the
// instanceCheckEvery test removed).
func TestBlockedDrainBacksOff(t *testing.T) {
	f := deletedClaim(t, 0, pod("web", 30, map[string]string{"app": "web"}, nil))
	blockingPDB(t, f.ns, 1)
	var waits []time.Duration
	at := time.Second
	for range 7 {
		d := f.at(at)
		waits = append(waits, d)
		at += d
	}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second}
	if !slices.Equal(waits, want) {
		t.Errorf("requeues of a blocked drain: %v, want %v", waits, want)
	}
	// Passes at +1s .. +91s: the instance is described at +1s and +61s.
	if gets, _ := f.cloud.calls(); gets != 2 {
		t.Errorf("instance described %d times over 7 passes in 91 s, want 2", gets)
	}
}

// Once terminating, the instance is polled with a describe (a read), not
// terminated again, and the claim lets go once it is gone. Fails when the
// terminating branch calls Delete again (tried).
func TestTerminatingInstanceIsDescribedNotTerminatedAgain(t *testing.T) {
	f := deletedClaim(t, 0)
	if d := f.at(time.Second); d != terminatingRequeue {
		t.Errorf("requeue after terminating: %s, want %s", d, terminatingRequeue)
	}
	cp.Eventually(t, 10*time.Second, "the cache to see InstanceTerminating", func(ctx context.Context) (bool, error) {
		err := kube.Get(ctx, client.ObjectKeyFromObject(f.nc), f.nc)
		return err == nil && meta.IsStatusConditionTrue(f.nc.Status.Conditions, v1.ConditionTypeInstanceTerminating), err
	})
	f.cloud.mu.Lock()
	delete(f.cloud.terminating, f.nc.Status.ProviderID) // EC2 still says running
	f.cloud.mu.Unlock()
	if d := f.at(6 * time.Second); d != terminatingRequeue {
		t.Errorf("requeue while the instance still runs: %s", d)
	}
	f.cloud.mu.Lock()
	f.cloud.gone[f.nc.Status.ProviderID] = true
	f.cloud.mu.Unlock()
	f.at(11 * time.Second)
	if _, dels := f.cloud.calls(); dels != 1 {
		t.Errorf("%d terminate calls, want 1", dels)
	}
	cp.Eventually(t, 10*time.Second, "the claim gone", func(ctx context.Context) (bool, error) {
		err := cp.Client.Get(ctx, client.ObjectKeyFromObject(f.nc), &v1.NodeClaim{})
		return client.IgnoreNotFound(err) == nil && err != nil, client.IgnoreNotFound(err)
	})
}

// A budget the API server has not processed yet (no status) is answered
// 429 with Retry-After, which client-go retries for 100 s: a pass must not
// hold its worker that long. Fails without the eviction's timeout (tried:
// the pass then blocked past the test's bound).
func TestUnprocessedBudgetDoesNotStallTheDrain(t *testing.T) {
	f := deletedClaim(t, 0, pod("web", 30, map[string]string{"app": "web"}, nil))
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: f.ns},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(0)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
	if err := cp.Client.Create(context.Background(), pdb); err != nil {
		t.Fatal(err)
	}
	done := make(chan time.Duration, 1)
	go func() { done <- f.at(time.Second) }()
	select {
	case d := <-done:
		if d != minRequeue {
			t.Errorf("requeue %s, want %s", d, minRequeue)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a pass blocked on the eviction of a pod whose budget is not processed yet")
	}
	if f.deletion("web") != -1 {
		t.Error("the pod went despite its budget")
	}
	if n := f.rec.count("EvictionBlocked"); n != 2 {
		t.Errorf("%d EvictionBlocked events, want 2 (claim and pod)", n)
	}
}

// A claim whose instance the cloud is reclaiming (a spot interruption)
// does not back off and looks at its instance on every pass: the drain
// races the instance, and a reclaimed node must stop holding its pods at
// once (the chaos suite saw pods bound to reclaimed instances with the
// back-off). Fails without the urgent case (tried: urgent false).
func TestInterruptedClaimDoesNotBackOff(t *testing.T) {
	f := deletedClaim(t, 0, pod("web", 30, map[string]string{"app": "web"}, nil))
	blockingPDB(t, f.ns, 1)
	patch := []byte(`{"metadata":{"annotations":{"` + disruption.DisruptionReasonAnnotation + `":"spot_interrupted"}}}`)
	if err := cp.Client.Patch(context.Background(), f.nc, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
	cp.Eventually(t, 10*time.Second, "the cache to see the reason", func(ctx context.Context) (bool, error) {
		nc := &v1.NodeClaim{}
		err := kube.Get(ctx, client.ObjectKeyFromObject(f.nc), nc)
		return err == nil && disruption.CloudDriven(nc), err
	})
	at := time.Second
	for range 4 {
		if d := f.at(at); d != minRequeue {
			t.Fatalf("requeue of an interrupted claim's blocked drain: %s, want %s", d, minRequeue)
		}
		at += minRequeue
	}
	if gets, _ := f.cloud.calls(); gets != 4 {
		t.Errorf("instance described %d times over 4 passes, want every pass", gets)
	}
}
