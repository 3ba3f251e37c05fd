package adoption

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/ec2sim"
)

// instanceGone is nil once the instance is shutting down or terminated.
func instanceGone(id string) error {
	in, ok := e.Sim.Instance(id)
	if ok && in.State != ec2sim.StateTerminated && in.State != ec2sim.StateShuttingDown {
		return fmt.Errorf("instance %s is %s", id, in.State)
	}
	return nil
}

// gone is nil once a's claim, Node and instance are all gone.
func gone(ctx context.Context, a *adopted) error {
	if err := cp.Client.Get(ctx, client.ObjectKey{Name: a.claim}, &v1.NodeClaim{}); client.IgnoreNotFound(err) != nil {
		return err
	} else if err == nil {
		return fmt.Errorf("nodeclaim %s still there", a.claim)
	}
	if err := cp.Client.Get(ctx, client.ObjectKey{Name: a.node}, &corev1.Node{}); client.IgnoreNotFound(err) != nil {
		return err
	} else if err == nil {
		return fmt.Errorf("node %s still there", a.node)
	}
	return instanceGone(a.instanceID)
}

// nodewrightCalls are nodewright's calls of action whose checks name
// resource or tag the pool.
func nodewrightCalls(action, resource, pool string) []ec2sim.Call {
	var out []ec2sim.Call
	for _, c := range e.Sim.AuditLog() {
		if c.Caller != ec2sim.SimulatorAccessKeyID || c.Action != action || c.Error != "" {
			continue
		}
		for _, ch := range c.Checks {
			if (resource != "" && strings.Contains(ch.Resource, resource)) || (pool != "" && ch.RequestTags[v1.NodePoolLabelKey] == pool) {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// Karpenter's nodes are adopted as they are: after a garbage collection
// pass over every instance (it terminated the one instance Karpenter never
// recorded in a claim) and after drift has judged the claims (it re-stamps
// Karpenter's hash versions with nodewright's), the nodes with pods keep
// their claims, provider IDs, Nodes and running instances, are not drifted,
// and nodewright launched nothing for their pool and terminated none of
// them; the class uses the instance profile Karpenter made for its role
// and recorded in its status, whose name nodewright cannot derive (fails
// when nodewright reads only the name it derives: tried that, "nodewright
// created an instance profile"). A
// claim Karpenter launched an instance for but never recorded gets that
// instance, not a second one (fails when Create ignores the instance
// already tagged with the claim: tried skipping that lookup). Fails when nodewright's bookkeeping is expected on Karpenter's
// claims: tried making garbage collection own an instance only for a claim
// with nodewright's nodewright.io/subnet-id annotation (both adopted
// instances terminated), and making drift judge a claim without that
// annotation as drifted (the adopted claims replaced).
func TestKarpenterNodesAreAdoptedAsTheyAre(t *testing.T) {
	cp.Eventually(t, 90*time.Second, "garbage collection terminated the instance no claim records", func(context.Context) (bool, error) {
		return true, instanceGone(lost.instanceID)
	})
	cp.Eventually(t, time.Minute, "drift re-stamped Karpenter's hash versions", func(ctx context.Context) (bool, error) {
		for _, a := range stay {
			nc := &v1.NodeClaim{}
			if err := cp.Client.Get(ctx, client.ObjectKey{Name: a.claim}, nc); err != nil {
				return false, err
			}
			if v := nc.Annotations[v1.NodePoolHashVersionAnnotationKey]; v != v1.NodePoolHashVersion {
				return false, fmt.Errorf("nodeclaim %s: hash version %s", a.claim, v)
			}
		}
		return true, nil
	})
	cp.Eventually(t, time.Minute, "the claim Karpenter left mid-launch recorded its instance and initialized", func(ctx context.Context) (bool, error) {
		nc := &v1.NodeClaim{}
		if err := cp.Client.Get(ctx, client.ObjectKey{Name: midLaunch.claim}, nc); err != nil {
			return false, err
		}
		if nc.Status.ProviderID != midLaunch.providerID {
			return false, fmt.Errorf("nodeclaim %s has provider id %q, its instance is %q", nc.Name, nc.Status.ProviderID, midLaunch.providerID)
		}
		if !meta.IsStatusConditionTrue(nc.Status.Conditions, v1.ConditionTypeInitialized) {
			return false, fmt.Errorf("nodeclaim %s not initialized: %v", nc.Name, nc.Status.Conditions)
		}
		return true, nil
	})
	ctx := context.Background()
	for _, a := range stay {
		nc := &v1.NodeClaim{}
		if err := cp.Client.Get(ctx, client.ObjectKey{Name: a.claim}, nc); err != nil {
			t.Fatalf("adopted nodeclaim %s: %v", a.claim, err)
		}
		if !nc.DeletionTimestamp.IsZero() {
			t.Errorf("adopted nodeclaim %s is being deleted (%v)", a.claim, nc.Annotations)
		}
		if nc.Status.ProviderID != a.providerID {
			t.Errorf("adopted nodeclaim %s has provider id %q, Karpenter recorded %q", a.claim, nc.Status.ProviderID, a.providerID)
		}
		if c := meta.FindStatusCondition(nc.Status.Conditions, v1.ConditionTypeDrifted); c != nil && c.Status == "True" {
			t.Errorf("adopted nodeclaim %s drifted: %s %s", a.claim, c.Reason, c.Message)
		}
		node := &corev1.Node{}
		if err := cp.Client.Get(ctx, client.ObjectKey{Name: a.node}, node); err != nil {
			t.Errorf("node %s of adopted nodeclaim %s: %v", a.node, a.claim, err)
		} else if node.Spec.Unschedulable || !node.DeletionTimestamp.IsZero() {
			t.Errorf("node %s of adopted nodeclaim %s is cordoned or deleting", a.node, a.claim)
		}
		if in, _ := e.Sim.Instance(a.instanceID); in.State != ec2sim.StateRunning {
			t.Errorf("instance %s of adopted nodeclaim %s is %s", a.instanceID, a.claim, in.State)
		}
		if calls := nodewrightCalls("ec2:TerminateInstances", a.instanceID, ""); len(calls) > 0 {
			t.Errorf("nodewright terminated %s of adopted nodeclaim %s", a.instanceID, a.claim)
		}
	}
	if calls := nodewrightCalls("ec2:CreateFleet", "", poolMain); len(calls) > 0 {
		t.Errorf("nodewright launched %d fleets for pool %s, whose pods all had nodes", len(calls), poolMain)
	}
	// The class's instance profile is the one Karpenter made for its role.
	class := &awsv1.EC2NodeClass{}
	if err := cp.Client.Get(ctx, client.ObjectKey{Name: nodeClassName}, class); err != nil {
		t.Fatal(err)
	}
	if want := karpenterProfileName(nodeClassName); class.Status.InstanceProfile != want {
		t.Errorf("EC2NodeClass %s uses instance profile %q, want Karpenter's %q", nodeClassName, class.Status.InstanceProfile, want)
	}
	for _, c := range e.Sim.AuditLog() {
		if c.Caller == ec2sim.SimulatorAccessKeyID && c.Action == "iam:CreateInstanceProfile" {
			t.Errorf("nodewright created an instance profile: %+v", c.Checks)
		}
	}
	var pods corev1.PodList
	if err := cp.Client.List(ctx, &pods, client.InNamespace(workloads)); err != nil {
		t.Fatal(err)
	}
	for _, a := range stay {
		found := false
		for _, p := range pods.Items {
			found = found || (p.Name == a.claim && p.Spec.NodeName == a.node && p.DeletionTimestamp.IsZero())
		}
		if !found {
			t.Errorf("pod %s no longer runs on adopted node %s", a.claim, a.node)
		}
	}
}

// An adopted empty node of a WhenEmpty pool is consolidated: its claim,
// Node and instance go.
func TestEmptyKarpenterNodeIsConsolidated(t *testing.T) {
	cp.Eventually(t, time.Minute, "the empty adopted node removed", func(ctx context.Context) (bool, error) {
		return true, gone(ctx, empty)
	})
}

// Deleting an adopted NodeClaim evicts the pod bound to its node and
// terminates its instance; Karpenter's finalizers on the claim and the Node
// do not hold either.
func TestDeletingAKarpenterNodeClaimDrainsAndTerminates(t *testing.T) {
	ctx := context.Background()
	pod := &corev1.Pod{}
	if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: workloads, Name: deleted.claim}, pod); err != nil {
		t.Fatal(err)
	}
	nc := &v1.NodeClaim{}
	if err := cp.Client.Get(ctx, client.ObjectKey{Name: deleted.claim}, nc); err != nil {
		t.Fatal(err)
	}
	if err := cp.Client.Delete(ctx, nc); err != nil {
		t.Fatal(err)
	}
	cp.Eventually(t, time.Minute, "the deleted claim's pod evicted and its node and instance gone", func(ctx context.Context) (bool, error) {
		p := &corev1.Pod{}
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(pod), p); err == nil && p.UID == pod.UID && p.DeletionTimestamp.IsZero() {
			return false, fmt.Errorf("pod %s still on %s", pod.Name, deleted.node)
		} else if client.IgnoreNotFound(err) != nil {
			return false, err
		}
		return true, gone(ctx, deleted)
	})
}

// watch follows a's replacement from before nodewright runs (expiry may
// come before its test does): every 100ms it notes whether the pool's
// workload pod left a's node before a replacement was initialized, until the
// pod runs on a replacement and a's claim, Node and instance are gone.
type watch struct {
	a        *adopted
	original map[types.UID]bool

	mu    sync.Mutex
	early string
	done  bool
	last  error
}

// watchReplacement starts watching a until ctx ends.
func watchReplacement(ctx context.Context, a *adopted) (*watch, error) {
	var pods corev1.PodList
	if err := cp.Client.List(ctx, &pods, client.InNamespace(workloads), client.MatchingLabels{"app": a.pool}); err != nil {
		return nil, err
	}
	w := &watch{a: a, original: map[types.UID]bool{}}
	for _, p := range pods.Items {
		if p.Spec.NodeName != a.node {
			return nil, fmt.Errorf("pod %s runs on %s, not on the adopted node %s", p.Name, p.Spec.NodeName, a.node)
		}
		w.original[p.UID] = true
	}
	go func() {
		_ = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			done, err := w.check(ctx)
			w.mu.Lock()
			defer w.mu.Unlock()
			w.done, w.last = done, err
			return done, nil
		})
	}()
	return w, nil
}

func (w *watch) check(ctx context.Context) (bool, error) {
	a := w.a
	var claims v1.NodeClaimList
	if err := cp.Client.List(ctx, &claims, client.MatchingLabels{v1.NodePoolLabelKey: a.pool}); err != nil {
		return false, err
	}
	var replacement *v1.NodeClaim
	for i, nc := range claims.Items {
		if nc.Name != a.claim && meta.IsStatusConditionTrue(nc.Status.Conditions, v1.ConditionTypeInitialized) {
			replacement = &claims.Items[i]
		}
	}
	var pods corev1.PodList
	if err := cp.Client.List(ctx, &pods, client.InNamespace(workloads), client.MatchingLabels{"app": a.pool}); err != nil {
		return false, err
	}
	staying, onReplacement := 0, 0
	for _, p := range pods.Items {
		if w.original[p.UID] && p.DeletionTimestamp.IsZero() {
			staying++
		}
		if replacement != nil && p.Spec.NodeName == replacement.Status.NodeName && p.Status.Phase == corev1.PodRunning {
			onReplacement++
		}
	}
	if staying < len(w.original) && replacement == nil {
		w.mu.Lock()
		if w.early == "" {
			w.early = fmt.Sprintf("the pod left %s before any replacement was initialized", a.node)
		}
		w.mu.Unlock()
	}
	if err := gone(ctx, a); err != nil {
		return false, err
	}
	if onReplacement != 1 {
		return false, fmt.Errorf("%d pods running on a replacement", onReplacement)
	}
	return true, nil
}

// replacedFirst waits until w saw the workload move to a replacement and
// the adopted node go, and fails if the pod left before the replacement was
// initialized.
func replacedFirst(t *testing.T, w *watch) {
	t.Helper()
	cp.Eventually(t, 2*time.Minute, "the workload moved to a replacement and the adopted node gone", func(context.Context) (bool, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.done, w.last
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.early != "" {
		t.Error(w.early)
	}
}

// An adopted claim expires after its expireAfter (Karpenter's, copied
// from its pool): the replacement is launched first, then the node drained
// and its instance terminated. Fails when expiry drains at once: tried
// passing a zero drain-by time to disruption.Disrupt in the expiration
// controller ("the pod left ... before any replacement was initialized").
func TestExpiredKarpenterNodeIsReplaced(t *testing.T) {
	replacedFirst(t, expiringWatch)
	if len(nodewrightCalls("ec2:TerminateInstances", expiring.instanceID, "")) == 0 {
		t.Errorf("nodewright never terminated the expired instance %s", expiring.instanceID)
	}
}

// A spot interruption warning for an adopted spot instance replaces it
// first, drains it and terminates it.
func TestInterruptedKarpenterSpotNodeIsReplaced(t *testing.T) {
	if err := e.Sim.Interrupt(spot.instanceID); err != nil {
		t.Fatal(err)
	}
	replacedFirst(t, spotWatch)
}
