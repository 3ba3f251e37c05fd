package ec2sim

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

var zones = []string{"ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c", "ap-northeast-2d"}

// everyZone is one override of the type per zone.
func everyZone(instanceType string) []ec2types.FleetLaunchTemplateOverridesRequest {
	var out []ec2types.FleetLaunchTemplateOverridesRequest
	for _, z := range zones {
		out = append(out, override(instanceType, z))
	}
	return out
}

func (e *env) createFleet(t *testing.T, in *ec2.CreateFleetInput) *ec2.CreateFleetOutput {
	t.Helper()
	out, err := e.ec2.CreateFleet(context.Background(), in)
	if err != nil {
		t.Fatalf("CreateFleet: %v", err)
	}
	return out
}

func (e *env) instance(t *testing.T, id string) Instance {
	t.Helper()
	in, ok := e.sim.Instance(id)
	if !ok {
		t.Fatalf("instance %s not found", id)
	}
	return in
}

func TestFleetLowestPriceTakesTheCheapestSpotPool(t *testing.T) {
	e := newEnv(t)
	e.launchTemplate(t, "nodes", "")
	// The snapshot makes 2a the cheapest zone for c5.large; the override
	// moves the cheapest pool to 2c.
	e.sim.SetSpotPrice("c5.large", "ap-northeast-2c", 0.0100)
	out := e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeSpot, 1, everyZone("c5.large")...))
	ids := launched(out)
	if len(ids) != 1 || len(out.Errors) != 0 {
		t.Fatalf("launched %v, errors %+v", ids, out.Errors)
	}
	group := out.Instances[0]
	if group.Lifecycle != ec2types.InstanceLifecycleSpot || group.InstanceType != "c5.large" ||
		aws.ToString(group.LaunchTemplateAndOverrides.Overrides.AvailabilityZone) != "ap-northeast-2c" ||
		aws.ToString(group.LaunchTemplateAndOverrides.LaunchTemplateSpecification.LaunchTemplateName) != "nodes" {
		t.Errorf("fleet instance %+v", group)
	}
	in := e.instance(t, ids[0])
	if in.Zone != "ap-northeast-2c" || in.SubnetID != subnet2c || in.CapacityType != "spot" || in.SpotInstanceRequestID == "" || in.FleetID != aws.ToString(out.FleetId) {
		t.Errorf("instance %+v", in)
	}
}

func TestFleetPriceCapacityOptimizedPrefersDeepPools(t *testing.T) {
	e := newEnv(t)
	e.launchTemplate(t, "nodes", "")
	// m5.xlarge is interrupted more than 20% of the time in the snapshot,
	// m5.large 5-10%; make the risky one the cheaper.
	e.sim.SetSpotPrice("m5.xlarge", "ap-northeast-2a", 0.0200)
	e.sim.SetSpotPrice("m5.large", "ap-northeast-2a", 0.0300)
	pools := []ec2types.FleetLaunchTemplateOverridesRequest{override("m5.xlarge", "ap-northeast-2a"), override("m5.large", "ap-northeast-2a")}
	typeOf := func(out *ec2.CreateFleetOutput) []string {
		var types []string
		for _, id := range launched(out) {
			types = append(types, e.instance(t, id).InstanceType)
		}
		return types
	}

	lowest := fleetInput("nodes", ec2types.DefaultTargetCapacityTypeSpot, 1, pools...)
	if got := typeOf(e.createFleet(t, lowest)); fmt.Sprint(got) != "[m5.xlarge]" {
		t.Errorf("lowest-price launched %v, want the cheapest pool m5.xlarge", got)
	}
	pco := fleetInput("nodes", ec2types.DefaultTargetCapacityTypeSpot, 1, pools...)
	pco.SpotOptions = &ec2types.SpotOptionsRequest{AllocationStrategy: ec2types.SpotAllocationStrategyPriceCapacityOptimized}
	if got := typeOf(e.createFleet(t, pco)); fmt.Sprint(got) != "[m5.large]" {
		t.Errorf("price-capacity-optimized launched %v, want the safer pool m5.large", got)
	}
	// A pool that cannot hold the request is not deep, however safe. (The
	// SDK filled in a client token when the input went out the first time;
	// sent again it would ask for that answer again.)
	e.sim.SetCapacity("m5.large", "ap-northeast-2a", "spot", 1)
	pco.TargetCapacitySpecification.TotalTargetCapacity, pco.ClientToken = aws.Int32(2), nil
	if got := typeOf(e.createFleet(t, pco)); fmt.Sprint(got) != "[m5.xlarge m5.xlarge]" {
		t.Errorf("price-capacity-optimized for 2 with one m5.large left launched %v", got)
	}
}

func TestFleetInsufficientCapacityFillsFromAnotherPool(t *testing.T) {
	e := newEnv(t)
	e.launchTemplate(t, "nodes", "")
	// 2a is the cheapest c5.large spot pool and has none.
	e.sim.InsufficientCapacity("c5.large", "ap-northeast-2a", "spot")
	out := e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeSpot, 1, everyZone("c5.large")...))
	ids := launched(out)
	if len(ids) != 1 || e.instance(t, ids[0]).Zone != "ap-northeast-2b" {
		t.Fatalf("launched %v; want one instance in the next cheapest zone, 2b", ids)
	}
	if len(out.Errors) != 1 {
		t.Fatalf("errors %+v, want one for 2a", out.Errors)
	}
	fe := out.Errors[0]
	if aws.ToString(fe.ErrorCode) != "InsufficientInstanceCapacity" || fe.Lifecycle != ec2types.InstanceLifecycleSpot ||
		fe.LaunchTemplateAndOverrides.Overrides.InstanceType != "c5.large" ||
		aws.ToString(fe.LaunchTemplateAndOverrides.Overrides.AvailabilityZone) != "ap-northeast-2a" ||
		aws.ToString(fe.LaunchTemplateAndOverrides.Overrides.SubnetId) != subnet2a ||
		aws.ToString(fe.LaunchTemplateAndOverrides.LaunchTemplateSpecification.Version) != "$Latest" {
		t.Errorf("fleet error %+v / %+v", fe, fe.LaunchTemplateAndOverrides.Overrides)
	}
	// On-demand runs out per pool too, and names where capacity is left.
	e.sim.InsufficientCapacity("c5.large", "ap-northeast-2a", "on-demand")
	od := e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("c5.large", "ap-northeast-2a"), override("c5.large", "ap-northeast-2b")))
	if len(launched(od)) != 1 || len(od.Errors) != 1 || aws.ToString(od.Errors[0].ErrorCode) != "InsufficientInstanceCapacity" ||
		od.Errors[0].Lifecycle != ec2types.InstanceLifecycleOnDemand {
		t.Errorf("on-demand with 2a empty: %v %+v", launched(od), od.Errors)
	}
}

func TestFleetWithEveryPoolEmptyLaunchesNothing(t *testing.T) {
	e := newEnv(t)
	e.launchTemplate(t, "nodes", "")
	for _, z := range zones {
		e.sim.InsufficientCapacity("c5.large", z, "spot")
	}
	out := e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeSpot, 1, everyZone("c5.large")...))
	if len(out.Instances) != 0 || len(out.Errors) != 4 || aws.ToString(out.FleetId) == "" {
		t.Fatalf("instances %+v, %d errors; want none and 4", out.Instances, len(out.Errors))
	}
	for _, fe := range out.Errors {
		if aws.ToString(fe.ErrorCode) != "InsufficientInstanceCapacity" {
			t.Errorf("error %s: %s", aws.ToString(fe.ErrorCode), aws.ToString(fe.ErrorMessage))
		}
	}
	if n := len(e.sim.Instances()); n != 0 {
		t.Errorf("%d instances exist", n)
	}
	// Heal gives the capacity back.
	e.sim.Heal()
	if ids := launched(e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeSpot, 1, everyZone("c5.large")...))); len(ids) != 1 {
		t.Errorf("after Heal launched %v", ids)
	}
}

func TestFleetRejectsPoolsEC2DoesNotOffer(t *testing.T) {
	e := newEnv(t)
	e.launchTemplate(t, "nodes", "")
	e.sim.SetSpotPrice("m5.large", "ap-northeast-2c", 0)
	for _, tc := range []struct {
		name         string
		capacityType ec2types.DefaultTargetCapacityType
		override     ec2types.FleetLaunchTemplateOverridesRequest
		code         string
	}{
		// c4.large is sold only in apne2-az1 and apne2-az3 (2a and 2c).
		{"type not in zone", ec2types.DefaultTargetCapacityTypeOnDemand, override("c4.large", "ap-northeast-2b"), "InvalidFleetConfiguration"},
		{"no spot in zone", ec2types.DefaultTargetCapacityTypeSpot, override("m5.large", "ap-northeast-2c"), "Unsupported"},
		{"unknown type", ec2types.DefaultTargetCapacityTypeOnDemand, override("m99.huge", "ap-northeast-2a"), "InvalidFleetConfiguration"},
		{"arm type, x86 image", ec2types.DefaultTargetCapacityTypeOnDemand, override("m6g.large", "ap-northeast-2a"), "InvalidParameterValue"},
		{"unknown subnet", ec2types.DefaultTargetCapacityTypeOnDemand, ec2types.FleetLaunchTemplateOverridesRequest{InstanceType: "m5.large", SubnetId: aws.String("subnet-0f0000000000000ff")}, "InvalidSubnetID.NotFound"},
		{"unknown image", ec2types.DefaultTargetCapacityTypeOnDemand, ec2types.FleetLaunchTemplateOverridesRequest{InstanceType: "m5.large", SubnetId: aws.String(subnet2a), ImageId: aws.String("ami-0ffffffffffffffff")}, "InvalidAMIID.NotFound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := e.createFleet(t, fleetInput("nodes", tc.capacityType, 1, tc.override, override("m5.large", "ap-northeast-2a")))
			if len(out.Errors) != 1 || aws.ToString(out.Errors[0].ErrorCode) != tc.code {
				t.Fatalf("errors %+v, want one %s", out.Errors, tc.code)
			}
			// The valid pool still launches.
			if ids := launched(out); len(ids) != 1 || e.instance(t, ids[0]).InstanceType != "m5.large" {
				t.Errorf("launched %v", ids)
			}
		})
	}
	// The ARM type with the ARM image is fine.
	arm := fleetInput("nodes", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("m6g.large", "ap-northeast-2a"))
	arm.LaunchTemplateConfigs[0].Overrides[0].ImageId = aws.String(amiARM)
	out := e.createFleet(t, arm)
	if ids := launched(out); len(ids) != 1 || e.instance(t, ids[0]).Architecture != "arm64" {
		t.Errorf("arm64 fleet: %v %+v", ids, out.Errors)
	}
}

func TestFleetClientTokenMakesRetriesSafe(t *testing.T) {
	e := newEnv(t)
	e.launchTemplate(t, "nodes", "")
	in := fleetInput("nodes", ec2types.DefaultTargetCapacityTypeOnDemand, 2, everyZone("m5.large")...)
	in.ClientToken = aws.String("nodeclaim-default-abcde")
	first := e.createFleet(t, in)
	second := e.createFleet(t, in)
	if aws.ToString(first.FleetId) != aws.ToString(second.FleetId) || fmt.Sprint(launched(first)) != fmt.Sprint(launched(second)) {
		t.Errorf("same token answered %s %v then %s %v", aws.ToString(first.FleetId), launched(first), aws.ToString(second.FleetId), launched(second))
	}
	if n := len(e.sim.Instances()); n != 2 {
		t.Errorf("%d instances after a repeated request for 2", n)
	}
	in.TargetCapacitySpecification.TotalTargetCapacity = aws.Int32(3)
	if _, err := e.ec2.CreateFleet(context.Background(), in); errorCode(err) != "IdempotentParameterMismatch" {
		t.Errorf("same token, other request: want IdempotentParameterMismatch, got %v", err)
	}
}

// TestFleetClientTokenReplaysARefusal: EC2 answers a repeated token with
// the first answer, a refusal included, even once capacity is back; only a
// new token tries again. This is why a launch must change its token after a
// refused fleet.
func TestFleetClientTokenReplaysARefusal(t *testing.T) {
	e := newEnv(t)
	e.launchTemplate(t, "nodes", "")
	e.sim.InsufficientCapacity("m5.large", "ap-northeast-2a", "on-demand")
	in := fleetInput("nodes", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("m5.large", "ap-northeast-2a"))
	in.ClientToken = aws.String("claim-uid-attempt-0")
	refused := e.createFleet(t, in)
	e.sim.Heal()
	replayed := e.createFleet(t, in)
	if len(launched(replayed)) != 0 || len(replayed.Errors) != 1 || aws.ToString(replayed.FleetId) != aws.ToString(refused.FleetId) {
		t.Errorf("same token after Heal: launched %v, errors %+v; want the cached refusal", launched(replayed), replayed.Errors)
	}
	in.ClientToken = aws.String("claim-uid-attempt-1")
	if ids := launched(e.createFleet(t, in)); len(ids) != 1 {
		t.Errorf("a new token after Heal launched %v", ids)
	}
}

func TestFleetPartialFulfillment(t *testing.T) {
	e := newEnv(t)
	e.launchTemplate(t, "nodes", "")
	e.sim.PartialFulfillment(1, 2)
	out := e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeSpot, 5, everyZone("c5.large")...))
	if ids := launched(out); len(ids) != 2 {
		t.Errorf("partial fleet launched %d, want 2", len(ids))
	}
	if len(out.Errors) != 1 || aws.ToString(out.Errors[0].ErrorCode) != "UnfulfillableCapacity" {
		t.Errorf("errors %+v, want UnfulfillableCapacity", out.Errors)
	}
	// Only the next call was limited.
	if ids := launched(e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeSpot, 3, everyZone("c5.large")...))); len(ids) != 3 {
		t.Errorf("following fleet launched %d, want 3", len(ids))
	}
}

func TestFleetSpotInstanceLimit(t *testing.T) {
	e := newEnv(t)
	e.launchTemplate(t, "nodes", "")
	e.sim.SetSpotInstanceLimit(1)
	out := e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeSpot, 2, override("c5.large", "ap-northeast-2a")))
	if len(launched(out)) != 1 || len(out.Errors) != 1 || aws.ToString(out.Errors[0].ErrorCode) != "MaxSpotInstanceCountExceeded" {
		t.Errorf("launched %v, errors %+v", launched(out), out.Errors)
	}
}

func TestFleetOnDemandStrategies(t *testing.T) {
	e := newEnv(t)
	e.launchTemplate(t, "nodes", "")
	// On demand, c5.large costs less than m5.large.
	pools := []ec2types.FleetLaunchTemplateOverridesRequest{override("m5.large", "ap-northeast-2a"), override("c5.large", "ap-northeast-2a")}
	pools[0].Priority, pools[1].Priority = aws.Float64(0), aws.Float64(1)
	lowest := e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeOnDemand, 1, pools...))
	if got := e.instance(t, launched(lowest)[0]).InstanceType; got != "c5.large" {
		t.Errorf("lowest-price launched %s", got)
	}
	prioritized := fleetInput("nodes", ec2types.DefaultTargetCapacityTypeOnDemand, 1, pools...)
	prioritized.OnDemandOptions = &ec2types.OnDemandOptionsRequest{AllocationStrategy: ec2types.FleetOnDemandAllocationStrategyPrioritized}
	out := e.createFleet(t, prioritized)
	if got := e.instance(t, launched(out)[0]).InstanceType; got != "m5.large" {
		t.Errorf("prioritized launched %s, want priority 0's m5.large", got)
	}
	if p := out.Instances[0].LaunchTemplateAndOverrides.Overrides.Priority; p == nil || *p != 0 {
		t.Errorf("answer's overrides lost the priority: %v", p)
	}
}

func TestFleetTagsItsInstances(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("tagged"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{
			ImageId: aws.String(amiX86),
			TagSpecifications: []ec2types.LaunchTemplateTagSpecificationRequest{{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{
				{Key: aws.String("from"), Value: aws.String("template")}, {Key: aws.String("team"), Value: aws.String("template")},
			}}},
		},
	}); err != nil {
		t.Fatal(err)
	}
	in := fleetInput("tagged", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("m5.large", "ap-northeast-2a"))
	in.TagSpecifications = []ec2types.TagSpecification{
		{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{{Key: aws.String("team"), Value: aws.String("fleet")}}},
		{ResourceType: ec2types.ResourceTypeFleet, Tags: []ec2types.Tag{{Key: aws.String("karpenter.sh/nodepool"), Value: aws.String("default")}}},
	}
	out := e.createFleet(t, in)
	tags := e.instance(t, launched(out)[0]).Tags
	if tags["from"] != "template" || tags["team"] != "fleet" || tags["aws:ec2:fleet-id"] != aws.ToString(out.FleetId) || tags["aws:ec2launchtemplate:id"] == "" {
		t.Errorf("instance tags %v", tags)
	}
	if _, ok := tags["karpenter.sh/nodepool"]; ok {
		t.Error("the fleet's own tags went to the instance")
	}
	in.TagSpecifications = []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{{Key: aws.String("aws:reserved"), Value: aws.String("x")}}}}
	in.ClientToken = nil
	if _, err := e.ec2.CreateFleet(ctx, in); errorCode(err) != "InvalidParameterValue" {
		t.Errorf("an aws: tag: want InvalidParameterValue, got %v", err)
	}
}

func TestFleetRequestLimits(t *testing.T) {
	e := newEnv(t)
	e.launchTemplate(t, "nodes", "")
	ctx := context.Background()
	maintain := fleetInput("nodes", ec2types.DefaultTargetCapacityTypeSpot, 1, override("c5.large", "ap-northeast-2a"))
	maintain.Type = ec2types.FleetTypeMaintain
	if _, err := e.ec2.CreateFleet(ctx, maintain); errorCode(err) != "InvalidParameterValue" {
		t.Errorf("maintain fleet: %v", err)
	}
	var many []ec2types.FleetLaunchTemplateOverridesRequest
	for i := range 301 {
		many = append(many, override("c5.large", zones[i%4]))
	}
	if _, err := e.ec2.CreateFleet(ctx, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeSpot, 1, many...)); errorCode(err) != "InvalidParameterValue" {
		t.Errorf("301 overrides: want InvalidParameterValue, got %v", err)
	}
	if out, err := e.ec2.CreateFleet(ctx, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeSpot, 1, many[:300]...)); err != nil || len(launched(out)) != 1 {
		t.Errorf("300 overrides: %v", err)
	}
	if _, err := e.ec2.CreateFleet(ctx, fleetInput("missing", ec2types.DefaultTargetCapacityTypeSpot, 1, many[0])); errorCode(err) != "InvalidLaunchTemplateName.NotFoundException" {
		t.Errorf("missing template: want InvalidLaunchTemplateName.NotFoundException, got %v", err)
	}
}

func TestSpotPoolsOutOfCapacityIsRepeatable(t *testing.T) {
	a, b := newEnv(t), newEnv(t)
	first, second := a.sim.SpotPoolsOutOfCapacity(0.25, 7), b.sim.SpotPoolsOutOfCapacity(0.25, 7)
	if len(first) == 0 || fmt.Sprint(first) != fmt.Sprint(second) {
		t.Fatalf("seed 7 emptied %d pools, then %d different ones", len(first), len(second))
	}
	if other := b.sim.SpotPoolsOutOfCapacity(0.25, 8); fmt.Sprint(other) == fmt.Sprint(first) {
		t.Error("another seed chose the same pools")
	}
	// A quarter of the region's spot pools.
	total := 0
	for _, ty := range a.sim.regionTypes() {
		for _, p := range ty.Regions[region].Spot {
			if p > 0 {
				total++
			}
		}
	}
	if want := (total + 2) / 4; len(first) < want-1 || len(first) > want+1 {
		t.Errorf("emptied %d of %d pools", len(first), total)
	}
	a.launchTemplate(t, "nodes", "")
	pool := first[0]
	out := a.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeSpot, 1, override(pool.InstanceType, pool.Zone)))
	if len(out.Instances) != 0 || len(out.Errors) != 1 || aws.ToString(out.Errors[0].ErrorCode) != "InsufficientInstanceCapacity" {
		t.Errorf("fleet in emptied pool %v: %+v %+v", pool, out.Instances, out.Errors)
	}
}

// TestSubnetFreeAddresses: a subnet's AvailableIpAddressCount drops by one
// per instance launched into it and comes back when one terminates; a fleet
// override for a subnet with none left fails with
// InsufficientFreeAddressesInSubnet while another subnet of the zone fills
// the request, as EC2 does.
// Mutation tried: SetSubnetFreeAddresses not counted by allocateIPLocked
// (only by DescribeSubnets): the third fleet launched into the full subnet.
func TestSubnetFreeAddresses(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.launchTemplate(t, "nodes", "")
	const private, public = subnet2a, "subnet-0e000000000000005"
	e.sim.SetSubnetFreeAddresses(private, 2)
	free := func() int32 {
		t.Helper()
		out, err := e.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{private}})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToInt32(out.Subnets[0].AvailableIpAddressCount)
	}
	if n := free(); n != 2 {
		t.Fatalf("free addresses %d, want 2", n)
	}
	ids := launched(e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeOnDemand, 2, override("m5.large", "ap-northeast-2a"))))
	if n := free(); len(ids) != 2 || n != 0 {
		t.Fatalf("launched %v, %d free; want 2 and 0", ids, n)
	}
	both := override("m5.large", "ap-northeast-2a")
	other := both
	other.SubnetId = aws.String(public)
	out := e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeOnDemand, 1, both, other))
	if len(out.Errors) != 1 || aws.ToString(out.Errors[0].ErrorCode) != "InsufficientFreeAddressesInSubnet" ||
		aws.ToString(out.Errors[0].LaunchTemplateAndOverrides.Overrides.SubnetId) != private {
		t.Errorf("errors %+v, want InsufficientFreeAddressesInSubnet for %s", out.Errors, private)
	}
	if got := launched(out); len(got) != 1 || e.instance(t, got[0]).SubnetID != public {
		t.Errorf("launched %v, want one in %s", got, public)
	}
	if _, err := e.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: ids[:1]}); err != nil {
		t.Fatal(err)
	}
	e.sim.Advance(time.Minute) // shutting-down holds the address until terminated
	if n := free(); n != 1 {
		t.Errorf("free addresses after a termination %d, want 1", n)
	}
}
