package scheduling

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
)

// openNode plans a new node for g's next pod in the first NodePool (by weight)
// that can hold it, choosing the instance type with the lowest price per pod
// it will hold: a node sized for the pods still waiting, not the largest type.
func (s *solver) openNode(g *podGroup, vi int, v variant) (string, bool) {
	info := g.info
	var reasons []string
	for _, p := range s.pools {
		gp := s.compat(g, p, p.index, vi, v)
		if !gp.ok {
			reasons = append(reasons, gp.reason)
			continue
		}
		if p.maxNode >= 0 && p.nodes+1 > p.maxNode {
			reasons = append(reasons, fmt.Sprintf("NodePool %s is at its limit of %d nodes", p.Name, p.maxNode))
			continue
		}
		n := &nodeState{name: fmt.Sprintf("planned-%d", s.newID), pool: p, reqs: gp.custom, zone: -1, ct: -1, target: -1, used: gp.daemon}
		first := n.used.Add(info.requests)
		var fitting []entry
		for _, e := range gp.entries {
			if first.Fits(p.alloc[e.cand]) {
				fitting = append(fitting, e)
			}
		}
		if len(fitting) == 0 {
			if over := p.exceeded(first, gp.entries); over != "" {
				daemons := gp.daemon.String()
				if daemons == "" {
					daemons = "none"
				}
				reasons = append(reasons, fmt.Sprintf("NodePool %s: the pod (%s) with its DaemonSets (%s) needs %s", p.Name, info.requests, daemons, over))
				continue
			}
			reasons = append(reasons, fmt.Sprintf("no instance type in NodePool %s that satisfies %s has room for %s (DaemonSets take %s)",
				p.Name, describeReqs(mergedReqs(p, v)), info.requests, gp.daemon))
			continue
		}
		entries, zone, ct, target, why := s.chooseNewNode(n, g, v, fitting)
		if target < 0 {
			reasons = append(reasons, fmt.Sprintf("NodePool %s: %s", p.Name, why))
			continue
		}
		n.entries, n.zone, n.ct, n.target = entries, zone, ct, target
		s.retarget(n)
		s.newID++
		p.nodes++
		s.nodes = append(s.nodes, n)
		s.commit(n, g)
		return "", true
	}
	return strings.Join(reasons, "; "), false
}

// exceeded names each resource of need that more than the largest of
// entries offers, with that offer and its type: the request a person must
// shrink, or the larger types they must allow. "" when each resource fits
// some type and only no single type has room for all of them.
func (p *poolState) exceeded(need Resources, entries []entry) string {
	var parts []string
	for i, n := range need {
		if n == 0 || len(entries) == 0 {
			continue
		}
		best := slices.MaxFunc(entries, func(a, b entry) int { return cmp.Compare(p.alloc[a.cand][i], p.alloc[b.cand][i]) })
		if most := p.alloc[best.cand][i]; n > most {
			var want, have Resources
			want[i], have[i] = n, most
			offer := have.String()
			if most == 0 {
				offer = fmt.Sprintf("%s=0", resourceNames[i])
			}
			parts = append(parts, fmt.Sprintf("%s, more than the largest instance type the NodePool allows for it offers (%s allocatable on %s)",
				want.String(), offer, p.cands[best.cand].Type.Name))
		}
	}
	return strings.Join(parts, "; ")
}

func mergedReqs(p *poolState, v variant) requirements.Requirements {
	reqs := copyReqs(p.reqs)
	for _, r := range v.reqs {
		reqs.Add(r)
	}
	return reqs
}

// chooseNewNode picks a new node's zone and capacity type (when g's topology
// needs them fixed) and its instance type: the lowest price per pod of g it
// will hold, counting the pods still waiting and g's per-node cap.
func (s *solver) chooseNewNode(n *nodeState, g *podGroup, v variant, entries []entry) ([]entry, int, int, int, string) {
	zones, cts := s.zonesOf(n.pool, entries)
	zoneChoices, ctChoices := []int{-1}, []int{-1}
	if g.needsZone {
		zoneChoices = nil
		for z := range s.zones {
			if zones&(1<<z) != 0 {
				zoneChoices = append(zoneChoices, z)
			}
		}
	}
	if g.needsCT {
		ctChoices = nil
		for c := range capacityTypes {
			if cts&(1<<c) != 0 {
				ctChoices = append(ctChoices, c)
			}
		}
	}
	var spreadTerm *term
	for _, sc := range g.info.spread {
		if t := s.terms.terms[sc.term]; t.key == v1.LabelTopologyZone && (sc.required || v.soft) {
			spreadTerm = t
			break
		}
	}
	remaining := len(g.pods) - g.next
	var bestEntries []entry
	bestZ, bestC, bestT := -1, -1, -1
	bestCount, bestScore := math.MaxInt, math.Inf(1)
	why := "its topology spread or pod (anti-)affinity cannot be met in any zone the NodePool offers"
	for _, z := range zoneChoices {
		for _, c := range ctChoices {
			if !s.topologyOK(n, g, v, z, c) {
				continue
			}
			restricted := s.restrict(n.pool, entries, z, c)
			want := min(remaining, g.perNodeCap)
			t, score := -1, 0.0
			if g.shareable {
				t, score = s.bestForDemand(n.pool, restricted, n.used, g.info.requests, s.free)
			} else if g.perNodeCap < math.MaxInt {
				// Leave room for the other pods, so they share forced nodes.
				t, score = s.bestType(n.pool, restricted, n.used.Add(s.share), g.info.requests, want)
			}
			if t < 0 {
				t, score = s.bestType(n.pool, restricted, n.used, g.info.requests, want)
			}
			if t < 0 {
				why = "every instance type that fits would exceed its limits"
				continue
			}
			count := 0
			if spreadTerm != nil && z >= 0 {
				count = spreadTerm.counts[s.zones[z]]
			}
			if count < bestCount || (count == bestCount && score < bestScore) {
				bestEntries, bestZ, bestC, bestT, bestCount, bestScore = restricted, z, c, t, count, score
			}
		}
	}
	return bestEntries, bestZ, bestC, bestT, why
}

// bestType returns the entry with the lowest price per pod it holds (at most
// want of them), preferring more pods on a tie; -1 when none fits or all would
// break the pool's limits.
func (s *solver) bestType(p *poolState, entries []entry, used, req Resources, want int) (int, float64) {
	best, bestScore, bestK := -1, math.Inf(1), 0
	for i, e := range entries {
		if e.mask == 0 || !s.withinLimits(p, Resources{}, p.capacity[e.cand]) {
			continue
		}
		free := p.alloc[e.cand].Sub(used)
		k := want
		for r := range req {
			if req[r] > 0 {
				k = min(k, int(free[r]/req[r]))
			}
		}
		if k < 1 {
			continue
		}
		score := s.price(p, e) / float64(k)
		if score < bestScore || (score == bestScore && k > bestK) {
			best, bestScore, bestK = i, score, k
		}
	}
	return best, bestScore
}

// bestForDemand sizes a node for the aggregate remaining demand of the pods
// that may share it: the type with the lowest price per fraction of that
// demand it absorbs. While much is waiting this picks the type whose shape and
// price suit the mix (cheap per unit of the binding resource); for the tail it
// picks the cheapest type that takes all of it. The type must hold req.
func (s *solver) bestForDemand(p *poolState, entries []entry, used, req, demand Resources) (int, float64) {
	best, bestScore, bestU := -1, math.Inf(1), 0.0
	for i, e := range entries {
		if e.mask == 0 || !s.withinLimits(p, Resources{}, p.capacity[e.cand]) {
			continue
		}
		free := p.alloc[e.cand].Sub(used)
		if !req.Fits(free) {
			continue
		}
		u := 1.0
		for r := range demand {
			if demand[r] > 0 {
				u = math.Min(u, float64(min(free[r], demand[r]))/float64(demand[r]))
			}
		}
		if u <= 0 {
			continue
		}
		score := s.price(p, e) / u
		if score < bestScore || (score == bestScore && u > bestU) {
			best, bestScore, bestU = i, score, u
		}
	}
	return best, bestScore
}

// finish turns planned nodes into NodeClaim plans: each keeps every compatible
// type that holds its pods, cheapest first, and launches as the first.
func (s *solver) finish() {
	for _, n := range s.nodes {
		if n.existing || len(n.pods) == 0 {
			continue
		}
		p := n.pool
		type choice struct {
			e     entry
			price float64
		}
		choices := make([]choice, 0, len(n.entries))
		for _, e := range n.entries {
			if e.mask != 0 && n.used.Fits(p.alloc[e.cand]) && s.withinLimits(p, n.accounted, p.capacity[e.cand]) {
				choices = append(choices, choice{e, s.price(p, e)})
			}
		}
		slices.SortStableFunc(choices, func(a, b choice) int { return cmp.Compare(a.price, b.price) })
		// Right-size: launch as the cheapest type that holds the pods.
		p.used = p.used.Sub(n.accounted).Add(p.capacity[choices[0].e.cand])
		n.accounted = p.capacity[choices[0].e.cand]
		if len(choices) > s.opts.MaxInstanceTypes {
			choices = choices[:s.opts.MaxInstanceTypes]
		}
		claim := &NodeClaimPlan{NodePool: p.Name, Pods: n.pods, Requests: n.used}
		var names []string
		zones, cts := map[string]bool{}, map[string]bool{}
		for _, c := range choices {
			cand := catalog.Candidate{Type: p.cands[c.e.cand].Type, Mask: c.e.mask}
			claim.InstanceTypes = append(claim.InstanceTypes, cand)
			names = append(names, cand.Type.Name)
			for m := c.e.mask; m != 0; m &= m - 1 {
				o := cand.Type.Offerings[bits.TrailingZeros64(m)]
				zones[o.Zone], cts[o.CapacityType] = true, true
			}
		}
		claim.Offering = s.cheapestOffering(claim.InstanceTypes[0])
		reqs := copyReqs(p.reqs)
		for _, r := range n.reqs {
			reqs.Add(r)
		}
		claim.Labels = resolveLabels(p, reqs)
		reqs.Add(requirements.MustNew(v1.LabelInstanceTypeStable, corev1.NodeSelectorOpIn, names...))
		reqs.Add(requirements.MustNew(v1.LabelTopologyZone, corev1.NodeSelectorOpIn, keys(zones)...))
		reqs.Add(requirements.MustNew(v1.CapacityTypeLabelKey, corev1.NodeSelectorOpIn, keys(cts)...))
		claim.Requirements = reqs
		s.plan.NodeClaims = append(s.plan.NodeClaims, claim)
	}
}

// resolveLabels picks, for each custom key the node must carry a value of
// (In with several values, Exists, Gt, Lt), one value every pod planned on
// the node accepts, and narrows reqs to it. The claim carries these labels and
// the Node gets them through the API once it registers: nothing else would
// give the node the key (the kubelet does not set a key from a set of values,
// and may not set some domains at all), so a pod requiring it would stay
// pending while every round launched another node. Keys the instance answers
// for (catalog keys), the pool's template labels and keys that may be absent
// are left as they are.
func resolveLabels(p *poolState, reqs requirements.Requirements) map[string]string {
	labels := map[string]string{}
	for _, key := range reqs.Keys() {
		r := reqs[key]
		if catalog.CatalogKeys[key] || key == v1.NodePoolLabelKey || key == v1.LabelHostname || r.AllowsAbsent() {
			continue
		}
		if _, ok := p.Labels[key]; ok {
			continue
		}
		v, ok := r.Any()
		if !ok {
			continue
		}
		labels[key] = v
		// minValues on a custom key has no instance types to count; a
		// single value would fail the NodeClaim's own validation.
		reqs[key] = requirements.MustNew(key, corev1.NodeSelectorOpIn, v)
	}
	return labels
}

func (s *solver) cheapestOffering(c catalog.Candidate) catalog.Offering {
	var best catalog.Offering
	bestPrice := math.Inf(1)
	for m := c.Mask; m != 0; m &= m - 1 {
		o := c.Type.Offerings[bits.TrailingZeros64(m)]
		if p := o.RiskAdjustedPrice(s.opts.SpotRiskWeight); p < bestPrice {
			best, bestPrice = o, p
		}
	}
	return best
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
