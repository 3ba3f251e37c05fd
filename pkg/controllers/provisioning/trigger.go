package provisioning

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/state"
)

// PodTrigger starts a provisioning round when kube-scheduler marks a pod
// unschedulable, and when a NodePool or node class changes (one that becomes
// Ready, or valid, can place the pods a round skipped). A pod that stays
// pending re-triggers every recheck as a backstop.
type PodTrigger struct {
	Reader  client.Reader
	Batcher *Batcher
	Recheck time.Duration
	// NodeClass is an empty object of the cloud's node class kind; nil
	// watches NodePools only.
	NodeClass client.Object
}

// poolChanged triggers a round on any change to a NodePool or node class:
// before it, a class still resolving at start left 300 pending pods waiting
// for the minute's recheck.
func (r *PodTrigger) poolChanged() handler.Funcs {
	trigger := func() { r.Batcher.Trigger() }
	return handler.Funcs{
		CreateFunc: func(context.Context, event.TypedCreateEvent[client.Object], workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			trigger()
		},
		UpdateFunc: func(context.Context, event.TypedUpdateEvent[client.Object], workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			trigger()
		},
	}
}

// Reconcile triggers the batcher for a provisionable pod.
func (r *PodTrigger) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pod := &corev1.Pod{}
	if err := r.Reader.Get(ctx, req.NamespacedName, pod); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !state.Provisionable(pod) {
		return ctrl.Result{}, nil
	}
	r.Batcher.Trigger()
	return ctrl.Result{RequeueAfter: r.Recheck}, nil
}

// SetupWithManager watches pods, reacting only to those that may need room.
func (r *PodTrigger) SetupWithManager(mgr ctrl.Manager) error {
	if r.Recheck == 0 {
		r.Recheck = time.Minute
	}
	pending := predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return state.Provisionable(e.Object.(*corev1.Pod)) },
		UpdateFunc:  func(e event.UpdateEvent) bool { return state.Provisionable(e.ObjectNew.(*corev1.Pod)) },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
	// A NodeClaim deleted (no capacity, never registered, its node gone)
	// leaves pods that planned on it waiting: plan again now, not at the
	// next recheck.
	// A NodeClaim starting to be deleted (disrupted) has pods that need room
	// elsewhere before they are evicted: plan it now.
	claimGone := handler.Funcs{
		DeleteFunc: func(context.Context, event.TypedDeleteEvent[client.Object], workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			r.Batcher.Trigger()
		},
		UpdateFunc: func(_ context.Context, e event.TypedUpdateEvent[client.Object], _ workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if e.ObjectOld.GetDeletionTimestamp().IsZero() && !e.ObjectNew.GetDeletionTimestamp().IsZero() {
				r.Batcher.Trigger()
			}
		},
	}
	b := ctrl.NewControllerManagedBy(mgr).Named("provisioning.pods").
		For(&corev1.Pod{}, builder.WithPredicates(pending)).
		Watches(&v1.NodeClaim{}, claimGone).
		Watches(&v1.NodePool{}, r.poolChanged())
	if r.NodeClass != nil {
		b = b.Watches(r.NodeClass, r.poolChanged())
	}
	return b.Complete(r)
}
