// Package podevents records on each NodeClaim when a pod last arrived on or
// left its node (status.lastPodEventTime), as Karpenter does: consolidation
// counts consolidateAfter from that time, so a node is only judged empty or
// underused once its pods have stopped coming and going.
package podevents

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/nodewright/nodewright/apis/v1"
)

// Dedupe is how close together two writes of one claim's lastPodEventTime
// may be: a burst of pods binding to a new node writes once, not once per
// pod. Consolidation waits consolidateAfter (Karpenter's default 0s, 30s in
// the seed pool) on top; a few seconds of imprecision do not matter there.
const Dedupe = 5 * time.Second

// Controller records pod events on NodeClaims. Requests are keyed by node
// name: events on many pods of one node coalesce into one reconcile.
type Controller struct {
	Kube client.Client
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Reconcile stamps the NodeClaim of the node named by the request.
func (c *Controller) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	node := &corev1.Node{}
	if err := c.Kube.Get(ctx, types.NamespacedName{Name: req.Name}, node); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	name := claimOf(node)
	if name == "" {
		return ctrl.Result{}, nil // not a node nodewright launched, or not registered yet
	}
	nc := &v1.NodeClaim{}
	if err := c.Kube.Get(ctx, types.NamespacedName{Name: name}, nc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	now := c.now()
	if last := nc.Status.LastPodEventTime; !last.IsZero() && now.Sub(last.Time) < Dedupe {
		return ctrl.Result{}, nil
	}
	patch := client.MergeFrom(nc.DeepCopy())
	nc.Status.LastPodEventTime = metav1.NewTime(now)
	if err := c.Kube.Status().Patch(ctx, nc, patch); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(fmt.Errorf("recording a pod event on nodeclaim %s: %w", nc.Name, err))
	}
	return ctrl.Result{}, nil
}

// claimOf is the NodeClaim that owns node (registration adds the owner
// reference), or "".
func claimOf(node *corev1.Node) string {
	for _, o := range node.OwnerReferences {
		if o.Kind == "NodeClaim" && o.APIVersion == v1.SchemeGroupVersion.String() {
			return o.Name
		}
	}
	return ""
}

// Event is the node a pod change counts for, or "" when it is not a pod
// event: a pod bound to a node, going terminal (Succeeded or Failed),
// starting to terminate, or deleted while on a node. old is nil for a
// create, updated nil for a delete.
func Event(old, updated *corev1.Pod) string {
	switch {
	case updated == nil: // deleted
		return old.Spec.NodeName
	case updated.Spec.NodeName == "":
		return ""
	case old == nil: // created bound (a static or DaemonSet pod, or a test)
		return updated.Spec.NodeName
	case old.Spec.NodeName == "":
		return updated.Spec.NodeName // bound
	case !terminal(old) && terminal(updated):
		return updated.Spec.NodeName
	case old.DeletionTimestamp.IsZero() && !updated.DeletionTimestamp.IsZero():
		return updated.Spec.NodeName
	}
	return ""
}

func terminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// SetupWithManager watches pods, enqueueing the node of each pod event.
func (c *Controller) SetupWithManager(mgr ctrl.Manager) error {
	type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]
	enqueue := func(q queue, node string) {
		if node != "" {
			q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Name: node}})
		}
	}
	pods := handler.Funcs{
		CreateFunc: func(_ context.Context, e event.TypedCreateEvent[client.Object], q queue) {
			// The informer's first list creates every pod: only a pod that
			// is new, not one found at start-up, is an arrival.
			if pod := e.Object.(*corev1.Pod); c.now().Sub(pod.CreationTimestamp.Time) < time.Minute {
				enqueue(q, Event(nil, pod))
			}
		},
		UpdateFunc: func(_ context.Context, e event.TypedUpdateEvent[client.Object], q queue) {
			enqueue(q, Event(e.ObjectOld.(*corev1.Pod), e.ObjectNew.(*corev1.Pod)))
		},
		DeleteFunc: func(_ context.Context, e event.TypedDeleteEvent[client.Object], q queue) {
			if pod, ok := e.Object.(*corev1.Pod); ok {
				enqueue(q, Event(pod, nil))
			}
		},
	}
	return ctrl.NewControllerManagedBy(mgr).Named("nodeclaim.podevents").
		Watches(&corev1.Pod{}, pods).
		Complete(c)
}
