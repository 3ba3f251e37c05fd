// Package counter keeps a NodePool's status.resources and status.nodes: the
// capacity of its launched NodeClaims and how many it has, what
// `kubectl get nodepools` shows and limits are read against.
package counter

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/controllers"
	"github.com/nodewright/nodewright/pkg/metrics"
)

// Pricer gives the catalog a NodePool launches from, for its cost.
type Pricer interface {
	Catalog(ctx context.Context, pool *v1.NodePool) (*catalog.Catalog, *catalog.NodeSettings, error)
}

// Controller sums a NodePool's NodeClaims into its status and its cost.
type Controller struct {
	Kube client.Client
	// Prices, when set, prices the pool's nodes for the cost metric.
	Prices Pricer
}

// Reconcile recomputes one NodePool's status.
func (c *Controller) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	np := &v1.NodePool{}
	if err := c.Kube.Get(ctx, req.NamespacedName, np); err != nil {
		if apierrors.IsNotFound(err) {
			// Gone: so are its series.
			metrics.NodePoolUsage.DeletePartialMatch(prometheus.Labels{metrics.NodePool: req.Name})
			metrics.NodePoolLimit.DeletePartialMatch(prometheus.Labels{metrics.NodePool: req.Name})
			metrics.Cost.DeletePartialMatch(prometheus.Labels{metrics.NodePool: req.Name})
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var claims v1.NodeClaimList
	if err := c.Kube.List(ctx, &claims, client.MatchingLabels{v1.NodePoolLabelKey: np.Name}); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing nodeclaims of nodepool %s: %w", np.Name, err)
	}
	total := corev1.ResourceList{}
	var nodes int64
	for _, nc := range claims.Items {
		nodes++
		for k, q := range nc.Status.Capacity {
			sum := total[k]
			sum.Add(q)
			total[k] = sum
		}
	}
	total[corev1.ResourceName("nodes")] = *resource.NewQuantity(nodes, resource.DecimalSI)
	for name, q := range total {
		metrics.NodePoolUsage.WithLabelValues(np.Name, string(name)).Set(q.AsApproximateFloat64())
	}
	for name, q := range np.Spec.Limits {
		metrics.NodePoolLimit.WithLabelValues(np.Name, string(name)).Set(q.AsApproximateFloat64())
	}
	c.cost(ctx, np, claims.Items)
	before := np.Status.DeepCopy()
	patch := client.MergeFrom(np.DeepCopy())
	np.Status.Resources = total
	np.Status.Nodes = &nodes
	if equality.Semantic.DeepEqual(before, &np.Status) {
		return ctrl.Result{}, nil
	}
	// A merge patch: other writers of the status (conditions) must not make
	// this fail on a stale resource version.
	if err := c.Kube.Status().Patch(ctx, np, patch); err != nil {
		return ctrl.Result{}, fmt.Errorf("updating status of nodepool %s: %w", np.Name, err)
	}
	return ctrl.Result{}, nil
}

// cost prices the launched claims with the pool's catalog; a node class
// that is not ready leaves the last value.
func (c *Controller) cost(ctx context.Context, np *v1.NodePool, claims []v1.NodeClaim) {
	if c.Prices == nil {
		return
	}
	cat, _, err := c.Prices.Catalog(ctx, np)
	if err != nil {
		return
	}
	total := map[string]float64{v1.CapacityTypeSpot: 0, v1.CapacityTypeOnDemand: 0}
	for _, nc := range claims {
		ct := nc.Labels[v1.CapacityTypeLabelKey]
		if price, ok := cat.Price(nc.Labels[corev1.LabelInstanceTypeStable], nc.Labels[corev1.LabelTopologyZone], ct); ok {
			total[ct] += price
		}
	}
	for ct, v := range total {
		metrics.Cost.WithLabelValues(np.Name, ct).Set(v)
	}
}

// SetupWithManager watches NodePools and their NodeClaims.
func (c *Controller) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("nodepool.counter").
		For(&v1.NodePool{}).
		Watches(&v1.NodeClaim{}, controllers.EnqueueNodePoolOfClaim).
		Complete(c)
}
