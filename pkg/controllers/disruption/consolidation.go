package disruption

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/samber/lo"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/metrics"
	"github.com/nodewright/nodewright/pkg/scheduling"
	"github.com/nodewright/nodewright/pkg/state"
)

// Planner is what consolidation needs from provisioning: the NodePools as
// the solver sees them, and the launch of a planned replacement.
type Planner interface {
	SolverPools(ctx context.Context, snap *state.Snapshot) ([]scheduling.NodePool, map[string]*v1.NodePool, error)
	Launch(ctx context.Context, c *scheduling.NodeClaimPlan, np *v1.NodePool) (*v1.NodeClaim, error)
}

// Snapshotter reads the cluster as the solver sees it.
type Snapshotter interface {
	Snapshot(ctx context.Context) (*state.Snapshot, error)
}

// Defaults of consolidation.
const (
	// DefaultValidationDelay is how long a consolidation decision waits
	// before it is made, checked again against fresh state (Karpenter's
	// 15 s): pods that arrived, a do-not-disrupt pod, a filled budget or a
	// new price drop it.
	DefaultValidationDelay = 15 * time.Second
	// DefaultReplaceDrainWait bounds how long the nodes a replace removes
	// wait for their replacement before they drain anyway.
	DefaultReplaceDrainWait = 10 * time.Minute
	// DefaultMinSavings is --consolidation-min-savings' default.
	DefaultMinSavings = 0.10
)

// UnderutilizedAnnotation is the disruption reason of a consolidated node.
const UnderutilizedAnnotation = "underutilized"

// pendingMove is a decision waiting for its validation.
type pendingMove struct {
	key   string
	since time.Time
}

// consolidate looks for one consolidation move over the whole cluster and,
// once the same move has stood for the validation delay, makes it: the
// replacements are launched first, then the nodes are disrupted, a replace
// waiting for room on initialized nodes before it drains.
func (c *Controller) consolidate(ctx context.Context, pools []v1.NodePool, byPool map[string][]*v1.NodeClaim, now time.Time) ([]*v1.NodeClaim, error) {
	logger := log.FromContext(ctx)
	snap, err := c.Cluster.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading cluster state: %w", err)
	}
	if why := unsettled(snap); why != "" {
		c.pending = nil
		logger.V(1).Info("not consolidating", "why", why)
		return nil, nil
	}
	solverPools, templates, err := c.Planner.SolverPools(ctx, snap)
	if err != nil {
		return nil, fmt.Errorf("reading nodepools: %w", err)
	}
	if len(snap.Pending) > 0 {
		// Pods wait that nodewright can place (they would take the room a
		// move counts on): wait until they run. Pods that fit nowhere wait
		// for a change no move makes; they do not stop consolidation.
		plan := scheduling.Solve(scheduling.Input{Pods: snap.Pending, Nodes: snap.Nodes, NodePools: solverPools, DaemonSets: snap.DaemonSets,
			VolumeZones: snap.VolumeZones}, scheduling.Options{SpotRiskWeight: -1})
		if plan.Placed() > 0 {
			c.pending = nil
			logger.V(1).Info("not consolidating", "why", fmt.Sprintf("%d pending pods can be placed", plan.Placed()))
			return nil, nil
		}
	}
	pdbs := &policyv1.PodDisruptionBudgetList{}
	if err := c.Kube.List(ctx, pdbs); err != nil {
		return nil, fmt.Errorf("listing poddisruptionbudgets: %w", err)
	}
	cons := &scheduling.Consolidation{Nodes: snap.Nodes, NodePools: solverPools, DaemonSets: snap.DaemonSets, VolumeZones: snap.VolumeZones,
		Allowed: map[string]int{}, MinSavings: c.MinSavings, NoSpotToSpot: c.NoSpotToSpot, PoolCost: map[string]float64{}, PoolDisruption: map[string]float64{}}
	byNode := map[string]*Candidate{}
	verdicts := map[*Candidate]verdict{}
	solverPool := lo.KeyBy(solverPools, func(p scheduling.NodePool) string { return p.Name })
	for i := range pools {
		np := &pools[i]
		sp, launchable := solverPool[np.Name]
		if !np.DeletionTimestamp.IsZero() || np.Spec.Replicas != nil || !launchable ||
			np.Spec.Disruption.ConsolidationPolicy == v1.ConsolidationPolicyWhenEmpty {
			continue
		}
		claims := byPool[np.Name]
		deleting := lo.CountBy(claims, func(nc *v1.NodeClaim) bool { return !nc.DeletionTimestamp.IsZero() })
		allowed, err := Allowed(np, v1.DisruptionReasonUnderutilized, len(claims), deleting, now)
		if err != nil {
			continue // the emptiness pass reported it
		}
		cons.Allowed[np.Name] = allowed
		cands, read := c.evaluated[np.Name]
		if !read {
			if cands, err = c.candidates(ctx, np, claims, false); err != nil {
				return nil, err
			}
		}
		for _, cand := range cands {
			pods := lo.Filter(cand.Pods, func(p *corev1.Pod, _ int) bool { return workloadPods([]*corev1.Pod{p}) > 0 })
			price, known := sp.Catalog.Price(cand.Node.Labels[corev1.LabelInstanceTypeStable], cand.Node.Labels[corev1.LabelTopologyZone],
				cand.Node.Labels[v1.CapacityTypeLabelKey])
			cost := scheduling.NodeDisruptionCost(pods)
			cons.PoolCost[np.Name] += price
			cons.PoolDisruption[np.Name] += cost
			if len(pods) == 0 {
				continue // emptiness takes it, after its own grace
			}
			ripe := consolidatable(np, cand, now)
			if cand.Held {
				verdicts[cand] = verdict{"the node is annotated " + v1.DoNotDisruptAnnotationKey, ripe}
				continue
			}
			if !known {
				verdicts[cand] = verdict{"its price is not in the catalog", ripe}
				continue
			}
			if why := c.notConsolidatable(cand, pods, pdbs.Items, now); why != "" {
				verdicts[cand] = verdict{why, ripe}
				continue
			}
			verdicts[cand] = verdict{"", true}
			byNode[cand.Node.Name] = cand
			cons.Candidates = append(cons.Candidates, &scheduling.ConsolidationCandidate{Node: cand.Node.Name, Pool: np.Name,
				Policy: np.Spec.Disruption.ConsolidationPolicy, Price: price, InstanceType: cand.Node.Labels[corev1.LabelInstanceTypeStable],
				CapacityType: cand.Node.Labels[v1.CapacityTypeLabelKey],
				Pods:         pods, DisruptionCost: cost})
		}
	}
	scheduling.SortCandidates(cons.Candidates)
	start := time.Now()
	move, kept := scheduling.Consolidate(cons, scheduling.Options{SpotRiskWeight: -1})
	metrics.ConsolidationDuration.Observe(time.Since(start).Seconds())
	for _, v := range kept {
		verdicts[byNode[v.Node]] = verdict{v.Reason, true}
	}
	c.report(ctx, verdicts, now)
	if move == nil {
		c.pending = nil
		return nil, nil
	}
	key := moveKey(move)
	if c.pending == nil || c.pending.key != key {
		c.pending = &pendingMove{key: key, since: now}
		logger.Info("consolidation found, validating", "nodes", key, "replacements", len(move.Replacements),
			"pricePerHour", move.Price, "newPricePerHour", move.NewPrice, "validateAfter", c.validationDelay().String())
		return nil, nil
	}
	if now.Sub(c.pending.since) < c.validationDelay() {
		return nil, nil
	}
	c.pending = nil
	return c.execute(ctx, move, byNode, templates, now)
}

// execute launches a move's replacements, then disrupts its nodes.
func (c *Controller) execute(ctx context.Context, move *scheduling.Move, byNode map[string]*Candidate, templates map[string]*v1.NodePool, now time.Time) ([]*v1.NodeClaim, error) {
	logger := log.FromContext(ctx)
	var launched []string
	for _, r := range move.Replacements {
		nc, err := c.Planner.Launch(ctx, r, templates[r.NodePool])
		if err != nil {
			// Nothing is disrupted; a replacement already launched is a new
			// empty node, which emptiness removes after its grace.
			return nil, fmt.Errorf("launching the replacement of a consolidation: %w", err)
		}
		launched = append(launched, nc.Name)
	}
	var drainBy time.Time
	what := "delete"
	if len(launched) > 0 {
		drainBy = now.Add(c.replaceDrainWait())
		what = fmt.Sprintf("replace with %s (%s)", strings.Join(launched, ", "),
			strings.Join(lo.Map(move.Replacements, func(r *scheduling.NodeClaimPlan, _ int) string {
				return fmt.Sprintf("%s %s", r.InstanceTypes[0].Type.Name, r.Offering.CapacityType)
			}), ", "))
	}
	note := fmt.Sprintf("Disrupting: Underutilized, %s: $%.4f/h -> $%.4f/h for %d nodes", what, move.Price, move.NewPrice, len(move.Candidates))
	var disrupted []*v1.NodeClaim
	for _, mc := range move.Candidates {
		cand := byNode[mc.Node]
		outcome, err := Disrupt(ctx, c.Kube, cand.Claim, UnderutilizedAnnotation, drainBy, now)
		if err != nil {
			return disrupted, err
		}
		if outcome != Disrupted {
			continue
		}
		disrupted = append(disrupted, cand.Claim)
		metrics.PodsDisrupted.WithLabelValues(mc.Pool, UnderutilizedAnnotation).Add(float64(len(mc.Pods)))
		c.Recorder.Eventf(cand.Claim, nil, corev1.EventTypeNormal, "DisruptionLaunched", "Disrupt", "%s", note)
		c.Recorder.Eventf(cand.Node, nil, corev1.EventTypeNormal, "DisruptionLaunched", "Disrupt", "%s", note)
	}
	metrics.ConsolidationSavings.Add(move.Saving())
	logger.Info("consolidating", "nodeclaims", claimNames(disrupted), "replacements", launched, "pricePerHour", move.Price, "newPricePerHour", move.NewPrice)
	return disrupted, nil
}

// unsettled says why the cluster is not in a state a move can be judged
// on: nodes still starting or launching (planned for pods on their way), or
// pods still moving off nodes being deleted.
func unsettled(snap *state.Snapshot) string {
	if len(snap.Starting) > 0 {
		return fmt.Sprintf("%d nodes are starting", len(snap.Starting))
	}
	if n := lo.CountBy(snap.Nodes, func(n scheduling.Node) bool { return n.InFlight }); n > 0 {
		return fmt.Sprintf("%d nodeclaims are launching", n)
	}
	if snap.Rescheduling > 0 {
		return fmt.Sprintf("%d pods wait to move off nodes being deleted", snap.Rescheduling)
	}
	return ""
}

// verdict is why a candidate stays, and whether consolidateAfter has passed
// for it (its Consolidatable condition).
type verdict struct {
	why  string
	ripe bool
}

// consolidatable reports whether the pool consolidates underused nodes and
// consolidateAfter has passed since a pod last came to or left cand.
func consolidatable(np *v1.NodePool, cand *Candidate, now time.Time) bool {
	after := np.Spec.Disruption.ConsolidateAfter
	if after.IsNever() || after.Err() != nil {
		return false
	}
	return after.Duration == nil || !cand.Idle.Add(*after.Duration).After(now)
}

// notConsolidatable says why a node may not be consolidated now, or "".
func (c *Controller) notConsolidatable(cand *Candidate, pods []*corev1.Pod, pdbs []policyv1.PodDisruptionBudget, now time.Time) string {
	after := cand.Pool.Spec.Disruption.ConsolidateAfter
	switch {
	case after.IsNever():
		return "consolidateAfter is Never"
	case after.Err() != nil:
		return fmt.Sprintf("spec.disruption.consolidateAfter: %v", after.Err())
	}
	if after.Duration != nil && cand.Idle.Add(*after.Duration).After(now) {
		return fmt.Sprintf("a pod came or went %s ago (consolidateAfter %s)", now.Sub(cand.Idle).Round(time.Second), after.String())
	}
	for _, p := range pods {
		if !state.Reschedulable(p) {
			return fmt.Sprintf("pod %s/%s has no controller to recreate it", p.Namespace, p.Name)
		}
		if why := doNotDisrupt(p, now); why != "" {
			return why
		}
		for i := range pdbs {
			pdb := &pdbs[i]
			if pdb.Namespace != p.Namespace || pdb.Status.DisruptionsAllowed > 0 {
				continue
			}
			sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			if err != nil || sel.Empty() || !sel.Matches(labels.Set(p.Labels)) {
				continue
			}
			return fmt.Sprintf("pod %s/%s is protected by PodDisruptionBudget %s, which allows no disruption now", p.Namespace, p.Name, pdb.Name)
		}
	}
	return ""
}

// doNotDisrupt says why a pod's karpenter.sh/do-not-disrupt annotation
// holds its node now: "true", or a duration not yet over since the pod
// started.
func doNotDisrupt(p *corev1.Pod, now time.Time) string {
	v, ok := p.Annotations[v1.DoNotDisruptAnnotationKey]
	if !ok {
		return ""
	}
	if v == "true" {
		return fmt.Sprintf("pod %s/%s is annotated %s", p.Namespace, p.Name, v1.DoNotDisruptAnnotationKey)
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return "" // not a value the annotation knows: it does not hold the node
	}
	started := p.CreationTimestamp.Time
	if p.Status.StartTime != nil {
		started = p.Status.StartTime.Time
	}
	if until := started.Add(d); until.After(now) {
		return fmt.Sprintf("pod %s/%s is annotated %s=%s until %s", p.Namespace, p.Name, v1.DoNotDisruptAnnotationKey, v, until.UTC().Format(time.RFC3339))
	}
	return ""
}

// report tells people why each candidate is still there: an
// Unconsolidatable event on its NodeClaim and Node when the answer changes,
// and the claim's Consolidatable condition (consolidateAfter has passed),
// whose message is the answer.
func (c *Controller) report(ctx context.Context, verdicts map[*Candidate]verdict, now time.Time) {
	if c.verdicts == nil {
		c.verdicts = map[string]string{}
	}
	seen := map[string]bool{}
	for cand, v := range verdicts {
		if cand == nil {
			continue
		}
		seen[cand.Claim.Name] = true
		if v.why != "" && c.verdicts[cand.Claim.Name] != v.why {
			c.Recorder.Eventf(cand.Claim, nil, corev1.EventTypeNormal, "Unconsolidatable", "Consolidate", "Not consolidating: %s", v.why)
			c.Recorder.Eventf(cand.Node, nil, corev1.EventTypeNormal, "Unconsolidatable", "Consolidate", "Not consolidating: %s", v.why)
		}
		c.verdicts[cand.Claim.Name] = v.why
		c.setConsolidatable(ctx, cand.Claim, v, now)
	}
	for name := range c.verdicts {
		if !seen[name] {
			delete(c.verdicts, name)
		}
	}
}

// setConsolidatable writes the claim's Consolidatable condition when it
// changes.
func (c *Controller) setConsolidatable(ctx context.Context, nc *v1.NodeClaim, v verdict, now time.Time) {
	cond := metav1.Condition{Type: v1.ConditionTypeConsolidatable, Status: metav1.ConditionTrue, Reason: "Consolidatable",
		LastTransitionTime: metav1.NewTime(now), ObservedGeneration: nc.Generation}
	if !v.ripe {
		cond.Status, cond.Reason = metav1.ConditionFalse, "ConsolidateAfterNotPassed"
	}
	if v.why != "" {
		cond.Message = "Kept: " + v.why
	}
	old := slices.IndexFunc(nc.Status.Conditions, func(x metav1.Condition) bool { return x.Type == cond.Type })
	if old >= 0 {
		o := nc.Status.Conditions[old]
		if o.Status == cond.Status && o.Reason == cond.Reason && o.Message == cond.Message {
			return
		}
		if o.Status == cond.Status {
			cond.LastTransitionTime = o.LastTransitionTime
		}
	}
	patch := client.MergeFrom(nc.DeepCopy())
	if old >= 0 {
		nc.Status.Conditions[old] = cond
	} else {
		nc.Status.Conditions = append(nc.Status.Conditions, cond)
	}
	if err := c.Kube.Status().Patch(ctx, nc, patch); err != nil {
		log.FromContext(ctx).V(1).Info("writing Consolidatable condition", "nodeclaim", nc.Name, "error", err.Error())
	}
}

func moveKey(m *scheduling.Move) string {
	nodes := lo.Map(m.Candidates, func(c *scheduling.ConsolidationCandidate, _ int) string { return c.Node })
	slices.Sort(nodes)
	return fmt.Sprintf("%s->%d", strings.Join(nodes, ","), len(m.Replacements))
}

func claimNames(claims []*v1.NodeClaim) []string {
	return lo.Map(claims, func(nc *v1.NodeClaim, _ int) string { return nc.Name })
}
