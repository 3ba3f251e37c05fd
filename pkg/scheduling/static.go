package scheduling

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/nodewright/nodewright/apis/v1"
)

// staticNodeLabel marks the placeholder pods PlanNodes plans for; it keeps
// them one per node.
const staticNodeLabel = "nodewright.io/static-node"

// PlanNodes plans count new nodes of one NodePool that no pod asks for: the
// nodes of a static NodePool (spec.replicas). Each is planned as the node
// of a pod that requests nothing, tolerates every taint and keeps away from
// the others, so it gets what a dynamic node of the pool would: the
// cheapest offering the template allows with room for the DaemonSets that
// will run there, the fallback types cheapest first, the values of the
// template's custom keys, and the pool's limits. The nodes are spread over
// the zones the pool offers, counting the pool's nodes already in each of
// zones (one entry per node whose zone is known), as a ScheduleAnyway
// spread: a zone with no offering left does not stop a launch. The plans
// carry no pods. The error says why some of the nodes could not be
// planned; the plans returned with it are the ones that could.
func PlanNodes(pool NodePool, daemonSets []*corev1.Pod, zones []string, count int, opts Options) ([]*NodeClaimPlan, error) {
	if count <= 0 {
		return nil, nil
	}
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{staticNodeLabel: pool.Name}}
	// The pool's nodes, each with a placeholder, for the spread to count:
	// they have no room, and the anti-affinity keeps new placeholders off.
	nodes := make([]Node, len(zones))
	for i, z := range zones {
		name := fmt.Sprintf("%s-existing-%d", pool.Name, i)
		nodes[i] = Node{Name: name, Labels: map[string]string{v1.LabelTopologyZone: z, v1.LabelHostname: name, v1.NodePoolLabelKey: pool.Name},
			Pods: []*corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "static", UID: types.UID(name), Labels: selector.MatchLabels},
				Spec: corev1.PodSpec{NodeName: name}}}}
	}
	pods := make([]*corev1.Pod, count)
	for i := range pods {
		name := fmt.Sprintf("%s-static-%d", pool.Name, i)
		pods[i] = &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "static", UID: types.UID(name), Labels: selector.MatchLabels},
			Spec: corev1.PodSpec{
				Containers:  []corev1.Container{{Name: "node"}},
				Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
					RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{TopologyKey: v1.LabelHostname, LabelSelector: selector}},
				}},
				TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
					MaxSkew: 1, TopologyKey: v1.LabelTopologyZone, WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: selector,
				}},
			},
		}
	}
	plan := Solve(Input{Pods: pods, Nodes: nodes, NodePools: []NodePool{pool}, DaemonSets: daemonSets}, opts)
	for _, c := range plan.NodeClaims {
		c.Pods = nil
	}
	if len(plan.Unschedulable) == 0 {
		return plan.NodeClaims, nil
	}
	reasons := map[string]bool{}
	var distinct []string
	for _, u := range plan.Unschedulable {
		if !reasons[u.Reason] {
			reasons[u.Reason] = true
			distinct = append(distinct, u.Reason)
		}
	}
	return plan.NodeClaims, fmt.Errorf("%d of %d nodes of NodePool %s cannot be planned: %s", len(plan.Unschedulable), count, pool.Name, strings.Join(distinct, "; "))
}
