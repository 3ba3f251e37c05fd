package scheduling

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/samber/lo"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
)

// fleet is a settled cluster of reference-catalog nodes for consolidation
// tests.
type fleet struct {
	t     *testing.T
	cat   *catalog.Catalog
	c     *Consolidation
	nodes int
}

func newFleet(t *testing.T, types int) *fleet {
	cat, settings := referenceCatalog(t, types)
	return &fleet{t: t, cat: cat, c: &Consolidation{
		NodePools: []NodePool{pool("default", cat, settings)},
		Allowed:   map[string]int{"default": 1000}, MinSavings: 0.1,
	}}
}

// node adds a running node of the given type and capacity type in zone
// test1-az1 with pods bound to it; a candidate unless keep.
func (f *fleet) node(typ, capacityType string, policy v1.ConsolidationPolicy, candidate bool, pods ...*corev1.Pod) string {
	f.t.Helper()
	f.nodes++
	it := f.cat.Get(typ)
	if it == nil {
		f.t.Fatalf("no type %s", typ)
	}
	zone := it.Offerings[0].Zone
	name := fmt.Sprintf("node-%02d", f.nodes)
	labels := lo.Assign(it.Labels, map[string]string{v1.LabelHostname: name, v1.LabelTopologyZone: zone,
		v1.CapacityTypeLabelKey: capacityType, v1.NodePoolLabelKey: "default"})
	f.c.Nodes = append(f.c.Nodes, Node{Name: name, Labels: labels, Allocatable: it.Allocatable, Pods: pods})
	price, ok := f.cat.Price(typ, zone, capacityType)
	if !ok {
		f.t.Fatalf("%s is not offered %s in %s", typ, capacityType, zone)
	}
	if candidate {
		f.c.Candidates = append(f.c.Candidates, &ConsolidationCandidate{Node: name, Pool: "default", Policy: policy,
			Price: price, InstanceType: typ, CapacityType: capacityType, Pods: pods, DisruptionCost: NodeDisruptionCost(pods)})
	}
	return name
}

func (f *fleet) consolidate() (*Move, []Verdict) {
	SortCandidates(f.c.Candidates)
	return Consolidate(f.c, Options{SpotRiskWeight: -1})
}

func names(m *Move) []string {
	return lo.Map(m.Candidates, func(c *ConsolidationCandidate, _ int) string { return c.Node })
}

// Two half-used nodes: one's pod fits on the other, so it is deleted.
// Mutation tried: simulate always requiring a replacement -> a replace.
func TestConsolidationDeletesANodeWhosePodsFitElsewhere(t *testing.T) {
	f := newFleet(t, 8)
	f.node("ref-003.size", v1.CapacityTypeOnDemand, v1.ConsolidationPolicyWhenEmptyOrUnderutilized, false, pod("2", "2Gi"))
	gone := f.node("ref-003.size", v1.CapacityTypeOnDemand, v1.ConsolidationPolicyWhenEmptyOrUnderutilized, true, pod("1", "1Gi"))
	m, verdicts := f.consolidate()
	if m == nil {
		t.Fatalf("no move; verdicts %v", verdicts)
	}
	if !m.Delete() || len(m.Candidates) != 1 || m.Candidates[0].Node != gone {
		t.Fatalf("want %s deleted, got %v with %d replacements", gone, names(m), len(m.Replacements))
	}
	if m.Saving() != m.Price || m.Price == 0 {
		t.Errorf("a delete saves the node's whole price: saving %v, price %v", m.Saving(), m.Price)
	}
}

// A 1-vCPU pod alone on an 8-vCPU node goes to a cheaper node, and no
// fallback type of the replacement costs as much as the node.
// Mutation tried: dropping restrictPrice -> the fallback list held types
// dearer than the node.
func TestConsolidationReplacesWithACheaperNode(t *testing.T) {
	f := newFleet(t, 16)
	name := f.node("ref-007.size", v1.CapacityTypeOnDemand, v1.ConsolidationPolicyWhenEmptyOrUnderutilized, true, pod("1", "1Gi"))
	m, verdicts := f.consolidate()
	if m == nil {
		t.Fatalf("no move; verdicts %v", verdicts)
	}
	if len(m.Replacements) != 1 || m.Candidates[0].Node != name {
		t.Fatalf("want %s replaced by one node, got %v -> %d", name, names(m), len(m.Replacements))
	}
	r := m.Replacements[0]
	if r.Price() >= m.Price*0.9 {
		t.Errorf("replacement costs %v, the node %v", r.Price(), m.Price)
	}
	for _, c := range r.InstanceTypes {
		for _, o := range c.Offerings() {
			if o.Price >= m.Price*0.9 {
				t.Errorf("fallback %s %s %s costs %v, no less than the node's %v less 10%%", c.Type.Name, o.Zone, o.CapacityType, o.Price, m.Price)
			}
		}
	}
	if vals := r.Requirements[v1.LabelInstanceTypeStable].Values(); len(vals) != len(r.InstanceTypes) {
		t.Errorf("requirements allow %d types, the claim lists %d", len(vals), len(r.InstanceTypes))
	}
}

// The minimum saving: a replace that saves 50 % happens with a 40 %
// minimum and not with a 60 % one; a delete needs none.
// Mutation tried: ignoring MinSavings -> the 60 % case replaced.
func TestConsolidationMinimumSaving(t *testing.T) {
	for _, tc := range []struct {
		min  float64
		want bool
	}{{0.4, true}, {0.6, false}} {
		f := newFleet(t, 4)
		f.c.MinSavings = tc.min
		f.node("ref-001.size", v1.CapacityTypeOnDemand, v1.ConsolidationPolicyWhenEmptyOrUnderutilized, true, pod("500m", "512Mi"))
		m, verdicts := f.consolidate()
		if got := m != nil; got != tc.want {
			t.Errorf("min saving %v: move %v, want %v (verdicts %v)", tc.min, got, tc.want, verdicts)
		}
		if !tc.want && (len(verdicts) != 1 || !strings.Contains(verdicts[0].Reason, "saving")) {
			t.Errorf("want a verdict naming the saving, got %v", verdicts)
		}
	}
}

// Four nodes each running one 1-vCPU pod become one node (N -> 1).
// Mutation tried: multi-node search off -> one node at a time.
func TestMultiNodeConsolidation(t *testing.T) {
	f := newFleet(t, 8)
	for range 4 {
		f.node("ref-003.size", v1.CapacityTypeOnDemand, v1.ConsolidationPolicyWhenEmptyOrUnderutilized, true, pod("900m", "1Gi"))
	}
	m, verdicts := f.consolidate()
	if m == nil {
		t.Fatalf("no move; verdicts %v", verdicts)
	}
	if len(m.Candidates) < 3 {
		t.Errorf("want at least 3 nodes consolidated at once, got %v -> %d", names(m), len(m.Replacements))
	}
	if m.NewPrice >= m.Price {
		t.Errorf("new %v, old %v", m.NewPrice, m.Price)
	}
}

// Six 4-vCPU nodes with a 1.5-vCPU pod each repack onto fewer, cheaper new
// nodes (N -> M with 1 < M < N; the reference catalog prices 2 pods on a
// 4-vCPU node as 1 on a 2-vCPU node, so M is 3 or 4), which Karpenter's
// N -> 1 cannot express when no type holds all six pods.
// Mutation tried: maxNew 1 for multi-node -> only single moves found.
func TestNToMConsolidation(t *testing.T) {
	f := newFleet(t, 4) // the largest type has 4 vCPU
	for range 6 {
		f.node("ref-003.size", v1.CapacityTypeOnDemand, v1.ConsolidationPolicyWhenEmptyOrUnderutilized, true, pod("1500m", "1Gi"))
	}
	m, verdicts := f.consolidate()
	if m == nil {
		t.Fatalf("no move; verdicts %v", verdicts)
	}
	if len(m.Candidates) != 6 || len(m.Replacements) < 2 || len(m.Replacements) > 4 || m.NewPrice >= m.Price {
		t.Errorf("want 6 -> 3 or 4 for less, got %v -> %d ($%v -> $%v)", names(m), len(m.Replacements), m.Price, m.NewPrice)
	}
}

// Spot replacing spot needs 15 cheaper spot types: refused in a catalog of
// 4 types, made in one of 40.
// Mutation tried: no MinSpotToSpotTypes check -> the 4-type case replaced.
func TestSpotToSpotNeedsFifteenCheaperTypes(t *testing.T) {
	small := newFleet(t, 4)
	small.c.NodePools[0].Requirements = reqsOf(v1.CapacityTypeLabelKey, v1.CapacityTypeSpot)
	small.node("ref-003.size", v1.CapacityTypeSpot, v1.ConsolidationPolicyWhenEmptyOrUnderutilized, true, pod("500m", "512Mi"))
	m, verdicts := small.consolidate()
	if m != nil || len(verdicts) != 1 || !strings.Contains(verdicts[0].Reason, "price-capacity-optimized") {
		t.Errorf("4 types: want no move and a verdict naming the rule, got %v %v", m, verdicts)
	}
	large := newFleet(t, 40)
	large.c.NodePools[0].Requirements = reqsOf(v1.CapacityTypeLabelKey, v1.CapacityTypeSpot)
	large.node("ref-039.size", v1.CapacityTypeSpot, v1.ConsolidationPolicyWhenEmptyOrUnderutilized, true, pod("500m", "512Mi"))
	if m, verdicts := large.consolidate(); m == nil || len(m.Replacements) != 1 {
		t.Errorf("40 types: want a spot replacement, got %v %v", m, verdicts)
	}
}

// With spot-to-spot off (Karpenter's SpotToSpotConsolidation=false), the
// move the 40-type catalog makes above is refused with a verdict naming the
// gate.
// Mutation tried: the NoSpotToSpot check removed -> the spot node replaced.
func TestNoSpotToSpotKeepsSpotNodes(t *testing.T) {
	f := newFleet(t, 40)
	f.c.NoSpotToSpot = true
	f.c.NodePools[0].Requirements = reqsOf(v1.CapacityTypeLabelKey, v1.CapacityTypeSpot)
	f.node("ref-039.size", v1.CapacityTypeSpot, v1.ConsolidationPolicyWhenEmptyOrUnderutilized, true, pod("500m", "512Mi"))
	if m, verdicts := f.consolidate(); m != nil || len(verdicts) != 1 || !strings.Contains(verdicts[0].Reason, "SpotToSpotConsolidation=false") {
		t.Errorf("want no move and a verdict naming the gate, got %v %v", m, verdicts)
	}
}

// An on-demand node in a pool that allows spot goes back to spot when spot
// is offered again and cheaper.
func TestOnDemandRevertsToSpot(t *testing.T) {
	cat, settings := referenceCatalog(t, 4)
	// Spot at 30 % of on-demand in the reference catalog's zones 1-2.
	for _, it := range cat.Types {
		for i := range it.Offerings {
			if it.Offerings[i].CapacityType == v1.CapacityTypeSpot {
				it.Offerings[i].Price *= 0.3
			}
		}
	}
	f := &fleet{t: t, cat: cat, c: &Consolidation{NodePools: []NodePool{pool("default", cat, settings)}, Allowed: map[string]int{"default": 1}, MinSavings: 0.1}}
	f.node("ref-001.size", v1.CapacityTypeOnDemand, v1.ConsolidationPolicyWhenEmptyOrUnderutilized, true, pod("1500m", "1Gi"))
	m, verdicts := f.consolidate()
	if m == nil || len(m.Replacements) != 1 {
		t.Fatalf("want a replace, got %v %v", m, verdicts)
	}
	if ct := m.Replacements[0].Offering.CapacityType; ct != v1.CapacityTypeSpot {
		t.Errorf("replacement is %s, want spot", ct)
	}
}

// Budgets bound multi-node moves and stop single ones.
// Mutation tried: ignoring Allowed -> all four nodes in one move.
func TestConsolidationWithinBudget(t *testing.T) {
	f := newFleet(t, 8)
	f.c.Allowed["default"] = 2
	for range 4 {
		f.node("ref-003.size", v1.CapacityTypeOnDemand, v1.ConsolidationPolicyWhenEmptyOrUnderutilized, true, pod("900m", "1Gi"))
	}
	m, _ := f.consolidate()
	if m == nil || len(m.Candidates) != 2 {
		t.Errorf("budget 2: want 2 nodes in the move, got %v", m)
	}
	f.c.Allowed["default"] = 0
	if m, verdicts := f.consolidate(); m != nil || len(verdicts) != 4 || !strings.Contains(verdicts[0].Reason, "budget") {
		t.Errorf("budget 0: want no move and budget verdicts, got %v %v", m, verdicts)
	}
}

// Pods that fit nowhere keep their node.
func TestConsolidationKeepsANodeWhosePodsFitNowhere(t *testing.T) {
	f := newFleet(t, 4)
	f.node("ref-003.size", v1.CapacityTypeOnDemand, v1.ConsolidationPolicyWhenEmptyOrUnderutilized, true, pod("3500m", "1Gi"), pod("1", "1Gi"))
	if m, verdicts := f.consolidate(); m != nil || len(verdicts) != 1 {
		t.Errorf("want the node kept, got %v %v", m, verdicts)
	}
}

// The Balanced score, as Karpenter's balanced-consolidation design defines
// it, for a table of moves; and a move WhenEmptyOrUnderutilized makes that
// Balanced refuses.
func TestBalancedScore(t *testing.T) {
	for _, tc := range []struct {
		name                                         string
		saving, poolCost, disruption, poolDisruption float64
		want                                         float64
	}{
		// Deleting one of ten equal nodes, each 1 + one pod: 10 % of the cost
		// for 10 % of the disruption.
		{"delete one of ten", 1, 10, 2, 20, 1},
		// Replacing it at half price: 5 % of the cost for 10 % of the
		// disruption, exactly the threshold.
		{"replace at half price", 0.5, 10, 2, 20, 0.5},
		// Half price, but the node runs three of the pool's pods.
		{"replace a busy node", 0.5, 10, 4, 22, 0.275},
		// A 5 % saving moving one pod.
		{"marginal replace", 0.05, 10, 2, 20, 0.05},
	} {
		if got := BalancedScore(tc.saving, tc.poolCost, tc.disruption, tc.poolDisruption); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: score %v, want %v", tc.name, got, tc.want)
		}
	}

	for _, policy := range []v1.ConsolidationPolicy{v1.ConsolidationPolicyWhenEmptyOrUnderutilized, v1.ConsolidationPolicyBalanced} {
		f := newFleet(t, 4)
		// A 2-vCPU node whose three pods fit a 1-vCPU node (half price),
		// in a pool of ten such nodes.
		busy := []*corev1.Pod{pod("300m", "256Mi"), pod("300m", "256Mi"), pod("300m", "256Mi")}
		f.node("ref-001.size", v1.CapacityTypeOnDemand, policy, true, busy...)
		price := f.c.Candidates[0].Price
		f.c.PoolCost = map[string]float64{"default": 10 * price}
		f.c.PoolDisruption = map[string]float64{"default": 9*2 + NodeDisruptionCost(busy)}
		m, verdicts := f.consolidate()
		switch policy {
		case v1.ConsolidationPolicyBalanced:
			if m != nil || len(verdicts) != 1 || !strings.Contains(verdicts[0].Reason, "score of 0.28") {
				t.Errorf("Balanced: want the replace refused with score 0.28, got %v %v", m, verdicts)
			}
		default:
			if m == nil || len(m.Replacements) != 1 {
				t.Errorf("WhenEmptyOrUnderutilized: want the replace, got %v %v", m, verdicts)
			}
		}
	}
}

// Eviction cost follows pod-deletion-cost and priority, bounded.
func TestEvictionCost(t *testing.T) {
	p := pod("1", "1Gi")
	if got := EvictionCost(p); got != 1 {
		t.Errorf("plain pod: %v", got)
	}
	p.Annotations = map[string]string{"controller.kubernetes.io/pod-deletion-cost": fmt.Sprint(1 << 27)}
	if got := EvictionCost(p); got != 2 {
		t.Errorf("deletion cost 2^27: %v, want 2", got)
	}
	p.Spec.Priority = ptr.To(int32(2_000_000_000))
	if got := EvictionCost(p); got != 10 {
		t.Errorf("system-critical priority: %v, want the bound 10", got)
	}
}

func reqsOf(key string, values ...string) requirements.Requirements {
	return requirements.Requirements{key: requirements.MustNew(key, corev1.NodeSelectorOpIn, values...)}
}
