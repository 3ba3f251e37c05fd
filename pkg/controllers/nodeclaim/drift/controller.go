// Package drift marks NodeClaims whose node no longer matches what their
// NodePool and node class would launch now, with the Drifted condition and a
// reason; the disruption controller replaces them within the pool's Drifted
// budget. A claim is drifted when its NodePool's template hash changed
// (NodePoolDrifted), its labels no longer satisfy the pool's requirements
// (RequirementsDrifted), or the cloud says so (the node class's hash
// changed, its AMI is no longer selected). Hashes are compared only under
// the same hash version: a claim stamped by an older nodewright is
// re-stamped instead, so an upgrade drifts nothing.
package drift

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
)

// Reasons of the Drifted condition this controller decides; the cloud
// adds its own.
const (
	NodePoolDrifted     = "NodePoolDrifted"
	RequirementsDrifted = "RequirementsDrifted"
)

// Cloud is the part of the cloud provider drift asks.
type Cloud interface {
	IsDrifted(ctx context.Context, claim *v1.NodeClaim) (string, error)
	RestampNodeClassHash(ctx context.Context, claim *v1.NodeClaim) (map[string]string, error)
}

// Recorder emits Kubernetes events.
type Recorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Controller keeps NodeClaims' Drifted condition.
type Controller struct {
	Kube     client.Client
	Cloud    Cloud
	Recorder Recorder
	// NodeClass is the cloud's node class kind (an empty object), watched
	// so that a change to a class judges its claims again.
	NodeClass client.Object
}

// recheck is how often a claim is judged again without a change to it, its
// pool or its class (the cloud's answer can change on its own).
const recheck = 5 * time.Minute

// Reconcile judges one claim.
func (c *Controller) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	nc := &v1.NodeClaim{}
	if err := c.Kube.Get(ctx, req.NamespacedName, nc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !nc.DeletionTimestamp.IsZero() || nc.Status.ProviderID == "" {
		return ctrl.Result{}, nil // going, or not launched: nothing to compare yet
	}
	np := &v1.NodePool{}
	if err := c.Kube.Get(ctx, types.NamespacedName{Name: nc.Labels[v1.NodePoolLabelKey]}, np); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if err := c.restamp(ctx, nc, np); err != nil {
		return ctrl.Result{}, err
	}
	reason, err := c.drifted(ctx, nc, np)
	if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: recheck}, c.setCondition(ctx, nc, reason)
}

// restamp writes the current hashes on a claim stamped under another hash
// version: what it was launched from can no longer be compared, and
// replacing every node because nodewright changed its hashing would be
// wrong.
func (c *Controller) restamp(ctx context.Context, nc *v1.NodeClaim, np *v1.NodePool) error {
	want := map[string]string{}
	if v, ok := nc.Annotations[v1.NodePoolHashVersionAnnotationKey]; ok && v != v1.NodePoolHashVersion {
		want[v1.NodePoolHashAnnotationKey], want[v1.NodePoolHashVersionAnnotationKey] = np.Hash(), v1.NodePoolHashVersion
	}
	class, err := c.Cloud.RestampNodeClassHash(ctx, nc)
	if err != nil {
		return fmt.Errorf("hashing the node class of nodeclaim %s: %w", nc.Name, err)
	}
	for k, v := range class {
		want[k] = v
	}
	if len(want) == 0 {
		return nil
	}
	patch := client.MergeFromWithOptions(nc.DeepCopy(), client.MergeFromWithOptimisticLock{})
	for k, v := range want {
		nc.Annotations[k] = v
	}
	if err := c.Kube.Patch(ctx, nc, patch); err != nil {
		return fmt.Errorf("re-stamping the hashes of nodeclaim %s: %w", nc.Name, err)
	}
	log.FromContext(ctx).Info("re-stamped hashes of another version", "nodeclaim", nc.Name)
	return nil
}

// drifted is the reason nc no longer matches np and its class, or "".
func (c *Controller) drifted(ctx context.Context, nc *v1.NodeClaim, np *v1.NodePool) (string, error) {
	if nc.Annotations[v1.NodePoolHashVersionAnnotationKey] == v1.NodePoolHashVersion {
		if h, ok := nc.Annotations[v1.NodePoolHashAnnotationKey]; ok && h != np.Hash() {
			return NodePoolDrifted, nil
		}
	}
	if why := requirementsDrift(nc, np); why != "" {
		return RequirementsDrifted, nil
	}
	reason, err := c.Cloud.IsDrifted(ctx, nc)
	if err != nil {
		return "", fmt.Errorf("asking the cloud whether nodeclaim %s drifted: %w", nc.Name, err)
	}
	return reason, nil
}

// requirementsDrift says which requirement of the pool (or template label)
// the claim's labels no longer satisfy, or "". A key the claim lacks counts
// only when the requirement needs a value and the key is not one the
// instance answers for (a claim may not list every catalog key).
func requirementsDrift(nc *v1.NodeClaim, np *v1.NodePool) string {
	reqs, err := requirements.FromNodePool(np.Spec.Template.Spec.Requirements)
	if err != nil {
		return "" // the provisioner reports an invalid pool; drifting on it would empty the pool
	}
	for k, v := range np.Spec.Template.Labels {
		reqs.Add(requirements.MustNew(k, corev1.NodeSelectorOpIn, v))
	}
	for _, key := range reqs.Keys() {
		r := reqs[key]
		v, ok := nc.Labels[key]
		switch {
		case ok && !r.Has(v):
			return fmt.Sprintf("%s=%s is outside %s", key, v, r)
		case !ok && !r.AllowsAbsent() && !catalog.CatalogKeys[key]:
			return fmt.Sprintf("it has no %s label and the pool requires %s", key, r)
		}
	}
	return ""
}

// setCondition writes Drifted when it changes: True with the reason, or
// removed when the claim matches again.
func (c *Controller) setCondition(ctx context.Context, nc *v1.NodeClaim, reason string) error {
	old := meta.FindStatusCondition(nc.Status.Conditions, v1.ConditionTypeDrifted)
	if (reason == "" && old == nil) || (old != nil && old.Status == metav1.ConditionTrue && old.Reason == reason) {
		return nil
	}
	patch := client.MergeFrom(nc.DeepCopy())
	if reason == "" {
		meta.RemoveStatusCondition(&nc.Status.Conditions, v1.ConditionTypeDrifted)
	} else {
		meta.SetStatusCondition(&nc.Status.Conditions, metav1.Condition{Type: v1.ConditionTypeDrifted, Status: metav1.ConditionTrue,
			Reason: reason, Message: message(reason, nc), ObservedGeneration: nc.Generation})
	}
	if err := c.Kube.Status().Patch(ctx, nc, patch); err != nil {
		return fmt.Errorf("writing the Drifted condition of nodeclaim %s: %w", nc.Name, err)
	}
	if reason != "" {
		c.Recorder.Eventf(nc, nil, corev1.EventTypeNormal, "Drifted", "Drift", "Drifted: %s; it is replaced within the NodePool's Drifted budget", message(reason, nc))
		log.FromContext(ctx).Info("nodeclaim drifted", "nodeclaim", nc.Name, "reason", reason)
	}
	return nil
}

func message(reason string, nc *v1.NodeClaim) string {
	switch reason {
	case NodePoolDrifted:
		return "the NodePool's template changed since the node was launched"
	case RequirementsDrifted:
		return "its labels no longer satisfy the NodePool's requirements"
	case "AMIDrift":
		return fmt.Sprintf("its image %s is no longer among the EC2NodeClass's AMIs", nc.Status.ImageID)
	case "NodeClassDrifted":
		return "the EC2NodeClass changed since the node was launched"
	case "SubnetDrift":
		return "its subnet is no longer among the EC2NodeClass's subnets"
	case "SecurityGroupDrift":
		return "its security groups are no longer the EC2NodeClass's"
	}
	return reason
}

// SetupWithManager watches NodeClaims, and the NodePools and EC2NodeClasses
// whose changes drift them.
func (c *Controller) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).Named("nodeclaim.drift").For(&v1.NodeClaim{}).
		Watches(&v1.NodePool{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return c.claims(ctx, client.MatchingLabels{v1.NodePoolLabelKey: o.GetName()}, nil)
		}))
	if c.NodeClass != nil {
		b = b.Watches(c.NodeClass, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return c.claims(ctx, nil, func(nc *v1.NodeClaim) bool {
				return nc.Spec.NodeClassRef != nil && nc.Spec.NodeClassRef.Name == o.GetName()
			})
		}))
	}
	return b.Complete(c)
}

func (c *Controller) claims(ctx context.Context, sel client.MatchingLabels, keep func(*v1.NodeClaim) bool) []reconcile.Request {
	var list v1.NodeClaimList
	var opts []client.ListOption
	if sel != nil {
		opts = append(opts, sel)
	}
	if err := c.Kube.List(ctx, &list, opts...); err != nil {
		log.FromContext(ctx).Error(err, "listing nodeclaims to judge for drift")
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		if keep == nil || keep(&list.Items[i]) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: list.Items[i].Name}})
		}
	}
	return out
}
