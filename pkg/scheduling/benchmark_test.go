package scheduling

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/samber/lo"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
)

var (
	benchCPU = []string{"100m", "250m", "500m", "1000m", "1500m"}
	benchMem = []string{"100Mi", "256Mi", "512Mi", "1024Mi", "2048Mi", "4096Mi"}
	values   = []string{"a", "b", "c", "d", "e", "f", "g"}
)

// referencePods is the reference mix: n pods in five equal groups, plain,
// zonal spread, hostname spread (maxSkew 1, DoNotSchedule, on my-label a..g),
// zonal self-affinity on my-affinity (a..g), and hostname anti-affinity
// between all pods labelled my-anti-affinity (so they need n/5 nodes).
func referencePods(n int, seed uint64) []*corev1.Pod {
	r := rand.New(rand.NewPCG(seed, seed))
	var pods []*corev1.Pod
	for i := range n {
		cpu, mem := benchCPU[r.IntN(len(benchCPU))], benchMem[r.IntN(len(benchMem))]
		v := values[r.IntN(len(values))]
		switch i % 5 {
		case 0:
			pods = append(pods, pod(cpu, mem))
		case 1:
			pods = append(pods, pod(cpu, mem, withLabels("my-label", v), withSpread(v1.LabelTopologyZone, 1, "my-label")))
		case 2:
			pods = append(pods, pod(cpu, mem, withLabels("my-label", v), withSpread(v1.LabelHostname, 1, "my-label")))
		case 3:
			pods = append(pods, pod(cpu, mem, withLabels("my-affinity", v), withAffinity(v1.LabelTopologyZone,
				&metav1.LabelSelector{MatchLabels: map[string]string{"my-affinity": v}})))
		case 4:
			pods = append(pods, pod(cpu, mem, withLabels("my-anti-affinity", v), withAntiAffinity(v1.LabelHostname,
				&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "my-anti-affinity", Operator: metav1.LabelSelectorOpExists}}})))
		}
	}
	return pods
}

// lowerBound is the cost no plan can beat: the demand of the dominant
// resource at the cheapest price per unit any offering charges for it.
func lowerBound(pods []*corev1.Pod, pools []NodePool) float64 {
	var demand Resources
	for _, p := range pods {
		r, _ := PodRequests(p)
		demand = demand.Add(r)
	}
	perCPU, perByte := math.Inf(1), math.Inf(1)
	for _, np := range pools {
		cands, err := np.Catalog.Filter(np.Requirements)
		if err != nil {
			continue
		}
		for _, c := range cands {
			alloc := c.Type.Allocatable
			if np.Settings != nil {
				_, alloc = c.Type.Spec.Resources(*np.Settings)
			}
			a, _ := ResourcesFrom(alloc)
			for _, o := range c.Offerings() {
				perCPU = math.Min(perCPU, o.Price/float64(a[ResCPU]))
				perByte = math.Min(perByte, o.Price/float64(a[ResMemory]))
			}
		}
	}
	return math.Max(float64(demand[ResCPU])*perCPU, float64(demand[ResMemory])*perByte)
}

func runBenchmark(b *testing.B, in Input) {
	b.ReportAllocs()
	var plan *Plan
	for b.Loop() {
		plan = Solve(in, Options{SpotRiskWeight: -1})
	}
	if len(plan.Unschedulable) > 0 {
		b.Fatalf("%d pods unschedulable, first: %s", len(plan.Unschedulable), plan.Unschedulable[0].Reason)
	}
	b.ReportMetric(float64(len(in.Pods))/(b.Elapsed().Seconds()/float64(b.N)), "pods/s")
	b.ReportMetric(float64(len(plan.NodeClaims)), "nodes")
	b.ReportMetric(plan.Cost(), "$/h")
	b.ReportMetric(plan.Cost()/lowerBound(in.Pods, in.NodePools), "cost/bound")
}

// BenchmarkReferenceMix: 400 instance types, N pods of the reference mix.
func BenchmarkReferenceMix(b *testing.B) {
	c, s := referenceCatalog(b, 400)
	for _, n := range []int{100, 1000, 5000, 10000} {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			runBenchmark(b, Input{Pods: referencePods(n, 42), NodePools: []NodePool{pool("default", c, s)}})
		})
	}
}

// realPools are three NodePools over the real us-east-1 catalog: general
// purpose spot and on-demand, arm64 behind a taint, GPUs behind a taint.
func realPools(b testing.TB) []NodePool {
	snap, err := catalog.EmbeddedSnapshot()
	if err != nil {
		b.Fatal(err)
	}
	c, err := catalog.New(snap, "us-east-1", nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	general := NodePool{Name: "general", Catalog: c, Requirements: requirements.Requirements{}}
	general.Requirements.Add(requirements.MustNew(awsv1.LabelInstanceCategory, corev1.NodeSelectorOpIn, "c", "m", "r"))
	general.Requirements.Add(requirements.MustNew(awsv1.LabelInstanceGeneration, corev1.NodeSelectorOpGt, "4"))
	general.Requirements.Add(requirements.MustNew(v1.LabelArchStable, corev1.NodeSelectorOpIn, "amd64"))
	arm := NodePool{Name: "arm", Weight: 10, Catalog: c, Requirements: requirements.Requirements{},
		Taints: []corev1.Taint{{Key: "arch", Value: "arm64", Effect: corev1.TaintEffectNoSchedule}}}
	arm.Requirements.Add(requirements.MustNew(v1.LabelArchStable, corev1.NodeSelectorOpIn, "arm64"))
	gpu := NodePool{Name: "gpu", Catalog: c, Requirements: requirements.Requirements{},
		Taints: []corev1.Taint{{Key: "nvidia.com/gpu", Effect: corev1.TaintEffectNoSchedule}}}
	gpu.Requirements.Add(requirements.MustNew(awsv1.LabelInstanceGPUManufacturer, corev1.NodeSelectorOpIn, "nvidia"))
	return []NodePool{general, arm, gpu}
}

// BenchmarkRealCatalog: the whole us-east-1 catalog, spot and on-demand in
// every zone. "plain" has only plain pods in the general pool (the cost target
// applies there); "mixed" adds arm64 and GPU pods with selectors and
// tolerations and zonal spreads across the three pools.
func BenchmarkRealCatalog(b *testing.B) {
	pools := realPools(b)
	for _, n := range []int{1000, 5000, 10000} {
		b.Run(fmt.Sprintf("plain/pods=%d", n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(7, 7))
			var pods []*corev1.Pod
			for range n {
				pods = append(pods, pod(benchCPU[r.IntN(len(benchCPU))], benchMem[r.IntN(len(benchMem))]))
			}
			runBenchmark(b, Input{Pods: pods, NodePools: pools[:1]})
		})
		b.Run(fmt.Sprintf("mixed/pods=%d", n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(7, 7))
			var pods []*corev1.Pod
			for i := range n {
				cpu, mem := benchCPU[r.IntN(len(benchCPU))], benchMem[r.IntN(len(benchMem))]
				switch i % 10 {
				case 0, 1:
					pods = append(pods, pod(cpu, mem, withSelector(v1.LabelArchStable, "arm64"), withToleration("arch")))
				case 2:
					p := pod(cpu, mem, withToleration("nvidia.com/gpu"))
					p.Spec.Containers[0].Resources.Requests["nvidia.com/gpu"] = resource.MustParse("1")
					pods = append(pods, p)
				case 3, 4:
					pods = append(pods, pod(cpu, mem, withLabels("app", values[i%7]), withSpread(v1.LabelTopologyZone, 1, "app")))
				default:
					pods = append(pods, pod(cpu, mem))
				}
			}
			runBenchmark(b, Input{Pods: pods, NodePools: pools})
		})
	}
}

// settledCluster is n running nodes of the real catalog's general pool
// (limited to four 8-vCPU types, in the pool's three zones, half spot, or all spot when
// perNode is over 10), each filled with up to perNode pods of the benchmark shapes (a fifth of them zonally spread), with the
// share drop of the pods then gone (a scale-down). Every node is a
// consolidation candidate; each pool's budget allows a tenth of its nodes.
func settledCluster(b *testing.B, n, perNode int, drop float64) *Consolidation {
	pools := realPools(b)[:1]
	zones := []string{"us-east-1a", "us-east-1b", "us-east-1d"}
	pools[0].Requirements.Add(requirements.MustNew(v1.LabelTopologyZone, corev1.NodeSelectorOpIn, zones...))
	cat := pools[0].Catalog
	r := rand.New(rand.NewPCG(11, 11))
	c := &Consolidation{NodePools: pools, Allowed: map[string]int{"general": n / 10}, MinSavings: 0.1}
	types := []string{"m5.2xlarge", "c5.2xlarge", "r5.2xlarge", "m6i.2xlarge"}
	// The pool launches these four only: no spot node can be replaced by
	// spot (fewer than 15 types), so a packed cluster has no move at all.
	pools[0].Requirements.Add(requirements.MustNew(v1.LabelInstanceTypeStable, corev1.NodeSelectorOpIn, types...))
	for i := range n {
		it := cat.Get(types[i%len(types)])
		zone, ct := zones[i%3], []string{v1.CapacityTypeSpot, v1.CapacityTypeOnDemand}[i%2]
		if perNode > 10 {
			ct = v1.CapacityTypeSpot
		}
		price, ok := cat.Price(it.Name, zone, ct)
		if !ok {
			b.Fatalf("%s not offered %s in %s", it.Name, ct, zone)
		}
		alloc, _ := ResourcesFrom(it.Allocatable)
		var used Resources
		var pods []*corev1.Pod
		for j := 0; len(pods) < perNode && j < 100; j++ {
			cpu, mem := benchCPU[r.IntN(len(benchCPU))], benchMem[r.IntN(len(benchMem))]
			p := pod(cpu, mem)
			if j%5 == 0 {
				p = pod(cpu, mem, withLabels("app", values[j%7]), withSpread(v1.LabelTopologyZone, 1, "app"))
			}
			req, _ := PodRequests(p)
			if !used.Add(req).Fits(alloc) {
				continue
			}
			used = used.Add(req)
			if r.Float64() >= drop {
				pods = append(pods, p)
			}
		}
		name := fmt.Sprintf("node-%05d", i)
		labels := lo.Assign(it.Labels, map[string]string{v1.LabelHostname: name, v1.LabelTopologyZone: zone,
			v1.CapacityTypeLabelKey: ct, v1.NodePoolLabelKey: "general"})
		c.Nodes = append(c.Nodes, Node{Name: name, Labels: labels, Allocatable: it.Allocatable, Pods: pods})
		c.Candidates = append(c.Candidates, &ConsolidationCandidate{Node: name, Pool: "general", Policy: v1.ConsolidationPolicyWhenEmptyOrUnderutilized,
			Price: price, InstanceType: it.Name, CapacityType: ct, Pods: pods, DisruptionCost: NodeDisruptionCost(pods)})
	}
	SortCandidates(c.Candidates)
	return c
}

// BenchmarkConsolidation is one consolidation decision over a whole
// cluster, every node a candidate. "packed": spot nodes filled until no more
// pods fit, so nothing is worth moving and every candidate is tried alone
// and kept (the worst case). "ten-per-node": ten pods per node, which leaves the
// memory of the r5 nodes idle. "scaled-down": that after 40 % of the pods
// went.
func BenchmarkConsolidation(b *testing.B) {
	for _, n := range []int{500, 2000} {
		for _, tc := range []struct {
			name    string
			perNode int
			drop    float64
		}{{"packed", 100, 0}, {"ten-per-node", 10, 0}, {"scaled-down", 10, 0.4}} {
			b.Run(fmt.Sprintf("%s/nodes=%d", tc.name, n), func(b *testing.B) {
				c := settledCluster(b, n, tc.perNode, tc.drop)
				b.ReportAllocs()
				var m *Move
				for b.Loop() {
					m, _ = Consolidate(c, Options{SpotRiskWeight: -1})
				}
				b.ReportMetric(float64(lo.SumBy(c.Nodes, func(n Node) int { return len(n.Pods) })), "pods")
				removed, saved := 0.0, 0.0
				if m != nil {
					removed, saved = float64(len(m.Candidates)), m.Saving()
				}
				b.ReportMetric(removed, "removed")
				b.ReportMetric(saved, "saved$/h")
			})
		}
	}
}
