package aws

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/test/ec2sim"
)

const region = "ap-northeast-2"

// env is a simulator with SDK clients pointed at it and a captured log.
type env struct {
	sim      *ec2sim.Server
	scenario *ec2sim.Scenario
	snapshot *catalog.Snapshot
	clients  *Clients
	log      *logBuffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with the simulator's scenario and snapshot changed
// first (an image tagged, a type given a feature the offline data lacks); the
// provider's offline snapshot stays the embedded one.
func newEnvWith(t *testing.T, edit func(*ec2sim.Scenario, *catalog.Snapshot)) *env {
	t.Helper()
	snap, err := catalog.EmbeddedSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	scenario, err := ec2sim.LoadScenario(region)
	if err != nil {
		t.Fatal(err)
	}
	simSnap, err := catalog.EmbeddedSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(scenario, simSnap)
	}
	sim, err := ec2sim.Start(scenario, simSnap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	clients, err := NewClients(context.Background(), ClientOptions{
		Region: region, Endpoint: sim.URL, RetryMaxBackoff: 10 * time.Millisecond,
		StaticCredentials: &aws.Credentials{AccessKeyID: "AKIDSIMULATOR", SecretAccessKey: "secret"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{sim: sim, scenario: sim.Scenario(), snapshot: snap, clients: clients, log: &logBuffer{}}
}

func (e *env) provider(t *testing.T) *InstanceTypeProvider {
	t.Helper()
	p, err := NewInstanceTypeProvider(e.clients.EC2, e.clients.Pricing, InstanceTypeOptions{
		Region: region, Snapshot: e.snapshot, Log: e.log.logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// offline is the catalog the snapshot alone gives, with the scenario's zones.
func (e *env) offline(t *testing.T) *catalog.Catalog {
	t.Helper()
	names := catalog.ZoneNames{}
	for _, z := range e.scenario.Zones {
		names[z.ID] = z.Name
	}
	c, err := catalog.New(e.snapshot, region, names, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestLiveCatalogMatchesSnapshot: reading the same data through EC2 and
// Pricing (paginated) must give exactly the snapshot's catalog.
func TestLiveCatalogMatchesSnapshot(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t)
	ctx := context.Background()
	for name, refresh := range map[string]func(context.Context) error{
		"types": p.RefreshInstanceTypes, "spot": p.RefreshSpotPrices, "on-demand": p.RefreshOnDemandPrices,
	} {
		if err := refresh(ctx); err != nil {
			t.Fatalf("refreshing %s: %v", name, err)
		}
	}
	live, offline := p.Catalog(), e.offline(t)
	if len(live.Types) != len(offline.Types) {
		t.Fatalf("live catalog has %d types, the snapshot %d", len(live.Types), len(offline.Types))
	}
	for i := range live.Types {
		if live.Types[i].Name != offline.Types[i].Name {
			t.Fatalf("type %d is %s live and %s in the snapshot: the order must be deterministic", i, live.Types[i].Name, offline.Types[i].Name)
		}
	}
	for _, want := range offline.Types {
		got := live.Get(want.Name)
		if got == nil {
			t.Errorf("%s missing from the live catalog", want.Name)
			continue
		}
		if !reflect.DeepEqual(got.Labels, want.Labels) {
			t.Errorf("%s labels differ:\nlive     %v\nsnapshot %v", want.Name, got.Labels, want.Labels)
		}
		if !equalResources(got, want) {
			t.Errorf("%s resources differ: live %v / %v, snapshot %v / %v", want.Name, got.Capacity, got.Allocatable, want.Capacity, want.Allocatable)
		}
		// The network cards and EFA support (spec.networkInterfaces needs
		// them): fails when specFromEC2 drops NetworkInfo.EfaInfo (tried
		// removing the EFAInterfaces assignment) or the cards.
		if g, w := got.Spec, want.Spec; g.Cards() != w.Cards() || g.EFAInterfaces != w.EFAInterfaces {
			t.Errorf("%s network cards/EFA interfaces: live %d/%d, snapshot %d/%d", want.Name, g.Cards(), g.EFAInterfaces, w.Cards(), w.EFAInterfaces)
		}
		if offeringsText(got) != offeringsText(want) {
			t.Errorf("%s offerings differ:\nlive     %v\nsnapshot %v", want.Name, got.Offerings, want.Offerings)
		}
	}
	if n := e.sim.Calls("DescribeInstanceTypes"); n < 2 {
		t.Errorf("DescribeInstanceTypes was called %d times; %d types need several pages", n, len(live.Types))
	}
	if n := e.sim.Calls("AWSPriceListService.GetProducts"); n < 2 {
		t.Errorf("GetProducts was called %d times; prices need several pages", n)
	}
}

func offeringsText(it *catalog.InstanceType) string {
	var b strings.Builder
	for _, o := range it.Offerings {
		fmt.Fprintf(&b, "%s/%s/%s/%v/%s ", o.Zone, o.ZoneID, o.CapacityType, o.Price, o.Interruption)
	}
	return b.String()
}

func equalResources(a, b *catalog.InstanceType) bool {
	for name, q := range b.Capacity {
		if v := a.Capacity[name]; v.Cmp(q) != 0 {
			return false
		}
	}
	for name, q := range b.Allocatable {
		if v := a.Allocatable[name]; v.Cmp(q) != 0 {
			return false
		}
	}
	return len(a.Capacity) == len(b.Capacity) && len(a.Allocatable) == len(b.Allocatable)
}

func spotPrice(c *catalog.Catalog, instanceType, zone string) float64 {
	for _, o := range c.Get(instanceType).Offerings {
		if o.Zone == zone && o.CapacityType == v1.CapacityTypeSpot {
			return o.Price
		}
	}
	return 0
}

// TestSpotHistoryFailureKeepsSnapshotPrices: with DescribeSpotPriceHistory
// failing, the catalog keeps serving the snapshot's spot prices and the log
// says why; once it answers, the live price replaces them.
func TestSpotHistoryFailureKeepsSnapshotPrices(t *testing.T) {
	e := newEnv(t)
	e.sim.FailAlways("DescribeSpotPriceHistory", "InternalError", 500)
	e.sim.SetSpotPrice("m5.xlarge", "ap-northeast-2a", 0.0123)
	p := e.provider(t)
	p.Refresh(context.Background())

	want := spotPrice(e.offline(t), "m5.xlarge", "ap-northeast-2a")
	if got := spotPrice(p.Catalog(), "m5.xlarge", "ap-northeast-2a"); got != want || want == 0 {
		t.Errorf("spot price with the history API down = %v, want the snapshot's %v", got, want)
	}
	logged := e.log.String()
	for _, s := range []string{"refresh failed", `"source"="spot prices"`, "InternalError", `"snapshotDate"="2025-05-28"`} {
		if !strings.Contains(logged, s) {
			t.Errorf("log does not say %s:\n%s", s, logged)
		}
	}
	if e.sim.Calls("DescribeSpotPriceHistory") < 2 {
		t.Errorf("the SDK did not retry the failing call")
	}

	e.sim.Heal()
	if err := p.RefreshSpotPrices(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := spotPrice(p.Catalog(), "m5.xlarge", "ap-northeast-2a"); got != 0.0123 {
		t.Errorf("spot price after recovery = %v, want the live 0.0123", got)
	}
}

// TestThrottlingIsRetried: RequestLimitExceeded is retried by the SDK and the
// refresh succeeds.
func TestThrottlingIsRetried(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t)
	e.sim.Throttle("DescribeInstanceTypes", 2)
	if err := p.RefreshInstanceTypes(context.Background()); err != nil {
		t.Fatalf("refresh failed despite retries: %v", err)
	}
	pages := (len(p.Catalog().Types) + 99) / 100
	if got := e.sim.Calls("DescribeInstanceTypes"); got < pages+2 {
		t.Errorf("DescribeInstanceTypes called %d times, want at least %d pages + 2 throttled", got, pages)
	}
}

// TestPricingFailureKeepsSnapshotOnDemand: the Pricing API down leaves the
// snapshot's on-demand prices.
func TestPricingFailureKeepsSnapshotOnDemand(t *testing.T) {
	e := newEnv(t)
	e.sim.FailAlways("AWSPriceListService.GetProducts", "ThrottlingException", 400)
	p := e.provider(t)
	if err := p.RefreshOnDemandPrices(context.Background()); err == nil {
		t.Fatal("refresh reported success with the Pricing API down")
	}
	for _, o := range p.Catalog().Get("m5.xlarge").Offerings {
		if o.CapacityType == v1.CapacityTypeOnDemand && o.Price != 0.236 {
			t.Errorf("on-demand price = %v, want the snapshot's 0.236", o.Price)
		}
	}
}

// TestStartNeverBlocks: with every API failing, the provider still serves the
// snapshot's catalog at once, and Start returns immediately.
func TestStartNeverBlocks(t *testing.T) {
	e := newEnv(t)
	for _, action := range []string{"DescribeAvailabilityZones", "DescribeInstanceTypes", "DescribeSpotPriceHistory", "AWSPriceListService.GetProducts"} {
		e.sim.FailAlways(action, "Unavailable", 503)
	}
	p := e.provider(t)
	if p.Catalog() == nil || len(p.Catalog().Types) != len(e.offline(t).Types) {
		t.Fatal("no snapshot catalog before any refresh")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	p.Start(ctx)
	if time.Since(start) > time.Second {
		t.Errorf("Start blocked for %s", time.Since(start))
	}
}

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.lines = append(b.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 1})
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}
