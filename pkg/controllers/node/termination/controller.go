// Package termination handles a Node deleted directly (kubectl delete node):
// the Node carries the termination finalizer, and deleting its NodeClaim
// starts the same drain-and-terminate path a claim deletion takes, which
// removes the finalizer when the instance is gone.
package termination

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/controllers"
)

// Controller deletes the NodeClaim of a deleted Node.
type Controller struct {
	Kube client.Client
}

// Reconcile handles one Node.
func (c *Controller) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	node := &corev1.Node{}
	if err := c.Kube.Get(ctx, req.NamespacedName, node); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if node.DeletionTimestamp.IsZero() || !controllerutil.ContainsFinalizer(node, v1.TerminationFinalizer) {
		return ctrl.Result{}, nil
	}
	var claims v1.NodeClaimList
	if err := c.Kube.List(ctx, &claims, client.MatchingFields{controllers.NodeClaimProviderID: node.Spec.ProviderID}); err != nil {
		return ctrl.Result{}, fmt.Errorf("finding nodeclaim of node %s: %w", node.Name, err)
	}
	if len(claims.Items) == 0 {
		// No claim will ever finish this node: let it go.
		patch := client.MergeFromWithOptions(node.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.RemoveFinalizer(node, v1.TerminationFinalizer)
		return ctrl.Result{}, client.IgnoreNotFound(c.Kube.Patch(ctx, node, patch))
	}
	for i := range claims.Items {
		nc := &claims.Items[i]
		if nc.DeletionTimestamp.IsZero() {
			log.FromContext(ctx).Info("node deleted, deleting its nodeclaim", "node", node.Name, "nodeclaim", nc.Name)
			if err := c.Kube.Delete(ctx, nc); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, fmt.Errorf("deleting nodeclaim %s of deleted node %s: %w", nc.Name, node.Name, err)
			}
		}
	}
	return ctrl.Result{}, nil
}

// SetupWithManager watches Nodes.
func (c *Controller) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("node.termination").For(&corev1.Node{}).Complete(c)
}
