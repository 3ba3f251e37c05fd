// Package termination finishes a deleted NodeClaim: it taints the Node
// karpenter.sh/disrupted:NoSchedule, drains it through the Eviction API (so
// PodDisruptionBudgets hold; ordinary pods before critical ones), terminates
// the instance, removes the Node and finally the claim's finalizer.
// DaemonSet and mirror pods are left to die with the node; pods marked
// karpenter.sh/do-not-disrupt wait for the claim's terminationGracePeriod.
// With one, each pod is deleted at the deadline minus its own grace period,
// so it gets its whole graceful shutdown before the instance goes.
package termination

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nodewright/nodewright/pkg/controllers/disruption"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
	"github.com/nodewright/nodewright/pkg/controllers"
	"github.com/nodewright/nodewright/pkg/metrics"
	"github.com/nodewright/nodewright/pkg/state"
)

// Recorder emits Kubernetes events.
type Recorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Terminator is the part of the cloud provider this controller uses.
type Terminator interface {
	Get(ctx context.Context, providerID string) (*v1.NodeClaim, error)
	Delete(ctx context.Context, claim *v1.NodeClaim) error
}

// Room tells whether pods would have room on other running nodes.
type Room interface {
	FitsElsewhere(ctx context.Context, pods []*corev1.Pod) (bool, error)
}

// Controller drains and terminates deleted NodeClaims.
type Controller struct {
	Kube     client.Client
	Cloud    Terminator
	Recorder Recorder
	// Room, when set, lets a claim with a drain-by time (a disruption that
	// launches the replacement first) hold its drain until its pods have
	// room elsewhere. Without it such claims drain at once.
	Room Room
	// Now is the clock; default time.Now.
	Now func() time.Time

	// claims holds, per claim UID, what this replica learnt while
	// terminating it (*claimState). Lost on restart, which only costs a
	// repeated check, a repeated event, or the replacement wait re-checked.
	claims sync.Map
}

// claimState is what the controller remembers about one deleting claim
// between passes.
type claimState struct {
	// mu guards told and the back-off; draining and checked are only used
	// by the claim's own reconcile, which the work queue never runs twice
	// at once.
	mu sync.Mutex
	// draining: the replacement-first wait ended, so evictions that free
	// room elsewhere for some pods do not make the rest wait again.
	draining bool
	// checked is when the instance was last seen running; it is looked up
	// again after instanceCheckEvery, not on every pass.
	checked time.Time
	// left and idle drive the back-off: passes in a row that moved no pod.
	left, idle int
	// told holds the events already emitted, so a blocked drain says so
	// once, not on every pass.
	told map[string]bool
}

const (
	// minRequeue and maxRequeue bound the back-off of a drain that is
	// blocked (a PDB, a do-not-disrupt pod, pods still terminating): it
	// doubles on every pass that moved nothing. Pods leaving the node wake
	// the claim at once, so the back-off only paces the Eviction API calls
	// a PDB keeps refusing.
	minRequeue = 2 * time.Second
	maxRequeue = 30 * time.Second
	// instanceCheckEvery bounds how often a draining claim's instance is
	// described to learn it was reclaimed meanwhile (then the drain stops).
	instanceCheckEvery = time.Minute
	// terminatingRequeue is how soon an instance shutting down is looked at
	// again; EC2 takes tens of seconds to report it terminated.
	terminatingRequeue = 5 * time.Second
)

// Reconcile advances the termination of one NodeClaim.
func (c *Controller) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	nc := &v1.NodeClaim{}
	if err := c.Kube.Get(ctx, req.NamespacedName, nc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if nc.DeletionTimestamp.IsZero() || !controllerutil.ContainsFinalizer(nc, v1.TerminationFinalizer) {
		return ctrl.Result{}, nil
	}
	logger := log.FromContext(ctx).WithValues("nodeclaim", nc.Name)
	st := c.state(nc)
	node, err := c.node(ctx, nc)
	if err != nil {
		return ctrl.Result{}, err
	}
	terminating := meta.IsStatusConditionTrue(nc.Status.Conditions, v1.ConditionTypeInstanceTerminating)
	// No drain when there is nothing left to drain from: the instance is
	// gone (reclaimed, terminated outside nodewright) or already ending.
	// Its pods cannot finish terminating without a kubelet; they are
	// cleaned up once the Node object goes.
	drain := node != nil && !terminating
	// A claim whose instance the cloud is taking (a spot interruption) races
	// it: its instance is looked at on every pass (the provider batches the
	// reads), so a reclaimed node stops holding its pods at once.
	urgent := disruption.CloudDriven(nc)
	if drain && nc.Status.ProviderID != "" && (urgent || c.now().Sub(st.checked) >= instanceCheckEvery) {
		if _, err := c.Cloud.Get(ctx, nc.Status.ProviderID); cloudprovider.IsNotFound(err) {
			logger.Info("instance gone, skipping the drain", "providerID", nc.Status.ProviderID)
			drain = false
		} else if err != nil {
			return ctrl.Result{}, fmt.Errorf("checking instance of nodeclaim %s: %w", nc.Name, err)
		} else {
			st.checked = c.now()
		}
	}
	if drain {
		if err := c.taint(ctx, node); err != nil {
			return ctrl.Result{}, err
		}
		if wait, err := c.waitForReplacement(ctx, nc, node, st); err != nil || wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, err
		}
		pass, err := c.drain(ctx, nc, node, st)
		if err != nil {
			return ctrl.Result{}, err
		}
		deadline, bounded := c.deadline(nc)
		if pass.left > 0 && (!bounded || c.now().Before(deadline)) {
			wait := st.backoff(pass.left)
			if urgent {
				// No back-off: a PDB that allows an eviction again must be
				// used before the instance goes.
				wait = minRequeue
			}
			if pass.next > 0 {
				wait = min(wait, pass.next)
			}
			if bounded {
				wait = min(wait, deadline.Sub(c.now()))
			}
			return ctrl.Result{RequeueAfter: wait}, nil
		}
		reason := "Drained"
		if pass.left > 0 {
			reason = "TerminationGracePeriodElapsed"
		}
		if err := c.setCondition(ctx, nc, v1.ConditionTypeDrained, reason); err != nil {
			return ctrl.Result{}, err
		}
	}
	if nc.Status.ProviderID != "" {
		gone, err := c.terminate(ctx, nc, terminating)
		if err != nil || !gone {
			return ctrl.Result{RequeueAfter: terminatingRequeue}, err
		}
	}
	if node != nil {
		if err := c.removeNode(ctx, node); err != nil {
			return ctrl.Result{}, err
		}
	}
	patch := client.MergeFromWithOptions(nc.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(nc, v1.TerminationFinalizer)
	if err := c.Kube.Patch(ctx, nc, patch); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("removing finalizer of nodeclaim %s: %w", nc.Name, err)
	}
	c.claims.Delete(nc.UID)
	metrics.NodeClaimsTerminated.WithLabelValues(nc.Labels[v1.NodePoolLabelKey]).Inc()
	logger.Info("terminated", "providerID", nc.Status.ProviderID, "node", nc.Status.NodeName)
	return ctrl.Result{}, nil
}

// terminate ends the claim's instance and reports whether it is gone. The
// first call terminates it; once the claim says InstanceTerminating, later
// calls only describe it (a read, batched with the other claims' by the
// provider) until EC2 no longer reports it running.
func (c *Controller) terminate(ctx context.Context, nc *v1.NodeClaim, terminating bool) (bool, error) {
	if terminating {
		_, err := c.Cloud.Get(ctx, nc.Status.ProviderID)
		if cloudprovider.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("checking instance of nodeclaim %s: %w", nc.Name, err)
		}
		return false, nil
	}
	err := c.Cloud.Delete(ctx, nc)
	if cloudprovider.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("terminating instance of nodeclaim %s: %w", nc.Name, err)
	}
	return false, c.setCondition(ctx, nc, v1.ConditionTypeInstanceTerminating, "InstanceTerminating")
}

// state is the claim's remembered state, made on first use.
func (c *Controller) state(nc *v1.NodeClaim) *claimState {
	st, _ := c.claims.LoadOrStore(nc.UID, &claimState{told: map[string]bool{}})
	return st.(*claimState)
}

// backoff returns how long to wait before the next pass of a drain with
// left pods to go: the minimum after a pass that moved pods, doubling up to
// the maximum while none move.
func (s *claimState) backoff(left int) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.left == 0 || left < s.left {
		s.idle = 0
	} else {
		s.idle++
	}
	s.left = left
	return min(minRequeue<<min(s.idle, 5), maxRequeue)
}

// once runs emit the first time key is seen for the claim.
func (c *Controller) once(st *claimState, key string, emit func()) {
	st.mu.Lock()
	seen := st.told[key]
	st.told[key] = true
	st.mu.Unlock()
	if !seen {
		emit()
	}
}

func (c *Controller) node(ctx context.Context, nc *v1.NodeClaim) (*corev1.Node, error) {
	if nc.Status.ProviderID == "" {
		return nil, nil
	}
	var nodes corev1.NodeList
	if err := c.Kube.List(ctx, &nodes, client.MatchingFields{controllers.NodeProviderID: nc.Status.ProviderID}); err != nil {
		return nil, fmt.Errorf("finding node of nodeclaim %s: %w", nc.Name, err)
	}
	if len(nodes.Items) == 0 {
		return nil, nil
	}
	return &nodes.Items[0], nil
}

// taint keeps new pods off the node while it drains.
func (c *Controller) taint(ctx context.Context, node *corev1.Node) error {
	if disrupted(node) {
		return nil
	}
	// Optimistic lock: a merge patch replaces the whole taint list, which
	// would drop a taint another writer added since the cache saw the node.
	patch := client.MergeFromWithOptions(node.DeepCopy(), client.MergeFromWithOptimisticLock{})
	node.Spec.Taints = append(node.Spec.Taints, v1.DisruptedNoScheduleTaint)
	if err := c.Kube.Patch(ctx, node, patch); err != nil {
		return fmt.Errorf("tainting node %s disrupted: %w", node.Name, err)
	}
	return nil
}

// waitForReplacement holds the drain of a claim disrupted replacement-first
// (it has a drain-by time still ahead) while its pods have no room on other
// running nodes: the provisioner has planned their room already, and
// evicting them before it is up would leave them pending for a node's boot.
// It returns how long to wait before looking again, 0 to drain now.
func (c *Controller) waitForReplacement(ctx context.Context, nc *v1.NodeClaim, node *corev1.Node, st *claimState) (time.Duration, error) {
	by, ok := disruption.DrainBy(nc)
	if !ok || c.Room == nil {
		return 0, nil
	}
	if st.draining {
		return 0, nil
	}
	logger := log.FromContext(ctx).WithValues("nodeclaim", nc.Name, "node", node.Name)
	left := by.Sub(c.now())
	if left <= 0 {
		logger.Info("draining: replacement not ready by the drain-by time", "drainBy", by)
		st.draining = true
		return 0, nil
	}
	var pods corev1.PodList
	if err := c.Kube.List(ctx, &pods, client.MatchingFields{controllers.PodNodeName: node.Name}); err != nil {
		return 0, fmt.Errorf("listing pods of node %s: %w", node.Name, err)
	}
	var moving []*corev1.Pod
	for i := range pods.Items {
		if p := &pods.Items[i]; mustLeave(p) && state.Reschedulable(p) {
			moving = append(moving, p)
		}
	}
	fits, err := c.Room.FitsElsewhere(ctx, moving)
	if err != nil {
		return 0, fmt.Errorf("checking room for the pods of node %s: %w", node.Name, err)
	}
	if fits {
		logger.Info("draining: the pods have room on running nodes", "pods", len(moving), "drainBy", by)
		st.draining = true
		return 0, nil
	}
	logger.V(1).Info("waiting for replacement capacity before draining", "pods", len(moving), "drainBy", by)
	return min(minRequeue, left), nil
}

// removeNode lets the Node go: finalizer off, then delete.
func (c *Controller) removeNode(ctx context.Context, node *corev1.Node) error {
	if controllerutil.ContainsFinalizer(node, v1.TerminationFinalizer) {
		patch := client.MergeFromWithOptions(node.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.RemoveFinalizer(node, v1.TerminationFinalizer)
		if err := c.Kube.Patch(ctx, node, patch); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("removing finalizer of node %s: %w", node.Name, err)
		}
	}
	if err := c.Kube.Delete(ctx, node); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting node %s: %w", node.Name, err)
	}
	return nil
}

func (c *Controller) setCondition(ctx context.Context, nc *v1.NodeClaim, t, reason string) error {
	if meta.IsStatusConditionTrue(nc.Status.Conditions, t) {
		return nil
	}
	meta.SetStatusCondition(&nc.Status.Conditions, metav1.Condition{Type: t, Status: metav1.ConditionTrue, Reason: reason, ObservedGeneration: nc.Generation})
	if err := c.Kube.Status().Update(ctx, nc); err != nil {
		return fmt.Errorf("setting %s on nodeclaim %s: %w", t, nc.Name, err)
	}
	return nil
}

// deadline is when the claim's terminationGracePeriod runs out since its
// deletion: then nothing holds the instance any more. bounded is false
// without one (an invalid stored value, refused by the CRD since, bounds
// nothing either: the drain honours PDBs and do-not-disrupt as if unset).
func (c *Controller) deadline(nc *v1.NodeClaim) (deadline time.Time, bounded bool) {
	tgp := nc.Spec.TerminationGracePeriod
	if tgp == nil || tgp.Err() != nil || nc.DeletionTimestamp.IsZero() {
		return time.Time{}, false
	}
	return nc.DeletionTimestamp.Add(tgp.Duration), true
}

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// SetupWithManager watches NodeClaims, their Nodes, and the pods leaving
// nodes: a pod gone or going wakes the claim being drained at once, so the
// drain's back-off only paces what no event announces (a PDB that allows
// an eviction again).
func (c *Controller) SetupWithManager(mgr ctrl.Manager) error {
	leaving := predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			p, ok := e.ObjectNew.(*corev1.Pod)
			return ok && (!p.DeletionTimestamp.IsZero() || !mustLeave(p))
		},
	}
	return ctrl.NewControllerManagedBy(mgr).Named("nodeclaim.termination").
		WithOptions(controller.Options{MaxConcurrentReconciles: 50}).
		For(&v1.NodeClaim{}).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return claimOf(o)
		})).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			name := o.(*corev1.Pod).Spec.NodeName
			if name == "" {
				return nil
			}
			node := &corev1.Node{}
			if err := c.Kube.Get(ctx, client.ObjectKey{Name: name}, node); err != nil || node.DeletionTimestamp.IsZero() && !disrupted(node) {
				return nil
			}
			return claimOf(node)
		}), builder.WithPredicates(leaving)).
		Complete(c)
}

// claimOf maps a Node to the NodeClaim that owns it.
func claimOf(node client.Object) []reconcile.Request {
	for _, ref := range node.GetOwnerReferences() {
		if ref.Kind == "NodeClaim" {
			return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: ref.Name}}}
		}
	}
	return nil
}

// disrupted reports whether the node carries the drain's taint.
func disrupted(node *corev1.Node) bool {
	for _, t := range node.Spec.Taints {
		if t.MatchTaint(&v1.DisruptedNoScheduleTaint) {
			return true
		}
	}
	return false
}
