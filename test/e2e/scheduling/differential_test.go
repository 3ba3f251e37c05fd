package scheduling

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/scheduling"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
	"github.com/nodewright/nodewright/test/harness"
)

const (
	region   = "ap-northeast-2"
	mixLabel = "test.nodewright.io/mix"
)

// mix is a workload and the NodePool it provisions from.
type mix struct {
	name   string
	pods   func(ns string) []*corev1.Pod
	taints []corev1.Taint
	reqs   []*requirements.Requirement
}

func podSpec(name, ns, cpu, mem string, opts ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{}, UID: types.UID(ns + "/" + name)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}}}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func labels(kv ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		for i := 0; i < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func selector(kv ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if p.Spec.NodeSelector == nil {
			p.Spec.NodeSelector = map[string]string{}
		}
		for i := 0; i < len(kv); i += 2 {
			p.Spec.NodeSelector[kv[i]] = kv[i+1]
		}
	}
}

func spread(key string, skew int32, label string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.TopologySpreadConstraints = append(p.Spec.TopologySpreadConstraints, corev1.TopologySpreadConstraint{
			MaxSkew: skew, TopologyKey: key, WhenUnsatisfiable: corev1.DoNotSchedule,
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{label: p.Labels[label]}}})
	}
}

func podAffinity(anti bool, key, label string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		term := corev1.PodAffinityTerm{TopologyKey: key, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{label: p.Labels[label]}}}
		if p.Spec.Affinity == nil {
			p.Spec.Affinity = &corev1.Affinity{}
		}
		if anti {
			p.Spec.Affinity.PodAntiAffinity = &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term}}
		} else {
			p.Spec.Affinity.PodAffinity = &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term}}
		}
	}
}

func tolerate(key string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists})
	}
}

func many(n int, make func(i int) *corev1.Pod) []*corev1.Pod {
	var out []*corev1.Pod
	for i := range n {
		out = append(out, make(i))
	}
	return out
}

var sizes = []struct{ cpu, mem string }{{"100m", "128Mi"}, {"250m", "512Mi"}, {"500m", "1Gi"}, {"1", "2Gi"}, {"1500m", "4Gi"}}

var mixes = []mix{
	{name: "plain", pods: func(ns string) []*corev1.Pod {
		return many(20, func(i int) *corev1.Pod { s := sizes[i%5]; return podSpec(fmt.Sprintf("p%d", i), ns, s.cpu, s.mem) })
	}},
	{name: "zone-spread", pods: func(ns string) []*corev1.Pod {
		return many(12, func(i int) *corev1.Pod {
			return podSpec(fmt.Sprintf("z%d", i), ns, "500m", "1Gi", labels("app", "web"), spread(v1.LabelTopologyZone, 1, "app"))
		})
	}},
	{name: "hostname-spread", pods: func(ns string) []*corev1.Pod {
		return many(8, func(i int) *corev1.Pod {
			return podSpec(fmt.Sprintf("h%d", i), ns, "250m", "256Mi", labels("app", []string{"a", "b"}[i%2]), spread(v1.LabelHostname, 1, "app"))
		})
	}},
	{name: "anti-affinity", pods: func(ns string) []*corev1.Pod {
		pods := many(6, func(i int) *corev1.Pod {
			return podSpec(fmt.Sprintf("db%d", i), ns, "1", "1Gi", labels("app", "db"), podAffinity(true, v1.LabelHostname, "app"))
		})
		return append(pods, many(6, func(i int) *corev1.Pod { return podSpec(fmt.Sprintf("w%d", i), ns, "500m", "512Mi") })...)
	}},
	{name: "zone-affinity", pods: func(ns string) []*corev1.Pod {
		return many(6, func(i int) *corev1.Pod {
			return podSpec(fmt.Sprintf("a%d", i), ns, "1", "1Gi", labels("team", "x"), podAffinity(false, v1.LabelTopologyZone, "team"))
		})
	}},
	{name: "taints", taints: []corev1.Taint{{Key: "dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule}}, pods: func(ns string) []*corev1.Pod {
		return many(8, func(i int) *corev1.Pod { return podSpec(fmt.Sprintf("t%d", i), ns, "1", "2Gi", tolerate("dedicated")) })
	}},
	{name: "selectors", pods: func(ns string) []*corev1.Pod {
		arm := many(4, func(i int) *corev1.Pod {
			return podSpec(fmt.Sprintf("arm%d", i), ns, "500m", "1Gi", selector(v1.LabelArchStable, "arm64", v1.CapacityTypeLabelKey, "on-demand"))
		})
		return append(arm, many(4, func(i int) *corev1.Pod {
			return podSpec(fmt.Sprintf("zc%d", i), ns, "500m", "1Gi", selector(v1.LabelTopologyZone, region+"c"))
		})...)
	}},
	{name: "host-ports", pods: func(ns string) []*corev1.Pod {
		return many(4, func(i int) *corev1.Pod {
			p := podSpec(fmt.Sprintf("hp%d", i), ns, "250m", "256Mi")
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 9100, HostPort: 9100, Protocol: corev1.ProtocolTCP}}
			return p
		})
	}},
	{name: "big-and-tiny", pods: func(ns string) []*corev1.Pod {
		big := many(2, func(i int) *corev1.Pod { return podSpec(fmt.Sprintf("big%d", i), ns, "7", "24Gi") })
		return append(big, many(20, func(i int) *corev1.Pod { return podSpec(fmt.Sprintf("tiny%d", i), ns, "100m", "64Mi") })...)
	}},
	{name: "node-affinity-terms", reqs: []*requirements.Requirement{requirements.MustNew(awsv1.LabelInstanceCategory, corev1.NodeSelectorOpIn, "c", "m")},
		pods: func(ns string) []*corev1.Pod {
			return many(6, func(i int) *corev1.Pod {
				p := podSpec(fmt.Sprintf("na%d", i), ns, "1", "2Gi")
				p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
					RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{
						{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: v1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"mars-1a"}}}},
						{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: awsv1.LabelInstanceCategory, Operator: corev1.NodeSelectorOpIn, Values: []string{"m"}}}},
					}},
					PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 50, Preference: corev1.NodeSelectorTerm{
						MatchExpressions: []corev1.NodeSelectorRequirement{{Key: v1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{region + "b"}}}}}},
				}}
				return p
			})
		}},
}

func TestPlansAreBoundByKubeScheduler(t *testing.T) {
	snap, err := catalog.EmbeddedSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.New(snap, region, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(mixes) < 8 {
		t.Fatalf("keep at least 8 workload mixes, have %d", len(mixes))
	}
	for _, m := range mixes {
		t.Run(m.name, func(t *testing.T) {
			ns := cp.Namespace(t)
			pods := m.pods(ns)
			for _, p := range pods {
				selector(mixLabel, ns)(p)
			}
			pool := scheduling.NodePool{Name: "pool-" + m.name, Catalog: cat, Taints: m.taints,
				Labels: map[string]string{mixLabel: ns}, Requirements: requirements.Requirements{}}
			for _, r := range m.reqs {
				pool.Requirements.Add(r)
			}
			plan := scheduling.Solve(scheduling.Input{Pods: pods, NodePools: []scheduling.NodePool{pool}}, scheduling.Options{SpotRiskWeight: -1})
			for _, u := range plan.Unschedulable {
				t.Fatalf("the plan left %s unschedulable: %s", u.Pod.Name, u.Reason)
			}
			nodes := createPlannedNodes(t, ns, pool, plan)
			t.Cleanup(func() {
				if t.Failed() {
					t.Log(describePlan(plan))
				}
			})
			waitNodesReady(t, nodes)
			planned := nominate(t, plan, nodes)
			var moved []string
			bound := map[string]string{}
			cp.Eventually(t, 90*time.Second, fmt.Sprintf("%d pods of %s bound and Running on %d planned nodes", len(pods), m.name, len(nodes)),
				func(ctx context.Context) (bool, error) {
					list := &corev1.PodList{}
					if err := cp.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
						return false, err
					}
					var pending []string
					moved = moved[:0]
					for _, p := range list.Items {
						if p.Status.Phase != corev1.PodRunning {
							pending = append(pending, p.Name+": "+podReason(&p))
						}
						bound[p.Name] = p.Spec.NodeName
						if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName != planned[p.Name] {
							moved = append(moved, p.Name+" on "+p.Spec.NodeName+" not "+planned[p.Name])
						}
					}
					if len(pending) > 0 || len(list.Items) != len(pods) {
						return false, fmt.Errorf("%d not running: %s", len(pending), strings.Join(pending, "; "))
					}
					return true, nil
				})
			// Identical pods are interchangeable: the scheduler may bind them
			// in another order than the plan listed them, but each node must
			// end with the pods the plan gave it, up to that swap.
			assertSamePlacement(t, pods, planned, bound)
			t.Logf("%d of %d pods bound to their own planned node, the rest to one planned for an identical pod", len(pods)-len(moved), len(pods))
		})
	}
}

// nominate creates the pods behind a scheduling gate, points each one's
// status.nominatedNodeName at the node the plan chose for it, then lifts the
// gates. kube-scheduler tries a pod's nominated node first and, while other
// pods are nominated to a node, keeps their room there, so a flexible pod
// cannot take the room the plan kept for a constrained one. It still runs
// every filter on the nominated node, and falls back to all nodes when one
// fails, so a wrong plan still shows as a Pending pod or a misplaced one.
// Pods are created round-robin across the planned nodes so that counts seen
// by topology spread grow evenly.
func nominate(t *testing.T, plan *scheduling.Plan, nodes []*corev1.Node) map[string]string {
	t.Helper()
	ctx := context.Background()
	planned := map[string]string{}
	var order []*corev1.Pod
	for i := 0; ; i++ {
		more := false
		for n, c := range plan.NodeClaims {
			if i < len(c.Pods) {
				more = true
				order = append(order, c.Pods[i])
				planned[c.Pods[i].Name] = nodes[n].Name
			}
		}
		if !more {
			break
		}
	}
	var created []*corev1.Pod
	for _, p := range order {
		p := p.DeepCopy()
		p.UID = ""
		p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "test.nodewright.io/nominate"}}
		if err := cp.Client.Create(ctx, p); err != nil {
			t.Fatalf("creating pod %s: %v", p.Name, err)
		}
		p.Status.NominatedNodeName = planned[p.Name]
		if err := cp.Client.Status().Update(ctx, p); err != nil {
			t.Fatalf("nominating pod %s to %s: %v", p.Name, planned[p.Name], err)
		}
		created = append(created, p)
	}
	for _, p := range created {
		p.Spec.SchedulingGates = nil
		if err := cp.Client.Update(ctx, p); err != nil {
			t.Fatalf("lifting the gate of pod %s: %v", p.Name, err)
		}
	}
	return planned
}

// assertSamePlacement fails unless every node holds as many pods of each
// shape (spec and labels) as the plan put there.
func assertSamePlacement(t *testing.T, pods []*corev1.Pod, planned, bound map[string]string) {
	t.Helper()
	shape := map[string]string{}
	for _, p := range pods {
		b, err := json.Marshal(struct {
			Labels map[string]string
			Spec   corev1.PodSpec
		}{p.Labels, p.Spec})
		if err != nil {
			t.Fatal(err)
		}
		shape[p.Name] = string(b)
	}
	count := func(on map[string]string) map[[2]string]int {
		out := map[[2]string]int{}
		for name, node := range on {
			out[[2]string{node, shape[name]}]++
		}
		return out
	}
	want, got := count(planned), count(bound)
	for k, n := range want {
		if got[k] != n {
			var names []string
			for name, node := range planned {
				if node == k[0] && shape[name] == k[1] {
					names = append(names, name)
				}
			}
			t.Errorf("node %s: the plan put %d pods like %v there, kube-scheduler bound %d", k[0], n, names, got[k])
		}
	}
}

// createPlannedNodes creates one kwok Node per planned NodeClaim, labelled and
// sized as the instance type and offering the plan launches.
func createPlannedNodes(t *testing.T, ns string, pool scheduling.NodePool, plan *scheduling.Plan) []*corev1.Node {
	t.Helper()
	var nodes []*corev1.Node
	for i, c := range plan.NodeClaims {
		it, o := c.InstanceTypes[0].Type, c.Offering
		name := fmt.Sprintf("%s-%d", ns, i)
		lbls := map[string]string{}
		for k, v := range it.Labels {
			lbls[k] = v
		}
		for k, v := range pool.Labels {
			lbls[k] = v
		}
		lbls[v1.LabelHostname] = name
		lbls[v1.LabelTopologyZone] = o.Zone
		lbls[awsv1.LabelTopologyZoneID] = o.ZoneID
		lbls[v1.CapacityTypeLabelKey] = o.CapacityType
		lbls[v1.NodePoolLabelKey] = pool.Name
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls},
			Spec:       corev1.NodeSpec{Taints: pool.Taints, ProviderID: "kwok://" + name},
			Status:     corev1.NodeStatus{Capacity: it.Capacity, Allocatable: it.Allocatable},
		}
		if err := cp.Client.Create(context.Background(), node); err != nil {
			t.Fatalf("creating node %s: %v", name, err)
		}
		t.Cleanup(func() {
			_ = cp.Client.Delete(context.Background(), node, &client.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		})
		nodes = append(nodes, node)
	}
	return nodes
}

// waitNodesReady waits until kwok reports every node Ready and the node
// lifecycle controller has lifted its not-ready taint.
func waitNodesReady(t *testing.T, nodes []*corev1.Node) {
	t.Helper()
	cp.Eventually(t, 60*time.Second, fmt.Sprintf("%d nodes Ready", len(nodes)), func(ctx context.Context) (bool, error) {
		for _, n := range nodes {
			got := &corev1.Node{}
			if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(n), got); err != nil {
				return false, err
			}
			ready := false
			for _, c := range got.Status.Conditions {
				ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
			}
			for _, taint := range got.Spec.Taints {
				if strings.HasPrefix(taint.Key, "node.kubernetes.io/") {
					return false, fmt.Errorf("%s still tainted %s", got.Name, taint.Key)
				}
			}
			if !ready {
				return false, fmt.Errorf("%s not Ready", got.Name)
			}
		}
		return true, nil
	})
}

func describePlan(plan *scheduling.Plan) string {
	var b strings.Builder
	for i, c := range plan.NodeClaims {
		it := c.InstanceTypes[0].Type
		fmt.Fprintf(&b, "\nnode %d: %s %s %s alloc cpu=%s mem=%s pods=%s requests=%s:", i, it.Name, c.Offering.Zone, c.Offering.CapacityType,
			it.Allocatable.Cpu(), it.Allocatable.Memory(), it.Allocatable.Pods(), c.Requests)
		for _, p := range c.Pods {
			b.WriteString(" " + p.Name)
		}
	}
	return b.String()
}

func podReason(p *corev1.Pod) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return c.Message
		}
	}
	return string(p.Status.Phase)
}

var _ = harness.Name
