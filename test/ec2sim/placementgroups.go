package ec2sim

import (
	"encoding/xml"
	"fmt"
	"maps"
	"regexp"
	"slices"
)

// Placement strategies and spread levels, with EC2's spelling.
const (
	StrategyCluster   = "cluster"
	StrategyPartition = "partition"
	StrategySpread    = "spread"
	SpreadLevelRack   = "rack"
)

// maxSpreadPerZone is how many running instances a rack-level spread group
// holds in one zone: one per distinct rack, and EC2 gives a group seven.
const maxSpreadPerZone = 7

// maxPartitions is the most partitions a partition group may have per zone.
const maxPartitions = 7

// PlacementGroup is a placement group of the account, as CreatePlacementGroup
// would make it: a strategy, and a partition count for a partition group.
type PlacementGroup struct {
	ID   string
	Name string
	// Strategy is cluster, partition or spread.
	Strategy string
	// PartitionCount is 1 to 7 for a partition group (default 2, EC2's
	// console default), 0 otherwise.
	PartitionCount int
	// SpreadLevel is rack for a spread group (host groups need an Outpost,
	// which the simulator does not model).
	SpreadLevel string
	Tags        map[string]string
}

var placementGroupIDPattern = regexp.MustCompile(`^pg-[0-9a-f]{17}$`)

// AddPlacementGroup creates a placement group and returns its id (given or
// made). Names are unique in the account, as EC2 requires.
func (s *Server) AddPlacementGroup(g PlacementGroup) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g.Name == "" {
		return "", fmt.Errorf("placement group: a name is required")
	}
	if s.placementGroupByNameLocked(g.Name) != nil {
		return "", fmt.Errorf("placement group: %q already exists", g.Name)
	}
	switch g.Strategy {
	case StrategyCluster:
		g.PartitionCount, g.SpreadLevel = 0, ""
	case StrategyPartition:
		g.PartitionCount = max(g.PartitionCount, 2)
		if g.PartitionCount > maxPartitions {
			return "", fmt.Errorf("placement group: %d partitions, at most %d", g.PartitionCount, maxPartitions)
		}
		g.SpreadLevel = ""
	case StrategySpread:
		g.PartitionCount = 0
		if g.SpreadLevel = orDefault(g.SpreadLevel, SpreadLevelRack); g.SpreadLevel != SpreadLevelRack {
			return "", fmt.Errorf("placement group: spread level %q needs an Outpost", g.SpreadLevel)
		}
	default:
		return "", fmt.Errorf("placement group: unknown strategy %q", g.Strategy)
	}
	var err error
	if g.ID, err = s.givenOrNewID(g.ID, "pg", "placement group", placementGroupIDPattern); err != nil {
		return "", err
	}
	g.Tags = maps.Clone(g.Tags)
	if s.placementGroups == nil {
		s.placementGroups = map[string]*PlacementGroup{}
	}
	s.placementGroups[g.ID] = &g
	return g.ID, nil
}

func (s *Server) placementGroupByNameLocked(name string) *PlacementGroup {
	for _, g := range s.placementGroups {
		if g.Name == name {
			return g
		}
	}
	return nil
}

// placementGroupLocked finds the group a launch template names, by id or
// name, or returns EC2's fleet error for one it does not know.
func (s *Server) placementGroupLocked(id, name string) (*PlacementGroup, string) {
	if id != "" {
		if g, ok := s.placementGroups[id]; ok {
			return g, ""
		}
		return nil, "InvalidPlacementGroup.Unknown|The Placement Group '" + id + "' is unknown."
	}
	if g := s.placementGroupByNameLocked(name); g != nil {
		return g, ""
	}
	return nil, "InvalidPlacementGroup.Unknown|The Placement Group '" + name + "' is unknown."
}

// groupInstancesLocked are the group's pending and running instances: a
// stopped or terminated one holds no place in it.
func (s *Server) groupInstancesLocked(g *PlacementGroup) []*instance {
	var out []*instance
	for _, id := range slices.Sorted(maps.Keys(s.instances)) {
		in := s.instances[id]
		if in.PlacementGroupID == g.ID && (in.State == StatePending || in.State == StateRunning) {
			out = append(out, in)
		}
	}
	return out
}

// placementRefusalLocked is why g cannot take one more instance in zone, as
// EC2's fleet error "code|message", or "" when it can: a cluster group lives
// in the zone of its instances, a rack spread group has seven racks per zone.
func (s *Server) placementRefusalLocked(g *PlacementGroup, zone string) string {
	members := s.groupInstancesLocked(g)
	switch g.Strategy {
	case StrategyCluster:
		for _, in := range members {
			if in.Zone != zone {
				return fmt.Sprintf("InvalidParameterCombination|The placement group '%s' is in Availability Zone %s; instances of a cluster placement group cannot be launched in %s.", g.Name, in.Zone, zone)
			}
		}
	case StrategySpread:
		inZone := 0
		for _, in := range members {
			if in.Zone == zone {
				inZone++
			}
		}
		if inZone >= maxSpreadPerZone {
			return fmt.Sprintf("InsufficientInstanceCapacity|We currently do not have sufficient capacity to launch another instance into spread placement group '%s' in the Availability Zone you requested (%s): a rack spread group holds at most %d running instances per Availability Zone.", g.Name, zone, maxSpreadPerZone)
		}
	}
	return ""
}

// partitionForLocked is the partition EC2 puts the next instance of a
// partition group in: the one with the fewest instances in the zone (EC2
// spreads evenly), the lowest number on a tie; 0 for other strategies.
func (s *Server) partitionForLocked(g *PlacementGroup, zone string) int {
	if g.Strategy != StrategyPartition {
		return 0
	}
	counts := make([]int, g.PartitionCount+1)
	for _, in := range s.groupInstancesLocked(g) {
		if in.Zone == zone && in.PartitionNumber > 0 && in.PartitionNumber <= g.PartitionCount {
			counts[in.PartitionNumber]++
		}
	}
	best := 1
	for p := 2; p <= g.PartitionCount; p++ {
		if counts[p] < counts[best] {
			best = p
		}
	}
	return best
}

type placementGroupXML struct {
	Name           string         `xml:"groupName"`
	ID             string         `xml:"groupId"`
	ARN            string         `xml:"groupArn"`
	State          string         `xml:"state"`
	Strategy       string         `xml:"strategy"`
	PartitionCount int            `xml:"partitionCount,omitempty"`
	SpreadLevel    string         `xml:"spreadLevel,omitempty"`
	Tags           *items[tagXML] `xml:"tagSet,omitempty"`
}

// describePlacementGroups answers by GroupName and GroupId (an unknown one
// fails the call, as EC2's does) and by the filters group-name, group-id,
// strategy, state, spread-level, tag:KEY and tag-key. The simulator's
// groups are always available (EC2 makes a group available at once).
func (s *Server) describePlacementGroups(p params) (any, *APIError) {
	names, ids := p.list("GroupName"), p.list("GroupId")
	filters := p.filters()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if _, ok := s.placementGroups[id]; !ok {
			return nil, &APIError{Code: "InvalidPlacementGroup.Unknown", Status: 400, Message: fmt.Sprintf("The Placement Group '%s' is unknown.", id)}
		}
	}
	for _, name := range names {
		if s.placementGroupByNameLocked(name) == nil {
			return nil, &APIError{Code: "InvalidPlacementGroup.Unknown", Status: 400, Message: fmt.Sprintf("The Placement Group '%s' is unknown.", name)}
		}
	}
	var out []placementGroupXML
	for _, id := range slices.Sorted(maps.Keys(s.placementGroups)) {
		g := s.placementGroups[id]
		if len(ids) > 0 && !slices.Contains(ids, id) || len(names) > 0 && !slices.Contains(names, g.Name) {
			continue
		}
		attrs := map[string]string{"group-name": g.Name, "group-id": g.ID, "strategy": g.Strategy, "state": "available", "spread-level": g.SpreadLevel}
		if !matchFilters(filters, attrs, g.Tags) {
			continue
		}
		out = append(out, placementGroupXML{
			Name: g.Name, ID: g.ID, ARN: fmt.Sprintf("arn:aws:ec2:%s:%s:placement-group/%s", s.scenario.Region, s.scenario.AccountID, g.Name),
			State: "available", Strategy: g.Strategy, PartitionCount: g.PartitionCount, SpreadLevel: g.SpreadLevel, Tags: tagSet(g.Tags),
		})
	}
	return struct {
		XMLName xml.Name                 `xml:"r"`
		Groups  items[placementGroupXML] `xml:"placementGroupSet"`
	}{Groups: items[placementGroupXML]{Item: out}}, nil
}
