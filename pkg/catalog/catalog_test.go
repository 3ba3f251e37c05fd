package catalog

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
	"github.com/nodewright/nodewright/test/fixtures"
)

var (
	snapOnce sync.Once
	snap     *Snapshot
	snapErr  error
)

func snapshot(t testing.TB) *Snapshot {
	t.Helper()
	snapOnce.Do(func() { snap, snapErr = EmbeddedSnapshot() })
	if snapErr != nil {
		t.Fatal(snapErr)
	}
	return snap
}

func region(t testing.TB, name string) *Catalog {
	t.Helper()
	c, err := New(snapshot(t), name, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSnapshotIsDatedAndComplete(t *testing.T) {
	s := snapshot(t)
	if s.DataDate != "2025-05-28" || !strings.Contains(s.Source, "ec2instances.info") {
		t.Errorf("snapshot source %q date %q", s.Source, s.DataDate)
	}
	if len(s.Types) < 850 {
		t.Errorf("snapshot has %d instance types; the EC2 catalog has about 900", len(s.Types))
	}
}

func TestM5XlargeInUSEast1(t *testing.T) {
	it := region(t, "us-east-1").Get("m5.xlarge")
	if it == nil {
		t.Fatal("m5.xlarge missing in us-east-1")
	}
	if it.Spec.VCPU != 4 || it.Spec.MemoryMiB != 16*1024 {
		t.Errorf("m5.xlarge is %d vCPU %d MiB, want 4 and 16384", it.Spec.VCPU, it.Spec.MemoryMiB)
	}
	if pods := it.Capacity.Pods().Value(); pods != 58 {
		t.Errorf("max pods = %d, want 58 (4 ENIs x (15-1) + 2)", pods)
	}
	od := 0.0
	for _, o := range it.Offerings {
		if o.CapacityType == v1.CapacityTypeOnDemand {
			od = o.Price
		}
	}
	if od != 0.192 {
		t.Errorf("on-demand price = %v, want 0.192 $/h", od)
	}
	for key, want := range map[string]string{
		awsv1.LabelInstanceCategory: "m", awsv1.LabelInstanceFamily: "m5", awsv1.LabelInstanceGeneration: "5",
		awsv1.LabelInstanceSize: "xlarge", awsv1.LabelInstanceCPU: "4", awsv1.LabelInstanceMemory: "16384",
		awsv1.LabelInstanceHypervisor: "nitro", awsv1.LabelInstanceCPUManufacturer: "intel",
		v1.LabelArchStable: "amd64", v1.LabelOSStable: "linux", v1.LabelTopologyRegion: "us-east-1",
	} {
		if got := it.Labels[key]; got != want {
			t.Errorf("label %s = %q, want %q", key, got, want)
		}
	}
}

// Price finds an offering by type, zone and capacity type, and says when the
// catalog has none.
func TestPrice(t *testing.T) {
	c := region(t, "us-east-1")
	if p, ok := c.Price("m5.xlarge", "us-east-1a", v1.CapacityTypeOnDemand); !ok || p != 0.192 {
		t.Errorf("m5.xlarge on demand in us-east-1a: %v %v, want 0.192", p, ok)
	}
	for _, tc := range [][3]string{{"no.such", "us-east-1a", v1.CapacityTypeOnDemand}, {"m5.xlarge", "mars-1a", v1.CapacityTypeSpot}, {"m5.xlarge", "us-east-1a", "reserved"}} {
		if p, ok := c.Price(tc[0], tc[1], tc[2]); ok {
			t.Errorf("%v priced %v", tc, p)
		}
	}
}

// TestAllocatableFollowsEKSFormulas checks capacity and allocatable for a few
// sizes against the EKS AMI's reservations, worked out by hand:
// memory capacity = MiB - ceil(7.5%), kube-reserved memory = 11*pods + 255 MiB,
// eviction 100Mi, CPU reserved 6% / 1% / 0.5% x2 / 0.25% per further core.
func TestAllocatableFollowsEKSFormulas(t *testing.T) {
	c := region(t, "us-east-1")
	for _, tc := range []struct {
		name               string
		pods               int64
		cpu, memory        string
		allocCPU, allocMem string
	}{
		// 8192 - 615 = 7577Mi; 7577 - (11*29+255) - 100 = 6903Mi; 2000 - 70m.
		{"m5.large", 29, "2", "7577Mi", "1930m", "6903Mi"},
		// 16384 - 1229 = 15155Mi; 15155 - 893 - 100 = 14162Mi; 4000 - 80m.
		{"m5.xlarge", 58, "4", "15155Mi", "3920m", "14162Mi"},
		// 32768 - 2458 = 30310Mi; 30310 - (11*234+255) - 100 = 27381Mi; 16000 - 110m.
		{"c5.4xlarge", 234, "16", "30310Mi", "15890m", "27381Mi"},
	} {
		it := c.Get(tc.name)
		if it == nil {
			t.Fatalf("%s missing", tc.name)
		}
		check := func(what string, got resource.Quantity, want string) {
			if got.Cmp(resource.MustParse(want)) != 0 {
				t.Errorf("%s %s = %s, want %s", tc.name, what, got.String(), want)
			}
		}
		if got := it.Capacity.Pods().Value(); got != tc.pods {
			t.Errorf("%s pods = %d, want %d", tc.name, got, tc.pods)
		}
		check("cpu capacity", *it.Capacity.Cpu(), tc.cpu)
		check("memory capacity", *it.Capacity.Memory(), tc.memory)
		check("cpu allocatable", *it.Allocatable.Cpu(), tc.allocCPU)
		check("memory allocatable", *it.Allocatable.Memory(), tc.allocMem)
	}
}

func TestNodeSettingsChangeAllocatable(t *testing.T) {
	spec := region(t, "us-east-1").Get("m5.xlarge").Spec
	capacity, alloc := spec.Resources(NodeSettings{
		MaxPods: ptr.To[int32](110), PodsPerCore: ptr.To[int32](10),
		SystemReserved: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
		EvictionHard:   map[string]string{"memory.available": "5%"},
	})
	if got := capacity.Pods().Value(); got != 40 {
		t.Errorf("pods = %d, want 40 (podsPerCore 10 x 4 vCPU beats maxPods 110)", got)
	}
	// 15155Mi - (11*40+255) - ceil(5% of 15155Mi) = 15155 - 695 - 757.75 MiB.
	wantMem := int64(15155-695)*1024*1024 - (int64(15155)*1024*1024*5+99)/100
	if got := alloc.Memory().Value(); got != wantMem {
		t.Errorf("memory allocatable = %d, want %d", got, wantMem)
	}
	if got := alloc.Cpu().MilliValue(); got != 3820 {
		t.Errorf("cpu allocatable = %dm, want 3820m (80m kube + 100m system reserved)", got)
	}
}

func TestGravitonAndGPUTypes(t *testing.T) {
	c := region(t, "us-east-1")
	if got := c.Get("c7g.large").Labels[v1.LabelArchStable]; got != "arm64" {
		t.Errorf("c7g.large arch = %q, want arm64", got)
	}
	p5 := c.Get("p5.48xlarge")
	if p5 == nil {
		t.Fatal("p5.48xlarge missing in us-east-1")
	}
	if got := p5.Capacity[ResourceNVIDIAGPU]; got.Value() != 8 {
		t.Errorf("p5.48xlarge nvidia.com/gpu = %s, want 8", got.String())
	}
	for key, want := range map[string]string{
		awsv1.LabelInstanceGPUCount: "8", awsv1.LabelInstanceGPUName: "h100",
		awsv1.LabelInstanceGPUManufacturer: "nvidia", awsv1.LabelInstanceGPUMemory: "81920",
	} {
		if got := p5.Labels[key]; got != want {
			t.Errorf("p5.48xlarge %s = %q, want %q", key, got, want)
		}
	}
	inf := c.Get("inf2.xlarge")
	if neuron := inf.Capacity[ResourceNeuron]; inf.Labels[awsv1.LabelInstanceAcceleratorName] != "inferentia2" || neuron.Value() != 1 {
		t.Errorf("inf2.xlarge must carry one Inferentia2 accelerator: %v", inf)
	}
}

// TestSeedNodePoolOfferings filters the seed NodePool's requirements in
// ap-northeast-2: 7 types x 2 zones x spot and on-demand.
func TestSeedNodePoolOfferings(t *testing.T) {
	data, err := fixtures.Seed(fixtures.NodePoolBatch)
	if err != nil {
		t.Fatal(err)
	}
	var np v1.NodePool
	if err := yaml.UnmarshalStrict(data, &np); err != nil {
		t.Fatal(err)
	}
	reqs, err := requirements.FromNodePool(np.Spec.Template.Spec.Requirements)
	if err != nil {
		t.Fatal(err)
	}
	got, err := region(t, "ap-northeast-2").Filter(reqs)
	if err != nil {
		t.Fatal(err)
	}
	var offerings []string
	for _, cand := range got {
		for _, o := range cand.Offerings() {
			offerings = append(offerings, fmt.Sprintf("%s %s %s %.4f", cand.Type.Name, o.Zone, o.CapacityType, o.Price))
		}
	}
	sort.Strings(offerings)
	want := []string{
		"c5.2xlarge ap-northeast-2a on-demand 0.3840", "c5.2xlarge ap-northeast-2a spot 0.1377",
		"c5.2xlarge ap-northeast-2c on-demand 0.3840", "c5.2xlarge ap-northeast-2c spot 0.1411",
		"c5.xlarge ap-northeast-2a on-demand 0.1920", "c5.xlarge ap-northeast-2a spot 0.0654",
		"c5.xlarge ap-northeast-2c on-demand 0.1920", "c5.xlarge ap-northeast-2c spot 0.0692",
		"c5a.xlarge ap-northeast-2a on-demand 0.1720", "c5a.xlarge ap-northeast-2a spot 0.0578",
		"c5a.xlarge ap-northeast-2c on-demand 0.1720", "c5a.xlarge ap-northeast-2c spot 0.0792",
		"c6i.2xlarge ap-northeast-2a on-demand 0.3840", "c6i.2xlarge ap-northeast-2a spot 0.1104",
		"c6i.2xlarge ap-northeast-2c on-demand 0.3840", "c6i.2xlarge ap-northeast-2c spot 0.1404",
		"c6i.xlarge ap-northeast-2a on-demand 0.1920", "c6i.xlarge ap-northeast-2a spot 0.0533",
		"c6i.xlarge ap-northeast-2c on-demand 0.1920", "c6i.xlarge ap-northeast-2c spot 0.0602",
		"m5.xlarge ap-northeast-2a on-demand 0.2360", "m5.xlarge ap-northeast-2a spot 0.0331",
		"m5.xlarge ap-northeast-2c on-demand 0.2360", "m5.xlarge ap-northeast-2c spot 0.0638",
		"m5a.xlarge ap-northeast-2a on-demand 0.2120", "m5a.xlarge ap-northeast-2a spot 0.0560",
		"m5a.xlarge ap-northeast-2c on-demand 0.2120", "m5a.xlarge ap-northeast-2c spot 0.0770",
	}
	if strings.Join(offerings, "\n") != strings.Join(want, "\n") {
		t.Errorf("offerings:\n%s\nwant:\n%s", strings.Join(offerings, "\n"), strings.Join(want, "\n"))
	}
}

func TestFilterOperators(t *testing.T) {
	c := region(t, "us-east-1")
	req := func(key string, op corev1.NodeSelectorOperator, vals ...string) *requirements.Requirement {
		return requirements.MustNew(key, op, vals...)
	}
	for _, tc := range []struct {
		name  string
		reqs  []*requirements.Requirement
		check func(it *InstanceType) bool
	}{
		{"NotIn families", []*requirements.Requirement{req(awsv1.LabelInstanceFamily, corev1.NodeSelectorOpNotIn, "m5", "c5")},
			func(it *InstanceType) bool { f := it.Labels[awsv1.LabelInstanceFamily]; return f != "m5" && f != "c5" }},
		{"more than 64 vCPU", []*requirements.Requirement{req(awsv1.LabelInstanceCPU, corev1.NodeSelectorOpGt, "64")},
			func(it *InstanceType) bool { return it.Spec.VCPU > 64 }},
		{"at least 4 and at most 8 vCPU", []*requirements.Requirement{req(awsv1.LabelInstanceCPU, v1.NodeSelectorOpGte, "4"), req(awsv1.LabelInstanceCPU, v1.NodeSelectorOpLte, "8")},
			func(it *InstanceType) bool { return it.Spec.VCPU >= 4 && it.Spec.VCPU <= 8 }},
		{"has a GPU", []*requirements.Requirement{req(awsv1.LabelInstanceGPUCount, corev1.NodeSelectorOpExists)},
			func(it *InstanceType) bool { return it.Spec.GPU != nil }},
		{"has no GPU, arm64", []*requirements.Requirement{req(awsv1.LabelInstanceGPUCount, corev1.NodeSelectorOpDoesNotExist), req(v1.LabelArchStable, corev1.NodeSelectorOpIn, "arm64")},
			func(it *InstanceType) bool { return it.Spec.GPU == nil && it.Spec.Arch == "arm64" }},
		{"custom label ignored", []*requirements.Requirement{req("example.com/team", corev1.NodeSelectorOpIn, "batch")},
			func(*InstanceType) bool { return true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reqs := requirements.Requirements{}
			for _, r := range tc.reqs {
				reqs.Add(r)
			}
			got, err := c.Filter(reqs)
			if err != nil {
				t.Fatal(err)
			}
			matched := map[string]bool{}
			for _, cand := range got {
				matched[cand.Type.Name] = true
				if !tc.check(cand.Type) {
					t.Errorf("%s should have been filtered out", cand.Type.Name)
				}
			}
			for _, it := range c.Types {
				if tc.check(it) && !matched[it.Name] {
					t.Errorf("%s should have matched", it.Name)
				}
			}
		})
	}
}

func TestFilterSpotZoneCombination(t *testing.T) {
	// A type must have a spot offering in the wanted zone itself, not spot in one
	// zone and the zone through on-demand.
	c := region(t, "ap-northeast-2")
	reqs := requirements.Requirements{}
	reqs.Add(requirements.MustNew(v1.CapacityTypeLabelKey, corev1.NodeSelectorOpIn, "spot"))
	reqs.Add(requirements.MustNew(v1.LabelTopologyZone, corev1.NodeSelectorOpIn, "ap-northeast-2b"))
	got, err := c.Filter(reqs)
	if err != nil {
		t.Fatal(err)
	}
	for _, cand := range got {
		for _, o := range cand.Offerings() {
			if o.CapacityType != "spot" || o.Zone != "ap-northeast-2b" {
				t.Fatalf("%s offering %+v escaped the filter", cand.Type.Name, o)
			}
		}
	}
}

func TestFilterMinValuesAndUnsatisfiable(t *testing.T) {
	c := region(t, "us-east-1")
	reqs := requirements.Requirements{}
	r := requirements.MustNew(awsv1.LabelInstanceFamily, corev1.NodeSelectorOpIn, "m5", "zz9")
	r.MinValues = ptr.To(2)
	reqs.Add(r)
	_, err := c.Filter(reqs)
	var unsat *UnsatisfiableError
	if !errors.As(err, &unsat) || !strings.Contains(err.Error(), "minValues 2 for karpenter.k8s.aws/instance-family: only 1 distinct values") {
		t.Errorf("want a minValues error, got %v", err)
	}
	reqs = requirements.Requirements{}
	reqs.Add(requirements.MustNew(awsv1.LabelInstanceCPU, corev1.NodeSelectorOpGt, "100000"))
	if _, err := c.Filter(reqs); !errors.As(err, &unsat) || !strings.Contains(err.Error(), "no instance type in us-east-1 satisfies karpenter.k8s.aws/instance-cpu >100000") {
		t.Errorf("want an unsatisfiable error naming the requirement, got %v", err)
	}
}

func TestUnavailableOfferings(t *testing.T) {
	clock := clocktesting.NewFakeClock(time.Now())
	u := NewUnavailableOfferings(UnavailableOptions{TTL: 3 * time.Minute, Clock: clock})
	c, err := New(snapshot(t), "ap-northeast-2", nil, u)
	if err != nil {
		t.Fatal(err)
	}
	reqs := requirements.Requirements{}
	reqs.Add(requirements.MustNew(v1.LabelInstanceTypeStable, corev1.NodeSelectorOpIn, "m5.xlarge"))
	count := func() int {
		got, err := c.Filter(reqs)
		if err != nil {
			t.Fatal(err)
		}
		return len(got[0].Offerings())
	}
	before, seq := count(), u.SeqNum()
	u.MarkUnavailable("m5.xlarge", "ap-northeast-2a", v1.CapacityTypeSpot)
	if count() != before-1 {
		t.Errorf("marked offering still offered")
	}
	if u.SeqNum() == seq {
		t.Error("SeqNum unchanged after marking")
	}
	seq = u.SeqNum()
	clock.Step(3*time.Minute + time.Second)
	if count() != before {
		t.Error("offering still out after its TTL")
	}
	if u.SeqNum() == seq {
		t.Error("SeqNum unchanged after expiry")
	}
}

func TestDefaultZoneNames(t *testing.T) {
	got := DefaultZoneNames("us-east-1", []string{"use1-az1", "use1-az6", "bogus"})
	if got["use1-az1"] != "us-east-1a" || got["use1-az6"] != "us-east-1f" || len(got) != 2 {
		t.Errorf("zone names = %v", got)
	}
}

// BenchmarkFilter filters the whole us-east-1 catalog by a 5-key requirement
// set (target: under 50 µs).
func BenchmarkFilter(b *testing.B) {
	c := region(b, "us-east-1")
	reqs := requirements.Requirements{}
	reqs.Add(requirements.MustNew(v1.CapacityTypeLabelKey, corev1.NodeSelectorOpIn, "spot", "on-demand"))
	reqs.Add(requirements.MustNew(v1.LabelArchStable, corev1.NodeSelectorOpIn, "amd64"))
	reqs.Add(requirements.MustNew(awsv1.LabelInstanceCategory, corev1.NodeSelectorOpIn, "c", "m", "r"))
	reqs.Add(requirements.MustNew(awsv1.LabelInstanceGeneration, corev1.NodeSelectorOpGt, "4"))
	reqs.Add(requirements.MustNew(v1.LabelTopologyZone, corev1.NodeSelectorOpIn, "us-east-1a", "us-east-1b"))
	b.ReportAllocs()
	var n int
	for b.Loop() {
		got, err := c.Filter(reqs)
		if err != nil {
			b.Fatal(err)
		}
		n = len(got)
	}
	b.ReportMetric(float64(n), "types")
	b.ReportMetric(float64(len(c.Types)), "catalog")
}

func TestRiskAdjustedPrice(t *testing.T) {
	safe := Offering{CapacityType: v1.CapacityTypeSpot, Price: 0.10, Interruption: "<5%"}
	risky := Offering{CapacityType: v1.CapacityTypeSpot, Price: 0.10, Interruption: ">20%"}
	cheapRisky := Offering{CapacityType: v1.CapacityTypeSpot, Price: 0.089, Interruption: ">20%"}
	onDemand := Offering{CapacityType: v1.CapacityTypeOnDemand, Price: 0.10}
	w := DefaultSpotRiskWeight
	if !(safe.RiskAdjustedPrice(w) < risky.RiskAdjustedPrice(w)) {
		t.Error("at equal price the safer spot pool must win")
	}
	if !(cheapRisky.RiskAdjustedPrice(w) < safe.RiskAdjustedPrice(w)) {
		t.Error("a risky pool more than 10% cheaper must still win at the default weight")
	}
	if risky.RiskAdjustedPrice(0) != 0.10 || onDemand.RiskAdjustedPrice(w) != 0.10 {
		t.Error("weight 0 and on-demand offerings keep the raw price")
	}
	if got := risky.RiskAdjustedPrice(w); got < 0.1099 || got > 0.1101 {
		t.Errorf(">20%% bucket at weight 0.1 = %v, want 0.11", got)
	}
}

// TestAWSLabelsAreCatalogKeys: the karpenter.k8s.aws labels that describe an
// instance rather than a pool are answered from the instance data, so a
// requirement on one narrows the types instead of becoming a plain label on a
// node without the property (fails with the keys left out of CatalogKeys:
// "dedicated" then matches every type; tried).
func TestAWSLabelsAreCatalogKeys(t *testing.T) {
	c := region(t, "us-east-1")
	for name, want := range map[string]map[string]string{
		"m5.xlarge":        {awsv1.LabelInstanceTenancy: "default", awsv1.LabelInstanceCapabilityFlex: "false", awsv1.LabelInstanceEncryptionInTransitSupported: "false"},
		"m5n.xlarge":       {awsv1.LabelInstanceEncryptionInTransitSupported: "true"},
		"c7i-flex.large":   {awsv1.LabelInstanceCapabilityFlex: "true", awsv1.LabelInstanceEncryptionInTransitSupported: "true", awsv1.LabelInstanceFamily: "c7i-flex"},
		"m6g.large":        {awsv1.LabelInstanceEncryptionInTransitSupported: "false"},
		"u-6tb1.112xlarge": {awsv1.LabelInstanceEncryptionInTransitSupported: "true"},
	} {
		it := c.Get(name)
		if it == nil {
			t.Errorf("%s missing", name)
			continue
		}
		for k, v := range want {
			if got := it.Labels[k]; got != v {
				t.Errorf("%s: %s = %q, want %q", name, k, got, v)
			}
		}
	}
	filter := func(key string, op corev1.NodeSelectorOperator, vals ...string) ([]Candidate, error) {
		return c.Filter(requirements.Requirements{key: requirements.MustNew(key, op, vals...)})
	}
	if got, err := filter(awsv1.LabelInstanceTenancy, corev1.NodeSelectorOpIn, "dedicated"); err == nil {
		t.Errorf("dedicated tenancy matched %d types; nodewright launches shared tenancy only", len(got))
	}
	if got, err := filter(v1.LabelWindowsBuild, corev1.NodeSelectorOpIn, "10.0.20348"); err == nil {
		t.Errorf("a Windows build matched %d Linux types", len(got))
	}
	for _, tc := range []struct {
		key   string
		op    corev1.NodeSelectorOperator
		vals  []string
		check func(*InstanceType) bool
	}{
		{awsv1.LabelInstanceTenancy, corev1.NodeSelectorOpIn, []string{"default"}, func(*InstanceType) bool { return true }},
		{v1.LabelWindowsBuild, corev1.NodeSelectorOpDoesNotExist, nil, func(*InstanceType) bool { return true }},
		{awsv1.LabelInstanceCapabilityFlex, corev1.NodeSelectorOpIn, []string{"true"}, func(it *InstanceType) bool {
			return strings.Contains(it.Name, "-flex.")
		}},
		{awsv1.LabelInstanceEncryptionInTransitSupported, corev1.NodeSelectorOpIn, []string{"true"}, func(it *InstanceType) bool {
			return *it.Spec.EncryptionInTransit
		}},
	} {
		got, err := filter(tc.key, tc.op, tc.vals...)
		if err != nil {
			t.Fatalf("%s %s %v: %v", tc.key, tc.op, tc.vals, err)
		}
		want := 0
		for _, it := range c.Types {
			if tc.check(it) {
				want++
			}
		}
		if len(got) != want || want == 0 {
			t.Errorf("%s %s %v matched %d types, want %d", tc.key, tc.op, tc.vals, len(got), want)
		}
	}
}
