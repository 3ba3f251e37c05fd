package provisioning

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/fixtures"
	"github.com/nodewright/nodewright/test/harness"
)

const (
	previousAMI = "ami-0a2023000000000a0" // the simulator's AL2023 x86_64 image of October
	currentAMI  = "ami-0a2023000000000a1" // and of November
)

// Three nodes launched from a class pinned to October's image: pinning it
// to November's drifts all three (AMIDrift), and they are replaced one at a
// time (a Drifted budget of 1), each replacement up before the old node
// drains, until every node runs the new image.
// Mutations tried: the Drift method left out of the disruption controller
// (no node replaced: the wait times out); the Drifted budget ignored (two
// drifted nodes deleting at once).
func TestChangingTheImageReplacesEveryNodeOneAtATime(t *testing.T) {
	ctx := context.Background()
	ns := cp.Namespace(t)
	class := &awsv1.EC2NodeClass{}
	if err := fixtures.SeedInto(fixtures.EC2NodeClassDefault, class); err != nil {
		t.Fatal(err)
	}
	class.Name = harness.Name("pinned")
	class.Spec.AMIFamily = ptr.To("AL2023")
	class.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{ID: previousAMI}}
	create(t, class)
	np := onDemandPool(t, "c5.xlarge")
	np.Spec.Template.Spec.NodeClassRef.Name = class.Name
	np.Spec.Disruption.ConsolidateAfter = v1.MustParseNillableDuration("Never")
	np.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "1", Reasons: []v1.DisruptionReason{v1.DisruptionReasonDrifted}}, {Nodes: "100%"}}
	createPool(t, np)
	// Three pods of 3 CPU: one per c5.xlarge.
	dep := deploymentOnPool(ns, "pinned", np.Name, 3)
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	_ = unstructured.SetNestedField(containers[0].(map[string]any), "3", "resources", "requests", "cpu")
	_ = unstructured.SetNestedSlice(dep.Object, containers, "spec", "template", "spec", "containers")
	create(t, dep)
	var first []string
	cp.Eventually(t, 2*time.Minute, "three pods on three nodes of October's image", func(ctx context.Context) (bool, error) {
		if err := running(ctx, ns, map[string]string{"app": "pinned"}, 3); err != nil {
			return false, err
		}
		claims, err := claimsOf(ctx, np.Name)
		if err != nil {
			return false, err
		}
		first = nil
		for _, nc := range claims {
			if nc.Status.ImageID != previousAMI {
				return false, fmt.Errorf("claim %s runs %q", nc.Name, nc.Status.ImageID)
			}
			first = append(first, nc.Name)
		}
		if len(first) != 3 {
			return false, fmt.Errorf("%d claims", len(first))
		}
		return true, nil
	})

	fresh := &awsv1.EC2NodeClass{}
	if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(class), fresh); err != nil {
		t.Fatal(err)
	}
	fresh.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{ID: currentAMI}}
	if err := cp.Client.Update(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	most := 0
	cp.Eventually(t, 4*time.Minute, "every node replaced by one of November's image", func(ctx context.Context) (bool, error) {
		claims, err := claimsOf(ctx, np.Name)
		if err != nil {
			return false, err
		}
		deleting, old := 0, 0
		for _, nc := range claims {
			for _, name := range first {
				if nc.Name == name {
					old++
					if !nc.DeletionTimestamp.IsZero() {
						deleting++
					}
				}
			}
		}
		most = max(most, deleting)
		if old > 0 {
			return false, fmt.Errorf("%d of the old nodes left: %s", old, summary(ctx, np))
		}
		for _, nc := range claims {
			if nc.Status.ImageID != currentAMI {
				return false, fmt.Errorf("claim %s runs %q", nc.Name, nc.Status.ImageID)
			}
		}
		return true, running(ctx, ns, map[string]string{"app": "pinned"}, 3)
	})
	if most > 1 {
		t.Errorf("%d drifted nodes were deleting at once under a Drifted budget of 1", most)
	}
	if n := metricWith(t, "nodewright_disruption_decisions_total", map[string]string{"nodepool": np.Name, "reason": "drifted", "decision": "replace"}); n != 3 {
		t.Errorf("%v drift replacements, want 3", n)
	}
}
