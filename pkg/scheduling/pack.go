package scheduling

import "math"

// packShareable places the pods of shareable groups (no topology or affinity
// of their own) by filling one node at a time with the pod that best matches
// the node's remaining shape: the largest dot product of request and free
// capacity, each normalized by the node's capacity. Taking groups one after
// another instead strands a resource: CPU-heavy pods exhaust a node's CPU and
// leave memory no later pod can use.
func (s *solver) packShareable(groups []*podGroup) {
	for _, n := range s.nodes {
		s.fillNode(n, groups)
	}
	for {
		var lead *podGroup
		for _, g := range groups {
			if g.next < len(g.pods) {
				lead = g
				break
			}
		}
		if lead == nil {
			return
		}
		v := lead.info.variants[0]
		if _, ok := s.openNode(lead, 0, v); !ok {
			// Not on a node of its own with its strictest variant: the
			// general path tries the relaxed variants and reports why.
			for lead.next < len(lead.pods) {
				if reason, ok := s.placeNext(lead); !ok {
					s.plan.Unschedulable = append(s.plan.Unschedulable, Unschedulable{Pod: lead.pods[lead.next], Reason: reason})
					lead.next++
				}
			}
			continue
		}
		lead.next++
		s.fillNode(s.nodes[len(s.nodes)-1], groups)
	}
}

// fillNode places shareable pods on n while any fits, best match first.
func (s *solver) fillNode(n *nodeState, groups []*podGroup) {
	excluded := make([]bool, len(groups))
	for {
		free := n.capacity.Sub(n.used)
		best, bestScore := -1, math.Inf(-1)
		for i, g := range groups {
			if excluded[i] || g.next >= len(g.pods) || !g.info.requests.Fits(free) {
				continue
			}
			if score := alignment(g.info.requests, free, n.capacity); score > bestScore {
				best, bestScore = i, score
			}
		}
		if best < 0 {
			return
		}
		g := groups[best]
		if ok, _ := s.tryPlace(n, g, 0, g.info.variants[0]); !ok {
			excluded[best] = true
			continue
		}
		g.next++
	}
}

// alignment scores placing req on a node with free of capacity left: the
// utilization of the node's least-used resource afterwards, so each pod feeds
// the resource that lags; among pods that feed it equally, the one that
// adds least to the most-used resource, so the node stays balanced.
func alignment(req, free, capacity Resources) float64 {
	least, most := math.Inf(1), 0.0
	for _, r := range []int{ResCPU, ResMemory} {
		if capacity[r] <= 0 {
			continue
		}
		u := 1 - float64(free[r]-req[r])/float64(capacity[r])
		least, most = math.Min(least, u), math.Max(most, u)
	}
	return least - most*1e-3
}
