package scheduling

import (
	"fmt"
	"math"
	"sort"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
	"github.com/samber/lo"
)

// capacity type indexes in masks.
var capacityTypes = []string{v1.CapacityTypeOnDemand, v1.CapacityTypeSpot, v1.CapacityTypeReserved}

func capacityIndex(ct string) int {
	for i, c := range capacityTypes {
		if c == ct {
			return i
		}
	}
	return -1
}

// solver holds one solve's state.
type solver struct {
	opts   Options
	terms  *termRegistry
	zones  []string // every zone any pool offers or any node is in, sorted
	zoneIx map[string]int
	pools  []*poolState
	groups []*podGroup
	nodes  []*nodeState
	daemon []*podInfo
	plan   *Plan
	newID  int
	// compatCache shares groupPools between groups with the same node
	// requirements and tolerations: most groups differ only in labels or
	// requests, and a filter over the catalog is the costliest step.
	compatCache map[string]*groupPool
	// free is the remaining demand of shareable groups.
	free Resources
	// share is the room each node forced by a capped group leaves for the
	// unconstrained pods (their demand spread over the forced nodes).
	share Resources
}

// poolState is a NodePool prepared for the solve.
type poolState struct {
	NodePool
	reqs     requirements.Requirements
	taints   []corev1.Taint
	cands    []catalog.Candidate
	byName   map[string]int
	alloc    []Resources
	capacity []Resources
	// offZone and offCT give each candidate offering's zone and capacity type
	// indexes, in the order of the type's offerings.
	offZone [][]uint8
	offCT   [][]uint8
	limits  Resources
	limited [numResources]bool
	maxNode int64 // -1: no node limit
	index   int
	used    Resources
	nodes   int64
	err     error
}

// podGroup is a set of pods the solver treats identically.
type podGroup struct {
	pods  []*corev1.Pod
	info  *podInfo
	next  int // pods[:next] are decided
	score float64
	key   string
	// matched are the terms this group's pods count in; antiMatched the ones
	// whose owners keep them out.
	matched     []int
	antiMatched []int
	needsZone   bool
	needsCT     bool
	perNodeCap  int
	// shareable groups have no topology or affinity of their own and may
	// share any node: they are sized against their aggregate demand.
	shareable bool
	// reachable caches, per variant, the zones the pods could get a node in.
	reachable map[int]uint64
	compat    map[[2]int]*groupPool // (pool, variant) -> compatibility
	cursor    map[int]int           // variant -> first node index worth trying
}

// groupPool is how a group's variant fits a pool.
type groupPool struct {
	ok bool
	// full: the group narrows none of the pool's candidates or offerings, so
	// placing it leaves a node's candidates as they are.
	full    bool
	reason  string
	entries []entry // candidates and their allowed offerings
	// custom are the non-catalog label requirements of a node planned for
	// the group (the pool's and the pod's); podCustom only the pod's, which
	// are what placing on an already planned node adds.
	custom    requirements.Requirements
	podCustom requirements.Requirements
	daemon    Resources
}

// entry is a candidate instance type with the offerings still allowed, as a
// mask over its offerings.
type entry struct {
	cand int32
	mask uint64
}

// nodeState is an existing, in-flight or planned node.
type nodeState struct {
	name     string
	existing bool
	// existingZone is an existing node's zone index, -1 when it has none.
	existingZone int
	labels       map[string]string // existing nodes
	taints       []corev1.Taint    // existing nodes
	pool         *poolState        // planned nodes
	reqs         requirements.Requirements
	entries      []entry
	target       int // index into entries of the type packed against
	zone         int // fixed zone index, -1 when free
	ct           int // fixed capacity type index, -1 when free
	capacity     Resources
	used         Resources
	pods         []*corev1.Pod
	ports        []hostPort
	// accounted is the capacity counted against the pool's limits.
	accounted Resources
	// zoneMask and ctMask cache zonesOf(entries) while masksValid.
	zoneMask   uint64
	ctMask     uint8
	masksValid bool
}

func (n *nodeState) capacityAccount() Resources { return n.accounted }

// Solve plans where every pending pod goes.
func Solve(in Input, opts Options) *Plan {
	if opts.SpotRiskWeight < 0 {
		opts.SpotRiskWeight = catalog.DefaultSpotRiskWeight
	}
	if opts.MaxInstanceTypes <= 0 {
		opts.MaxInstanceTypes = 60
	}
	s := &solver{opts: opts, terms: newTermRegistry(), zoneIx: map[string]int{}, plan: &Plan{Existing: map[string][]*corev1.Pod{}}, compatCache: map[string]*groupPool{}}
	s.buildGroups(in)
	s.buildPools(in)
	s.buildNodes(in)
	for _, d := range in.DaemonSets {
		s.daemon = append(s.daemon, parsePod(d, nil, newTermRegistry()))
	}
	s.reserveDaemons(in.Nodes)
	for _, g := range s.groups {
		s.prepareGroup(g)
	}
	s.orderGroups()
	var shareable []*podGroup
	for _, g := range s.groups {
		if g.shareable && g.info.err == nil && len(g.info.unknown) == 0 && len(g.info.variants) > 0 {
			shareable = append(shareable, g)
			continue
		}
		for g.next < len(g.pods) {
			if reason, ok := s.placeNext(g); !ok {
				s.plan.Unschedulable = append(s.plan.Unschedulable, Unschedulable{Pod: g.pods[g.next], Reason: reason})
				g.next++
			}
		}
	}
	s.packShareable(shareable)
	if opts.maxNew > 0 {
		// A caller that only wants plans of at most maxNew new nodes needs
		// no NodeClaim plans for a bigger one (their type lists are the
		// costliest part of a small solve).
		opened := lo.CountBy(s.nodes, func(n *nodeState) bool { return !n.existing && len(n.pods) > 0 })
		if opened > opts.maxNew {
			s.plan.Opened = opened
			return s.plan
		}
	}
	s.finish()
	s.plan.Opened = len(s.plan.NodeClaims)
	return s.plan
}

// orderGroups puts groups that force a node count (a per-node cap from
// hostname anti-affinity, hostname spread or host ports) first, so the other
// pods can fill the nodes they open, and works out how much of the other pods'
// demand each forced node should leave room for.
func (s *solver) orderGroups() {
	sort.SliceStable(s.groups, func(i, j int) bool {
		ci, cj := s.groups[i].perNodeCap < math.MaxInt, s.groups[j].perNodeCap < math.MaxInt
		return ci && !cj
	})
	forced := 0
	var free Resources
	for _, g := range s.groups {
		if g.perNodeCap < math.MaxInt {
			forced = max(forced, (len(g.pods)+g.perNodeCap-1)/g.perNodeCap)
			continue
		}
		if !g.needsZone && !g.needsCT && len(g.info.affinity) == 0 && len(g.info.anti) == 0 {
			g.shareable = true
			for range g.pods {
				free = free.Add(g.info.requests)
			}
		}
	}
	s.free = free
	if forced > 0 {
		for i := range free {
			s.share[i] = free[i] / int64(forced)
		}
	}
}

// prepareGroup finds the terms a group counts in and its per-node cap.
func (s *solver) prepareGroup(g *podGroup) {
	info := g.info
	for i, t := range s.terms.terms {
		if t.matches(info.namespace, info.labels) {
			g.matched = append(g.matched, i)
			g.antiMatched = append(g.antiMatched, i) // checked against owners
			g.needsZone = g.needsZone || t.key == v1.LabelTopologyZone
			g.needsCT = g.needsCT || t.key == v1.CapacityTypeLabelKey
		}
	}
	for _, sc := range info.spread {
		key := s.terms.terms[sc.term].key
		g.needsZone = g.needsZone || key == v1.LabelTopologyZone
		g.needsCT = g.needsCT || key == v1.CapacityTypeLabelKey
	}
	for _, pt := range append(append([]podTerm(nil), info.affinity...), info.anti...) {
		key := s.terms.terms[pt.term].key
		g.needsZone = g.needsZone || key == v1.LabelTopologyZone
		g.needsCT = g.needsCT || key == v1.CapacityTypeLabelKey
	}
	g.perNodeCap = math.MaxInt
	for _, sc := range info.spread {
		t := s.terms.terms[sc.term]
		if t.key == v1.LabelHostname && sc.required && t.matches(info.namespace, info.labels) {
			g.perNodeCap = min(g.perNodeCap, sc.maxSkew)
		}
	}
	for _, a := range info.anti {
		t := s.terms.terms[a.term]
		if t.key == v1.LabelHostname && t.matches(info.namespace, info.labels) {
			g.perNodeCap = 1
		}
	}
	if len(info.ports) > 0 {
		g.perNodeCap = 1
	}
}

// placeNext places g's next pod, trying each variant on every node, then on a
// new node; it returns the reason when nothing worked.
func (s *solver) placeNext(g *podGroup) (string, bool) {
	info := g.info
	if info.err != nil {
		return info.err.Error(), false
	}
	if len(info.unknown) > 0 {
		return fmt.Sprintf("requests %v, which no instance type provides", info.unknown), false
	}
	if len(info.variants) == 0 {
		return "its required node affinity can never be satisfied", false
	}
	var reasons []string
	for vi, v := range info.variants {
		cursor := g.cursor[vi]
		advancing := true
		allowed := s.allowedZones(g, v)
		for ni := cursor; ni < len(s.nodes); ni++ {
			n := s.nodes[ni]
			if z := s.nodeZone(n); z >= 0 && allowed&(1<<z) == 0 {
				// Refused by zone alone: cheap to skip, but counts may change.
				advancing = false
				continue
			}
			ok, permanent := s.tryPlace(n, g, vi, v)
			if ok {
				g.next++
				return "", true
			}
			if advancing && permanent {
				g.cursor[vi] = ni + 1
			} else {
				advancing = false
			}
		}
		reason, ok := s.openNode(g, vi, v)
		if ok {
			g.next++
			return "", true
		}
		reasons = append(reasons, reason)
	}
	return reasons[len(reasons)-1], false
}

// tryPlace places g's next pod on n if it fits; permanent says a refusal will
// hold for the rest of the solve (resources, requirements, taints, ports,
// anti-affinity), so the group's cursor may move past n.
func (s *solver) tryPlace(n *nodeState, g *podGroup, vi int, v variant) (ok, permanent bool) {
	info := g.info
	// A planned node keeps the type it was sized as: letting it grow to any
	// larger compatible type would balloon every node to the largest one.
	if !(n.used.Add(info.requests)).Fits(n.capacity) {
		return false, true
	}
	for _, hp := range info.ports {
		for _, used := range n.ports {
			if hp.conflicts(used) {
				return false, true
			}
		}
	}
	var entries []entry
	var custom requirements.Requirements
	if n.existing {
		if !v.reqs.Matches(n.labels) {
			return false, true
		}
		if _, ok := tolerates(info.tolerations, n.taints); !ok {
			return false, true
		}
	} else {
		gp := s.compat(g, n.pool, n.pool.index, vi, v)
		if !gp.ok {
			return false, true
		}
		entries = n.entries
		if !gp.full {
			entries = intersectEntries(n.entries, gp.entries)
			if len(entries) == 0 {
				return false, true
			}
		}
		custom = n.reqs
		if len(gp.podCustom) > 0 {
			custom = copyReqs(n.reqs)
			for _, r := range gp.podCustom {
				custom.Add(r)
			}
			for _, r := range custom {
				if r.IsEmpty() && !r.AllowsAbsent() {
					return false, true
				}
			}
		}
	}
	zone, ct := n.zone, n.ct
	if !n.existing && (g.needsZone || g.needsCT) {
		var found bool
		zone, ct, found = s.chooseDomain(n, g, v, entries)
		if !found {
			return false, false
		}
	} else if ok, permanent := s.topologyCheck(n, g, v, n.zone, n.ct); !ok {
		return false, permanent
	}
	if !n.existing {
		fixZ, fixC := -1, -1
		if zone != n.zone {
			fixZ = zone
		}
		if ct != n.ct {
			fixC = ct
		}
		entries = s.restrict(n.pool, entries, fixZ, fixC)
		target := n.target
		if len(entries) != len(n.entries) || (len(entries) > 0 && &entries[0] != &n.entries[0]) {
			target = indexOfCand(entries, n.entries[n.target].cand)
		}
		if target < 0 {
			// Narrowing dropped the type; take the cheapest that still fits.
			target = s.pickTarget(n.pool, entries, n.used.Add(info.requests), n)
			if target < 0 {
				return false, len(entries) == 0
			}
		}
		changed := target != n.target || len(entries) != len(n.entries)
		n.entries, n.target, n.reqs = entries, target, custom
		n.zone, n.ct = zone, ct
		if changed {
			n.masksValid = false
			s.retarget(n)
		}
	}
	s.commit(n, g)
	return true, false
}

// retarget re-reads the packing capacity after the target changed.
func (s *solver) retarget(n *nodeState) {
	p := n.pool
	old := n.capacityAccount()
	next := p.capacity[n.entries[n.target].cand]
	p.used = p.used.Sub(old).Add(next)
	n.capacity = p.alloc[n.entries[n.target].cand]
	n.accounted = next
}

// commit records g's next pod on n.
func (s *solver) commit(n *nodeState, g *podGroup) {
	pod, info := g.pods[g.next], g.info
	n.used = n.used.Add(info.requests)
	if g.shareable {
		s.free = s.free.Sub(info.requests)
	}
	n.pods = append(n.pods, pod)
	n.ports = append(n.ports, info.ports...)
	for _, ti := range g.matched {
		t := s.terms.terms[ti]
		if d, ok := s.domain(n, t.key); ok {
			t.counts[d]++
			t.total++
		}
	}
	for _, a := range info.anti {
		t := s.terms.terms[a.term]
		if d, ok := s.domain(n, t.key); ok {
			t.owners[d]++
		}
	}
	if n.existing {
		s.plan.Existing[n.name] = append(s.plan.Existing[n.name], pod)
	}
}
