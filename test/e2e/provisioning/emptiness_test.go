package provisioning

import (
	"context"
	"fmt"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/harness"
)

// Once a batch Job completes, the nodes it caused are empty and go after the
// pool's consolidateAfter: the pool ends with no NodeClaim and no running
// instance. Mutation tried: without the disruption controller registered in
// pkg/operator the wait times out with every claim still there.
func TestNodesOfACompletedJobAreRemoved(t *testing.T) {
	ns := cp.Namespace(t)
	np := seedPool(t, harness.Name("empties"))
	np.Spec.Disruption.ConsolidateAfter = v1.MustParseNillableDuration("5s")
	np.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "100%"}}
	createPool(t, np)
	runJob(t, seedJob(t, ns, 20, np.Name), np, 3*time.Minute)
	cp.Eventually(t, 3*time.Minute, "every node of the completed job removed", func(ctx context.Context) (bool, error) {
		var claims v1.NodeClaimList
		if err := cp.Client.List(ctx, &claims, client.MatchingLabels{v1.NodePoolLabelKey: np.Name}); err != nil {
			return false, err
		}
		if len(claims.Items) > 0 {
			return false, fmt.Errorf("%s", summary(ctx, np))
		}
		return true, nil
	})
	if o, err := orphans(context.Background(), np.Name); err != nil || len(o) > 0 {
		t.Errorf("instances left: %v %v", o, err)
	}
	// Every claim the pool had went as empty, none for another reason.
	created := metricSum(t, "nodewright_nodeclaims_created_total", np.Name)
	empty := metricWith(t, "nodewright_disruption_decisions_total", map[string]string{"nodepool": np.Name, "reason": "empty", "decision": "delete"})
	if created == 0 || empty != created {
		t.Errorf("%v claims created, %v removed as empty", created, empty)
	}
}
