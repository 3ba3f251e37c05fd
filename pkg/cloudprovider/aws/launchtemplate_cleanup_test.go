package aws

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"k8s.io/apimachinery/pkg/util/wait"
	clocktesting "k8s.io/utils/clock/testing"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
)

// timeline is a fake clock for the provider that moves the simulator's
// clock with it, so launch template creation times and last uses compare.
type timeline struct {
	*clocktesting.FakeClock
	e *env
}

func (e *env) timeline() *timeline {
	return &timeline{clocktesting.NewFakeClock(e.sim.Now()), e}
}

func (tl *timeline) advance(d time.Duration) {
	tl.Step(d)
	tl.e.sim.Advance(d)
}

// cloudProviderAt is cloudProvider with the provider's clock at tl.
func (e *env) cloudProviderAt(t *testing.T, tl *timeline, ncs ...*awsv1.EC2NodeClass) *CloudProvider {
	t.Helper()
	types := e.provider(t)
	types.Refresh(context.Background())
	reader := nodeClasses{}
	for _, nc := range ncs {
		reader[nc.Name] = nc
	}
	opts := testOptions
	opts.Clock = tl
	p, err := NewCloudProvider(opts, e.clients, types, reader)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// launchFor launches a claim whose "team" label is team: each team
// registers with other labels, so gets its own launch template. It returns
// the name of the template the instance was launched from.
func launchFor(t *testing.T, e *env, p *CloudProvider, nc *awsv1.EC2NodeClass, team string) string {
	t.Helper()
	claim := newClaim(nc.Name, req(v1.LabelInstanceTypeStable, "m5.xlarge"), req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand))
	claim.Labels["team"] = team
	launched, err := p.Create(context.Background(), claim)
	if err != nil {
		t.Fatalf("launching for team %s: %v", team, err)
	}
	id := simInstance(t, e.sim, launched.Status.ProviderID).LaunchTemplateID
	lt, ok := e.sim.LaunchTemplate(id)
	if !ok {
		t.Fatalf("the instance's launch template %s is gone", id)
	}
	return lt.Name
}

func templateNames(e *env) []string {
	var out []string
	for _, lt := range e.sim.LaunchTemplates() {
		out = append(out, lt.Name)
	}
	return out
}

// TestSweepDeletesUnusedLaunchTemplates: a sweep deletes the cluster's
// templates no launch has asked for within the TTL and keeps one used
// recently (though created as long ago), and templates that are not
// nodewright's; the next launch that needs a deleted one creates it again,
// with one fleet. A restarted provider's sweep finds the old templates in
// EC2. Fails if the sweep ignores last use (deleting by creation time), does
// not delete, deletes templates without the cluster's name prefix, forgets
// nothing (the launch after the delete would name a missing template and
// need a second fleet), or only considers the names it has in memory.
func TestSweepDeletesUnusedLaunchTemplates(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tl := e.timeline()
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProviderAt(t, tl, nc)

	// Not nodewright's, though tagged for the cluster and a NodePool (a
	// Karpenter installation's, say): never deleted.
	foreign := "karpenter.k8s.aws/1234567890"
	if _, err := e.clients.EC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(foreign),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-0a2023000000000a1")},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: []ec2types.Tag{
			{Key: aws.String("kubernetes.io/cluster/my-cluster"), Value: aws.String("owned")},
			{Key: aws.String(awsv1.TagNodePool), Value: aws.String("default")},
		}}},
	}); err != nil {
		t.Fatal(err)
	}

	busy := launchFor(t, e, p, nc, "busy")
	idle := launchFor(t, e, p, nc, "idle")
	if busy == idle {
		t.Fatal("two label sets share a template")
	}
	tl.advance(20 * time.Minute)
	launchFor(t, e, p, nc, "busy")
	tl.advance(15 * time.Minute) // busy used 15 minutes ago, idle 35

	if err := p.SweepLaunchTemplates(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := templateNames(e), []string{busy, foreign}; !slices.Equal(got, sorted(want)) {
		t.Errorf("after the sweep: templates %v, want %v (busy kept, idle deleted, the foreign one untouched)", got, sorted(want))
	}

	creates, fleets := e.sim.Calls("CreateLaunchTemplate"), e.sim.Calls("CreateFleet")
	if again := launchFor(t, e, p, nc, "idle"); again != idle {
		t.Errorf("the idle team's template came back as %s, want %s", again, idle)
	}
	if n := e.sim.Calls("CreateLaunchTemplate") - creates; n != 1 {
		t.Errorf("%d CreateLaunchTemplate calls to launch from the deleted template, want 1", n)
	}
	if n := e.sim.Calls("CreateFleet") - fleets; n != 1 {
		t.Errorf("%d fleets to launch from the deleted template, want 1: the provider named a template it had deleted", n)
	}

	// A restart: the new provider has asked for nothing, so what the old
	// one made and nobody used within the TTL goes.
	tl.advance(31 * time.Minute)
	restarted := e.cloudProviderAt(t, tl, nc)
	if err := restarted.SweepLaunchTemplates(ctx); err != nil {
		t.Fatal(err)
	}
	if got := templateNames(e); !slices.Equal(got, []string{foreign}) {
		t.Errorf("after a restart and a sweep: templates %v, want only %s", got, foreign)
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// blockingDelete holds DeleteLaunchTemplate until released, running hook
// first, so a test can act while a deletion is in flight.
type blockingDelete struct {
	launchTemplateEC2API
	hook func()
}

func (b *blockingDelete) DeleteLaunchTemplate(ctx context.Context, in *ec2.DeleteLaunchTemplateInput, opts ...func(*ec2.Options)) (*ec2.DeleteLaunchTemplateOutput, error) {
	b.hook()
	return b.launchTemplateEC2API.DeleteLaunchTemplate(ctx, in, opts...)
}

// TestLaunchWaitsForDeletionInFlight: a launch that asks for a template
// while a sweep is deleting it waits for the deletion (it does not find the
// template still there and name it to a fleet a moment before it is gone),
// then creates it again. Fails if use does not wait for a deletion in
// progress, or delete does not mark the name as being deleted.
func TestLaunchWaitsForDeletionInFlight(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tl := e.timeline()
	nc := e.resolved(t, seedNodeClass(t))
	opts := testOptions
	opts.Clock = tl
	opts, err := opts.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	client := &blockingDelete{launchTemplateEC2API: e.clients.EC2, hook: func() {}}
	l := newLaunchTemplates(client, opts)
	params := launchParams{nodeClass: nc, nodePool: "batch-processing", ami: nc.Status.AMIs[0], capacityType: v1.CapacityTypeOnDemand, labels: map[string]string{"team": "a"}}
	name, err := l.ensure(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	tl.advance(31 * time.Minute)

	// While the sweep's DeleteLaunchTemplate is in flight, a launch whose
	// context is already done must stop waiting, not go on to describe the
	// doomed template and return its name.
	var during error
	client.hook = func() {
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		_, during = l.ensure(cancelled, params)
	}
	if _, err := l.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if during == nil || !strings.Contains(during.Error(), "waiting for launch template") || !errors.Is(during, context.Canceled) {
		t.Errorf("ensure during the deletion = %v; want it to wait for the deletion (and give up with its context)", during)
	}
	if _, ok := e.sim.LaunchTemplate(name); ok {
		t.Fatal("the sweep did not delete the unused template")
	}

	client.hook = func() {}
	again, err := l.ensure(ctx, params)
	if err != nil || again != name {
		t.Fatalf("ensure after the deletion = %s, %v", again, err)
	}
	if _, ok := e.sim.LaunchTemplate(name); !ok {
		t.Error("ensure after the deletion did not create the template again")
	}
}

// TestLaunchTemplateQuotaFreedBySweeps: with room for 3 templates and a new
// label set every 31 minutes, every launch succeeds: reaching the quota
// sweeps the templates unused for the TTL and retries. Within the TTL
// nothing is deleted to make room: the launch fails with EC2's code. Fails
// if a launch at the quota does not sweep, or if that sweep ignores the TTL.
func TestLaunchTemplateQuotaFreedBySweeps(t *testing.T) {
	e := newEnv(t)
	tl := e.timeline()
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProviderAt(t, tl, nc)
	e.sim.SetLaunchTemplateQuota(3)
	for i := range 8 {
		launchFor(t, e, p, nc, "team-"+string(rune('a'+i)))
		if n := len(e.sim.LaunchTemplates()); n > 3 {
			t.Fatalf("%d templates with a quota of 3", n)
		}
		tl.advance(31 * time.Minute)
	}
	if e.sim.Calls("DeleteLaunchTemplate") < 5 {
		t.Errorf("%d templates deleted for 8 label sets with room for 3", e.sim.Calls("DeleteLaunchTemplate"))
	}

	// Three label sets in use within the TTL fill the quota; the fourth
	// fails rather than take a template a launch may be about to use.
	tl.advance(31 * time.Minute)
	for _, team := range []string{"x", "y", "z"} {
		launchFor(t, e, p, nc, team)
	}
	deletes := e.sim.Calls("DeleteLaunchTemplate")
	claim := newClaim(nc.Name, req(v1.LabelInstanceTypeStable, "m5.xlarge"), req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand))
	claim.Labels["team"] = "w"
	_, err := p.Create(context.Background(), claim)
	if code := cloudprovider.ErrorCode(err); code != "MaxTemplateLimitExceeded" {
		t.Errorf("a fourth label set within the TTL: want MaxTemplateLimitExceeded, got %q (%v)", code, err)
	}
	if n := e.sim.Calls("DeleteLaunchTemplate") - deletes; n != 0 {
		t.Errorf("%d templates in use deleted to make room", n)
	}
}

// TestLaunchTemplateSweeperTicks: the sweeper sweeps when it starts and
// every interval of its clock. Fails if Start does not tick or stops after
// the first sweep.
func TestLaunchTemplateSweeperTicks(t *testing.T) {
	e := newEnv(t)
	tl := e.timeline()
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProviderAt(t, tl, nc)
	launchFor(t, e, p, nc, "a")

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() {
		stopped <- (&LaunchTemplateSweeper{Provider: p, Interval: 5 * time.Minute, Clock: tl}).Start(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("sweeper: %v", err)
		}
	})
	waitFor(t, "the sweeper's ticker", func() bool { return tl.HasWaiters() })
	if n := len(e.sim.LaunchTemplates()); n != 1 {
		t.Fatalf("the first sweep deleted a template used just now: %d left", n)
	}
	for range 7 { // 35 minutes, one tick at a time
		tl.advance(5 * time.Minute)
	}
	waitFor(t, "the unused template to be swept", func() bool { return len(e.sim.LaunchTemplates()) == 0 })
}

// waitFor polls cond, for at most 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
