package ec2sim

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// describeAll pages through DescribeInstances with the SDK's paginator.
func (e *env) describeAll(t *testing.T, in *ec2.DescribeInstancesInput) []ec2types.Instance {
	t.Helper()
	var out []ec2types.Instance
	pages := ec2.NewDescribeInstancesPaginator(e.ec2, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(context.Background())
		if err != nil {
			t.Fatalf("DescribeInstances: %v", err)
		}
		for _, r := range page.Reservations {
			out = append(out, r.Instances...)
		}
	}
	return out
}

func TestDescribeInstancesPagesAndFilters(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.launchTemplate(t, "nodes", "")
	tagged := func(team string, n int32, capacityType ec2types.DefaultTargetCapacityType) *ec2.CreateFleetInput {
		in := fleetInput("nodes", capacityType, n, override("c5.large", "ap-northeast-2a"))
		in.TagSpecifications = []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{{Key: aws.String("team"), Value: aws.String(team)}}}}
		return in
	}
	spot := launched(e.createFleet(t, tagged("a", 4, ec2types.DefaultTargetCapacityTypeSpot)))
	onDemand := launched(e.createFleet(t, tagged("b", 3, ec2types.DefaultTargetCapacityTypeOnDemand)))

	first, err := e.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(5)})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range first.Reservations {
		n += len(r.Instances)
	}
	if n != 5 || first.NextToken == nil || len(first.Reservations) != 2 {
		t.Errorf("first page: %d instances in %d reservations, token %v; want 5 in 2 (one per fleet) and a token", n, len(first.Reservations), first.NextToken)
	}
	if all := e.describeAll(t, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(5)}); len(all) != 7 {
		t.Errorf("all pages: %d instances, want 7", len(all))
	}

	for _, tc := range []struct {
		filter ec2types.Filter
		want   int
	}{
		{ec2types.Filter{Name: aws.String("tag:team"), Values: []string{"a"}}, 4},
		{ec2types.Filter{Name: aws.String("tag-key"), Values: []string{"team"}}, 7},
		{ec2types.Filter{Name: aws.String("instance-state-name"), Values: []string{"running", "pending"}}, 7},
		{ec2types.Filter{Name: aws.String("instance-state-name"), Values: []string{"terminated"}}, 0},
		{ec2types.Filter{Name: aws.String("instance-id"), Values: []string{onDemand[0], spot[1]}}, 2},
		{ec2types.Filter{Name: aws.String("instance-lifecycle"), Values: []string{"spot"}}, 4},
	} {
		if got := e.describeAll(t, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{tc.filter}}); len(got) != tc.want {
			t.Errorf("filter %s=%v: %d instances, want %d", aws.ToString(tc.filter.Name), tc.filter.Values, len(got), tc.want)
		}
	}

	byID := e.describeAll(t, &ec2.DescribeInstancesInput{InstanceIds: []string{spot[0]}})
	if len(byID) != 1 {
		t.Fatalf("by id: %d instances", len(byID))
	}
	in := byID[0]
	if aws.ToString(in.InstanceId) != spot[0] || in.InstanceType != "c5.large" || aws.ToString(in.ImageId) != amiX86 ||
		aws.ToString(in.Placement.AvailabilityZone) != "ap-northeast-2a" || aws.ToString(in.SubnetId) != subnet2a ||
		in.State.Name != ec2types.InstanceStateNameRunning || aws.ToInt32(in.State.Code) != 16 ||
		in.InstanceLifecycle != ec2types.InstanceLifecycleTypeSpot || !strings.HasPrefix(aws.ToString(in.SpotInstanceRequestId), "sir-") ||
		in.Architecture != ec2types.ArchitectureValuesX8664 || in.LaunchTime == nil || len(in.SecurityGroups) != 1 {
		t.Errorf("described instance %+v", in)
	}
	if !regexp.MustCompile(`^ip-10-0-\d+-\d+\.ap-northeast-2\.compute\.internal$`).MatchString(aws.ToString(in.PrivateDnsName)) ||
		"ip-"+strings.ReplaceAll(aws.ToString(in.PrivateIpAddress), ".", "-")+".ap-northeast-2.compute.internal" != aws.ToString(in.PrivateDnsName) {
		t.Errorf("private DNS name %s for %s", aws.ToString(in.PrivateDnsName), aws.ToString(in.PrivateIpAddress))
	}
	tags := map[string]string{}
	for _, tag := range in.Tags {
		tags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
	}
	if tags["team"] != "a" {
		t.Errorf("tags %v", tags)
	}
	od := e.describeAll(t, &ec2.DescribeInstancesInput{InstanceIds: []string{onDemand[0]}})
	if len(od) != 1 || od[0].InstanceLifecycle != "" || od[0].SpotInstanceRequestId != nil {
		t.Errorf("on-demand instance has a spot lifecycle: %+v", od)
	}

	// Ids asked for by name must exist, as in EC2.
	_, err = e.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{spot[0], "i-0123456789abcdef0"}})
	if code := errorCode(err); code != "InvalidInstanceID.NotFound" || !strings.Contains(err.Error(), "i-0123456789abcdef0") {
		t.Errorf("unknown id: want InvalidInstanceID.NotFound naming it, got %v", err)
	}
	if _, err = e.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{"web-1"}}); errorCode(err) != "InvalidInstanceID.Malformed" {
		t.Errorf("malformed id: %v", err)
	}
	// Subnets count the addresses the instances took.
	subnets, err := e.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{subnet2a}})
	if err != nil || aws.ToInt32(subnets.Subnets[0].AvailableIpAddressCount) != 8187-7 {
		t.Errorf("subnet 2a free addresses: %v %v", subnets, err)
	}
}

func TestTerminatedInstancesShutDownThenDisappear(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.launchTemplate(t, "nodes", "")
	e.sim.SetShutdownDelay(30 * time.Second)
	ids := launched(e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeOnDemand, 2, override("m5.large", "ap-northeast-2b"))))

	out, err := e.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: ids[:1]})
	if err != nil {
		t.Fatal(err)
	}
	change := out.TerminatingInstances[0]
	if aws.ToString(change.InstanceId) != ids[0] || change.PreviousState.Name != ec2types.InstanceStateNameRunning ||
		change.CurrentState.Name != ec2types.InstanceStateNameShuttingDown || aws.ToInt32(change.CurrentState.Code) != 32 {
		t.Errorf("state change %+v -> %+v", change.PreviousState, change.CurrentState)
	}
	state := func() ec2types.InstanceStateName {
		t.Helper()
		got := e.describeAll(t, &ec2.DescribeInstancesInput{InstanceIds: ids[:1]})
		return got[0].State.Name
	}
	if got := state(); got != ec2types.InstanceStateNameShuttingDown {
		t.Errorf("right after TerminateInstances: %s", got)
	}
	e.sim.Advance(30 * time.Second)
	described := e.describeAll(t, &ec2.DescribeInstancesInput{InstanceIds: ids[:1]})[0]
	if described.State.Name != ec2types.InstanceStateNameTerminated || aws.ToInt32(described.State.Code) != 48 ||
		aws.ToString(described.StateReason.Code) != "Client.UserInitiatedShutdown" {
		t.Errorf("after the shutdown delay: %+v %+v", described.State, described.StateReason)
	}
	again, err := e.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: ids[:1]})
	if err != nil || again.TerminatingInstances[0].PreviousState.Name != ec2types.InstanceStateNameTerminated {
		t.Errorf("terminating a terminated instance: %+v %v", again, err)
	}
	// Running instances are untouched, terminated ones go after the retention.
	e.sim.Advance(DefaultTerminatedRetention)
	if _, err := e.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids[:1]}); errorCode(err) != "InvalidInstanceID.NotFound" {
		t.Errorf("after the retention: want InvalidInstanceID.NotFound, got %v", err)
	}
	if rest := e.sim.Instances(); len(rest) != 1 || rest[0].ID != ids[1] || rest[0].State != StateRunning {
		t.Errorf("left: %+v", rest)
	}
	if _, err := e.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{ids[1], "i-0123456789abcdef0"}}); errorCode(err) != "InvalidInstanceID.NotFound" {
		t.Errorf("terminating an unknown id: %v", err)
	}
	if in, _ := e.sim.Instance(ids[1]); in.State != StateRunning {
		t.Errorf("a request with an unknown id terminated %s", ids[1])
	}
}

func TestLaunchDelayKeepsInstancesPending(t *testing.T) {
	e := newEnv(t)
	e.launchTemplate(t, "nodes", "")
	e.sim.SetLaunchDelay(time.Minute)
	id := launched(e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("m5.large", "ap-northeast-2a"))))[0]
	got := e.describeAll(t, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})[0]
	if got.State.Name != ec2types.InstanceStateNamePending || aws.ToInt32(got.State.Code) != 0 {
		t.Errorf("within the launch delay: %+v", got.State)
	}
	e.sim.Advance(time.Minute)
	if in := e.instance(t, id); in.State != StateRunning {
		t.Errorf("after the launch delay: %s", in.State)
	}
}

// next reads one event or fails the test after a bounded wait.
func next(t *testing.T, events <-chan InstanceEvent) InstanceEvent {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no instance event within 10s")
	}
	return InstanceEvent{}
}

func TestWatchFollowsTheLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := e.sim.Watch(ctx)
	e.launchTemplate(t, "nodes", "")
	id := launched(e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeSpot, 1, override("c5.large", "ap-northeast-2a"))))[0]
	if _, err := e.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatal(err)
	}
	var kinds []EventKind
	for _, want := range []InstanceState{StatePending, StateRunning, StateShuttingDown, StateTerminated} {
		ev := next(t, events)
		kinds = append(kinds, ev.Kind)
		if ev.Instance.ID != id || ev.Instance.State != want || ev.Time.IsZero() {
			t.Errorf("event %s: instance %s in %s, want %s", ev.Kind, ev.Instance.ID, ev.Instance.State, want)
		}
	}
	if got := strings.Join(toStrings(kinds), ","); got != "launched,running,terminating,terminated" {
		t.Errorf("events %s", got)
	}
	cancel()
	for range events {
	}
}

func toStrings(kinds []EventKind) []string {
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = string(k)
	}
	return out
}

func TestInterruptReclaimsSpotInstancesAfterTheNotice(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.launchTemplate(t, "nodes", "")
	ids := launched(e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeSpot, 1, override("c5.large", "ap-northeast-2a"))))
	onDemand := launched(e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("c5.large", "ap-northeast-2a"))))
	events := e.sim.Watch(ctx)

	if err := e.sim.Interrupt(onDemand[0]); err == nil {
		t.Error("interrupted an on-demand instance")
	}
	if err := e.sim.Interrupt("i-0123456789abcdef0"); err == nil {
		t.Error("interrupted an unknown instance")
	}
	if err := e.sim.Interrupt(ids[0]); err != nil {
		t.Fatal(err)
	}
	ev := next(t, events)
	if ev.Kind != EventInterrupted || ev.Instance.ID != ids[0] || ev.Instance.InterruptionTime.IsZero() || ev.Instance.State != StateRunning {
		t.Errorf("first event %+v", ev)
	}
	e.sim.Advance(SpotInterruptionNotice - 30*time.Second)
	if in := e.instance(t, ids[0]); in.State != StateRunning {
		t.Errorf("before the notice ran out: %s", in.State)
	}
	e.sim.Advance(30 * time.Second)
	for _, want := range []EventKind{EventTerminating, EventTerminated} {
		if ev := next(t, events); ev.Kind != want || ev.Instance.StateReason != "Server.SpotInstanceTermination" {
			t.Errorf("event %s (%s), want %s", ev.Kind, ev.Instance.StateReason, want)
		}
	}
	got := e.describeAll(t, &ec2.DescribeInstancesInput{InstanceIds: ids})[0]
	if got.State.Name != ec2types.InstanceStateNameTerminated || aws.ToString(got.StateReason.Code) != "Server.SpotInstanceTermination" {
		t.Errorf("after the notice: %+v %+v", got.State, got.StateReason)
	}
}

func TestCreateTags(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	lt := e.launchTemplate(t, "nodes", "")
	id := launched(e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("m5.large", "ap-northeast-2a"))))[0]
	tag := []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String("default-x7k2p")}}
	if _, err := e.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id, lt}, Tags: tag}); err != nil {
		t.Fatal(err)
	}
	if e.instance(t, id).Tags["Name"] != "default-x7k2p" {
		t.Error("instance not tagged")
	}
	if kept, _ := e.sim.LaunchTemplate(lt); kept.Tags["Name"] != "default-x7k2p" {
		t.Error("launch template not tagged")
	}
	other := []ec2types.Tag{{Key: aws.String("other"), Value: aws.String("x")}}
	_, err := e.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id, "i-0123456789abcdef0"}, Tags: other})
	if errorCode(err) != "InvalidInstanceID.NotFound" {
		t.Errorf("unknown instance: %v", err)
	}
	if _, tagged := e.instance(t, id).Tags["other"]; tagged {
		t.Error("a failed CreateTags tagged the known instance")
	}
	if _, err := e.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: []ec2types.Tag{{Key: aws.String("aws:x"), Value: aws.String("y")}}}); errorCode(err) != "InvalidParameterValue" {
		t.Errorf("aws: key: %v", err)
	}
	if _, err := e.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{"vol-0123456789abcdef0"}, Tags: other}); errorCode(err) != "InvalidID" {
		t.Errorf("unsimulated resource: %v", err)
	}
}

// TestConcurrentUse drives the API, the fault methods, simulated time and a
// watcher at once, for the race detector.
func TestConcurrentUse(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.launchTemplate(t, "nodes", "")
	events := e.sim.Watch(ctx)
	seen := make(chan int)
	go func() {
		n := 0
		for range events {
			n++
		}
		seen <- n
	}()
	done := make(chan error, 4)
	for w := range 4 {
		go func() {
			for i := range 5 {
				out, err := e.ec2.CreateFleet(ctx, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeSpot, 1, everyZone("c5.large")...))
				if err != nil {
					done <- err
					return
				}
				if i%2 == 0 {
					if _, err := e.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: launched(out)}); err != nil {
						done <- err
						return
					}
				}
				if _, err := e.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{}); err != nil {
					done <- err
					return
				}
				e.sim.SetCapacity("m5.large", zones[w], "spot", i)
				e.sim.Advance(time.Second)
				_ = e.sim.Instances()
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.sim.Instances()); n != 20 {
		t.Errorf("%d instances after 20 fleets of one, want 20 (terminated ones still visible)", n)
	}
	cancel()
	if n := <-seen; n < 20 {
		t.Errorf("watcher saw %d events, want at least 20 launches", n)
	}
}
