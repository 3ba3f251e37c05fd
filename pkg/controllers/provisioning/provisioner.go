// Package provisioning turns pods kube-scheduler cannot place into
// NodeClaims: it batches them, plans with the solver against the cluster's
// nodes, in-flight NodeClaims and NodePools, and creates the NodeClaims of
// the plan.
package provisioning

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/samber/lo"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
	"github.com/nodewright/nodewright/pkg/metrics"
	"github.com/nodewright/nodewright/pkg/scheduling"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
	"github.com/nodewright/nodewright/pkg/state"
)

// Recorder emits Kubernetes events (events.k8s.io/v1).
type Recorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Options tune the provisioner.
type Options struct {
	// SpotRiskWeight is passed to the solver; negative means the default.
	SpotRiskWeight float64
}

// Provisioner runs provisioning rounds. It is a manager Runnable that needs
// leadership: two replicas planning at once would launch twice.
type Provisioner struct {
	kube     client.Client
	cluster  *state.Cluster
	cloud    cloudprovider.CloudProvider
	batcher  *Batcher
	recorder Recorder
	opts     Options
}

// New builds a provisioner.
func New(kube client.Client, cluster *state.Cluster, cloud cloudprovider.CloudProvider, batcher *Batcher, recorder Recorder, opts Options) *Provisioner {
	return &Provisioner{kube: kube, cluster: cluster, cloud: cloud, batcher: batcher, recorder: recorder, opts: opts}
}

// NeedLeaderElection keeps provisioning on the leader only.
func (p *Provisioner) NeedLeaderElection() bool { return true }

// Start runs rounds until ctx ends. A failed round is logged and retried
// on the next trigger; pods still pending re-trigger on their own.
func (p *Provisioner) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("provisioner")
	for p.batcher.Wait(ctx) {
		if _, err := p.Provision(ctx); err != nil {
			logger.Error(err, "provisioning round failed")
			// Come back soon even when no pod changes.
			time.AfterFunc(5*time.Second, p.batcher.Trigger)
		}
	}
	return nil
}

// Result is what one round did.
type Result struct {
	Pending int
	Plan    *scheduling.Plan
	Created []*v1.NodeClaim
}

// Provision runs one round: plan for the pending pods and create the
// NodeClaims of the plan.
func (p *Provisioner) Provision(ctx context.Context) (*Result, error) {
	logger := log.FromContext(ctx).WithName("provisioner")
	snap, err := p.cluster.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading cluster state: %w", err)
	}
	res := &Result{Pending: len(snap.Pending)}
	if len(snap.Pending) == 0 {
		metrics.PodsPending.WithLabelValues("provisioned").Set(0)
		metrics.PodsPending.WithLabelValues("fits_nowhere").Set(0)
		return res, nil
	}
	pools, templates, err := p.SolverPools(ctx, snap)
	if err != nil {
		return res, err
	}
	start := time.Now()
	plan := scheduling.Solve(scheduling.Input{
		Pods: snap.Pending, Nodes: snap.Nodes, NodePools: pools, DaemonSets: snap.DaemonSets, VolumeZones: snap.VolumeZones,
	}, scheduling.Options{SpotRiskWeight: p.opts.SpotRiskWeight})
	res.Plan = plan
	metrics.SchedulingDuration.Observe(time.Since(start).Seconds())
	metrics.PodsPending.WithLabelValues("provisioned").Set(float64(plan.Placed()))
	metrics.PodsPending.WithLabelValues("fits_nowhere").Set(float64(len(plan.Unschedulable)))
	logger.Info("planned", "pending", len(snap.Pending)-snap.Rescheduling, "rescheduling", snap.Rescheduling, "onExisting", placedExisting(plan), "newNodeClaims", len(plan.NodeClaims),
		"unschedulable", len(plan.Unschedulable), "pricePerHour", round(plan.Cost()), "duration", time.Since(start).String())

	var errs []error
	for _, c := range plan.NodeClaims {
		nc, err := p.Launch(ctx, c, templates[c.NodePool])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		res.Created = append(res.Created, nc)
		metrics.NodeClaimsCreated.WithLabelValues(c.NodePool).Inc()
		it := c.InstanceTypes[0].Type
		logger.Info("created nodeclaim", "nodeclaim", nc.Name, "nodepool", c.NodePool, "instanceType", it.Name,
			"capacityType", c.Offering.CapacityType, "zone", c.Offering.Zone, "pricePerHour", c.Price(),
			"fallbackTypes", len(c.InstanceTypes)-1, "pods", len(c.Pods), "requests", c.Requests.String())
		for _, pod := range c.Pods {
			p.recorder.Eventf(pod, nc, corev1.EventTypeNormal, "Nominated", "Provision",
				"Pod should schedule on NodeClaim %s (%s, %s, %s)", nc.Name, it.Name, c.Offering.CapacityType, c.Offering.Zone)
		}
	}
	for _, u := range plan.Unschedulable {
		p.recorder.Eventf(u.Pod, nil, corev1.EventTypeWarning, "FailedScheduling", "Provision", "No NodePool can run this pod: %s", u.Reason)
		logger.Info("pod fits nowhere", "pod", client.ObjectKeyFromObject(u.Pod).String(), "reason", u.Reason)
	}
	return res, errors.Join(errs...)
}

// SolverPools turns the NodePools into the solver's, each with the catalog
// of its node class and its usage against its limits, and returns the
// NodePools by name. Pools that cannot launch (static, invalid, node class
// not ready) are left out, with an event saying why.
func (p *Provisioner) SolverPools(ctx context.Context, snap *state.Snapshot) ([]scheduling.NodePool, map[string]*v1.NodePool, error) {
	logger := log.FromContext(ctx).WithName("provisioner")
	var list v1.NodePoolList
	if err := p.kube.List(ctx, &list); err != nil {
		return nil, nil, fmt.Errorf("listing nodepools: %w", err)
	}
	var pools []scheduling.NodePool
	templates := map[string]*v1.NodePool{}
	for i := range list.Items {
		np := &list.Items[i]
		if !np.DeletionTimestamp.IsZero() || np.Spec.Replicas != nil {
			// Static pools keep their replica count; they do not provision for pods.
			continue
		}
		if err := np.RuntimeValidate(); err != nil {
			// Stored before the CRD refused such values: its claims would
			// carry a duration nothing can honour, or labels nodewright
			// must not write onto Nodes. The nodepool validation
			// controller says so in the pool's ValidationSucceeded.
			logger.Info("skipping invalid nodepool", "nodepool", np.Name, "error", err.Error())
			p.recorder.Eventf(np, nil, corev1.EventTypeWarning, "InvalidNodePool", "Provision", "Not provisioning from this NodePool until it is fixed: %v", err)
			continue
		}
		cat, settings, err := p.cloud.Catalog(ctx, np)
		if err != nil {
			if cloudprovider.IsNodeClassNotReady(err) {
				logger.Info("skipping nodepool", "nodepool", np.Name, "reason", err.Error())
				p.recorder.Eventf(np, nil, corev1.EventTypeWarning, "NodeClassNotReady", "Provision", "Not provisioning from this NodePool: %v", err)
				continue
			}
			return nil, nil, fmt.Errorf("catalog of nodepool %s: %w", np.Name, err)
		}
		reqs, err := requirements.FromNodePool(np.Spec.Template.Spec.Requirements)
		if err != nil {
			logger.Info("skipping nodepool with invalid requirements", "nodepool", np.Name, "error", err.Error())
			p.recorder.Eventf(np, nil, corev1.EventTypeWarning, "InvalidNodePool", "Provision", "Not provisioning from this NodePool until it is fixed: spec.template.spec.requirements: %v", err)
			continue
		}
		pools = append(pools, scheduling.NodePool{
			Name: np.Name, Weight: ptr.Deref(np.Spec.Weight, 0), Requirements: reqs, Labels: np.Spec.Template.Labels,
			Taints: np.Spec.Template.Spec.Taints, Catalog: cat, Settings: settings,
			Limits: corev1.ResourceList(np.Spec.Limits), Usage: usage(append(slices.Clone(snap.Claims[np.Name]), snap.Deleting[np.Name]...), cat),
		})
		templates[np.Name] = np
	}
	return pools, templates, nil
}

// usage is what a pool's live NodeClaims take against its limits: the
// launched capacity, or before launch the largest type the claim may become
// (limits must hold whichever fallback the launch picks).
func usage(claims []*v1.NodeClaim, cat *catalog.Catalog) corev1.ResourceList {
	total := corev1.ResourceList{}
	add := func(list corev1.ResourceList) {
		for k, q := range list {
			sum := total[k]
			sum.Add(q)
			total[k] = sum
		}
	}
	for _, nc := range claims {
		if len(nc.Status.Capacity) > 0 {
			add(nc.Status.Capacity)
			continue
		}
		add(largestAllowed(nc, cat))
	}
	total[corev1.ResourceName("nodes")] = *resource.NewQuantity(int64(len(claims)), resource.DecimalSI)
	return total
}

func largestAllowed(nc *v1.NodeClaim, cat *catalog.Catalog) corev1.ResourceList {
	out := corev1.ResourceList{}
	for _, r := range nc.Spec.Requirements {
		if r.Key != corev1.LabelInstanceTypeStable || r.Operator != corev1.NodeSelectorOpIn {
			continue
		}
		for _, name := range r.Values {
			it := cat.Get(name)
			if it == nil {
				continue
			}
			for k, q := range it.Capacity {
				if cur, ok := out[k]; !ok || q.Cmp(cur) > 0 {
					out[k] = q
				}
			}
		}
	}
	return out
}

// Launch creates the NodeClaim of one planned node and tells the cluster
// state it exists, so that the next round counts it even before the cache
// sees it.
func (p *Provisioner) Launch(ctx context.Context, c *scheduling.NodeClaimPlan, np *v1.NodePool) (*v1.NodeClaim, error) {
	nc := NewNodeClaim(c, np)
	if err := p.kube.Create(ctx, nc); err != nil {
		return nil, fmt.Errorf("creating nodeclaim for nodepool %s: %w", np.Name, err)
	}
	p.cluster.ClaimCreated(nc, c.Pods...)
	return nc, nil
}

// NewNodeClaim is the NodeClaim of one planned node, owned by its NodePool
// and carrying the template plus the plan's narrowed requirements. The
// static NodePool controller makes its claims the same way.
func NewNodeClaim(c *scheduling.NodeClaimPlan, np *v1.NodePool) *v1.NodeClaim {
	tmpl := np.Spec.Template
	// c.Labels are the values the plan chose for the pool's custom keys: the
	// lifecycle controller puts them on the Node when it registers.
	labels := lo.Assign(map[string]string{v1.NodePoolLabelKey: np.Name}, tmpl.Labels, c.Labels)
	// The template's hash, so that a later change to it drifts the claim.
	annotations := lo.Assign(tmpl.Annotations, map[string]string{
		v1.NodePoolHashAnnotationKey: np.Hash(), v1.NodePoolHashVersionAnnotationKey: v1.NodePoolHashVersion,
	})
	return &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: np.Name + "-",
			Labels:       labels,
			Annotations:  annotations,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: v1.SchemeGroupVersion.String(), Kind: "NodePool", Name: np.Name, UID: np.UID,
				BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: v1.NodeClaimSpec{
			Taints:                 tmpl.Spec.Taints,
			StartupTaints:          tmpl.Spec.StartupTaints,
			Requirements:           c.Requirements.NodeSelectorRequirements(),
			Resources:              v1.ResourceRequirements{Requests: c.Requests.List()},
			NodeClassRef:           tmpl.Spec.NodeClassRef,
			TerminationGracePeriod: tmpl.Spec.TerminationGracePeriod,
			ExpireAfter:            tmpl.Spec.ExpireAfter,
		},
	}
}

func placedExisting(plan *scheduling.Plan) int {
	n := 0
	for _, pods := range plan.Existing {
		n += len(pods)
	}
	return n
}

func round(f float64) float64 { return math.Round(f*10000) / 10000 }
