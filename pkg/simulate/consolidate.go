package simulate

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/samber/lo"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/scheduling"
)

// maxMoves bounds a preview; each move lowers the price, so it ends anyway.
const maxMoves = 100

// Preview is what consolidation would do to the nodes given, move after
// move, as the controller would over successive evaluations (budgets set
// the pace, not the outcome, so they are not applied).
type Preview struct {
	Moves []PreviewMove
	// Before and After are the nodes' count and hourly price.
	NodesBefore, NodesAfter int
	Before, After           float64
	// Kept says why each node left was not moved, by name.
	Kept map[string]string
	// Pending counts the unbound pods the preview leaves out: the
	// controller does not consolidate while pods it can place wait.
	Pending int
}

// PreviewMove is one move, in words.
type PreviewMove struct {
	What     string
	Saving   float64
	Replaces []string
}

// previewNode is a node of the preview with what it costs.
type previewNode struct {
	node         scheduling.Node
	pool         string
	price        float64
	instanceType string
	capacityType string
}

// Consolidate previews consolidation over in's nodes and the pods bound to
// them. Pods are taken as recreated by a controller (a file rarely says);
// DaemonSet and mirror pods stay with their node, and a node holding a pod
// annotated karpenter.sh/do-not-disrupt stays.
func (in *Input) Consolidate(cat *catalog.Catalog, pools []scheduling.NodePool, minSavings float64) (*Preview, error) {
	byPool := lo.KeyBy(in.NodePools, func(np *v1.NodePool) string { return np.Name })
	solverPools := lo.KeyBy(pools, func(p scheduling.NodePool) string { return p.Name })
	nodes, err := in.nodeViews(cat, solverPools)
	if err != nil {
		return nil, err
	}
	pv := &Preview{NodesBefore: len(nodes), Before: lo.SumBy(lo.Values(nodes), func(n *previewNode) float64 { return n.price }), Pending: len(in.Pods)}
	created := 0
	for range maxMoves {
		c := &scheduling.Consolidation{NodePools: pools, Allowed: map[string]int{}, PoolCost: map[string]float64{}, PoolDisruption: map[string]float64{},
			MinSavings: minSavings}
		pv.Kept = map[string]string{}
		for _, name := range slices.Sorted(maps.Keys(nodes)) {
			n := nodes[name]
			c.Nodes = append(c.Nodes, n.node)
			np, ok := byPool[n.pool]
			if !ok {
				pv.Kept[name] = "no NodePool in the files launched it (label karpenter.sh/nodepool)"
				continue
			}
			moving := lo.Filter(n.node.Pods, func(p *corev1.Pod, _ int) bool { return movable(p) })
			cost := scheduling.NodeDisruptionCost(moving)
			c.PoolCost[n.pool] += n.price
			c.PoolDisruption[n.pool] += cost
			c.Allowed[n.pool]++
			switch {
			case np.Spec.Disruption.ConsolidationPolicy == v1.ConsolidationPolicyWhenEmpty && len(moving) > 0:
				pv.Kept[name] = "its NodePool consolidates empty nodes only"
			case np.Spec.Disruption.ConsolidateAfter.IsNever():
				pv.Kept[name] = "its NodePool's consolidateAfter is Never"
			case slices.ContainsFunc(n.node.Pods, func(p *corev1.Pod) bool { return p.Annotations[v1.DoNotDisruptAnnotationKey] == "true" }):
				pv.Kept[name] = "a pod on it is annotated karpenter.sh/do-not-disrupt"
			default:
				c.Candidates = append(c.Candidates, &scheduling.ConsolidationCandidate{Node: name, Pool: n.pool, Policy: np.Spec.Disruption.ConsolidationPolicy,
					Price: n.price, InstanceType: n.instanceType, CapacityType: n.capacityType, Pods: moving, DisruptionCost: cost})
			}
		}
		scheduling.SortCandidates(c.Candidates)
		m, verdicts := scheduling.Consolidate(c, scheduling.Options{SpotRiskWeight: -1})
		for _, v := range verdicts {
			pv.Kept[v.Node] = v.Reason
		}
		if m == nil {
			break
		}
		pv.Moves = append(pv.Moves, describeMove(m, nodes))
		for _, cand := range m.Candidates {
			delete(nodes, cand.Node)
		}
		for name, pods := range m.Existing {
			nodes[name].node.Pods = append(slices.Clip(nodes[name].node.Pods), pods...)
		}
		for _, r := range m.Replacements {
			created++
			it, o := r.InstanceTypes[0].Type, r.Offering
			name := fmt.Sprintf("new-%d", created)
			alloc := it.Allocatable
			if sp, ok := solverPools[r.NodePool]; ok && sp.Settings != nil {
				_, alloc = it.Spec.Resources(*sp.Settings)
			}
			labels := lo.Assign(it.Labels, byPool[r.NodePool].Spec.Template.Labels, r.Labels, map[string]string{corev1.LabelHostname: name,
				corev1.LabelTopologyZone: o.Zone, v1.CapacityTypeLabelKey: o.CapacityType, v1.NodePoolLabelKey: r.NodePool})
			nodes[name] = &previewNode{node: scheduling.Node{Name: name, Labels: labels, Allocatable: alloc, Taints: byPool[r.NodePool].Spec.Template.Spec.Taints,
				Pods: r.Pods}, pool: r.NodePool, price: o.Price, instanceType: it.Name, capacityType: o.CapacityType}
		}
	}
	pv.NodesAfter = len(nodes)
	pv.After = lo.SumBy(lo.Values(nodes), func(n *previewNode) float64 { return n.price })
	return pv, nil
}

// nodeViews are in's nodes as the solver sees them, with their price.
// A node without status.allocatable gets its type's, under its pool's node
// class settings when the files have them.
func (in *Input) nodeViews(cat *catalog.Catalog, solverPools map[string]scheduling.NodePool) (map[string]*previewNode, error) {
	nodes := map[string]*previewNode{}
	for _, n := range in.Nodes {
		typ, zone, ct := n.Labels[corev1.LabelInstanceTypeStable], n.Labels[corev1.LabelTopologyZone], n.Labels[v1.CapacityTypeLabelKey]
		price, ok := cat.Price(typ, zone, ct)
		if !ok {
			return nil, fmt.Errorf("Node %s: the %s catalog has no %s %s in %s", n.Name, cat.Region, ct, typ, zone)
		}
		it := cat.Get(typ)
		alloc := n.Status.Allocatable
		if len(alloc) == 0 {
			alloc = it.Allocatable
			if sp, ok := solverPools[n.Labels[v1.NodePoolLabelKey]]; ok && sp.Settings != nil {
				_, alloc = it.Spec.Resources(*sp.Settings)
			}
		}
		labels := lo.Assign(it.Labels, n.Labels, map[string]string{corev1.LabelHostname: n.Name})
		nodes[n.Name] = &previewNode{node: scheduling.Node{Name: n.Name, Labels: labels, Taints: n.Spec.Taints, Allocatable: alloc, Pods: in.Bound[n.Name]},
			pool: n.Labels[v1.NodePoolLabelKey], price: price, instanceType: typ, capacityType: ct}
	}
	for name, pods := range in.Bound {
		if _, ok := nodes[name]; !ok {
			return nil, fmt.Errorf("pod %s/%s is bound to node %s, which no file defines", pods[0].Namespace, pods[0].Name, name)
		}
	}
	return nodes, nil
}

// movable says a bound pod must find room elsewhere if its node goes.
func movable(p *corev1.Pod) bool {
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return false
	}
	owner := metav1.GetControllerOf(p)
	return owner == nil || owner.Kind != "DaemonSet"
}

func describeMove(m *scheduling.Move, nodes map[string]*previewNode) PreviewMove {
	olds := lo.Map(m.Candidates, func(c *scheduling.ConsolidationCandidate, _ int) string {
		n := nodes[c.Node]
		return fmt.Sprintf("%s (%s %s, $%.4f/h)", c.Node, n.instanceType, n.capacityType, n.price)
	})
	pods := lo.SumBy(m.Candidates, func(c *scheduling.ConsolidationCandidate) int { return len(c.Pods) })
	what := fmt.Sprintf("delete %s: its %d pods fit on the other nodes", strings.Join(olds, ", "), pods)
	if !m.Delete() {
		news := lo.Map(m.Replacements, func(r *scheduling.NodeClaimPlan, _ int) string {
			return fmt.Sprintf("%s %s in %s ($%.4f/h)", r.InstanceTypes[0].Type.Name, r.Offering.CapacityType, r.Offering.Zone, r.Price())
		})
		what = fmt.Sprintf("replace %s with %s", strings.Join(olds, ", "), strings.Join(news, ", "))
	}
	return PreviewMove{What: what, Saving: m.Saving(), Replaces: lo.Map(m.Candidates, func(c *scheduling.ConsolidationCandidate, _ int) string { return c.Node })}
}

// Print writes the preview for a person.
func (pv *Preview) Print(w io.Writer) {
	fmt.Fprintf(w, "\nConsolidation preview: %d nodes, $%.4f/hour\n", pv.NodesBefore, pv.Before)
	if pv.Pending > 0 {
		fmt.Fprintf(w, "  (the %d unbound pods are left out: nodewright does not consolidate while pods it can place wait)\n", pv.Pending)
	}
	for i, m := range pv.Moves {
		fmt.Fprintf(w, "  %d. %s, saving $%.4f/hour\n", i+1, m.What, m.Saving)
	}
	if len(pv.Moves) == 0 {
		fmt.Fprintln(w, "  nothing to consolidate")
	}
	for _, name := range slices.Sorted(maps.Keys(pv.Kept)) {
		fmt.Fprintf(w, "  kept %s: %s\n", name, pv.Kept[name])
	}
	fmt.Fprintf(w, "After: %d nodes, $%.4f/hour", pv.NodesAfter, pv.After)
	if pv.Before > 0 {
		fmt.Fprintf(w, " (%.0f%% saved)", 100*(1-pv.After/pv.Before))
	}
	fmt.Fprintln(w)
}
