package aws

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/samber/lo"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
)

// defaultNodeClassInterval is how often a node class is resolved again
// without a spec change: subnets fill up, new AMIs are released, groups are
// tagged or untagged outside Kubernetes.
const defaultNodeClassInterval = 5 * time.Minute

// ReasonTerminating is the reason of a deleted EC2NodeClass's Ready
// condition while NodeClaims still use it.
const ReasonTerminating = "Terminating"

// LaunchTemplateDeleter deletes the launch templates made for a node class;
// the CloudProvider is one.
type LaunchTemplateDeleter interface {
	// DeleteLaunchTemplates deletes every launch template of the node class.
	// It returns nil once none is left, an error (to retry) while any is.
	DeleteLaunchTemplates(ctx context.Context, nodeClass string) error
}

// NodeClassReconciler keeps every EC2NodeClass's status (subnets, security
// groups, AMIs, instance profile, conditions) resolved, on each spec change
// and every Interval. It holds each with the TerminationFinalizer: a deleted
// node class goes once no NodeClaim uses it and its launch templates and the
// instance profile made for its spec.role are deleted.
type NodeClassReconciler struct {
	Client   client.Client
	Resolver *NodeClassResolver
	// LaunchTemplates deletes a deleted node class's launch templates.
	// Required.
	LaunchTemplates LaunchTemplateDeleter
	// Interval between resolutions of an unchanged node class, and between
	// looks at a deleted one whose NodeClaims have not gone; default 5
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
		return r.finalize(ctx, nc)
	}
	if !controllerutil.ContainsFinalizer(nc, awsv1.TerminationFinalizer) {
		before := nc.DeepCopy()
		controllerutil.AddFinalizer(nc, awsv1.TerminationFinalizer)
		if err := r.Client.Patch(ctx, nc, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
			return reconcile.Result{}, client.IgnoreNotFound(fmt.Errorf("adding the finalizer of EC2NodeClass %s: %w", nc.Name, err))
		}
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
	return reconcile.Result{RequeueAfter: r.interval()}, nil
}

func (r *NodeClassReconciler) interval() time.Duration {
	if r.Interval <= 0 {
		return defaultNodeClassInterval
	}
	return r.Interval
}

// finalize lets a deleted node class go once no NodeClaim uses it and its
// launch templates and instance profile are deleted. Until then its Ready condition names the
// NodeClaims it waits for; the deletion of each requeues it (see
// SetupWithManager). The provider launches nothing more from a deleted node
// class.
func (r *NodeClassReconciler) finalize(ctx context.Context, nc *awsv1.EC2NodeClass) (reconcile.Result, error) {
	if !controllerutil.ContainsFinalizer(nc, awsv1.TerminationFinalizer) {
		return reconcile.Result{}, nil
	}
	claims, err := r.claimsOf(ctx, nc.Name)
	if err != nil {
		return reconcile.Result{}, err
	}
	if len(claims) > 0 {
		if err := r.setTerminating(ctx, nc, claims); err != nil {
			return reconcile.Result{}, err
		}
		return reconcile.Result{RequeueAfter: r.interval()}, nil
	}
	if err := r.LaunchTemplates.DeleteLaunchTemplates(ctx, nc.Name); err != nil {
		return reconcile.Result{}, err
	}
	// After the instances: IAM refuses nothing here, but an instance still
	// running with the profile would lose its credentials.
	if err := r.Resolver.DeleteInstanceProfile(ctx, nc); err != nil {
		return reconcile.Result{}, fmt.Errorf("deleting the instance profile of EC2NodeClass %s: %w", nc.Name, err)
	}
	before := nc.DeepCopy()
	controllerutil.RemoveFinalizer(nc, awsv1.TerminationFinalizer)
	if err := r.Client.Patch(ctx, nc, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(fmt.Errorf("removing the finalizer of EC2NodeClass %s: %w", nc.Name, err))
	}
	log.FromContext(ctx).Info("deleted the launch templates and instance profile of the deleted EC2NodeClass; releasing it")
	return reconcile.Result{}, nil
}

// claimsOf lists the names of the NodeClaims whose nodeClassRef is the
// EC2NodeClass name, sorted.
func (r *NodeClassReconciler) claimsOf(ctx context.Context, name string) ([]string, error) {
	var list v1.NodeClaimList
	if err := r.Client.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing NodeClaims: %w", err)
	}
	out := lo.FilterMap(list.Items, func(c v1.NodeClaim, _ int) (string, bool) { return c.Name, refersTo(c.Spec.NodeClassRef, name) })
	slices.Sort(out)
	return out, nil
}

func refersTo(ref *v1.NodeClassReference, nodeClass string) bool {
	return isEC2NodeClass(ref) && ref.Name == nodeClass
}

func isEC2NodeClass(ref *v1.NodeClassReference) bool {
	return ref != nil && ref.Group == awsv1.Group && ref.Kind == "EC2NodeClass"
}

// setTerminating writes Ready=False with the NodeClaims the deletion waits
// for, the first few by name.
func (r *NodeClassReconciler) setTerminating(ctx context.Context, nc *awsv1.EC2NodeClass, claims []string) error {
	const named = 5
	message := fmt.Sprintf("deleted; waiting for %d NodeClaim(s) to terminate: %s", len(claims), strings.Join(claims[:min(len(claims), named)], ", "))
	if len(claims) > named {
		message += fmt.Sprintf(" and %d more", len(claims)-named)
	}
	before := nc.DeepCopy()
	meta.SetStatusCondition(&nc.Status.Conditions, metav1.Condition{
		Type: ConditionTypeReady, Status: metav1.ConditionFalse, Reason: ReasonTerminating, Message: message,
		ObservedGeneration: nc.Generation, LastTransitionTime: metav1.NewTime(r.Resolver.opts.Clock.Now()),
	})
	if equality.Semantic.DeepEqual(before.Status, nc.Status) {
		return nil
	}
	if err := r.Client.Status().Patch(ctx, nc, client.MergeFrom(before)); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("writing status of EC2NodeClass %s: %w", nc.Name, err))
	}
	return nil
}

// deletingNodeClassOf maps a deleted NodeClaim to its node class if that is
// being deleted, so the class's finalizer is looked at again.
func (r *NodeClassReconciler) deletingNodeClassOf(ctx context.Context, o client.Object) []reconcile.Request {
	claim, ok := o.(*v1.NodeClaim)
	if !ok {
		return nil
	}
	ref := claim.Spec.NodeClassRef
	if !isEC2NodeClass(ref) {
		return nil
	}
	nc := &awsv1.EC2NodeClass{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: ref.Name}, nc); err != nil || nc.DeletionTimestamp.IsZero() {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: nc.Name}}}
}

// SetupWithManager registers the reconciler. Only spec changes (generation
// bumps; the apiserver bumps it when it marks an object with finalizers
// deleted) trigger it, not its own status writes; and the deletion of a
// NodeClaim whose node class is being deleted.
func (r *NodeClassReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.LaunchTemplates == nil {
		return fmt.Errorf("EC2NodeClass controller: LaunchTemplates is required")
	}
	onlyDeletes := predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("ec2nodeclass").
		For(&awsv1.EC2NodeClass{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1.NodeClaim{}, handler.EnqueueRequestsFromMapFunc(r.deletingNodeClassOf), builder.WithPredicates(onlyDeletes)).
		Complete(r)
}
