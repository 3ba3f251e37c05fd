package disruption

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/samber/lo"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/controllers"
	"github.com/nodewright/nodewright/pkg/metrics"
)

// Recorder emits Kubernetes events.
type Recorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// DefaultMethods are the methods a Controller tries when given none: Drift,
// Repair, then Emptiness.
func DefaultMethods() []Method { return []Method{Drift{}, Repair{}, Emptiness{}} }

// Controller evaluates every Interval. It is a manager Runnable on the leader
// only: two replicas would each spend the whole budget.
type Controller struct {
	Kube     client.Client
	Recorder Recorder
	// Methods in the order they are tried; default DefaultMethods.
	Methods []Method
	// Interval between evaluations; default 10 s.
	Interval time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time

	// Health reports instances failing their cloud status checks, for
	// repair; nil: node conditions only.
	Health Health
	// Cluster and Planner let consolidation simulate and launch; without
	// them only the Methods run.
	Cluster Snapshotter
	Planner Planner
	// MinSavings is the share of a node's price a replace must save under
	// WhenEmptyOrUnderutilized (--consolidation-min-savings).
	MinSavings float64
	// NoSpotToSpot keeps consolidation from replacing spot nodes with spot
	// (feature gate SpotToSpotConsolidation=false); see
	// scheduling.Consolidation.
	NoSpotToSpot bool
	// ValidationDelay is how long a consolidation decision must stand
	// before it is made; default DefaultValidationDelay.
	ValidationDelay time.Duration
	// ReplaceDrainWait bounds how long a replaced node waits for its
	// replacement; default DefaultReplaceDrainWait.
	ReplaceDrainWait time.Duration

	// blocked says the last evaluation left a node it would have disrupted
	// to a full budget.
	blocked bool
	// pending is the consolidation move waiting for its validation.
	pending *pendingMove
	// verdicts are the last reason each candidate was kept, by claim name.
	verdicts map[string]string
	// impairedSince is when each instance (by provider ID) was first seen
	// failing its status checks, while it still does.
	impairedSince map[string]time.Time
	// impaired is this evaluation's answer, by provider ID.
	impaired map[string]string
	// blockedWhy is the last budget wait told about each claim.
	blockedWhy map[string]string
	// evaluated are this evaluation's candidates by pool, read once for the
	// methods and reused by consolidation (which runs only when the methods
	// disrupted nothing, so they are unchanged).
	evaluated map[string][]*Candidate
}

// Health is the part of the cloud provider repair asks.
type Health interface {
	ImpairedInstances(ctx context.Context) (map[string]string, error)
}

func (c *Controller) validationDelay() time.Duration {
	if c.ValidationDelay > 0 {
		return c.ValidationDelay
	}
	return DefaultValidationDelay
}

func (c *Controller) replaceDrainWait() time.Duration {
	if c.ReplaceDrainWait > 0 {
		return c.ReplaceDrainWait
	}
	return DefaultReplaceDrainWait
}

// NeedLeaderElection keeps disruption on the leader.
func (c *Controller) NeedLeaderElection() bool { return true }

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Start evaluates until ctx ends; a failed evaluation is logged and tried
// again at the next interval.
func (c *Controller) Start(ctx context.Context) error {
	interval := c.Interval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	logger := log.FromContext(ctx).WithName("disruption")
	ctx = log.IntoContext(ctx, logger)
	wait := interval
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = interval
		if _, err := c.Evaluate(ctx); err != nil && ctx.Err() == nil {
			logger.Error(err, "disruption evaluation failed")
		} else if c.blocked {
			// A node waits for the budget, which frees as the nodes being
			// deleted go (seconds for an empty node): look again soon.
			wait = min(interval, 2*time.Second)
		}
		if c.pending != nil {
			// A move waits for its validation: look again when it is due.
			wait = min(wait, max(time.Until(c.pending.since.Add(c.validationDelay())), 100*time.Millisecond))
		}
	}
}

// Evaluate runs every method over every NodePool once and returns the claims
// it disrupted.
func (c *Controller) Evaluate(ctx context.Context) ([]*v1.NodeClaim, error) {
	var pools v1.NodePoolList
	if err := c.Kube.List(ctx, &pools); err != nil {
		return nil, fmt.Errorf("listing nodepools: %w", err)
	}
	var claims v1.NodeClaimList
	if err := c.Kube.List(ctx, &claims); err != nil {
		return nil, fmt.Errorf("listing nodeclaims: %w", err)
	}
	byPool := lo.GroupBy(lo.ToSlicePtr(claims.Items), func(nc *v1.NodeClaim) string { return nc.Labels[v1.NodePoolLabelKey] })
	live := lo.SliceToMap(claims.Items, func(nc v1.NodeClaim) (string, bool) { return nc.Name, true })
	maps.DeleteFunc(c.blockedWhy, func(name, _ string) bool { return !live[name] })
	moving, err := c.podsMoving(ctx, claims.Items)
	if err != nil {
		return nil, err
	}
	c.readHealth(ctx)
	var disrupted []*v1.NodeClaim
	var errs []error
	c.blocked = false
	c.evaluated = map[string][]*Candidate{}
	for i := range pools.Items {
		np := &pools.Items[i]
		if !np.DeletionTimestamp.IsZero() {
			continue // a deleted pool goes whole
		}
		got, err := c.evaluatePool(ctx, np, byPool[np.Name], moving)
		disrupted = append(disrupted, got...)
		errs = append(errs, err)
	}
	// One method at a time, as Karpenter: nodes just disrupted change what
	// a consolidation would find.
	if len(disrupted) == 0 && c.Planner != nil && c.Cluster != nil && !moving {
		got, err := c.consolidate(ctx, pools.Items, byPool, c.now())
		disrupted = append(disrupted, got...)
		errs = append(errs, err)
	}
	return disrupted, errors.Join(errs...)
}

func (c *Controller) evaluatePool(ctx context.Context, np *v1.NodePool, claims []*v1.NodeClaim, moving bool) ([]*v1.NodeClaim, error) {
	logger := log.FromContext(ctx).WithValues("nodepool", np.Name)
	now := c.now()
	deleting := lo.CountBy(claims, func(nc *v1.NodeClaim) bool { return !nc.DeletionTimestamp.IsZero() })
	candidates, err := c.candidates(ctx, np, claims, moving)
	if err != nil {
		return nil, err
	}
	c.evaluated[np.Name] = candidates
	for _, cand := range candidates {
		c.setEmpty(ctx, cand, now)
	}
	methods := c.Methods
	if len(methods) == 0 {
		methods = DefaultMethods()
	}
	if np.Spec.Replicas != nil {
		// A static pool keeps its count: its nodes are replaced (drifted,
		// unhealthy; the static controller launches the replacement as the
		// claim starts deleting) but never removed for being empty or
		// underused.
		methods = lo.Filter(methods, func(m Method, _ int) bool {
			return m.Reason() != v1.DisruptionReasonEmpty && m.Reason() != v1.DisruptionReasonUnderutilized
		})
	}
	var disrupted []*v1.NodeClaim
	for _, m := range methods {
		allowed, err := Allowed(np, m.Reason(), len(claims), deleting, now)
		if err != nil {
			c.Recorder.Eventf(np, nil, corev1.EventTypeWarning, "InvalidDisruptionBudget", "Disrupt", "Not disrupting this NodePool's nodes: %v", err)
			return disrupted, nil
		}
		for _, cand := range candidates {
			if cand.Held && m.Reason() != v1.DisruptionReasonUnhealthy {
				// Voluntary disruption only: a broken node is repaired
				// whatever it says, as in Karpenter.
				continue
			}
			ok, why := m.ShouldDisrupt(cand, now)
			if !ok {
				logger.V(1).Info("not disrupting", "nodeclaim", cand.Claim.Name, "method", m.Annotation(), "why", why)
				continue
			}
			if allowed <= 0 {
				c.blocked = true
				logger.V(1).Info("disruption budget reached, not disrupting", "nodeclaim", cand.Claim.Name, "reason", m.Reason(), "deleting", deleting)
				c.waiting(cand, fmt.Sprintf("%s, but the NodePool's disruption budget for %s allows no more nodes now (%d deleting)", m.Describe(cand), m.Reason(), deleting))
				continue
			}
			var drainBy time.Time
			if w := m.DrainWait(); w > 0 {
				drainBy = now.Add(w)
			}
			outcome, err := Disrupt(ctx, c.Kube, cand.Claim, m.Annotation(), drainBy, now)
			if err != nil {
				return disrupted, err
			}
			if outcome != Disrupted {
				continue
			}
			allowed--
			deleting++
			disrupted = append(disrupted, cand.Claim)
			metrics.PodsDisrupted.WithLabelValues(np.Name, m.Annotation()).Add(float64(workloadPods(cand.Pods)))
			note := fmt.Sprintf("Disrupting: %s", m.Describe(cand))
			c.Recorder.Eventf(cand.Claim, nil, corev1.EventTypeNormal, "DisruptionLaunched", "Disrupt", "%s", note)
			c.Recorder.Eventf(cand.Node, nil, corev1.EventTypeNormal, "DisruptionLaunched", "Disrupt", "%s", note)
			logger.Info("disrupting nodeclaim", "nodeclaim", cand.Claim.Name, "node", cand.Node.Name, "reason", m.Annotation(), "idleSince", cand.Idle)
		}
		candidates = slices.DeleteFunc(candidates, func(cand *Candidate) bool { return slices.Contains(disrupted, cand.Claim) })
	}
	return disrupted, nil
}

// setEmpty keeps the claim's Empty condition: True while its node runs no
// workload pod (since the last pod left, or its initialization), removed
// otherwise. Emptiness counts consolidateAfter from the same moment.
func (c *Controller) setEmpty(ctx context.Context, cand *Candidate, now time.Time) {
	empty := workloadPods(cand.Pods) == 0
	old := meta.FindStatusCondition(cand.Claim.Status.Conditions, v1.ConditionTypeEmpty)
	if empty == (old != nil) {
		return
	}
	patch := client.MergeFrom(cand.Claim.DeepCopy())
	if empty {
		meta.SetStatusCondition(&cand.Claim.Status.Conditions, metav1.Condition{Type: v1.ConditionTypeEmpty, Status: metav1.ConditionTrue,
			Reason: "Empty", Message: "no workload pod runs on the node", LastTransitionTime: metav1.NewTime(cand.Idle), ObservedGeneration: cand.Claim.Generation})
	} else {
		meta.RemoveStatusCondition(&cand.Claim.Status.Conditions, v1.ConditionTypeEmpty)
	}
	if err := c.Kube.Status().Patch(ctx, cand.Claim, patch); err != nil {
		log.FromContext(ctx).V(1).Info("writing Empty condition", "nodeclaim", cand.Claim.Name, "error", err.Error())
	}
}

// waiting tells people, once per reason, why a node a method chose is still
// there: a DisruptionBlocked event on its NodeClaim and Node.
func (c *Controller) waiting(cand *Candidate, why string) {
	if c.blockedWhy == nil {
		c.blockedWhy = map[string]string{}
	}
	if c.blockedWhy[cand.Claim.Name] == why {
		return
	}
	c.blockedWhy[cand.Claim.Name] = why
	c.Recorder.Eventf(cand.Claim, nil, corev1.EventTypeNormal, "DisruptionBlocked", "Disrupt", "Not disrupting yet: %s", why)
	c.Recorder.Eventf(cand.Node, nil, corev1.EventTypeNormal, "DisruptionBlocked", "Disrupt", "Not disrupting yet: %s", why)
}

// readHealth asks the cloud which instances fail their status checks and
// remembers since when. A failed answer is logged and judges no instance.
func (c *Controller) readHealth(ctx context.Context) {
	c.impaired = nil
	if c.Health == nil {
		return
	}
	impaired, err := c.Health.ImpairedInstances(ctx)
	if err != nil {
		log.FromContext(ctx).Error(err, "reading instance status checks")
		return
	}
	if c.impairedSince == nil {
		c.impairedSince = map[string]time.Time{}
	}
	now := c.now()
	for id := range impaired {
		if _, ok := c.impairedSince[id]; !ok {
			c.impairedSince[id] = now
		}
	}
	for id := range c.impairedSince {
		if _, ok := impaired[id]; !ok {
			delete(c.impairedSince, id)
		}
	}
	c.impaired = impaired
}

// podsMoving reports whether any claim being deleted still has workload
// pods on its node: they are about to need the room planned for them.
func (c *Controller) podsMoving(ctx context.Context, claims []v1.NodeClaim) (bool, error) {
	for _, nc := range claims {
		if nc.DeletionTimestamp.IsZero() || nc.Status.NodeName == "" {
			continue
		}
		var pods corev1.PodList
		if err := c.Kube.List(ctx, &pods, client.MatchingFields{controllers.PodNodeName: nc.Status.NodeName}); err != nil {
			return false, fmt.Errorf("listing pods of node %s: %w", nc.Status.NodeName, err)
		}
		if workloadPods(lo.ToSlicePtr(pods.Items)) > 0 {
			return true, nil
		}
	}
	return false, nil
}

// candidates are the pool's claims a method may look at, oldest idle first:
// initialized, not being deleted, with their Node; Held marks those whose
// Node or NodeClaim is annotated do-not-disrupt, which only repair takes.
func (c *Controller) candidates(ctx context.Context, np *v1.NodePool, claims []*v1.NodeClaim, moving bool) ([]*Candidate, error) {
	var out []*Candidate
	for _, nc := range claims {
		initialized := meta.FindStatusCondition(nc.Status.Conditions, v1.ConditionTypeInitialized)
		if !nc.DeletionTimestamp.IsZero() || initialized == nil || initialized.Status != "True" || nc.Status.NodeName == "" {
			continue
		}
		node := &corev1.Node{}
		if err := c.Kube.Get(ctx, types.NamespacedName{Name: nc.Status.NodeName}, node); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("getting node of nodeclaim %s: %w", nc.Name, err)
		}
		held := node.Annotations[v1.DoNotDisruptAnnotationKey] == "true" || nc.Annotations[v1.DoNotDisruptAnnotationKey] == "true"
		var pods corev1.PodList
		if err := c.Kube.List(ctx, &pods, client.MatchingFields{controllers.PodNodeName: node.Name}); err != nil {
			return nil, fmt.Errorf("listing pods of node %s: %w", node.Name, err)
		}
		idle, neverUsed := nc.Status.LastPodEventTime.Time, false
		if !idle.After(initialized.LastTransitionTime.Time) {
			idle, neverUsed = initialized.LastTransitionTime.Time, true
		}
		cand := &Candidate{Claim: nc, Node: node, Pool: np, Pods: lo.ToSlicePtr(pods.Items), Idle: idle, NeverUsed: neverUsed, PodsMoving: moving, Held: held}
		if check, ok := c.impaired[nc.Status.ProviderID]; ok {
			cand.Impaired, cand.ImpairedSince = check, c.impairedSince[nc.Status.ProviderID]
		}
		out = append(out, cand)
	}
	slices.SortFunc(out, func(a, b *Candidate) int { return a.Idle.Compare(b.Idle) })
	now := c.now()
	sick := lo.CountBy(out, func(cand *Candidate) bool { return unhealthy(cand, now) })
	for _, cand := range out {
		cand.PoolSize, cand.PoolUnhealthy = len(claims), sick
	}
	return out, nil
}
