package aws

import (
	"context"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
	"github.com/nodewright/nodewright/test/ec2sim"
)

// seedTypes and seedZones are the seed NodePool's requirements.
var (
	seedTypes = []string{"c5.xlarge", "c5a.xlarge", "c5.2xlarge", "c6i.xlarge", "c6i.2xlarge", "m5.xlarge", "m5a.xlarge"}
	seedZones = []string{"ap-northeast-2a", "ap-northeast-2c"}
)

// cheapest is the catalog's cheapest offering among the types and zones
// allowed, of one capacity type.
func cheapest(t *testing.T, c *catalog.Catalog, capacityType string, types, zones []string) (string, catalog.Offering) {
	t.Helper()
	best, bestType := catalog.Offering{Price: math.Inf(1)}, ""
	for _, name := range types {
		for _, o := range c.Get(name).Offerings {
			if o.CapacityType == capacityType && contains(zones, o.Zone) && o.Price < best.Price {
				best, bestType = o, name
			}
		}
	}
	if bestType == "" {
		t.Fatalf("no %s offering among %v in %v", capacityType, types, zones)
	}
	return bestType, best
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func simInstance(t *testing.T, sim *ec2sim.Server, providerID string) ec2sim.Instance {
	t.Helper()
	_, id, err := ParseProviderID(providerID)
	if err != nil {
		t.Fatal(err)
	}
	inst, ok := sim.Instance(id)
	if !ok {
		t.Fatalf("instance %s is not in the simulator", id)
	}
	return inst
}

// TestCreateLaunchesCheapestOnDemand: an on-demand claim launches the
// cheapest type its requirements allow, tagged so nodewright finds it again,
// and comes back with the labels, image, capacity and allocatable the node
// will have.
func TestCreateLaunchesCheapestOnDemand(t *testing.T) {
	e := newEnv(t)
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProvider(t, nc)
	claim := newClaim(nc.Name, req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand), req(v1.LabelInstanceTypeStable, seedTypes...), req(v1.LabelTopologyZone, seedZones...))

	got, err := p.Create(context.Background(), claim)
	if err != nil {
		t.Fatal(err)
	}
	wantType, wantOffering := cheapest(t, p.instanceTypes.Catalog(), v1.CapacityTypeOnDemand, seedTypes, seedZones)
	inst := simInstance(t, e.sim, got.Status.ProviderID)
	if inst.InstanceType != wantType || inst.CapacityType != v1.CapacityTypeOnDemand || !contains(seedZones, inst.Zone) {
		t.Errorf("launched %s %s in %s, want the cheapest allowed: %s on-demand at $%v in %v", inst.InstanceType, inst.CapacityType, inst.Zone, wantType, wantOffering.Price, seedZones)
	}
	for k, v := range map[string]string{
		"kubernetes.io/cluster/my-cluster": "owned", "eks:eks-cluster-name": "my-cluster", "karpenter.sh/nodepool": "batch-processing",
		"karpenter.sh/nodeclaim": claim.Name, "karpenter.k8s.aws/ec2nodeclass": "default", "Name": claim.Name,
	} {
		if inst.Tags[k] != v {
			t.Errorf("instance tag %s = %q, want %q", k, inst.Tags[k], v)
		}
	}
	if inst.IAMInstanceProfile != "KarpenterNodeInstanceProfile" || strings.Join(inst.SecurityGroupIDs, ",") != "sg-0a00000000000001" || inst.MetadataOptions.HTTPTokens != "required" {
		t.Errorf("instance profile %q, groups %v, IMDS %+v: want the node class's", inst.IAMInstanceProfile, inst.SecurityGroupIDs, inst.MetadataOptions)
	}

	if want := ProviderID(inst.Zone, inst.ID); got.Status.ProviderID != want {
		t.Errorf("providerID = %q, want %q", got.Status.ProviderID, want)
	}
	if got.Status.ImageID != "ami-0a2023000000000a1" || inst.ImageID != got.Status.ImageID {
		t.Errorf("image = %q (instance %q), want the x86 AL2023 image", got.Status.ImageID, inst.ImageID)
	}
	it := p.instanceTypes.Catalog().Get(wantType)
	for k, v := range it.Labels {
		if got.Labels[k] != v {
			t.Errorf("label %s = %q, want the type's %q", k, got.Labels[k], v)
		}
	}
	for k, v := range map[string]string{
		v1.LabelTopologyZone: inst.Zone, awsv1.LabelTopologyZoneID: inst.ZoneID, v1.CapacityTypeLabelKey: v1.CapacityTypeOnDemand,
		v1.LabelTopologyRegion: region, v1.LabelArchStable: "amd64", v1.LabelOSStable: "linux",
		v1.NodePoolLabelKey: "batch-processing", "team": "data", awsv1.LabelEC2NodeClass: "default",
	} {
		if got.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, got.Labels[k], v)
		}
	}
	settings, _ := NodeSettings(nc, catalog.DefaultVMMemoryOverheadPercent)
	wantCapacity, wantAllocatable := it.Spec.Resources(settings)
	if !equalLists(got.Status.Capacity, wantCapacity) || !equalLists(got.Status.Allocatable, wantAllocatable) {
		t.Errorf("capacity %v allocatable %v, want %v %v", got.Status.Capacity, got.Status.Allocatable, wantCapacity, wantAllocatable)
	}
	if claim.Status.ProviderID != "" || claim.Labels[v1.LabelTopologyZone] != "" {
		t.Error("Create changed the claim it was given")
	}
}

func equalLists(a, b corev1.ResourceList) bool {
	if len(a) != len(b) || len(a) == 0 {
		return false
	}
	for k, q := range b {
		if v, ok := a[k]; !ok || v.Cmp(q) != 0 {
			return false
		}
	}
	return true
}

// TestCreateSpotCheapestPool: a spot claim launches spot, in the zone where
// its type is cheapest.
func TestCreateSpotCheapestPool(t *testing.T) {
	e := newEnv(t)
	e.sim.SetSpotPrice("m5.xlarge", "ap-northeast-2c", 0.0101)
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProvider(t, nc)
	got, err := p.Create(context.Background(), newClaim(nc.Name, req(v1.LabelInstanceTypeStable, "m5.xlarge")))
	if err != nil {
		t.Fatal(err)
	}
	inst := simInstance(t, e.sim, got.Status.ProviderID)
	if inst.CapacityType != v1.CapacityTypeSpot || inst.Zone != "ap-northeast-2c" || got.Labels[v1.CapacityTypeLabelKey] != v1.CapacityTypeSpot {
		t.Errorf("launched %s in %s (label %s), want spot in ap-northeast-2c where it is cheapest", inst.CapacityType, inst.Zone, got.Labels[v1.CapacityTypeLabelKey])
	}
}

// TestCreateAvoidsPoolOutOfCapacity: when the cheapest pool has no capacity,
// it is marked unavailable and the claim launches in another pool.
func TestCreateAvoidsPoolOutOfCapacity(t *testing.T) {
	e := newEnv(t)
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProvider(t, nc)
	c := p.instanceTypes.Catalog()
	badType, bad := cheapest(t, c, v1.CapacityTypeOnDemand, seedTypes, seedZones)
	e.sim.InsufficientCapacity(badType, bad.Zone, v1.CapacityTypeOnDemand)

	got, err := p.Create(context.Background(), newClaim(nc.Name, req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand), req(v1.LabelInstanceTypeStable, seedTypes...), req(v1.LabelTopologyZone, seedZones...)))
	if err != nil {
		t.Fatal(err)
	}
	inst := simInstance(t, e.sim, got.Status.ProviderID)
	if inst.InstanceType == badType && inst.Zone == bad.Zone {
		t.Errorf("launched in the pool without capacity (%s %s)", badType, bad.Zone)
	}
	if !c.Unavailable.IsUnavailable(badType, bad.Zone, v1.CapacityTypeOnDemand) {
		t.Errorf("%s %s on-demand is not marked unavailable", badType, bad.Zone)
	}
	if c.Unavailable.Len() != 1 {
		t.Errorf("%d offerings marked unavailable, want only the one that failed", c.Unavailable.Len())
	}
}

// TestSpotOutOfCapacityFallsBackToOnDemand: with every allowed spot pool out
// of capacity, a claim that allows on-demand launches on-demand; one that
// allows only spot fails with an InsufficientCapacityError.
func TestSpotOutOfCapacityFallsBackToOnDemand(t *testing.T) {
	types := []string{"m5.xlarge", "c5.xlarge"}
	outOfSpot := func(e *env) {
		for _, it := range types {
			for _, z := range seedZones {
				e.sim.InsufficientCapacity(it, z, v1.CapacityTypeSpot)
			}
		}
	}

	e := newEnv(t)
	outOfSpot(e)
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProvider(t, nc)
	got, err := p.Create(context.Background(), newClaim(nc.Name, req(v1.LabelInstanceTypeStable, types...), req(v1.LabelTopologyZone, seedZones...)))
	if err != nil {
		t.Fatal(err)
	}
	if inst := simInstance(t, e.sim, got.Status.ProviderID); inst.CapacityType != v1.CapacityTypeOnDemand || got.Labels[v1.CapacityTypeLabelKey] != v1.CapacityTypeOnDemand {
		t.Errorf("launched %s, want on-demand after spot ran out", inst.CapacityType)
	}
	for _, it := range types {
		for _, z := range seedZones {
			if !p.instanceTypes.Catalog().Unavailable.IsUnavailable(it, z, v1.CapacityTypeSpot) {
				t.Errorf("%s %s spot is not marked unavailable", it, z)
			}
		}
	}

	// At the account's spot instance limit every spot pool fails alike.
	e = newEnv(t)
	e.sim.SetSpotInstanceLimit(0)
	nc = e.resolved(t, seedNodeClass(t))
	p = e.cloudProvider(t, nc)
	got, err = p.Create(context.Background(), newClaim(nc.Name, req(v1.LabelInstanceTypeStable, types...), req(v1.LabelTopologyZone, seedZones...)))
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels[v1.CapacityTypeLabelKey] != v1.CapacityTypeOnDemand || !p.instanceTypes.Catalog().Unavailable.IsUnavailable("m5.xlarge", "ap-northeast-2a", v1.CapacityTypeSpot) {
		t.Errorf("at the spot limit: launched %s, want on-demand with the spot pools marked out", got.Labels[v1.CapacityTypeLabelKey])
	}

	e = newEnv(t)
	outOfSpot(e)
	nc = e.resolved(t, seedNodeClass(t))
	p = e.cloudProvider(t, nc)
	_, err = p.Create(context.Background(), newClaim(nc.Name, req(v1.CapacityTypeLabelKey, v1.CapacityTypeSpot), req(v1.LabelInstanceTypeStable, types...), req(v1.LabelTopologyZone, seedZones...)))
	if !cloudprovider.IsInsufficientCapacity(err) {
		t.Fatalf("spot-only claim with no spot capacity: want an InsufficientCapacityError, got %v", err)
	}
	if !strings.Contains(err.Error(), "InsufficientInstanceCapacity") {
		t.Errorf("the error does not say which pools failed: %v", err)
	}
	if code := cloudprovider.ErrorCode(err); code != "InsufficientInstanceCapacity" {
		t.Errorf("the error carries code %q, want EC2's InsufficientInstanceCapacity", code)
	}
	if n := len(e.sim.Instances()); n != 0 {
		t.Errorf("%d instances launched for a spot-only claim without spot capacity", n)
	}
}

// TestSpotDearerThanOnDemandIsSkipped: spot pools priced above the cheapest
// allowed on-demand pool are not asked for; with none left, the claim
// launches on-demand.
func TestSpotDearerThanOnDemandIsSkipped(t *testing.T) {
	e := newEnv(t)
	for _, z := range []string{"ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c", "ap-northeast-2d"} {
		e.sim.SetSpotPrice("m5.xlarge", z, 5.0)
	}
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProvider(t, nc)
	got, err := p.Create(context.Background(), newClaim(nc.Name, req(v1.LabelInstanceTypeStable, "m5.xlarge")))
	if err != nil {
		t.Fatal(err)
	}
	if inst := simInstance(t, e.sim, got.Status.ProviderID); inst.CapacityType != v1.CapacityTypeOnDemand {
		t.Errorf("launched %s at a spot price of $5/h, want on-demand at $0.236/h", inst.CapacityType)
	}
}

// TestCreateIsIdempotent: creating the same claim again, from the same
// provider or a restarted one whose catalog has changed since, returns the
// instance already launched.
func TestCreateIsIdempotent(t *testing.T) {
	e := newEnv(t)
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProvider(t, nc)
	claim := newClaim(nc.Name, req(v1.LabelInstanceTypeStable, seedTypes...))
	first, err := p.Create(context.Background(), claim)
	if err != nil {
		t.Fatal(err)
	}
	second, err := p.Create(context.Background(), claim)
	if err != nil {
		t.Fatal(err)
	}
	restarted := e.cloudProvider(t, nc)
	restarted.instanceTypes.Catalog().Unavailable.MarkUnavailable("c5.xlarge", "ap-northeast-2a", v1.CapacityTypeSpot)
	third, err := restarted.Create(context.Background(), claim)
	if err != nil {
		t.Fatal(err)
	}
	if second.Status.ProviderID != first.Status.ProviderID || third.Status.ProviderID != first.Status.ProviderID {
		t.Errorf("providerIDs %s, %s, %s: want one instance", first.Status.ProviderID, second.Status.ProviderID, third.Status.ProviderID)
	}
	if n := len(e.sim.Instances()); n != 1 {
		t.Errorf("%d instances for one claim", n)
	}
	if !equalLists(third.Status.Capacity, first.Status.Capacity) || third.Labels[v1.LabelInstanceTypeStable] != first.Labels[v1.LabelInstanceTypeStable] {
		t.Errorf("the found instance is described differently: %v vs %v", third.Labels, first.Labels)
	}
}

// TestFleetRequestIsIdempotent: the same fleet request for the same claim
// (the SDK retrying a call whose answer was lost) returns the instance the
// first one launched, even where the tag lookup would miss it.
func TestFleetRequestIsIdempotent(t *testing.T) {
	e := newEnv(t)
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProvider(t, nc)
	claim := newClaim(nc.Name, req(v1.LabelInstanceTypeStable, "m5.xlarge"))
	reqs, _ := requirements.FromNodePool(claim.Spec.Requirements)
	settings, _ := NodeSettings(nc, catalog.DefaultVMMemoryOverheadPercent)
	c, err := p.catalogs.get(p.instanceTypes.Catalog(), nc)
	if err != nil {
		t.Fatal(err)
	}
	first, err := p.launch(context.Background(), claim, nc, reqs, c, settings)
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.launch(context.Background(), claim, nc, reqs, c, settings)
	if err != nil {
		t.Fatal(err)
	}
	if *again.InstanceId != *first.InstanceId || len(e.sim.Instances()) != 1 {
		t.Errorf("the same request launched %s then %s", *first.InstanceId, *again.InstanceId)
	}
	other := claim.DeepCopy()
	other.UID = "another-claim-uid"
	if third, err := p.launch(context.Background(), other, nc, reqs, c, settings); err != nil || *third.InstanceId == *first.InstanceId {
		t.Errorf("another claim's identical request got the first claim's instance: %v", err)
	}
}

// TestCreateNeedsAReadyNodeClass: a missing, unresolved or stale node class
// fails with a NodeClassNotReadyError and launches nothing.
func TestCreateNeedsAReadyNodeClass(t *testing.T) {
	e := newEnv(t)
	ready := e.resolved(t, seedNodeClass(t))
	unresolved := seedNodeClass(t)
	unresolved.Name = "unresolved"
	stale := ready.DeepCopy()
	stale.Name, stale.Generation = "stale", 2
	p := e.cloudProvider(t, ready, unresolved, stale)
	for _, name := range []string{"missing", "unresolved", "stale"} {
		_, err := p.Create(context.Background(), newClaim(name))
		if !cloudprovider.IsNodeClassNotReady(err) || !strings.Contains(err.Error(), name) {
			t.Errorf("node class %s: want a NodeClassNotReadyError naming it, got %v", name, err)
		}
	}
	claim := newClaim("default")
	claim.Spec.NodeClassRef.Kind = "KWOKNodeClass"
	if _, err := p.Create(context.Background(), claim); !cloudprovider.IsNodeClassNotReady(err) {
		t.Errorf("a non-EC2NodeClass reference: got %v", err)
	}
	claim = newClaim("default")
	claim.Spec.NodeClassRef.Group = "karpenter.kwok.sh"
	if _, err := p.Create(context.Background(), claim); !cloudprovider.IsNodeClassNotReady(err) {
		t.Errorf("an EC2NodeClass of another group: got %v", err)
	}
	if n := e.sim.Calls("CreateFleet"); n != 0 {
		t.Errorf("CreateFleet called %d times", n)
	}
}

// TestPlanFleet: the fleet asks for at most MaxFleetOverrides pools, the
// cheapest, only of types that fit the claim's requests and its requirements
// (here a NotIn on the family) and run one of the node class's AMIs, one
// subnet per zone.
func TestPlanFleet(t *testing.T) {
	e := newEnv(t)
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProvider(t, nc)
	settings, _ := NodeSettings(nc, catalog.DefaultVMMemoryOverheadPercent)
	c, err := p.catalogs.get(p.instanceTypes.Catalog(), nc)
	if err != nil {
		t.Fatal(err)
	}
	claim := newClaim(nc.Name, req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand))
	claim.Spec.Requirements = append(claim.Spec.Requirements, v1.NodeSelectorRequirementWithMinValues{
		Key: awsv1.LabelInstanceFamily, Operator: corev1.NodeSelectorOpNotIn, Values: []string{"m5", "c5"}})
	claim.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("7"), corev1.ResourceMemory: resource.MustParse("20Gi")}
	reqs, _ := requirements.FromNodePool(claim.Spec.Requirements)
	plan, err := p.planFleet(claim, nc, reqs, c, settings, p.subnets.byZone(nc.Status.Subnets))
	if err != nil {
		t.Fatal(err)
	}
	if plan.capacityType != v1.CapacityTypeOnDemand || len(plan.overrides) != defaultMaxFleetOverrides {
		t.Fatalf("plan: %s with %d pools, want on-demand with %d", plan.capacityType, len(plan.overrides), defaultMaxFleetOverrides)
	}
	for i, o := range plan.overrides {
		if i > 0 && o.price < plan.overrides[i-1].price {
			t.Errorf("pool %d ($%v) is cheaper than pool %d ($%v): not cheapest first", i, o.price, i-1, plan.overrides[i-1].price)
		}
		if f := o.instanceType.Labels[awsv1.LabelInstanceFamily]; f == "m5" || f == "c5" {
			t.Errorf("%s is of a family the claim excludes", o.instanceType.Name)
		}
		if o.instanceType.Spec.VCPU < 8 {
			t.Errorf("%s (%d vCPU) cannot hold 7 CPUs of requests", o.instanceType.Name, o.instanceType.Spec.VCPU)
		}
		if wantAMI, _ := amiFor(nc.Status.AMIs, o.instanceType.Labels); o.ami.ID != wantAMI.ID || o.ami.ID == "" {
			t.Errorf("%s launches with %s, want %s", o.instanceType.Name, o.ami.ID, wantAMI.ID)
		}
		if !strings.HasPrefix(o.subnet, "subnet-0"+o.zone[len(o.zone)-1:]) {
			t.Errorf("%s in %s uses subnet %s", o.instanceType.Name, o.zone, o.subnet)
		}
	}
	all, _ := c.Filter(reqs)
	var dearer float64
	for _, cand := range all {
		if fits(claim.Spec.Resources.Requests, cand.Type, nc, settings) {
			for _, o := range cand.Offerings() {
				if o.CapacityType == v1.CapacityTypeOnDemand && o.Price < plan.overrides[len(plan.overrides)-1].price {
					dearer++
				}
			}
		}
	}
	if dearer > defaultMaxFleetOverrides {
		t.Errorf("%v pools cheaper than the last one kept: the cap did not keep the cheapest", dearer)
	}
}

// unsettled is EC2 right after a launch, as seen through a fleet answer this
// provider cannot match to its plan: DescribeInstances does not know the
// new instances yet (EC2 is eventually consistent) while hide is set, and
// the fleet's answer names no pool.
type unsettled struct {
	instanceEC2API
	hide atomic.Bool
}

func (u *unsettled) CreateFleet(ctx context.Context, in *ec2.CreateFleetInput, opts ...func(*ec2.Options)) (*ec2.CreateFleetOutput, error) {
	out, err := u.instanceEC2API.CreateFleet(ctx, in, opts...)
	if out != nil {
		for i := range out.Instances {
			out.Instances[i].LaunchTemplateAndOverrides = nil
		}
	}
	return out, err
}

func (u *unsettled) DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput, opts ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error) {
	if u.hide.Load() {
		return &ec2.DescribeInstancesOutput{}, nil
	}
	return u.instanceEC2API.DescribeInstances(ctx, in, opts...)
}

// TestUnmatchedFleetAnswerIsAnError: an instance the provider can place in
// no zone (not described yet, the fleet's answer matching no pool) makes
// Create fail instead of returning a provider ID that can never be parsed;
// the retry, once EC2 describes the instance, returns that instance.
// Mutation tried: returning launchedClaim without checking its provider ID:
// Create returned "aws:////i-..." and the claim would be stuck.
func TestUnmatchedFleetAnswerIsAnError(t *testing.T) {
	e := newEnv(t)
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProvider(t, nc)
	ec2 := &unsettled{instanceEC2API: p.ec2}
	ec2.hide.Store(true)
	p.ec2 = ec2
	claim := newClaim(nc.Name, req(v1.LabelInstanceTypeStable, "m5.xlarge"))
	got, err := p.Create(context.Background(), claim)
	if err == nil {
		t.Fatalf("Create returned provider ID %q; want a launch error", got.Status.ProviderID)
	}
	if cloudprovider.IsInsufficientCapacity(err) || cloudprovider.IsNodeClassNotReady(err) {
		t.Fatalf("want a launch error, got %v", err)
	}
	ec2.hide.Store(false)
	got, err = p.Create(context.Background(), claim)
	if err != nil {
		t.Fatal(err)
	}
	instances := e.sim.Instances()
	if len(instances) != 1 {
		t.Fatalf("%d instances for one claim", len(instances))
	}
	if want := ProviderID(instances[0].Zone, instances[0].ID); got.Status.ProviderID != want {
		t.Errorf("providerID %q, want %q", got.Status.ProviderID, want)
	}
}

// TestRetryAfterRefusedFleetLaunches: a claim whose only pool was out of
// capacity launches once the pool is back and the provider stops avoiding
// it: its next fleet, identical to the refused one, gets a new client token,
// so EC2 does not replay the cached refusal. A retry of a fleet that did
// launch still gets the same instance (TestFleetRequestIsIdempotent).
// Mutation tried: a token of UID and request only (attempt fixed at 0): the
// second Create got the cached InsufficientInstanceCapacity again.
func TestRetryAfterRefusedFleetLaunches(t *testing.T) {
	e := newEnv(t)
	nc := e.resolved(t, seedNodeClass(t))
	clock := clocktesting.NewFakeClock(time.Now())
	types, err := NewInstanceTypeProvider(e.clients.EC2, e.clients.Pricing, InstanceTypeOptions{
		Region: region, Snapshot: e.snapshot, Log: e.log.logger(),
		Unavailable: catalog.NewUnavailableOfferings(catalog.UnavailableOptions{Clock: clock}),
	})
	if err != nil {
		t.Fatal(err)
	}
	types.Refresh(context.Background())
	p := e.cloudProviderWith(t, types, nc)
	claim := newClaim(nc.Name, req(v1.LabelInstanceTypeStable, "m5.xlarge"), req(v1.LabelTopologyZone, "ap-northeast-2a"), req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand))
	e.sim.InsufficientCapacity("m5.xlarge", "ap-northeast-2a", v1.CapacityTypeOnDemand)
	if _, err := p.Create(context.Background(), claim); !cloudprovider.IsInsufficientCapacity(err) {
		t.Fatalf("Create with the only pool empty: want insufficient capacity, got %v", err)
	}
	e.sim.Heal()
	clock.Step(4 * time.Minute) // the pool is no longer avoided
	got, err := p.Create(context.Background(), claim)
	if err != nil {
		t.Fatalf("Create after the pool came back: %v", err)
	}
	if inst := simInstance(t, e.sim, got.Status.ProviderID); inst.InstanceType != "m5.xlarge" || inst.Zone != "ap-northeast-2a" {
		t.Errorf("launched %s in %s", inst.InstanceType, inst.Zone)
	}
}

// fleetInputs records the CreateFleet requests a provider sends.
type fleetInputs struct {
	instanceEC2API
	mu     sync.Mutex
	inputs []*ec2.CreateFleetInput
}

func (f *fleetInputs) CreateFleet(ctx context.Context, in *ec2.CreateFleetInput, opts ...func(*ec2.Options)) (*ec2.CreateFleetOutput, error) {
	f.mu.Lock()
	f.inputs = append(f.inputs, in)
	f.mu.Unlock()
	return f.instanceEC2API.CreateFleet(ctx, in, opts...)
}

// TestFleetCarriesTheContext: the node class's context (EC2's reserved
// field for fleets) is in every CreateFleet request (fails when the fleet
// input leaves Context out: tried).
func TestFleetCarriesTheContext(t *testing.T) {
	e := newEnv(t)
	nc := seedNodeClass(t)
	nc.Spec.Context = ptr.To("context-0123456789")
	nc = e.resolved(t, nc)
	p := e.cloudProvider(t, nc)
	rec := &fleetInputs{instanceEC2API: p.ec2}
	p.ec2 = rec
	if _, err := p.Create(context.Background(), newClaim(nc.Name, req(v1.LabelInstanceTypeStable, "m5.xlarge"))); err != nil {
		t.Fatal(err)
	}
	if len(rec.inputs) == 0 {
		t.Fatal("no CreateFleet request")
	}
	for _, in := range rec.inputs {
		if aws.ToString(in.Context) != "context-0123456789" {
			t.Errorf("CreateFleet context %q, want the node class's", aws.ToString(in.Context))
		}
	}
}
