package scheduling

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"slices"
	"strconv"
	"sync"

	"github.com/samber/lo"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
)

// Consolidation is a settled cluster and the nodes consolidation may remove:
// the pure entry point that asks the solver "these pods, on these nodes minus
// those, plus new ones?" without an API server, so the decision can be
// tested and benchmarked on its own.
type Consolidation struct {
	// Nodes are the running nodes, candidates included, each with its bound
	// pods.
	Nodes []Node
	// NodePools replacements may come from, with their usage.
	NodePools []NodePool
	// DaemonSets and VolumeZones as in Input.
	DaemonSets  []*corev1.Pod
	VolumeZones map[types.UID][]string
	// Candidates are the nodes that may go, in the order they are preferred
	// (see SortCandidates).
	Candidates []*ConsolidationCandidate
	// Allowed is how many nodes of each pool its Underutilized budget lets
	// go now; a pool not named allows none.
	Allowed map[string]int
	// MinSavings is the share of the removed nodes' price a replace must save
	// under WhenEmptyOrUnderutilized (deletes need save nothing): nodes do
	// not churn for pennies.
	MinSavings float64
	// PoolCost and PoolDisruption are the hourly price and the disruption
	// cost of all of each pool's nodes: the denominators of the Balanced
	// score.
	PoolCost, PoolDisruption map[string]float64
	// MaxCandidates bounds the nodes multi-node consolidation looks at;
	// default 100.
	MaxCandidates int
	// NoSpotToSpot refuses any move that replaces spot nodes with a node
	// that may launch as spot (Karpenter's SpotToSpotConsolidation=false):
	// spot nodes are then only deleted, or replaced by on-demand. Default
	// false: spot may replace spot under the MinSpotToSpotTypes rule.
	NoSpotToSpot bool

	cache *solveCache
	// types are the allocatable and lowest price of every type any pool may
	// launch, cheapest first.
	types []pricedType
}

type pricedType struct {
	alloc Resources
	price float64
}

// ConsolidationCandidate is a node consolidation may remove.
type ConsolidationCandidate struct {
	// Node names the node in Consolidation.Nodes.
	Node string
	// Pool is the node's NodePool and Policy its consolidationPolicy.
	Pool   string
	Policy v1.ConsolidationPolicy
	// Price is the node's hourly price; InstanceType and CapacityType what
	// it is and how it was bought.
	Price        float64
	InstanceType string
	CapacityType string
	// Pods are the pods that must move if the node goes (not DaemonSet,
	// mirror or finished pods, which go with it).
	Pods []*corev1.Pod
	// DisruptionCost is 1 plus the EvictionCost of each of Pods.
	DisruptionCost float64
}

// Move is a consolidation the cluster can make: remove Candidates, launch
// Replacements (none: a delete), all their pods still placed.
type Move struct {
	Candidates   []*ConsolidationCandidate
	Replacements []*NodeClaimPlan
	// Existing are the pods the move puts on nodes that stay, by node.
	Existing map[string][]*corev1.Pod
	// Price is what the candidates cost per hour, NewPrice the replacements.
	Price, NewPrice float64
	// Score is the Balanced score (savings share over disruption share of
	// the pools involved); +Inf when no Balanced pool is involved.
	Score float64
}

// Delete says the move launches nothing.
func (m *Move) Delete() bool { return len(m.Replacements) == 0 }

// Saving is the hourly price the move saves.
func (m *Move) Saving() float64 { return m.Price - m.NewPrice }

// Verdict says why a candidate was not consolidated on its own.
type Verdict struct {
	Node   string
	Reason string
}

// Constants of consolidation, as Karpenter's.
const (
	// BalancedThreshold is the score a Balanced move needs: the share of the
	// pool's cost it saves at least half the share of the pool's disruption
	// cost it causes (k = 2).
	BalancedThreshold = 0.5
	// MinSpotToSpotTypes is how many spot types cheaper than the node a
	// spot-to-spot replacement must be able to launch as: with fewer, the
	// fleet's price-capacity-optimized choice is lost, and the replacement
	// lands in the pool most likely to be reclaimed next.
	MinSpotToSpotTypes = 15
	// defaultMaxCandidates bounds multi-node consolidation.
	defaultMaxCandidates = 100
)

// EvictionCost weighs evicting one pod, as Karpenter does: 1, plus its
// controller.kubernetes.io/pod-deletion-cost over 2^27 and its priority over
// 2^25, kept within [-10, 10].
func EvictionCost(p *corev1.Pod) float64 {
	cost := 1.0
	if v, ok := p.Annotations["controller.kubernetes.io/pod-deletion-cost"]; ok {
		if n, err := strconv.ParseInt(v, 10, 32); err == nil {
			cost += float64(n) / math.Pow(2, 27)
		}
	}
	if p.Spec.Priority != nil {
		cost += float64(*p.Spec.Priority) / math.Pow(2, 25)
	}
	return math.Max(-10, math.Min(10, cost))
}

// NodeDisruptionCost is 1 for the node plus the eviction cost of each pod
// that must move: never zero, so a Balanced score always has a denominator.
func NodeDisruptionCost(pods []*corev1.Pod) float64 {
	return 1 + lo.SumBy(pods, EvictionCost)
}

// BalancedScore is a move's savings share of the pools' cost over its
// disruption share of the pools' disruption cost.
func BalancedScore(saving, poolCost, disruption, poolDisruption float64) float64 {
	if poolCost <= 0 || poolDisruption <= 0 || disruption <= 0 {
		return math.Inf(1)
	}
	return (saving / poolCost) / (disruption / poolDisruption)
}

// SortCandidates orders candidates as consolidation prefers them: the least
// disruptive first, then the most expensive, then by name.
func SortCandidates(cands []*ConsolidationCandidate) {
	slices.SortStableFunc(cands, func(a, b *ConsolidationCandidate) int {
		return cmp.Or(cmp.Compare(a.DisruptionCost, b.DisruptionCost), cmp.Compare(b.Price, a.Price), cmp.Compare(a.Node, b.Node))
	})
}

// Consolidate finds the move to make now, or nil. It first looks for the
// largest prefix of the candidates (within each pool's budget) that the rest
// of the cluster plus fewer new nodes than it removes can absorb for less
// (Karpenter's multi-node consolidation, widened from N -> 1 to N -> M < N),
// then for a single node to delete or replace with one cheaper node. The
// verdicts say why each candidate tried alone was kept.
func Consolidate(c *Consolidation, opts Options) (*Move, []Verdict) {
	budget := map[string]int{}
	var within []*ConsolidationCandidate
	for _, cand := range c.Candidates {
		if budget[cand.Pool] < c.Allowed[cand.Pool] {
			budget[cand.Pool]++
			within = append(within, cand)
		}
	}
	limit := c.MaxCandidates
	if limit <= 0 {
		limit = defaultMaxCandidates
	}
	if len(within) > limit {
		within = within[:limit]
	}
	// Binary search for the largest prefix that works, as Karpenter does:
	// not every prefix length is tried, but a cycle stays a few solves.
	var best *Move
	low, high := 2, len(within)
	for low <= high {
		mid := (low + high) / 2
		if m, _ := c.simulate(within[:mid], mid-1, opts); m != nil {
			best, low = m, mid+1
		} else {
			high = mid - 1
		}
	}
	if best != nil {
		return best, nil
	}
	// Each candidate alone, in order; the first that works wins. The solves
	// are independent, so they run on every core, a batch at a time, and
	// the batch is read in order: the answer does not depend on timing.
	c.prepare()
	var verdicts []Verdict
	workers := runtime.GOMAXPROCS(0)
	for start := 0; start < len(c.Candidates); start += workers {
		batch := c.Candidates[start:min(start+workers, len(c.Candidates))]
		moves, whys := make([]*Move, len(batch)), make([]string, len(batch))
		var wg sync.WaitGroup
		for i, cand := range batch {
			if c.Allowed[cand.Pool] <= 0 {
				whys[i] = "the NodePool's disruption budget for Underutilized allows no more nodes now"
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				moves[i], whys[i] = c.simulate([]*ConsolidationCandidate{cand}, 1, opts)
			}()
		}
		wg.Wait()
		for i, cand := range batch {
			if moves[i] != nil {
				return moves[i], verdicts
			}
			verdicts = append(verdicts, Verdict{cand.Node, whys[i]})
		}
	}
	return nil, verdicts
}

// simulate plans the pods of set onto the other nodes and at most maxNew new
// ones, and returns the move when it is worth making, else why not.
func (c *Consolidation) simulate(set []*ConsolidationCandidate, maxNew int, opts Options) (*Move, string) {
	c.prepare()
	gone := map[string]bool{}
	m := &Move{Candidates: set, Score: math.Inf(1)}
	var pods []*corev1.Pod
	for _, cand := range set {
		gone[cand.Node] = true
		pods = append(pods, cand.Pods...)
		m.Price += cand.Price
	}
	rest := lo.Filter(c.Nodes, func(n Node, _ int) bool { return !gone[n.Name] })
	without := lo.Filter(c.Nodes, func(n Node, _ int) bool { return gone[n.Name] })
	in := Input{Pods: pods, Nodes: rest, DaemonSets: c.DaemonSets, VolumeZones: c.VolumeZones, cache: c.cache, without: without}
	// First without NodePools: does everything fit on the rest (a delete)?
	// It is the cheaper solve, and what it leaves over bounds a replace.
	plan := Solve(in, opts)
	if len(plan.Unschedulable) > 0 {
		if maxNew == 0 {
			return nil, "its pods do not all fit on the other nodes"
		}
		// The solver fills existing nodes first, so a replace plans the
		// pods left over here onto new nodes: skip the solve when no type
		// that holds them (one node, or the largest of them) is cheap enough.
		var left Resources
		largest := 0.0
		for _, u := range plan.Unschedulable {
			r, _ := PodRequests(u.Pod)
			left = left.Add(r)
			largest = math.Max(largest, c.cheapestHolding(r))
		}
		floor := largest
		if maxNew == 1 {
			floor = c.cheapestHolding(left)
		}
		if ceiling := c.ceiling(set, m.Price); floor >= ceiling {
			return nil, fmt.Sprintf("its pods need a new node, and none that holds them costs under $%.4f/h (the node's price less the saving a replace needs)", ceiling)
		}
		in.NodePools = c.NodePools
		bounded := opts
		bounded.maxNew = maxNew
		plan = Solve(in, bounded)
	}
	if len(plan.Unschedulable) > 0 {
		u := plan.Unschedulable[0]
		return nil, fmt.Sprintf("pod %s/%s would fit nowhere else: %s", u.Pod.Namespace, u.Pod.Name, u.Reason)
	}
	if plan.Opened > maxNew {
		return nil, fmt.Sprintf("its pods fit elsewhere only with %d new nodes", plan.Opened)
	}
	m.Existing = plan.Existing
	m.NewPrice = plan.Cost()
	if len(plan.NodeClaims) > 0 {
		ceiling := c.ceiling(set, m.Price)
		if m.NewPrice >= ceiling {
			return nil, fmt.Sprintf("a replacement would cost $%.4f/h against $%.4f/h now, under the %.0f%% saving a replace needs",
				m.NewPrice, m.Price, 100*(1-ceiling/m.Price))
		}
		allSpot := lo.EveryBy(set, func(cand *ConsolidationCandidate) bool { return cand.CapacityType == v1.CapacityTypeSpot })
		slack := ceiling - m.NewPrice
		for _, claim := range plan.NodeClaims {
			limit := claim.Price() + slack
			if len(set) > 1 {
				// Replacing several nodes with a node of one of their own
				// types is deleting the others, without the launch: that
				// move is found among the smaller sets.
				for _, cand := range set {
					if slices.ContainsFunc(claim.InstanceTypes, func(it catalog.Candidate) bool { return it.Type.Name == cand.InstanceType }) {
						limit = math.Min(limit, cand.Price)
					}
				}
			}
			r, n := restrictPrice(claim, limit, allSpot)
			if r == nil {
				return nil, "no replacement type stays cheaper than the nodes it replaces"
			}
			if allSpot && n > 0 && c.NoSpotToSpot {
				return nil, "the replacement could launch as spot, and spot-to-spot consolidation is off (feature gate SpotToSpotConsolidation=false)"
			}
			if allSpot && n > 0 && n < MinSpotToSpotTypes {
				return nil, fmt.Sprintf("a spot replacement could launch as only %d spot types cheaper than the node, fewer than the %d that keep price-capacity-optimized choice",
					n, MinSpotToSpotTypes)
			}
			m.Replacements = append(m.Replacements, r)
		}
		m.NewPrice = lo.SumBy(m.Replacements, func(r *NodeClaimPlan) float64 { return r.Price() })
	}
	if score, balanced := c.score(m); balanced {
		m.Score = score
		if score < BalancedThreshold {
			return nil, fmt.Sprintf("Balanced: it would save %.4f $/h for a score of %.2f, under %.2f", m.Saving(), score, BalancedThreshold)
		}
	}
	return m, ""
}

// score is the Balanced score of m over the pools it touches, and whether
// any of them is Balanced.
func (c *Consolidation) score(m *Move) (float64, bool) {
	pools := map[string]bool{}
	balanced := false
	disruption := 0.0
	for _, cand := range m.Candidates {
		pools[cand.Pool] = true
		balanced = balanced || cand.Policy == v1.ConsolidationPolicyBalanced
		disruption += cand.DisruptionCost
	}
	if !balanced {
		return math.Inf(1), false
	}
	var cost, poolDisruption float64
	for p := range pools {
		cost += c.PoolCost[p]
		poolDisruption += c.PoolDisruption[p]
	}
	return BalancedScore(m.Saving(), cost, disruption, poolDisruption), true
}

// restrictPrice keeps the offerings of a planned replacement that cost less
// than ceiling, so no fallback the launch takes when capacity runs out can
// cost more than the node it replaces, and narrows the claim's requirements
// to them. When spot is true (spot replacing spot) it also counts the spot
// types left; a nil claim means none are left.
func restrictPrice(claim *NodeClaimPlan, ceiling float64, spot bool) (*NodeClaimPlan, int) {
	out := *claim
	out.InstanceTypes = nil
	zones, cts := map[string]bool{}, map[string]bool{}
	spotTypes := 0
	for _, cand := range claim.InstanceTypes {
		mask, hasSpot := uint64(0), false
		for m := cand.Mask; m != 0; m &= m - 1 {
			i := bits.TrailingZeros64(m)
			if o := cand.Type.Offerings[i]; o.Price < ceiling {
				mask |= 1 << i
				zones[o.Zone], cts[o.CapacityType] = true, true
				hasSpot = hasSpot || o.CapacityType == v1.CapacityTypeSpot
			}
		}
		if mask == 0 {
			continue
		}
		if hasSpot {
			spotTypes++
		}
		out.InstanceTypes = append(out.InstanceTypes, catalog.Candidate{Type: cand.Type, Mask: mask})
	}
	if len(out.InstanceTypes) == 0 {
		return nil, 0
	}
	if out.Offering.Price >= ceiling {
		// The planned offering is gone: the cheapest left is the launch's
		// price now.
		out.Offering = out.InstanceTypes[0].Cheapest()
		for _, it := range out.InstanceTypes[1:] {
			if o := it.Cheapest(); o.Price < out.Offering.Price {
				out.Offering = o
			}
		}
	}
	reqs := copyReqs(claim.Requirements)
	reqs.Add(requirements.MustNew(v1.LabelInstanceTypeStable, corev1.NodeSelectorOpIn,
		lo.Map(out.InstanceTypes, func(c catalog.Candidate, _ int) string { return c.Type.Name })...))
	reqs.Add(requirements.MustNew(v1.LabelTopologyZone, corev1.NodeSelectorOpIn, keys(zones)...))
	reqs.Add(requirements.MustNew(v1.CapacityTypeLabelKey, corev1.NodeSelectorOpIn, keys(cts)...))
	if mv := reqs[v1.LabelInstanceTypeStable].MinValues; mv != nil && len(out.InstanceTypes) < *mv {
		return nil, 0 // the pool's minValues could no longer be met
	}
	out.Requirements = reqs
	if !spot {
		spotTypes = 0
	}
	return &out, spotTypes
}

// prepare reads, once per consolidation, what every simulation shares.
func (c *Consolidation) prepare() {
	if c.cache == nil {
		c.cache = &solveCache{nodes: map[string]*nodeBase{}, all: c.Nodes, terms: map[string]*term{}, pools: map[string]*pooledTypes{}}
	}
	if c.types != nil {
		return
	}
	c.types = []pricedType{}
	for _, n := range c.Nodes {
		c.cache.base(n)
	}
	for _, p := range c.NodePools {
		if p.Catalog == nil {
			continue
		}
		cands, err := p.Catalog.Filter(p.Requirements)
		if err != nil {
			continue
		}
		for _, cand := range cands {
			alloc := cand.Type.Allocatable
			if p.Settings != nil {
				_, alloc = cand.Type.Spec.Resources(*p.Settings)
			}
			a, _ := ResourcesFrom(alloc)
			price := math.Inf(1)
			for _, o := range cand.Offerings() {
				price = math.Min(price, o.Price)
			}
			c.types = append(c.types, pricedType{a, price})
		}
	}
	slices.SortFunc(c.types, func(a, b pricedType) int { return cmp.Compare(a.price, b.price) })
}

// ceiling is what the replacements of set must cost less than: its price,
// less the minimum saving unless every node is in a Balanced pool (which
// weighs savings by its score instead).
func (c *Consolidation) ceiling(set []*ConsolidationCandidate, price float64) float64 {
	if lo.EveryBy(set, func(cand *ConsolidationCandidate) bool { return cand.Policy == v1.ConsolidationPolicyBalanced }) {
		return price
	}
	return price * (1 - c.MinSavings)
}

// cheapestHolding is the lowest price (any zone, any capacity type) of a
// type whose allocatable holds r; +Inf when none does.
func (c *Consolidation) cheapestHolding(r Resources) float64 {
	for _, t := range c.types {
		if r.Fits(t.alloc) {
			return t.price
		}
	}
	return math.Inf(1)
}
