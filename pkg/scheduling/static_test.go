package scheduling

import (
	"maps"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
)

// PlanNodes plans exactly the nodes asked for, one per node, each as the
// cheapest type with room for the DaemonSets, within the pool's node limit.
// Mutations tried: without the placeholders' hostname anti-affinity the
// three nodes collapse into one ("three plain nodes" fails); without their
// toleration a tainted pool plans nothing ("tainted pool" fails); with the
// Usage left out of the limit, "node limit" plans two.
func TestPlanNodes(t *testing.T) {
	cat, settings := referenceCatalog(t, 8)
	base := func() NodePool { return pool("static", cat, settings) }
	ds := pod("1500m", "1Gi")
	for _, tc := range []struct {
		name       string
		pool       func() NodePool
		daemons    []*corev1.Pod
		count      int
		wantNodes  int
		wantType   string
		wantReason string
	}{
		{name: "three plain nodes", pool: base, count: 3, wantNodes: 3, wantType: "ref-000.size"},
		{name: "room for a daemonset", pool: base, daemons: []*corev1.Pod{ds}, count: 2, wantNodes: 2, wantType: "ref-001.size"},
		{name: "tainted pool", pool: func() NodePool {
			p := base()
			p.Taints = []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}
			return p
		}, count: 2, wantNodes: 2, wantType: "ref-000.size"},
		{name: "template narrows the type", pool: func() NodePool {
			p := base()
			p.Requirements = requirements.Requirements{}
			p.Requirements.Add(requirements.MustNew(corev1.LabelInstanceTypeStable, corev1.NodeSelectorOpIn, "ref-004.size"))
			return p
		}, count: 1, wantNodes: 1, wantType: "ref-004.size"},
		{name: "node limit", pool: func() NodePool {
			p := base()
			p.Limits = corev1.ResourceList{"nodes": resource.MustParse("3")}
			p.Usage = corev1.ResourceList{"nodes": resource.MustParse("2")}
			return p
		}, count: 2, wantNodes: 1, wantType: "ref-000.size", wantReason: "limit of 3 nodes"},
		{name: "none asked", pool: base, count: 0, wantNodes: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plans, err := PlanNodes(tc.pool(), tc.daemons, nil, tc.count, Options{})
			if len(plans) != tc.wantNodes {
				t.Fatalf("planned %d nodes, want %d (error %v)", len(plans), tc.wantNodes, err)
			}
			if tc.wantReason == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.wantReason != "" && (err == nil || !strings.Contains(err.Error(), tc.wantReason)) {
				t.Fatalf("error %v, want one saying %q", err, tc.wantReason)
			}
			for _, c := range plans {
				if c.NodePool != "static" || len(c.Pods) != 0 {
					t.Errorf("plan of pool %s with %d pods, want pool static and none", c.NodePool, len(c.Pods))
				}
				if got := c.InstanceTypes[0].Type.Name; got != tc.wantType {
					t.Errorf("launches as %s, want %s", got, tc.wantType)
				}
				if r := c.Requirements[corev1.LabelInstanceTypeStable]; r == nil || !r.Has(tc.wantType) {
					t.Errorf("requirements %v name no instance types", c.Requirements)
				}
			}
		})
	}
}

// Static nodes spread over the pool's zones, counting the nodes it already
// has. Mutation tried: without the placeholders' zone spread all land in
// the cheapest zone; without the existing nodes the new ones ignore them.
func TestPlanNodesSpreadsOverZones(t *testing.T) {
	cat, settings := referenceCatalog(t, 4)
	for _, tc := range []struct {
		name     string
		existing []string
		count    int
		want     map[string]int
	}{
		{name: "empty pool", count: 3, want: map[string]int{"test-1a": 1, "test-1b": 1, "test-1c": 1}},
		{name: "two in a, one in b", existing: []string{"test-1a", "test-1a", "test-1b"}, count: 3, want: map[string]int{"test-1b": 1, "test-1c": 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plans, err := PlanNodes(pool("static", cat, settings), nil, tc.existing, tc.count, Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, c := range plans {
				zones := c.Requirements[corev1.LabelTopologyZone].Values()
				if len(zones) != 1 {
					t.Fatalf("a spread node may launch in %v", zones)
				}
				got[zones[0]]++
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("new nodes by zone %v, want %v", got, tc.want)
			}
		})
	}
}
