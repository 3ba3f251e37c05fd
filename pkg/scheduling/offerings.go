package scheduling

import (
	"math"
	"math/bits"
	"sort"
)

// Instance types and offerings of planned nodes: which to pack against,
// their prices, limits, and narrowing them to a zone or capacity type.

func indexOfCand(entries []entry, cand int32) int {
	i := sort.Search(len(entries), func(i int) bool { return entries[i].cand >= cand })
	if i < len(entries) && entries[i].cand == cand && entries[i].mask != 0 {
		return i
	}
	return -1
}

// pickTarget returns the index in entries of the cheapest type that holds
// used, has an allowed offering and keeps the pool within its limits; -1 when
// none does.
func (s *solver) pickTarget(p *poolState, entries []entry, used Resources, n *nodeState) int {
	best, bestPrice := -1, math.Inf(1)
	var current Resources
	if n != nil {
		current = n.accounted
	}
	for i, e := range entries {
		if e.mask == 0 || !used.Fits(p.alloc[e.cand]) || !s.withinLimits(p, current, p.capacity[e.cand]) {
			continue
		}
		if price := s.price(p, e); price < bestPrice {
			best, bestPrice = i, price
		}
	}
	return best
}

func (s *solver) withinLimits(p *poolState, old, next Resources) bool {
	after := p.used.Sub(old).Add(next)
	for i := range after {
		if p.limited[i] && after[i] > p.limits[i] {
			return false
		}
	}
	return true
}

// price is an entry's cheapest allowed offering, risk-adjusted.
func (s *solver) price(p *poolState, e entry) float64 {
	best := math.Inf(1)
	offs := p.cands[e.cand].Type.Offerings
	for m := e.mask; m != 0; m &= m - 1 {
		j := bits.TrailingZeros64(m)
		if j < len(offs) {
			best = math.Min(best, offs[j].RiskAdjustedPrice(s.opts.SpotRiskWeight))
		}
	}
	return best
}

// choices yields fixed when it is set (>= 0), else each bit of set below n.
func choices(fixed int, set uint64, n int) func(func(int) bool) {
	return func(yield func(int) bool) {
		if fixed >= 0 || set == 0 {
			yield(fixed)
			return
		}
		for i := range n {
			if set&(1<<i) != 0 && !yield(i) {
				return
			}
		}
	}
}

// priceIn is price restricted to a zone and capacity type (-1: any).
func (s *solver) priceIn(p *poolState, e entry, zone, ct int) float64 {
	best := math.Inf(1)
	offs := p.cands[e.cand].Type.Offerings
	for m := e.mask; m != 0; m &= m - 1 {
		j := bits.TrailingZeros64(m)
		if (zone >= 0 && int(p.offZone[e.cand][j]) != zone) || (ct >= 0 && int(p.offCT[e.cand][j]) != ct) {
			continue
		}
		best = math.Min(best, offs[j].RiskAdjustedPrice(s.opts.SpotRiskWeight))
	}
	return best
}

// restrict keeps the offerings in zone and capacity type (-1: any).
func (s *solver) restrict(p *poolState, entries []entry, zone, ct int) []entry {
	if zone < 0 && ct < 0 {
		return entries
	}
	out := make([]entry, 0, len(entries))
	for _, e := range entries {
		m := e.mask
		for mm := m; mm != 0; mm &= mm - 1 {
			j := bits.TrailingZeros64(mm)
			if (zone >= 0 && int(p.offZone[e.cand][j]) != zone) || (ct >= 0 && int(p.offCT[e.cand][j]) != ct) {
				m &^= 1 << j
			}
		}
		if m != 0 {
			out = append(out, entry{e.cand, m})
		}
	}
	return out
}

// intersectEntries keeps the candidates in both lists (both sorted by cand),
// with the offerings both allow.
func intersectEntries(a, b []entry) []entry {
	out := make([]entry, 0, min(len(a), len(b)))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i].cand < b[j].cand:
			i++
		case a[i].cand > b[j].cand:
			j++
		default:
			if m := a[i].mask & b[j].mask; m != 0 {
				out = append(out, entry{a[i].cand, m})
			}
			i++
			j++
		}
	}
	return out
}

// zonesOf returns the zones and capacity types the entries still offer.
func (s *solver) zonesOf(p *poolState, entries []entry) (zones uint64, cts uint8) {
	for _, e := range entries {
		for m := e.mask; m != 0; m &= m - 1 {
			j := bits.TrailingZeros64(m)
			zones |= 1 << p.offZone[e.cand][j]
			cts |= 1 << p.offCT[e.cand][j]
		}
	}
	return zones, cts
}
