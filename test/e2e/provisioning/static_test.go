package provisioning

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/samber/lo"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/controllers/nodepool/static"
	"github.com/nodewright/nodewright/test/ec2sim"
	"github.com/nodewright/nodewright/test/harness"
)

// scaleTo sets a NodePool's replicas the way `kubectl scale nodepool
// --replicas` does: a merge patch of its scale subresource.
func scaleTo(t *testing.T, np *v1.NodePool, replicas int) {
	t.Helper()
	patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas))
	scale := &autoscalingv1.Scale{} // the answer is a Scale, not the pool
	if err := cp.Client.SubResource("scale").Patch(context.Background(), np, patch, client.WithSubResourceBody(scale)); err != nil {
		t.Fatalf("scaling nodepool %s to %d: %v", np.Name, replicas, err)
	}
}

// staticSettled checks that the pool has exactly want Ready nodes, want
// claims and want running instances, and that its scale subresource
// reports want.
func staticSettled(ctx context.Context, np *v1.NodePool, want int) error {
	claims, err := claimsOf(ctx, np.Name)
	if err != nil {
		return err
	}
	if len(claims) != want {
		return fmt.Errorf("%d nodeclaims", len(claims))
	}
	var nodes corev1.NodeList
	if err := cp.Client.List(ctx, &nodes, client.MatchingLabels{v1.NodePoolLabelKey: np.Name}); err != nil {
		return err
	}
	ready := 0
	for _, n := range nodes.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	if ready != want || len(nodes.Items) != want {
		return fmt.Errorf("%d nodes, %d Ready", len(nodes.Items), ready)
	}
	running := 0
	for _, in := range e.Sim.Instances() {
		if in.Tags[v1.NodePoolLabelKey] == np.Name && in.State != ec2sim.StateTerminated {
			running++
		}
	}
	if running != want {
		return fmt.Errorf("%d instances not terminated", running)
	}
	scale := &autoscalingv1.Scale{}
	if err := cp.Client.SubResource("scale").Get(ctx, np, scale); err != nil {
		return err
	}
	if scale.Spec.Replicas != int32(want) || scale.Status.Replicas != int32(want) {
		return fmt.Errorf("scale subresource says %d wanted, %d there", scale.Spec.Replicas, scale.Status.Replicas)
	}
	return nil
}

// A static NodePool of 3 gets three nodes with no pod asking for them,
// spread over its two zones; scaled to 5 through the scale subresource (as
// `kubectl scale`) it gets two more, and scaled back to 3 drains and terminates two; its empty nodes
// are never consolidated although consolidateAfter is 0s. Mutation tried:
// the static controller left out of the operator (nothing launches, the
// first wait times out).
func TestStaticNodePoolScales(t *testing.T) {
	np := seedPool(t, harness.Name("static"))
	np.Spec.Replicas = ptr.To[int64](3)
	np.Spec.Limits = v1.Limits{"nodes": resource.MustParse("6")}
	np.Spec.Disruption.ConsolidateAfter = v1.MustParseNillableDuration("0s")
	np.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "100%"}}
	createPool(t, np)
	for i, want := range []int{3, 5, 3} {
		if i > 0 {
			scaleTo(t, np, want)
		}
		cp.Eventually(t, 3*time.Minute, fmt.Sprintf("static pool at %d nodes", want), func(ctx context.Context) (bool, error) {
			if err := staticSettled(ctx, np, want); err != nil {
				return false, err
			}
			return true, nil
		})
		if i == 0 {
			var nodes corev1.NodeList
			if err := cp.Client.List(context.Background(), &nodes, client.MatchingLabels{v1.NodePoolLabelKey: np.Name}); err != nil {
				t.Fatal(err)
			}
			zones := lo.CountValuesBy(nodes.Items, func(n corev1.Node) string { return n.Labels[corev1.LabelTopologyZone] })
			if len(zones) != 2 {
				t.Errorf("nodes by zone %v, want both of the pool's zones", zones)
			}
		}
	}
	decisions := map[string]map[string]string{
		static.ScaleDownReason: {"nodepool": np.Name, "reason": static.ScaleDownReason},
		"any":                  {"nodepool": np.Name},
	}
	if got := metricWith(t, "nodewright_disruption_decisions_total", decisions[static.ScaleDownReason]); got != 2 {
		t.Errorf("%v nodes scaled down, want 2", got)
	}
	if got := metricWith(t, "nodewright_disruption_decisions_total", decisions["any"]); got != 2 {
		t.Errorf("%v nodes disrupted in all, want only the 2 scaled down (a static pool is not consolidated)", got)
	}
}
