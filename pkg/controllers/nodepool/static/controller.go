// Package static keeps a static NodePool (spec.replicas set) at exactly
// that many nodes, whatever the pods: it launches the missing ones from the
// template and takes away the surplus. The provisioner does not launch for
// static pools and disruption does not consolidate them; nodes that expire,
// are interrupted or drift are replaced here, because the count of live
// claims drops the moment theirs is deleted.
package static

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/samber/lo"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
	"github.com/nodewright/nodewright/pkg/controllers"
	"github.com/nodewright/nodewright/pkg/controllers/disruption"
	"github.com/nodewright/nodewright/pkg/controllers/provisioning"
	"github.com/nodewright/nodewright/pkg/scheduling"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
	"github.com/nodewright/nodewright/pkg/state"
)

// ScaleDownReason is the disruption reason of a node a static pool no
// longer needs (nodewright.io/disruption-reason, and the metrics' label).
const ScaleDownReason = "scaled_down"

// retry is how soon a pool that could not get all its nodes (node class not
// ready, no offering left) is looked at again without any change to it.
const retry = 30 * time.Second

// Catalogs gives the instance types a NodePool may launch.
type Catalogs interface {
	Catalog(ctx context.Context, pool *v1.NodePool) (*catalog.Catalog, *catalog.NodeSettings, error)
}

// Recorder emits Kubernetes events.
type Recorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Controller reconciles static NodePools.
type Controller struct {
	// Kube writes, and reads NodePools, DaemonSets and Pods (the cache).
	Kube client.Client
	// Claims reads the pool's NodeClaims; default Kube. The operator gives
	// the manager's API reader: a count read from a cache that has not yet
	// seen the claims just created would launch them a second time.
	Claims   client.Reader
	Cloud    Catalogs
	Recorder Recorder
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c *Controller) claims() client.Reader {
	if c.Claims != nil {
		return c.Claims
	}
	return c.Kube
}

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Reconcile brings one static pool to spec.replicas live (not deleting)
// NodeClaims. A claim being deleted is not counted: its replacement is
// launched at once, so an expired, interrupted or drifted node's pods have
// somewhere to go while it drains. limits.nodes counts every claim,
// deleting or not (their instances still run): with limits.nodes equal to
// replicas a replacement waits until the old node is gone.
func (c *Controller) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	np := &v1.NodePool{}
	if err := c.Kube.Get(ctx, req.NamespacedName, np); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if np.Spec.Replicas == nil || !np.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	if err := np.RuntimeValidate(); err != nil {
		// The nodepool validation controller says so in ValidationSucceeded.
		return ctrl.Result{}, nil
	}
	var list v1.NodeClaimList
	if err := c.claims().List(ctx, &list, client.MatchingLabels{v1.NodePoolLabelKey: np.Name}); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing nodeclaims of nodepool %s: %w", np.Name, err)
	}
	live := lo.Filter(lo.ToSlicePtr(list.Items), func(nc *v1.NodeClaim, _ int) bool { return nc.DeletionTimestamp.IsZero() })
	want := int(*np.Spec.Replicas)
	switch {
	case len(live) < want:
		return c.scaleUp(ctx, np, live, want-len(live), len(list.Items))
	case len(live) > want:
		return ctrl.Result{}, c.scaleDown(ctx, np, live, len(live)-want)
	}
	return ctrl.Result{}, nil
}

// scaleUp launches missing nodes, as many as limits.nodes allows given the
// total claims the pool has, spread over zones with the live ones.
func (c *Controller) scaleUp(ctx context.Context, np *v1.NodePool, live []*v1.NodeClaim, missing, total int) (ctrl.Result, error) {
	logger := log.FromContext(ctx).WithValues("nodepool", np.Name)
	n := missing
	if limit, ok := np.Spec.Limits[corev1.ResourceName("nodes")]; ok {
		n = min(n, max(int(limit.Value())-total, 0))
		if int(*np.Spec.Replicas) > int(limit.Value()) {
			c.Recorder.Eventf(np, nil, corev1.EventTypeWarning, "ReplicasOverLimit", "Launch",
				"spec.replicas is %d but limits.nodes is %d: keeping at most %d nodes; raise limits.nodes or lower spec.replicas",
				*np.Spec.Replicas, limit.Value(), limit.Value())
		}
		if n == 0 {
			// A deleting claim's end (watched) makes room.
			logger.V(1).Info("at limits.nodes, waiting for deleting nodes to go", "missing", missing, "claims", total, "limit", limit.Value())
			return ctrl.Result{}, nil
		}
	}
	cat, settings, err := c.Cloud.Catalog(ctx, np)
	if err != nil {
		if cloudprovider.IsNodeClassNotReady(err) {
			c.Recorder.Eventf(np, nil, corev1.EventTypeWarning, "NodeClassNotReady", "Launch", "Not launching this static NodePool's nodes: %v", err)
			return ctrl.Result{RequeueAfter: retry}, nil
		}
		return ctrl.Result{}, fmt.Errorf("catalog of nodepool %s: %w", np.Name, err)
	}
	reqs, err := requirements.FromNodePool(np.Spec.Template.Spec.Requirements)
	if err != nil {
		c.Recorder.Eventf(np, nil, corev1.EventTypeWarning, "InvalidNodePool", "Launch", "Not launching this static NodePool's nodes: spec.template.spec.requirements: %v", err)
		return ctrl.Result{}, nil
	}
	var dss appsv1.DaemonSetList
	if err := c.Kube.List(ctx, &dss); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing daemonsets: %w", err)
	}
	pool := scheduling.NodePool{Name: np.Name, Requirements: reqs, Labels: np.Spec.Template.Labels,
		Taints: np.Spec.Template.Spec.Taints, Catalog: cat, Settings: settings}
	zones := lo.FilterMap(live, func(nc *v1.NodeClaim, _ int) (string, bool) { return zoneOf(nc) })
	plans, planErr := scheduling.PlanNodes(pool, state.DaemonSetPods(dss.Items), zones, n, scheduling.Options{SpotRiskWeight: -1})
	for _, p := range plans {
		nc := provisioning.NewNodeClaim(p, np)
		if err := c.Kube.Create(ctx, nc); err != nil {
			return ctrl.Result{}, fmt.Errorf("creating nodeclaim for static nodepool %s: %w", np.Name, err)
		}
		it := p.InstanceTypes[0].Type.Name
		logger.Info("created nodeclaim", "nodeclaim", nc.Name, "instanceType", it, "capacityType", p.Offering.CapacityType,
			"zone", p.Offering.Zone, "pricePerHour", p.Price(), "fallbackTypes", len(p.InstanceTypes)-1)
		c.Recorder.Eventf(np, nc, corev1.EventTypeNormal, "Launched", "Launch", "Launched NodeClaim %s (%s, %s, %s) to keep %d replicas",
			nc.Name, it, p.Offering.CapacityType, p.Offering.Zone, *np.Spec.Replicas)
	}
	if planErr != nil {
		c.Recorder.Eventf(np, nil, corev1.EventTypeWarning, "CannotLaunch", "Launch", "%v", planErr)
		return ctrl.Result{RequeueAfter: retry}, nil
	}
	return ctrl.Result{}, nil
}

// zoneOf is a claim's zone: its label once launched, or before launch its
// requirement when that names one zone.
func zoneOf(nc *v1.NodeClaim) (string, bool) {
	if z := nc.Labels[corev1.LabelTopologyZone]; z != "" {
		return z, true
	}
	for _, r := range nc.Spec.Requirements {
		if r.Key == corev1.LabelTopologyZone && r.Operator == corev1.NodeSelectorOpIn && len(r.Values) == 1 {
			return r.Values[0], true
		}
	}
	return "", false
}

// scaleDown deletes surplus claims through the normal deletion path (the
// node is cordoned and drained, PodDisruptionBudgets respected; disruption
// budgets do not apply, as Karpenter documents for static pools). It takes
// first the claims with no Node yet, then the ones running the fewest
// workload pods, then the newest.
func (c *Controller) scaleDown(ctx context.Context, np *v1.NodePool, live []*v1.NodeClaim, surplus int) error {
	type ranked struct {
		nc   *v1.NodeClaim
		pods int
	}
	candidates := make([]ranked, 0, len(live))
	for _, nc := range live {
		r := ranked{nc: nc, pods: -1}
		if nc.Status.NodeName != "" {
			var pods corev1.PodList
			if err := c.Kube.List(ctx, &pods, client.MatchingFields{controllers.PodNodeName: nc.Status.NodeName}); err != nil {
				return fmt.Errorf("listing pods of node %s: %w", nc.Status.NodeName, err)
			}
			r.pods = disruption.WorkloadPods(lo.ToSlicePtr(pods.Items))
		}
		candidates = append(candidates, r)
	}
	slices.SortStableFunc(candidates, func(a, b ranked) int {
		if d := cmp.Compare(a.pods, b.pods); d != 0 {
			return d
		}
		return b.nc.CreationTimestamp.Compare(a.nc.CreationTimestamp.Time)
	})
	now := c.now()
	for _, r := range candidates[:surplus] {
		outcome, err := disruption.Disrupt(ctx, c.Kube, r.nc, ScaleDownReason, time.Time{}, now)
		if err != nil {
			return err
		}
		if outcome == disruption.Disrupted {
			log.FromContext(ctx).Info("deleting nodeclaim", "nodepool", np.Name, "nodeclaim", r.nc.Name, "reason", ScaleDownReason, "workloadPods", max(r.pods, 0))
			c.Recorder.Eventf(np, r.nc, corev1.EventTypeNormal, "ScaledDown", "Delete", "Deleting NodeClaim %s to keep %d replicas", r.nc.Name, *np.Spec.Replicas)
		}
	}
	return nil
}

// SetupWithManager watches NodePools and their NodeClaims: a claim created,
// deleted or gone changes the count.
func (c *Controller) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("nodepool.static").
		For(&v1.NodePool{}).
		Watches(&v1.NodeClaim{}, controllers.EnqueueNodePoolOfClaim).
		Complete(c)
}
