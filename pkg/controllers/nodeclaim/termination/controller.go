// Package termination finishes a deleted NodeClaim: it taints the Node
// karpenter.sh/disrupted:NoSchedule, drains it through the Eviction API (so
// PodDisruptionBudgets hold), terminates the instance, removes the Node and
// finally the claim's finalizer. DaemonSet and mirror pods are left to die
// with the node; pods marked karpenter.sh/do-not-disrupt wait for the
// claim's terminationGracePeriod, after which every remaining pod is deleted.
package termination

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nodewright/nodewright/pkg/controllers/disruption"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
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

	// draining remembers the claims (by UID) whose replacement-first wait
	// ended, so evictions that free room elsewhere for some pods do not
	// make the rest wait again. Lost on restart: the wait is then re-checked,
	// which only delays the drain until the drain-by time.
	draining sync.Map
}

// requeue is how soon a blocked drain (a PDB, a do-not-disrupt pod, pods
// still terminating, an instance shutting down) is looked at again.
const requeue = 2 * time.Second

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
	node, err := c.node(ctx, nc)
	if err != nil {
		return ctrl.Result{}, err
	}
	// No drain when there is nothing left to drain from: the instance is
	// gone (reclaimed, terminated outside nodewright) or already ending.
	// Its pods cannot finish terminating without a kubelet; they are
	// cleaned up once the Node object goes.
	drain := node != nil && !meta.IsStatusConditionTrue(nc.Status.Conditions, v1.ConditionTypeInstanceTerminating)
	if drain && nc.Status.ProviderID != "" {
		if _, err := c.Cloud.Get(ctx, nc.Status.ProviderID); cloudprovider.IsNotFound(err) {
			logger.Info("instance gone, skipping the drain", "providerID", nc.Status.ProviderID)
			drain = false
		} else if err != nil {
			return ctrl.Result{}, fmt.Errorf("checking instance of nodeclaim %s: %w", nc.Name, err)
		}
	}
	if drain {
		if err := c.taint(ctx, node); err != nil {
			return ctrl.Result{}, err
		}
		if wait, err := c.waitForReplacement(ctx, nc, node); err != nil || wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, err
		}
		left, err := c.drain(ctx, nc, node)
		if err != nil {
			return ctrl.Result{}, err
		}
		if left > 0 && !c.expired(nc) {
			return ctrl.Result{RequeueAfter: requeue}, nil
		}
		if err := c.setCondition(ctx, nc, v1.ConditionTypeDrained, "Drained"); err != nil {
			return ctrl.Result{}, err
		}
	}
	if nc.Status.ProviderID != "" {
		err := c.Cloud.Delete(ctx, nc)
		if err == nil {
			// Terminating: come back until the instance is gone.
			if err := c.setCondition(ctx, nc, v1.ConditionTypeInstanceTerminating, "InstanceTerminating"); err != nil {
				return ctrl.Result{}, err
			}
			return ctrl.Result{RequeueAfter: requeue}, nil
		}
		if !cloudprovider.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("terminating instance of nodeclaim %s: %w", nc.Name, err)
		}
	}
	if node != nil {
		if err := c.removeNode(ctx, node); err != nil {
			return ctrl.Result{}, err
		}
	}
	patch := client.MergeFrom(nc.DeepCopy())
	controllerutil.RemoveFinalizer(nc, v1.TerminationFinalizer)
	if err := c.Kube.Patch(ctx, nc, patch); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("removing finalizer of nodeclaim %s: %w", nc.Name, err)
	}
	c.draining.Delete(nc.UID)
	metrics.NodeClaimsTerminated.WithLabelValues(nc.Labels[v1.NodePoolLabelKey]).Inc()
	logger.Info("terminated", "providerID", nc.Status.ProviderID, "node", nc.Status.NodeName)
	return ctrl.Result{}, nil
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
	for _, t := range node.Spec.Taints {
		if t.MatchTaint(&v1.DisruptedNoScheduleTaint) {
			return nil
		}
	}
	patch := client.MergeFrom(node.DeepCopy())
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
func (c *Controller) waitForReplacement(ctx context.Context, nc *v1.NodeClaim, node *corev1.Node) (time.Duration, error) {
	by, ok := disruption.DrainBy(nc)
	if !ok || c.Room == nil {
		return 0, nil
	}
	if _, started := c.draining.Load(nc.UID); started {
		return 0, nil
	}
	logger := log.FromContext(ctx).WithValues("nodeclaim", nc.Name, "node", node.Name)
	left := by.Sub(c.now())
	if left <= 0 {
		logger.Info("draining: replacement not ready by the drain-by time", "drainBy", by)
		c.draining.Store(nc.UID, true)
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
		c.draining.Store(nc.UID, true)
		return 0, nil
	}
	logger.V(1).Info("waiting for replacement capacity before draining", "pods", len(moving), "drainBy", by)
	return min(requeue, left), nil
}

// drain evicts what should leave the node and returns how many pods are
// still to go. Past the claim's terminationGracePeriod, pods are deleted
// outright, PDBs and do-not-disrupt notwithstanding: the grace period is the
// cluster operator's promise that the node will be gone by then.
func (c *Controller) drain(ctx context.Context, nc *v1.NodeClaim, node *corev1.Node) (int, error) {
	logger := log.FromContext(ctx).WithValues("nodeclaim", nc.Name, "node", node.Name)
	var pods corev1.PodList
	if err := c.Kube.List(ctx, &pods, client.MatchingFields{controllers.PodNodeName: node.Name}); err != nil {
		return 0, fmt.Errorf("listing pods of node %s: %w", node.Name, err)
	}
	expired := c.expired(nc)
	left := 0
	var errs []error
	for i := range pods.Items {
		p := &pods.Items[i]
		if !mustLeave(p) {
			continue
		}
		if !p.DeletionTimestamp.IsZero() {
			// Terminating; a pod stuck past its own grace period (a kubelet
			// that stopped answering) no longer holds the drain.
			grace := time.Duration(ptr.Deref(p.DeletionGracePeriodSeconds, 30)) * time.Second
			if c.now().Before(p.DeletionTimestamp.Add(grace + time.Minute)) {
				left++
			}
			continue
		}
		left++
		if expired {
			if err := c.Kube.Delete(ctx, p); client.IgnoreNotFound(err) != nil {
				return 0, fmt.Errorf("deleting pod %s/%s past the termination grace period: %w", p.Namespace, p.Name, err)
			}
			continue
		}
		if p.Annotations[v1.DoNotDisruptAnnotationKey] == "true" {
			continue
		}
		eviction := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
			DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}}}
		err := c.Kube.SubResource("eviction").Create(ctx, p, eviction)
		switch {
		case err == nil:
			logger.V(1).Info("evicted", "pod", p.Namespace+"/"+p.Name)
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			// Gone already, or replaced under the same name.
		case apierrors.IsTooManyRequests(err):
			// A PodDisruptionBudget says not now.
			logger.V(1).Info("eviction blocked by a disruption budget", "pod", p.Namespace+"/"+p.Name)
		default:
			// Keep draining the others; report this one.
			errs = append(errs, fmt.Errorf("evicting pod %s/%s: %w", p.Namespace, p.Name, err))
		}
	}
	return left, errors.Join(errs...)
}

// mustLeave is false for pods that go with the node: finished ones, mirror
// pods, DaemonSet pods, and pods that tolerate the disrupted taint.
func mustLeave(p *corev1.Pod) bool {
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return false
	}
	for _, o := range p.OwnerReferences {
		if o.Kind == "DaemonSet" {
			return false
		}
	}
	for _, t := range p.Spec.Tolerations {
		// Tolerating every taint: evicted, it would come straight back.
		if t.Operator == corev1.TolerationOpExists && t.Key == "" && (t.Effect == "" || t.Effect == corev1.TaintEffectNoSchedule) {
			return false
		}
	}
	return true
}

// removeNode lets the Node go: finalizer off, then delete.
func (c *Controller) removeNode(ctx context.Context, node *corev1.Node) error {
	if controllerutil.ContainsFinalizer(node, v1.TerminationFinalizer) {
		patch := client.MergeFrom(node.DeepCopy())
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

// expired reports whether the claim's terminationGracePeriod has run out
// since its deletion: then nothing holds the instance any more.
func (c *Controller) expired(nc *v1.NodeClaim) bool {
	tgp := nc.Spec.TerminationGracePeriod
	// An invalid stored value (refused by the CRD since) bounds nothing: the
	// drain honours PDBs and do-not-disrupt as if it were unset.
	return tgp != nil && tgp.Err() == nil && c.now().After(nc.DeletionTimestamp.Add(tgp.Duration))
}

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// SetupWithManager watches NodeClaims, and pods leaving a node wake the
// claim being drained.
func (c *Controller) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("nodeclaim.termination").
		WithOptions(controller.Options{MaxConcurrentReconciles: 50}).
		For(&v1.NodeClaim{}).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			for _, ref := range o.GetOwnerReferences() {
				if ref.Kind == "NodeClaim" {
					return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: ref.Name}}}
				}
			}
			return nil
		})).
		Complete(c)
}
