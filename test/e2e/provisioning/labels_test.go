package provisioning

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/harness"
)

// A NodePool allowing two teams (team In [a b]) and one value in a domain
// the kubelet may not set (node-restriction.kubernetes.io/zone-group):
// pods that need team=b and that zone group run on one node, which carries
// both labels. Mutation tried: without the plan's labels on the NodeClaim
// (resolveLabels in pkg/scheduling returning nothing) the node never gets
// them and this test times out with "0 of 2 running" (both pods Pending).
func TestPodsNeedingCustomKeysRunOnOneNode(t *testing.T) {
	ctx := context.Background()
	ns := cp.Namespace(t)
	np := seedPool(t, harness.Name("teams"))
	np.Spec.Template.Spec.Requirements = append(np.Spec.Template.Spec.Requirements,
		v1.NodeSelectorRequirementWithMinValues{Key: "team", Operator: corev1.NodeSelectorOpIn, Values: []string{"a", "b"}},
		v1.NodeSelectorRequirementWithMinValues{Key: "node-restriction.kubernetes.io/zone-group", Operator: corev1.NodeSelectorOpIn, Values: []string{"west"}},
	)
	createPool(t, np)
	d := deploymentOnPool(ns, "team-b", np.Name, 2)
	if err := unstructured.SetNestedStringMap(d.Object, map[string]string{
		v1.NodePoolLabelKey: np.Name, "team": "b", "node-restriction.kubernetes.io/zone-group": "west",
	}, "spec", "template", "spec", "nodeSelector"); err != nil {
		t.Fatal(err)
	}
	if err := cp.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	nc := runningOnOneClaim(t, ns, "team-b", np.Name, 2)
	node := &corev1.Node{}
	if err := cp.Client.Get(ctx, client.ObjectKey{Name: nc.Status.NodeName}, node); err != nil {
		t.Fatal(err)
	}
	if node.Labels["team"] != "b" || node.Labels["node-restriction.kubernetes.io/zone-group"] != "west" {
		t.Errorf("node %s labels %v", node.Name, node.Labels)
	}
}
