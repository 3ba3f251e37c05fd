package aws

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
)

// defaultNodeClassInterval is how often a node class is resolved again
// without a spec change: subnets fill up, new AMIs are released, groups are
// tagged or untagged outside Kubernetes.
const defaultNodeClassInterval = 5 * time.Minute

// NodeClassReconciler keeps every EC2NodeClass's status (subnets, security
// groups, AMIs, instance profile, conditions) resolved, on each spec change
// and every Interval.
type NodeClassReconciler struct {
	Client   client.Client
	Resolver *NodeClassResolver
	// Interval between resolutions of an unchanged node class; default 5
	// minutes.
	Interval time.Duration
}

// Reconcile resolves one node class and writes its status when it changed.
// Lookup failures are returned (controller-runtime retries with backoff)
// after the parts that did resolve are written.
func (r *NodeClassReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	nc := &awsv1.EC2NodeClass{}
	if err := r.Client.Get(ctx, req.NamespacedName, nc); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !nc.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, nil
	}
	status, resolveErr := r.Resolver.Resolve(ctx, nc)
	if !equality.Semantic.DeepEqual(nc.Status, status) {
		before := nc.DeepCopy()
		nc.Status = status
		if err := r.Client.Status().Patch(ctx, nc, client.MergeFrom(before)); err != nil {
			return reconcile.Result{}, client.IgnoreNotFound(fmt.Errorf("writing status of EC2NodeClass %s: %w", nc.Name, err))
		}
		log.FromContext(ctx).V(1).Info("resolved EC2NodeClass", "subnets", len(status.Subnets),
			"securityGroups", len(status.SecurityGroups), "amis", len(status.AMIs), "instanceProfile", status.InstanceProfile)
	}
	if resolveErr != nil {
		return reconcile.Result{}, fmt.Errorf("resolving EC2NodeClass %s: %w", nc.Name, resolveErr)
	}
	interval := r.Interval
	if interval <= 0 {
		interval = defaultNodeClassInterval
	}
	return reconcile.Result{RequeueAfter: interval}, nil
}

// SetupWithManager registers the reconciler. Only spec changes (generation
// bumps) trigger it, not its own status writes.
func (r *NodeClassReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("ec2nodeclass").
		For(&awsv1.EC2NodeClass{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(r)
}
