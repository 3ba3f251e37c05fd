package provisioning

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/ec2sim"
	"github.com/nodewright/nodewright/test/fixtures"
	"github.com/nodewright/nodewright/test/harness"
)

// A class selecting a one-instance reservation of c5.xlarge in 2a, a pool
// allowing reserved and on-demand: a pod asking for reserved capacity runs
// on a node in the reservation, labelled with its id; the next pod, which
// needs a node of its own, falls back to on-demand once the reservation is
// full. Mutation tried: the launch template without its reservation target
// (launchtemplate.go): the first node came up on-demand outside the
// reservation and the first wait timed out.
func TestReservedCapacityFirstThenOnDemand(t *testing.T) {
	ns := cp.Namespace(t)
	id, err := e.Sim.AddCapacityReservation(ec2sim.CapacityReservation{InstanceType: "c5.xlarge", Zone: "ap-northeast-2a", Total: 1})
	if err != nil {
		t.Fatal(err)
	}
	class := &awsv1.EC2NodeClass{}
	if err := fixtures.SeedInto(fixtures.EC2NodeClassDefault, class); err != nil {
		t.Fatal(err)
	}
	class.Name = harness.Name("reserved")
	class.Spec.CapacityReservationSelectorTerms = []awsv1.CapacityReservationSelectorTerm{{ID: id}}
	create(t, class) // deleted after the pool (cleanups run last first)
	np := onDemandPool(t, "c5.xlarge")
	np.Spec.Template.Spec.Requirements[0].Values = []string{v1.CapacityTypeReserved, v1.CapacityTypeOnDemand}
	np.Spec.Template.Spec.NodeClassRef.Name = class.Name
	createPool(t, np)

	deploy := func(name, capacityType string) {
		d := deploymentOnPool(ns, name, np.Name, 1)
		selector := map[string]string{v1.NodePoolLabelKey: np.Name}
		if capacityType != "" {
			selector[v1.CapacityTypeLabelKey] = capacityType
		}
		if err := unstructured.SetNestedStringMap(d.Object, selector, "spec", "template", "spec", "nodeSelector"); err != nil {
			t.Fatal(err)
		}
		// 3 CPUs: one pod per c5.xlarge.
		containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
		containers[0].(map[string]any)["resources"].(map[string]any)["requests"].(map[string]any)["cpu"] = "3"
		if err := unstructured.SetNestedSlice(d.Object, containers, "spec", "template", "spec", "containers"); err != nil {
			t.Fatal(err)
		}
		create(t, d)
	}
	nodeOf := func(app string) *corev1.Node {
		var node *corev1.Node
		cp.Eventually(t, 2*time.Minute, app+" running", func(ctx context.Context) (bool, error) {
			if err := running(ctx, ns, map[string]string{"app": app}, 1); err != nil {
				return false, err
			}
			var pods corev1.PodList
			if err := cp.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app": app}); err != nil || len(pods.Items) != 1 {
				return false, fmt.Errorf("pods of %s: %v", app, err)
			}
			node = &corev1.Node{}
			return true, cp.Client.Get(ctx, client.ObjectKey{Name: pods.Items[0].Spec.NodeName}, node)
		})
		return node
	}

	deploy("reserved", v1.CapacityTypeReserved)
	first := nodeOf("reserved")
	if first.Labels[v1.CapacityTypeLabelKey] != v1.CapacityTypeReserved || first.Labels[awsv1.LabelCapacityReservationID] != id ||
		first.Labels[awsv1.LabelCapacityReservationType] != "default" {
		t.Fatalf("first node labels %v", first.Labels)
	}
	deploy("fallback", "")
	second := nodeOf("fallback")
	if second.Name == first.Name || second.Labels[v1.CapacityTypeLabelKey] != v1.CapacityTypeOnDemand {
		t.Errorf("second node %s labels %v", second.Name, second.Labels)
	}
	used := 0
	for _, in := range e.Sim.Instances() {
		if in.CapacityReservationID == id && (in.State == ec2sim.StatePending || in.State == ec2sim.StateRunning) {
			used++
		}
	}
	if used != 1 {
		t.Errorf("%d instances in the reservation, want 1", used)
	}
}
