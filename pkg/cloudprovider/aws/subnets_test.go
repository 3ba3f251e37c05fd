package aws

import (
	"context"
	"slices"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
)

// Two subnets in 2a, one in 2c, as a node class's status lists them.
var twoSubnetsIn2a = []awsv1.Subnet{
	{ID: "subnet-a1", Zone: "ap-northeast-2a"}, {ID: "subnet-a2", Zone: "ap-northeast-2a"}, {ID: "subnet-c1", Zone: "ap-northeast-2c"},
}

// TestSubnetOrderCountsLaunchesInFlight: each zone's subnets are ordered by
// free addresses less this provider's launches not yet in EC2's count: in
// flight (one address in the preferred subnet of every zone), or returned
// after the count was taken (one in the subnet used), until a count taken
// after they returned.
// Mutations tried: freeLocked ignoring launches (the rows with launches
// kept a1 first); record not dropping launches the new count includes
// (two launches remembered for ever).
func TestSubnetOrderCountsLaunchesInFlight(t *testing.T) {
	clock := clocktesting.NewFakeClock(time.Now())
	s := newSubnetAddresses(nil, clock)
	describe := func(free map[string]int32) { s.record(free, clock.Now()) }
	describe(map[string]int32{"subnet-a1": 5, "subnet-a2": 4, "subnet-c1": 1})
	order := func() []string { return s.byZone(twoSubnetsIn2a)["ap-northeast-2a"] }
	if got := order(); !slices.Equal(got, []string{"subnet-a1", "subnet-a2"}) {
		t.Fatalf("5 and 4 free: order %v", got)
	}
	first := s.reserve([]string{"subnet-a1", "subnet-c1"})
	second := s.reserve([]string{"subnet-a1", "subnet-c1"})
	if got := order(); !slices.Equal(got, []string{"subnet-a2", "subnet-a1"}) {
		t.Errorf("a1 with two launches in flight (3 left) before a2 (4): %v", got)
	}
	s.release(first, "")
	if got := order(); !slices.Equal(got, []string{"subnet-a1", "subnet-a2"}) {
		t.Errorf("a launch that took nothing still counted: %v", got)
	}
	clock.Step(time.Second)
	s.release(second, "subnet-a1")
	third := s.reserve([]string{"subnet-a1"})
	s.release(third, "subnet-a1")
	if got := order(); !slices.Equal(got, []string{"subnet-a2", "subnet-a1"}) {
		t.Errorf("two launches into a1 since its count (3 left) before a2 (4): %v", got)
	}
	clock.Step(time.Second)
	describe(map[string]int32{"subnet-a1": 5, "subnet-a2": 4}) // others freed two addresses in a1
	if got := order(); !slices.Equal(got, []string{"subnet-a1", "subnet-a2"}) {
		t.Errorf("after a new count that includes the launches: %v", got)
	}
	if n := len(s.launches); n != 0 {
		t.Errorf("%d launches the new count includes are still remembered", n)
	}
}

// TestFullSubnetKeepsItsZone: a zone's subnet that filled up since the node
// class was resolved does not take the zone out: the launch asks for every
// subnet of the zone, the one with the most free addresses now first, and
// lands in the other one.
// Mutation tried: byZone giving one subnet per zone in the status order (as
// planFleet chose before): four fleets tried only the full subnet and the
// launch failed with insufficient capacity.
func TestFullSubnetKeepsItsZone(t *testing.T) {
	e := newEnv(t)
	const private, public = "subnet-0a000000000000001", "subnet-0e000000000000005"
	nc := seedNodeClass(t)
	nc.Spec.SubnetSelectorTerms = []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"Tier": "*"}}}
	nc = e.resolved(t, nc)
	if nc.Status.Subnets[0].ID != private {
		t.Fatalf("subnets %+v: want the private 2a subnet (most free) first", nc.Status.Subnets)
	}
	e.sim.SetSubnetFreeAddresses(private, 0) // filled since the resolution
	p := e.cloudProvider(t, nc)
	claim := newClaim(nc.Name, req(v1.LabelInstanceTypeStable, "m5.xlarge"), req(v1.LabelTopologyZone, "ap-northeast-2a"), req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand))
	got, err := p.Create(context.Background(), claim)
	if err != nil {
		t.Fatal(err)
	}
	if inst := simInstance(t, e.sim, got.Status.ProviderID); inst.SubnetID != public || inst.Zone != "ap-northeast-2a" {
		t.Errorf("launched into %s in %s, want %s in ap-northeast-2a", inst.SubnetID, inst.Zone, public)
	}
	if p.instanceTypes.Catalog().Unavailable.IsUnavailable("m5.xlarge", "ap-northeast-2a", v1.CapacityTypeOnDemand) {
		t.Error("a full subnet marked its zone's offering unavailable")
	}

	// With both full, the zone is out: the offering is marked and the claim
	// fails for capacity, to be planned elsewhere.
	e.sim.SetSubnetFreeAddresses(public, 0)
	other := newClaim(nc.Name, req(v1.LabelInstanceTypeStable, "m5.xlarge"), req(v1.LabelTopologyZone, "ap-northeast-2a"), req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand))
	if _, err := p.Create(context.Background(), other); !cloudprovider.IsInsufficientCapacity(err) {
		t.Errorf("both 2a subnets full: want insufficient capacity, got %v", err)
	}
	if !p.instanceTypes.Catalog().Unavailable.IsUnavailable("m5.xlarge", "ap-northeast-2a", v1.CapacityTypeOnDemand) {
		t.Error("with every subnet of 2a full, its offering is still available")
	}
}
