package ec2sim

import (
	"math"
	"math/rand/v2"
	"sort"
)

// Capacity types, as karpenter.sh/capacity-type and EC2's fleet lifecycles
// spell them.
const (
	capacitySpot     = "spot"
	capacityOnDemand = "on-demand"
)

// Pool is an EC2 capacity pool: one instance type in one zone (by name) bought
// one way (spot or on-demand). Capacity faults are set per pool.
type Pool struct {
	InstanceType string
	Zone         string
	CapacityType string
}

// SetCapacity lets at most n more instances launch from the pool until Heal;
// the launch after that fails with InsufficientInstanceCapacity. Terminating
// instances does not give capacity back. Pools start unlimited.
func (s *Server) SetCapacity(instanceType, zone, capacityType string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.capacity[Pool{instanceType, zone, capacityType}] = max(n, 0)
}

// InsufficientCapacity empties the pool until Heal: every fleet that tries it
// gets an InsufficientInstanceCapacity error for it and fills from other pools
// if it can, as EC2 does during a capacity shortage.
func (s *Server) InsufficientCapacity(instanceType, zone, capacityType string) {
	s.SetCapacity(instanceType, zone, capacityType, 0)
}

// SpotPoolsOutOfCapacity empties a share of the region's spot pools (every
// type and zone with a spot price), chosen by a generator seeded with seed, so
// the same call always empties the same pools. It returns them sorted by type
// and zone, for a test to avoid or expect.
func (s *Server) SpotPoolsOutOfCapacity(fraction float64, seed uint64) []Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pools []Pool
	for _, t := range s.regionTypes() {
		for _, z := range s.scenario.Zones {
			if price, ok := s.spotPriceLocked(t.Name, z.Name); ok && price > 0 {
				pools = append(pools, Pool{t.Name, z.Name, capacitySpot})
			}
		}
	}
	sortPools(pools)
	n := int(math.Round(min(max(fraction, 0), 1) * float64(len(pools))))
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var out []Pool
	for _, i := range rng.Perm(len(pools))[:n] {
		s.capacity[pools[i]] = 0
		out = append(out, pools[i])
	}
	sortPools(out)
	return out
}

func sortPools(pools []Pool) {
	sort.Slice(pools, func(i, j int) bool {
		a, b := pools[i], pools[j]
		if a.InstanceType != b.InstanceType {
			return a.InstanceType < b.InstanceType
		}
		if a.Zone != b.Zone {
			return a.Zone < b.Zone
		}
		return a.CapacityType < b.CapacityType
	})
}

// SetSpotInstanceLimit caps the account's active (pending or running) spot
// instances at n until Heal; launches beyond it fail with
// MaxSpotInstanceCountExceeded, as EC2 answers an account at its spot quota.
// A negative n removes the cap.
func (s *Server) SetSpotInstanceLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spotLimit = n
}

// partialFulfillment limits how many instances the next CreateFleet calls
// launch.
type partialFulfillment struct {
	calls, instances int
}

// PartialFulfillment makes each of the next calls CreateFleet calls launch at
// most instances instances, answering UnfulfillableCapacity for the rest of
// its target, as an instant fleet does when EC2 finds only part of the
// capacity. Replayed requests (same client token) do not count.
func (s *Server) PartialFulfillment(calls, instances int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = partialFulfillment{calls: max(calls, 0), instances: max(instances, 0)}
}

// takeFleetBudgetLocked returns how many instances this CreateFleet call may
// launch (-1: as many as it asks for).
func (s *Server) takeFleetBudgetLocked() int {
	if s.partial.calls == 0 {
		return -1
	}
	s.partial.calls--
	return s.partial.instances
}

// spotPriceLocked is the spot price of a type in a zone: SetSpotPrice's
// override, else the snapshot's. ok is false where the type is not offered in
// the zone at all; a price of 0 means it is offered, but not as spot.
func (s *Server) spotPriceLocked(instanceType, zone string) (float64, bool) {
	t, ok := s.types[instanceType]
	if !ok {
		return 0, false
	}
	r := t.Regions[s.scenario.Region]
	zoneID := s.scenario.ZoneID(zone)
	for i, id := range r.ZoneIDs {
		if id != zoneID {
			continue
		}
		if v, ok := s.spot[spotKey{instanceType, zone}]; ok {
			return v, true
		}
		if i < len(r.Spot) {
			return r.Spot[i], true
		}
		return 0, true
	}
	return 0, false
}

// offeredIn lists the zones (by name) where the type is sold as capacityType
// and its pool is not empty, for EC2's "you can get capacity in ..." hints.
func (s *Server) offeredIn(instanceType, capacityType string) []string {
	var out []string
	for _, z := range s.scenario.Zones {
		price, ok := s.spotPriceLocked(instanceType, z.Name)
		if !ok || (capacityType == capacitySpot && price <= 0) {
			continue
		}
		if n, limited := s.capacity[Pool{instanceType, z.Name, capacityType}]; limited && n == 0 {
			continue
		}
		out = append(out, z.Name)
	}
	return out
}
