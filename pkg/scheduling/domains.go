package scheduling

import (
	"math"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
)

// Topology domains: zones of nodes, which zones a group may use, and the
// spread, affinity and anti-affinity checks over them.

// nodeZone is the zone index a node is in, -1 when not yet fixed.
func (s *solver) nodeZone(n *nodeState) int {
	if !n.existing {
		return n.zone
	}
	return n.existingZone
}

// allowedZones is the mask of zones g's zone-keyed spread, affinity and
// anti-affinity allow right now, computed once per attempt so that nodes in
// other zones are skipped with a bit test.
func (s *solver) allowedZones(g *podGroup, v variant) uint64 {
	if !g.needsZone {
		return math.MaxUint64
	}
	var mask uint64
	probe := &nodeState{existing: true, labels: map[string]string{}}
	for z, name := range s.zones {
		probe.labels[v1.LabelTopologyZone] = name
		if s.zoneTermsOK(probe, g, v) {
			mask |= 1 << z
		}
	}
	return mask
}

// zoneTermsOK runs the zone-keyed part of topologyCheck.
func (s *solver) zoneTermsOK(n *nodeState, g *podGroup, v variant) bool {
	info := g.info
	for _, sc := range info.spread {
		t := s.terms.terms[sc.term]
		if t.key != v1.LabelTopologyZone || (!sc.required && !v.soft) {
			continue
		}
		d := n.labels[v1.LabelTopologyZone]
		minCount := 0
		if domains := s.eligibleZones(g, v, sc.honorNodeAffinity); len(domains) >= sc.minDomains {
			minCount = t.minCount(domains)
		}
		self := 0
		if t.matches(info.namespace, info.labels) {
			self = 1
		}
		if t.counts[d]+self-minCount > sc.maxSkew {
			return false
		}
	}
	for _, a := range info.affinity {
		t := s.terms.terms[a.term]
		if t.key == v1.LabelTopologyZone && t.counts[n.labels[v1.LabelTopologyZone]] == 0 && !(t.total == 0 && t.matches(info.namespace, info.labels)) {
			return false
		}
	}
	for _, a := range info.anti {
		t := s.terms.terms[a.term]
		if t.key == v1.LabelTopologyZone && t.counts[n.labels[v1.LabelTopologyZone]] > 0 {
			return false
		}
	}
	for _, ti := range g.antiMatched {
		t := s.terms.terms[ti]
		if t.key == v1.LabelTopologyZone && t.owners[n.labels[v1.LabelTopologyZone]] > 0 {
			return false
		}
	}
	return true
}

// domain is n's value of a topology key, if it has one yet.
func (s *solver) domain(n *nodeState, key string) (string, bool) {
	if key == v1.LabelHostname {
		return n.name, true
	}
	if n.existing {
		d, ok := n.labels[key]
		return d, ok
	}
	switch key {
	case v1.LabelTopologyZone:
		if n.zone >= 0 {
			return s.zones[n.zone], true
		}
		return "", false
	case v1.CapacityTypeLabelKey:
		if n.ct >= 0 {
			return capacityTypes[n.ct], true
		}
		return "", false
	case awsv1.LabelTopologyZoneID:
		return "", false
	}
	if d, ok := n.pool.Labels[key]; ok {
		return d, true
	}
	if r, ok := n.reqs[key]; ok && r.Len() == 1 {
		return r.Values()[0], true
	}
	return "", false
}

// eligibleZones are the zones a spread constraint balances over. With
// nodeAffinityPolicy Honor (the default) those are the zones the pod can get a
// node in: an existing node it fits the affinity and taints of, or a NodePool
// it is compatible with that offers the zone. A zone no such node can ever be
// in would otherwise hold the minimum at 0 and block every placement.
func (s *solver) eligibleZones(g *podGroup, v variant, honor bool) []string {
	if !honor {
		return s.zones
	}
	if g.reachable == nil {
		g.reachable = map[int]uint64{}
	}
	mask, ok := g.reachable[v.idx]
	if !ok {
		for _, n := range s.nodes {
			if n.existing && v.reqs.Matches(n.labels) {
				if _, tol := tolerates(g.info.tolerations, n.taints); tol {
					if z := s.nodeZone(n); z >= 0 {
						mask |= 1 << z
					}
				}
			}
		}
		for _, p := range s.pools {
			if gp := s.compat(g, p, p.index, v.idx, v); gp.ok {
				z, _ := s.zonesOf(p, gp.entries)
				mask |= z
			}
		}
		g.reachable[v.idx] = mask
	}
	var out []string
	for z, name := range s.zones {
		if mask&(1<<z) != 0 {
			out = append(out, name)
		}
	}
	return out
}

func (s *solver) topologyOK(n *nodeState, g *podGroup, v variant, zone, ct int) bool {
	ok, _ := s.topologyCheck(n, g, v, zone, ct)
	return ok
}

// topologyCheck checks spread, affinity and anti-affinity with n in the given
// zone and capacity type. A refusal is permanent when counts can only grow
// against the pod: anti-affinity, a missing topology label, hostname spread
// (a node's count never falls, and the minimum stays 0).
func (s *solver) topologyCheck(n *nodeState, g *podGroup, v variant, zone, ct int) (bool, bool) {
	if n.existing {
		return s.topologyAt(n, g, v)
	}
	saveZ, saveC := n.zone, n.ct
	n.zone, n.ct = zone, ct
	ok, permanent := s.topologyAt(n, g, v)
	n.zone, n.ct = saveZ, saveC
	return ok, permanent
}

// topologyAt is topologyCheck for the node's current zone and capacity type.
func (s *solver) topologyAt(n *nodeState, g *podGroup, v variant) (bool, bool) {
	info := g.info
	for _, sc := range info.spread {
		if !sc.required && !v.soft {
			continue
		}
		t := s.terms.terms[sc.term]
		d, ok := s.domain(n, t.key)
		if !ok {
			return false, true
		}
		var minCount int
		switch t.key {
		case v1.LabelHostname:
			minCount = 0 // a new node, with none, can always be added
		case v1.LabelTopologyZone:
			domains := s.eligibleZones(g, v, sc.honorNodeAffinity)
			if len(domains) < sc.minDomains {
				minCount = 0
			} else {
				minCount = t.minCount(domains)
			}
		case v1.CapacityTypeLabelKey:
			minCount = t.minCount([]string{v1.CapacityTypeOnDemand, v1.CapacityTypeSpot})
		default:
			minCount = 0
		}
		self := 0
		if t.matches(info.namespace, info.labels) {
			self = 1
		}
		if t.counts[d]+self-minCount > sc.maxSkew {
			return false, t.key == v1.LabelHostname
		}
	}
	for _, a := range info.affinity {
		t := s.terms.terms[a.term]
		d, ok := s.domain(n, t.key)
		if !ok {
			return false, true
		}
		if t.counts[d] == 0 && !(t.total == 0 && t.matches(info.namespace, info.labels)) {
			return false, false
		}
	}
	for _, a := range info.anti {
		t := s.terms.terms[a.term]
		if d, ok := s.domain(n, t.key); ok && t.counts[d] > 0 {
			return false, true
		}
	}
	for _, ti := range g.antiMatched {
		t := s.terms.terms[ti]
		if d, ok := s.domain(n, t.key); ok && t.owners[d] > 0 {
			return false, true
		}
	}
	return true, false
}

// chooseDomain picks the zone and capacity type a planned node must commit to
// for g: among those its entries offer, the ones the topology allows; for a
// zone spread the least-filled, then the cheapest for the node's type.
func (s *solver) chooseDomain(n *nodeState, g *podGroup, v variant, entries []entry) (int, int, bool) {
	var zones uint64
	var cts uint8
	if len(entries) == len(n.entries) && n.masksValid {
		zones, cts = n.zoneMask, n.ctMask
	} else {
		zones, cts = s.zonesOf(n.pool, entries)
		if len(entries) == len(n.entries) {
			n.zoneMask, n.ctMask, n.masksValid = zones, cts, true
		}
	}
	zoneSet, ctSet := uint64(0), uint8(0)
	if g.needsZone && n.zone < 0 {
		zoneSet = zones & s.allowedZones(g, v)
	}
	if g.needsCT && n.ct < 0 {
		ctSet = cts
	}
	var spreadTerm *term
	for _, sc := range g.info.spread {
		if t := s.terms.terms[sc.term]; t.key == v1.LabelTopologyZone && (sc.required || v.soft) {
			spreadTerm = t
			break
		}
	}
	targetIx := indexOfCand(entries, n.entries[n.target].cand)
	bestZ, bestC, found := -1, -1, false
	bestCount, bestPrice := math.MaxInt, math.Inf(1)
	for z := range choices(n.zone, zoneSet, len(s.zones)) {
		for c := range choices(n.ct, uint64(ctSet), len(capacityTypes)) {
			if !s.topologyOK(n, g, v, z, c) {
				continue
			}
			price := math.Inf(1)
			if targetIx >= 0 {
				price = s.priceIn(n.pool, entries[targetIx], z, c)
			}
			if math.IsInf(price, 1) {
				restricted := s.restrict(n.pool, entries, z, c)
				ti := s.pickTarget(n.pool, restricted, n.used.Add(g.info.requests), n)
				if ti < 0 {
					continue
				}
				price = s.price(n.pool, restricted[ti])
			}
			count := 0
			if spreadTerm != nil && z >= 0 {
				count = spreadTerm.counts[s.zones[z]]
			}
			if count < bestCount || (count == bestCount && price < bestPrice) {
				bestZ, bestC, bestCount, bestPrice, found = z, c, count, price, true
			}
		}
	}
	return bestZ, bestC, found
}
