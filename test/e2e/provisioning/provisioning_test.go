package provisioning

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/test/ec2sim"
	"github.com/nodewright/nodewright/test/env"
	"github.com/nodewright/nodewright/test/fixtures"
)

// seedPool reads the seed NodePool; name renames it (empty keeps the seed's).
func seedPool(t *testing.T, name string) *v1.NodePool {
	t.Helper()
	np := &v1.NodePool{}
	if err := fixtures.SeedInto(fixtures.NodePoolBatch, np); err != nil {
		t.Fatal(err)
	}
	if name != "" {
		np.Name = name
	}
	return np
}

// createPool creates np and, when the test ends, deletes it and waits until
// every instance it launched is terminated, so tests never share nodes.
func createPool(t *testing.T, np *v1.NodePool) {
	t.Helper()
	ctx := context.Background()
	if err := cp.Client.Create(ctx, np); err != nil {
		t.Fatalf("creating nodepool %s: %v", np.Name, err)
	}
	t.Cleanup(func() {
		if err := cp.Client.Delete(ctx, np); err != nil {
			t.Errorf("deleting nodepool %s: %v", np.Name, err)
		}
		// NodeClaims are owned by the pool; the garbage collector deletes
		// them, and their termination drains and terminates the instances.
		cp.Eventually(t, 3*time.Minute, "instances of nodepool "+np.Name+" terminated", func(ctx context.Context) (bool, error) {
			var live []string
			for _, in := range e.Sim.Instances() {
				if in.Tags[v1.NodePoolLabelKey] == np.Name && in.State != ec2sim.StateTerminated {
					live = append(live, in.ID+" "+string(in.State))
				}
			}
			if len(live) > 0 {
				return false, fmt.Errorf("still live: %v", live)
			}
			return true, nil
		})
	})
}

// seedJob reads the seed Job into ns, optionally with fewer completions and
// a node selector pinning it to one pool.
func seedJob(t *testing.T, ns string, completions int32, pool string) *batchv1.Job {
	t.Helper()
	job := &batchv1.Job{}
	if err := fixtures.SeedInto(fixtures.BatchJob, job); err != nil {
		t.Fatal(err)
	}
	job.Namespace = ns
	if completions > 0 {
		job.Spec.Completions = ptr.To(completions)
	}
	if pool != "" {
		job.Spec.Template.Spec.NodeSelector[v1.NodePoolLabelKey] = pool
	}
	return job
}

// withinLimits fails the test if the pool's NodeClaims ever hold more than
// its limits.
func withinLimits(ctx context.Context, np *v1.NodePool) error {
	var claims v1.NodeClaimList
	if err := cp.Client.List(ctx, &claims, client.MatchingLabels{v1.NodePoolLabelKey: np.Name}); err != nil {
		return err
	}
	used := corev1.ResourceList{}
	for _, nc := range claims.Items {
		for k, q := range nc.Status.Capacity {
			sum := used[k]
			sum.Add(q)
			used[k] = sum
		}
	}
	for k, limit := range np.Spec.Limits {
		if u, ok := used[k]; ok && u.Cmp(limit) > 0 {
			return fmt.Errorf("nodepool %s uses %s %s, over its limit %s", np.Name, u.String(), k, limit.String())
		}
	}
	return nil
}

// runJob creates job and waits for it to complete, checking the pool's
// limits at every look.
func runJob(t *testing.T, job *batchv1.Job, np *v1.NodePool, timeout time.Duration) {
	t.Helper()
	if err := cp.Client.Create(context.Background(), job); err != nil {
		t.Fatalf("creating job: %v", err)
	}
	var limitErr error
	cp.Eventually(t, timeout, fmt.Sprintf("job %s to complete %d pods", job.Name, *job.Spec.Completions), func(ctx context.Context) (bool, error) {
		if err := withinLimits(ctx, np); err != nil && limitErr == nil {
			limitErr = err
		}
		got := &batchv1.Job{}
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(job), got); err != nil {
			return false, err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
				return false, fmt.Errorf("job failed: %s", c.Message)
			}
		}
		if got.Status.Succeeded < *job.Spec.Completions {
			return false, fmt.Errorf("%d of %d succeeded, %d active; %s", got.Status.Succeeded, *job.Spec.Completions, got.Status.Active, summary(ctx, np))
		}
		return true, nil
	})
	if limitErr != nil {
		t.Error(limitErr)
	}
}

// summary describes a pool's claims for a wait's last error.
func summary(ctx context.Context, np *v1.NodePool) string {
	var claims v1.NodeClaimList
	if err := cp.Client.List(ctx, &claims, client.MatchingLabels{v1.NodePoolLabelKey: np.Name}); err != nil {
		return err.Error()
	}
	var parts []string
	for _, nc := range claims.Items {
		state := "planned"
		for _, c := range []string{v1.ConditionTypeLaunched, v1.ConditionTypeRegistered, v1.ConditionTypeInitialized} {
			if meta.IsStatusConditionTrue(nc.Status.Conditions, c) {
				state = c
			}
		}
		parts = append(parts, fmt.Sprintf("%s %s %s", nc.Name, nc.Labels[corev1.LabelInstanceTypeStable], state))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d nodeclaims: %s", len(parts), strings.Join(parts, ", "))
}

// podOnPool is a 1-CPU pod that only the pool's nodes may run.
func podOnPool(ns, name, pool string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{NodeSelector: map[string]string{v1.NodePoolLabelKey: pool}, Containers: []corev1.Container{{Name: "c", Image: "registry.example/c:1",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}},
	}
}

// deploymentOnPool is a Deployment of replicas 1-CPU pods labelled
// app=name that only the pool's nodes may run.
func deploymentOnPool(ns, name, pool string, replicas int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"replicas": replicas, "selector": map[string]any{"matchLabels": map[string]any{"app": name}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{"app": name}},
				"spec": map[string]any{
					"nodeSelector": map[string]any{v1.NodePoolLabelKey: pool},
					"containers": []any{map[string]any{"name": name, "image": "registry.example/" + name + ":1",
						"resources": map[string]any{"requests": map[string]any{"cpu": "1", "memory": "1Gi"}}}},
				},
			},
		},
	}}
}

// runningOnOneClaim waits until want pods labelled app=name run and the
// pool has exactly one NodeClaim, and returns it.
func runningOnOneClaim(t *testing.T, ns, name, pool string, want int) v1.NodeClaim {
	t.Helper()
	var nc v1.NodeClaim
	cp.Eventually(t, 2*time.Minute, fmt.Sprintf("%d %s pods running on one nodewright node", want, name), func(ctx context.Context) (bool, error) {
		if err := running(ctx, ns, map[string]string{"app": name}, want); err != nil {
			return false, err
		}
		one, err := onlyClaim(ctx, pool)
		if err != nil {
			return false, err
		}
		nc = *one
		return true, nil
	})
	return nc
}

// instanceID is the EC2 instance id of a provider id.
func instanceID(providerID string) string { return providerID[strings.LastIndex(providerID, "/")+1:] }

// instanceGone is nil once the simulator's instance is shutting down,
// terminated or forgotten.
func instanceGone(id string) error {
	in, ok := e.Sim.Instance(id)
	if ok && in.State != ec2sim.StateTerminated && in.State != ec2sim.StateShuttingDown {
		return fmt.Errorf("instance %s is %s", id, in.State)
	}
	return nil
}

// onlyClaim returns the pool's one NodeClaim, or an error saying how many
// there are.
func onlyClaim(ctx context.Context, pool string) (*v1.NodeClaim, error) {
	var claims v1.NodeClaimList
	if err := cp.Client.List(ctx, &claims, client.MatchingLabels{v1.NodePoolLabelKey: pool}); err != nil {
		return nil, err
	}
	if len(claims.Items) != 1 {
		return nil, fmt.Errorf("%d nodeclaims, want 1", len(claims.Items))
	}
	return &claims.Items[0], nil
}

// metricSum adds up a metric's series for one nodepool, as Prometheus
// would scrape them from nodewright's registry.
func metricSum(t *testing.T, name, pool string) float64 {
	t.Helper()
	return metricWith(t, name, map[string]string{"nodepool": pool})
}

// orphans returns live instances of the pool with no NodeClaim.
func orphans(ctx context.Context, pool string) ([]string, error) {
	var claims v1.NodeClaimList
	if err := cp.Client.List(ctx, &claims); err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, nc := range claims.Items {
		known[nc.Status.ProviderID] = true
	}
	var out []string
	for _, in := range e.Sim.Instances() {
		if in.Tags[v1.NodePoolLabelKey] != pool || in.State == ec2sim.StateTerminated || in.State == ec2sim.StateShuttingDown {
			continue
		}
		if !known[fmt.Sprintf("aws:///%s/%s", in.Zone, in.ID)] {
			out = append(out, in.ID)
		}
	}
	return out, nil
}

// The seed manifests, unchanged, run to completion: the batch Job's 100
// pods get spot nodes of the seed pool's types and zones, the pool never
// passes its limits, and no instance is left without a NodeClaim.
func TestSeedJobRunsToCompletion(t *testing.T) {
	ns := cp.Namespace(t)
	np := seedPool(t, "")
	createPool(t, np)
	runJob(t, seedJob(t, ns, 0, ""), np, 5*time.Minute)

	ctx := context.Background()
	var claims v1.NodeClaimList
	if err := cp.Client.List(ctx, &claims, client.MatchingLabels{v1.NodePoolLabelKey: np.Name}); err != nil {
		t.Fatal(err)
	}
	if len(claims.Items) == 0 {
		t.Fatal("the job completed without any NodeClaim of the pool")
	}
	allowed := map[string]bool{}
	for _, r := range np.Spec.Template.Spec.Requirements {
		if r.Key == corev1.LabelInstanceTypeStable {
			for _, v := range r.Values {
				allowed[v] = true
			}
		}
	}
	for _, nc := range claims.Items {
		l := nc.Labels
		if l[v1.CapacityTypeLabelKey] != "spot" || !allowed[l[corev1.LabelInstanceTypeStable]] ||
			(l[corev1.LabelTopologyZone] != "ap-northeast-2a" && l[corev1.LabelTopologyZone] != "ap-northeast-2c") {
			t.Errorf("nodeclaim %s launched %s %s in %s, outside the pool's and the job's requirements", nc.Name,
				l[v1.CapacityTypeLabelKey], l[corev1.LabelInstanceTypeStable], l[corev1.LabelTopologyZone])
		}
		if !meta.IsStatusConditionTrue(nc.Status.Conditions, v1.ConditionTypeInitialized) {
			t.Errorf("nodeclaim %s never initialized: %v", nc.Name, nc.Status.Conditions)
		}
		// Job pods bound to it and finished: the pod events controller
		// stamped it (consolidateAfter counts from this).
		if last := nc.Status.LastPodEventTime; last.Before(&nc.CreationTimestamp) {
			t.Errorf("nodeclaim %s: lastPodEventTime %v, before its creation %v", nc.Name, last, nc.CreationTimestamp)
		}
	}
	if o, err := orphans(ctx, np.Name); err != nil || len(o) > 0 {
		t.Errorf("instances without a NodeClaim: %v %v", o, err)
	}
	cp.Eventually(t, 30*time.Second, "the pool's spot cost reported", func(ctx context.Context) (bool, error) {
		if cost := metricSum(t, "nodewright_cost_per_hour", np.Name); cost <= 0 {
			return false, fmt.Errorf("nodewright_cost_per_hour{nodepool=%q} sums to %v", np.Name, cost)
		}
		return true, nil
	})
	for _, m := range []string{"nodewright_nodeclaims_created_total", "nodewright_nodeclaims_launched_total", "nodewright_nodeclaims_initialized_total"} {
		if n := metricSum(t, m, np.Name); n != float64(len(claims.Items)) {
			t.Errorf("%s{nodepool=%q} = %v, want %d", m, np.Name, n, len(claims.Items))
		}
	}
	got := &v1.NodePool{}
	if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(np), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Nodes == nil || *got.Status.Nodes != int64(len(claims.Items)) {
		t.Errorf("nodepool status counts %v nodes, there are %d nodeclaims", got.Status.Nodes, len(claims.Items))
	}
}

// With the cheaper half of the pool's spot pools out of capacity, launches
// hit InsufficientInstanceCapacity, those offerings are cached out, and the
// Job still completes on the other half.
func TestJobCompletesWithHalfTheSpotPoolsOut(t *testing.T) {
	ns := cp.Namespace(t)
	np := seedPool(t, "batch-scarce")
	snap, err := catalog.EmbeddedSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.New(snap, "ap-northeast-2", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	type pool struct {
		it, zone string
		price    float64
	}
	var pools []pool
	for _, r := range np.Spec.Template.Spec.Requirements {
		if r.Key != corev1.LabelInstanceTypeStable {
			continue
		}
		for _, name := range r.Values {
			for _, o := range cat.Get(name).Offerings {
				if o.CapacityType == "spot" && (o.Zone == "ap-northeast-2a" || o.Zone == "ap-northeast-2c") {
					pools = append(pools, pool{name, o.Zone, o.Price})
				}
			}
		}
	}
	sort.Slice(pools, func(i, j int) bool { return pools[i].price < pools[j].price })
	out := pools[:len(pools)/2]
	for _, p := range out {
		e.Sim.InsufficientCapacity(p.it, p.zone, "spot")
	}
	t.Cleanup(e.Sim.Heal)
	t.Logf("%d of %d spot pools of the nodepool out of capacity, the cheapest first: %v", len(out), len(pools), out)

	createPool(t, np)
	runJob(t, seedJob(t, ns, 30, np.Name), np, 5*time.Minute)

	var claims v1.NodeClaimList
	if err := cp.Client.List(context.Background(), &claims, client.MatchingLabels{v1.NodePoolLabelKey: np.Name}); err != nil {
		t.Fatal(err)
	}
	for _, nc := range claims.Items {
		for _, p := range out {
			if nc.Labels[corev1.LabelInstanceTypeStable] == p.it && nc.Labels[corev1.LabelTopologyZone] == p.zone {
				t.Errorf("nodeclaim %s launched in %s %s, a pool with no capacity", nc.Name, p.it, p.zone)
			}
		}
	}
}

// Deleting a NodeClaim drains its node through evictions, terminates its
// instance and removes the Node; the Deployment's pods move to a new node.
func TestDeletingANodeClaimDrainsAndTerminates(t *testing.T) {
	ctx := context.Background()
	ns := cp.Namespace(t)
	np := seedPool(t, "batch-delete")
	createPool(t, np)
	labels := map[string]string{"app": "web"}
	if err := cp.Client.Create(ctx, deploymentOnPool(ns, "web", np.Name, 2)); err != nil {
		t.Fatal(err)
	}
	first := runningOnOneClaim(t, ns, "web", np.Name, 2)
	id := instanceID(first.Status.ProviderID)
	if err := cp.Client.Delete(ctx, &first); err != nil {
		t.Fatal(err)
	}
	cp.Eventually(t, 2*time.Minute, "the deleted nodeclaim's instance terminated and its node gone", func(ctx context.Context) (bool, error) {
		if err := instanceGone(id); err != nil {
			return false, err
		}
		err := cp.Client.Get(ctx, client.ObjectKey{Name: first.Status.NodeName}, &corev1.Node{})
		if err == nil {
			return false, fmt.Errorf("node %s still there", first.Status.NodeName)
		}
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(&first), &v1.NodeClaim{}); err == nil {
			return false, fmt.Errorf("nodeclaim %s still there", first.Name)
		}
		return true, client.IgnoreNotFound(err)
	})
	cp.Eventually(t, 2*time.Minute, "the web pods running again on a new node", func(ctx context.Context) (bool, error) {
		return true, running(ctx, ns, labels, 2)
	})
}

func running(ctx context.Context, ns string, labels map[string]string, want int) error {
	var pods corev1.PodList
	if err := cp.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
		return err
	}
	n := 0
	var not []string
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp.IsZero() {
			n++
		} else {
			not = append(not, p.Name+" "+string(p.Status.Phase))
		}
	}
	if n < want {
		return fmt.Errorf("%d of %d running; others: %v", n, want, not)
	}
	return nil
}

// An instance tagged for the cluster whose NodeClaim vanished without
// terminating it is found and terminated by garbage collection.
func TestOrphanInstanceIsTerminated(t *testing.T) {
	ctx := context.Background()
	np := seedPool(t, "batch-orphan")
	np.Spec.Template.Spec.Requirements = append(np.Spec.Template.Spec.Requirements, v1.NodeSelectorRequirementWithMinValues{
		Key: v1.CapacityTypeLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{"on-demand"}})
	createPool(t, np)
	nc := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "orphan-", Labels: map[string]string{v1.NodePoolLabelKey: np.Name}},
		Spec: v1.NodeClaimSpec{
			NodeClassRef: np.Spec.Template.Spec.NodeClassRef,
			Requirements: np.Spec.Template.Spec.Requirements,
			Resources:    v1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}},
		},
	}
	if err := cp.Client.Create(ctx, nc); err != nil {
		t.Fatal(err)
	}
	// Not owned by the pool: if the test stops early, delete it here.
	t.Cleanup(func() { _ = cp.Client.Delete(ctx, nc) })
	cp.Eventually(t, time.Minute, "the nodeclaim launched", func(ctx context.Context) (bool, error) {
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(nc), nc); err != nil {
			return false, err
		}
		if nc.Status.ProviderID == "" {
			return false, fmt.Errorf("not launched: %v", nc.Status.Conditions)
		}
		return true, nil
	})
	id := instanceID(nc.Status.ProviderID)
	// Gone from the cluster without its finalizer running: the instance is
	// now nobody's.
	patch := client.MergeFrom(nc.DeepCopy())
	nc.Finalizers = nil
	if err := cp.Client.Patch(ctx, nc, patch); err != nil {
		t.Fatal(err)
	}
	if err := cp.Client.Delete(ctx, nc); client.IgnoreNotFound(err) != nil {
		t.Fatal(err)
	}
	cp.Eventually(t, 2*time.Minute, "the orphaned instance "+id+" terminated", func(ctx context.Context) (bool, error) {
		if err := instanceGone(id); err != nil {
			return false, err
		}
		return true, nil
	})
}

// Draining goes through the Eviction API: with a PodDisruptionBudget of
// minAvailable 1 over two replicas on the node, the second eviction waits
// until the first pod's replacement runs elsewhere, so at no point is no
// replica running.
func TestDrainHonoursPodDisruptionBudget(t *testing.T) {
	ctx := context.Background()
	ns := cp.Namespace(t)
	np := seedPool(t, "batch-pdb")
	createPool(t, np)
	for _, obj := range []*unstructured.Unstructured{
		{Object: map[string]any{
			"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
			"metadata": map[string]any{"name": "api", "namespace": ns},
			"spec":     map[string]any{"minAvailable": int64(1), "selector": map[string]any{"matchLabels": map[string]any{"app": "api"}}},
		}},
		deploymentOnPool(ns, "api", np.Name, 2),
	} {
		if err := cp.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
		// Before the pool goes (cleanups run last first): a budget over
		// pods with nowhere to go would rightly hold the last node forever.
		t.Cleanup(func() { _ = cp.Client.Delete(ctx, obj) })
	}
	labels := map[string]string{"app": "api"}
	first := runningOnOneClaim(t, ns, "api", np.Name, 2)
	if err := cp.Client.Delete(ctx, &first); err != nil {
		t.Fatal(err)
	}
	var violation error
	cp.Eventually(t, 2*time.Minute, "the node drained within the budget and gone", func(ctx context.Context) (bool, error) {
		if err := running(ctx, ns, labels, 1); err != nil && violation == nil {
			violation = fmt.Errorf("the budget was broken: %w", err)
		}
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(&first), &v1.NodeClaim{}); err == nil {
			return false, fmt.Errorf("nodeclaim %s still draining", first.Name)
		} else if client.IgnoreNotFound(err) != nil {
			return false, err
		}
		return true, running(ctx, ns, labels, 2)
	})
	if violation != nil {
		t.Error(violation)
	}
}

// A pod marked karpenter.sh/do-not-disrupt is not evicted; it holds the
// node until the claim's terminationGracePeriod is about to end: it is
// deleted at the deadline minus its own grace period (5 s here), so its
// graceful shutdown is over when the instance goes at the deadline. (A run
// on a loaded machine once saw the pod deleted a second late with 4 s, the
// time left: correct, and accepted below; only a grace ending before the
// deadline while more was left fails.)
func TestDoNotDisruptHoldsUntilTerminationGracePeriod(t *testing.T) {
	ctx := context.Background()
	ns := cp.Namespace(t)
	np := seedPool(t, "batch-tgp")
	grace := 15 * time.Second
	np.Spec.Template.Spec.TerminationGracePeriod = v1.NewDuration(grace)
	createPool(t, np)
	pod := podOnPool(ns, "precious", np.Name)
	pod.Annotations = map[string]string{v1.DoNotDisruptAnnotationKey: "true"}
	podGrace := 5 * time.Second
	pod.Spec.TerminationGracePeriodSeconds = ptr.To(int64(podGrace / time.Second))
	if err := cp.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	var nc v1.NodeClaim
	cp.Eventually(t, 2*time.Minute, "the pod running on a nodewright node", func(ctx context.Context) (bool, error) {
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err
		}
		if pod.Status.Phase != corev1.PodRunning {
			return false, fmt.Errorf("pod is %s", pod.Status.Phase)
		}
		one, err := onlyClaim(ctx, np.Name)
		if err != nil {
			return false, err
		}
		nc = *one
		return true, nil
	})
	if err := cp.Client.Delete(ctx, &nc); err != nil {
		t.Fatal(err)
	}
	if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(&nc), &nc); err != nil {
		t.Fatal(err)
	}
	deadline := nc.DeletionTimestamp.Add(grace)
	deleteAt := deadline.Add(-podGrace)
	var early error
	cp.Eventually(t, 2*time.Minute, "the pod gone after the grace period and the claim with it", func(ctx context.Context) (bool, error) {
		got := &corev1.Pod{}
		err := cp.Client.Get(ctx, client.ObjectKeyFromObject(pod), got)
		gone := err != nil || !got.DeletionTimestamp.IsZero()
		// The apiserver's timestamps have one-second resolution.
		if gone && time.Now().Before(deleteAt.Add(-time.Second)) && early == nil {
			early = fmt.Errorf("the do-not-disrupt pod went %s before its deletion time", time.Until(deleteAt).Round(time.Second))
		}
		// The pod gets its own grace, or, when the controller reaches it
		// late (a loaded machine), all the time left to the deadline: its
		// shutdown then still ends when the instance goes. Less than both
		// is a pod cut short.
		if err == nil && got.DeletionGracePeriodSeconds != nil && early == nil {
			given := time.Duration(*got.DeletionGracePeriodSeconds) * time.Second
			ends := got.DeletionTimestamp.Time
			if given > podGrace || given < podGrace && ends.Before(deadline.Add(-2*time.Second)) {
				early = fmt.Errorf("the pod was deleted with a grace period of %s ending %s before the deadline, want its own %s or all the time left",
					given, deadline.Sub(ends).Round(time.Second), podGrace)
			}
		}
		if !gone {
			return false, fmt.Errorf("pod still there, %s of grace left", time.Until(deadline).Round(time.Second))
		}
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(&nc), &v1.NodeClaim{}); err == nil {
			return false, fmt.Errorf("nodeclaim %s still there", nc.Name)
		}
		return true, nil
	})
	if early != nil {
		t.Error(early)
	}
}

// Deleting a Node (kubectl delete node) deletes its NodeClaim, which
// terminates the instance.
func TestDeletingANodeTerminatesItsInstance(t *testing.T) {
	ctx := context.Background()
	ns := cp.Namespace(t)
	np := seedPool(t, "batch-nodedelete")
	createPool(t, np)
	if err := cp.Client.Create(ctx, podOnPool(ns, "p", np.Name)); err != nil {
		t.Fatal(err)
	}
	var nc v1.NodeClaim
	cp.Eventually(t, 2*time.Minute, "a registered nodeclaim", func(ctx context.Context) (bool, error) {
		one, err := onlyClaim(ctx, np.Name)
		if err != nil {
			return false, err
		}
		nc = *one
		if nc.Status.NodeName == "" {
			return false, fmt.Errorf("nodeclaim %s not registered", nc.Name)
		}
		return true, nil
	})
	if err := cp.Client.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nc.Status.NodeName}}); err != nil {
		t.Fatal(err)
	}
	id := instanceID(nc.Status.ProviderID)
	cp.Eventually(t, 2*time.Minute, "the node's claim gone and instance terminated", func(ctx context.Context) (bool, error) {
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(&nc), &v1.NodeClaim{}); err == nil {
			return false, fmt.Errorf("nodeclaim %s still there", nc.Name)
		}
		if err := instanceGone(id); err != nil {
			return false, err
		}
		return true, nil
	})
}

// A NodeClaim whose instance vanished before its Node registered
// (terminated outside nodewright) is deleted by garbage collection.
func TestClaimOfVanishedInstanceIsDeleted(t *testing.T) {
	ctx := context.Background()
	ns := cp.Namespace(t)
	np := seedPool(t, "batch-vanish")
	createPool(t, np)
	// No EventBridge notice of the termination: garbage collection alone
	// must notice.
	e.Sim.RouteEventsTo("")
	t.Cleanup(func() { e.Sim.RouteEventsTo(interruptionQueue) })
	// Instances stay pending: no Node will register, so only garbage
	// collection can notice the instance is gone.
	e.Sim.SetLaunchDelay(time.Hour)
	t.Cleanup(func() { e.Sim.SetLaunchDelay(0) })
	if err := cp.Client.Create(ctx, podOnPool(ns, "p", np.Name)); err != nil {
		t.Fatal(err)
	}
	var nc v1.NodeClaim
	cp.Eventually(t, 2*time.Minute, "a launched nodeclaim", func(ctx context.Context) (bool, error) {
		one, err := onlyClaim(ctx, np.Name)
		if err != nil {
			return false, err
		}
		nc = *one
		if nc.Status.ProviderID == "" {
			return false, fmt.Errorf("not launched")
		}
		return true, nil
	})
	id := instanceID(nc.Status.ProviderID)
	// Someone else's key: the IAM check of nodewright's calls leaves it out.
	ec2c := ec2.New(ec2.Options{Region: env.Region, BaseEndpoint: sdkaws.String(e.Sim.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDOPERATOR", "simulator", "")})
	if _, err := ec2c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatal(err)
	}
	cp.Eventually(t, time.Minute, "the claim of the vanished instance deleted", func(ctx context.Context) (bool, error) {
		err := cp.Client.Get(ctx, client.ObjectKeyFromObject(&nc), &v1.NodeClaim{})
		if err == nil {
			return false, fmt.Errorf("nodeclaim %s still there", nc.Name)
		}
		return true, client.IgnoreNotFound(err)
	})
}
