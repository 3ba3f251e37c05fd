package scheduling

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
)

// referenceCatalog is the shape of Karpenter's scheduling benchmark: type i
// (0..n-1) has i+1 vCPU, 2(i+1) GiB and 10(i+1) pods, spot in zones 1-2 and
// on-demand in zones 1-3, every offering at 0.1 $/h per vCPU plus 0.1 $/h per
// 10^9 bytes of memory. Allocatable equals capacity (no reservations), as in
// Karpenter's fake instance types.
func referenceCatalog(tb testing.TB, n int) (*catalog.Catalog, *catalog.NodeSettings) {
	tb.Helper()
	snap := &catalog.Snapshot{Source: "reference", DataDate: "2026-01-01"}
	for i := range n {
		cpu, mem := int64(i+1), int64(2*(i+1))*1024
		price := 0.1*float64(cpu) + 0.1*float64(mem*1024*1024)/1e9
		snap.Types = append(snap.Types, catalog.SnapshotType{
			Name: fmt.Sprintf("ref-%03d.size", i), VCPU: int32(cpu), MemoryMiB: mem, Arch: "amd64",
			MaxENIs: 1, IPv4PerENI: int32(10*(i+1) - 1),
			Regions: map[string]catalog.SnapshotRegion{"test-1": {
				ZoneIDs: []string{"test1-az1", "test1-az2", "test1-az3"}, OnDemand: price, Spot: []float64{price, price, 0},
			}},
		})
	}
	c, err := catalog.New(snap, "test-1", nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	zero := 0.0
	settings := &catalog.NodeSettings{
		VMMemoryOverheadPercent: &zero,
		KubeReserved:            corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("0"), corev1.ResourceMemory: resource.MustParse("0"), corev1.ResourceEphemeralStorage: resource.MustParse("0")},
		EvictionHard:            map[string]string{},
	}
	return c, settings
}

func pool(name string, c *catalog.Catalog, s *catalog.NodeSettings) NodePool {
	return NodePool{Name: name, Requirements: requirements.Requirements{}, Catalog: c, Settings: s}
}

var podSeq int

// pod makes a pending pod with requests and options applied.
func pod(cpu, mem string, opts ...func(*corev1.Pod)) *corev1.Pod {
	podSeq++
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%05d", podSeq), Namespace: "default", UID: types.UID(fmt.Sprintf("uid-%05d", podSeq)), Labels: map[string]string{}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
		}}}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func withLabels(kv ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		for i := 0; i < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func withSelector(kv ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if p.Spec.NodeSelector == nil {
			p.Spec.NodeSelector = map[string]string{}
		}
		for i := 0; i < len(kv); i += 2 {
			p.Spec.NodeSelector[kv[i]] = kv[i+1]
		}
	}
}

func withSpread(key string, skew int32, label string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.TopologySpreadConstraints = append(p.Spec.TopologySpreadConstraints, corev1.TopologySpreadConstraint{
			MaxSkew: skew, TopologyKey: key, WhenUnsatisfiable: corev1.DoNotSchedule,
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{label: p.Labels[label]}},
		})
	}
}

func ensureAffinity(p *corev1.Pod) *corev1.Affinity {
	if p.Spec.Affinity == nil {
		p.Spec.Affinity = &corev1.Affinity{}
	}
	return p.Spec.Affinity
}

func withAntiAffinity(key string, selector *metav1.LabelSelector) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		a := ensureAffinity(p)
		if a.PodAntiAffinity == nil {
			a.PodAntiAffinity = &corev1.PodAntiAffinity{}
		}
		a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution,
			corev1.PodAffinityTerm{TopologyKey: key, LabelSelector: selector})
	}
}

func withAffinity(key string, selector *metav1.LabelSelector) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		a := ensureAffinity(p)
		if a.PodAffinity == nil {
			a.PodAffinity = &corev1.PodAffinity{}
		}
		a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution,
			corev1.PodAffinityTerm{TopologyKey: key, LabelSelector: selector})
	}
}

func withToleration(key string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists})
	}
}

func withHostPort(port int32) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: port, HostPort: port})
	}
}

func withPreferredZone(zone string, weight int32) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		a := ensureAffinity(p)
		if a.NodeAffinity == nil {
			a.NodeAffinity = &corev1.NodeAffinity{}
		}
		a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution = append(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution,
			corev1.PreferredSchedulingTerm{Weight: weight, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
				{Key: v1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{zone}}}}})
	}
}

// claimOf returns the planned claim holding pod, or nil.
func claimOf(plan *Plan, p *corev1.Pod) *NodeClaimPlan {
	for _, c := range plan.NodeClaims {
		for _, q := range c.Pods {
			if q == p {
				return c
			}
		}
	}
	return nil
}

// zoneOf is the zone a planned claim will launch in when it has exactly one.
func zoneOf(c *NodeClaimPlan) string {
	z := c.Requirements[v1.LabelTopologyZone]
	if z == nil || z.Len() != 1 {
		return ""
	}
	return z.Values()[0]
}

var _ = ptr.To[int]
