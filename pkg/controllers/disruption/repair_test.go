package disruption

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/nodewright/nodewright/apis/v1"
)

// notReady sets nc's node Ready condition to status since since.
func notReady(t *testing.T, nc *v1.NodeClaim, status corev1.ConditionStatus, since time.Time) {
	t.Helper()
	ctx := context.Background()
	n := &corev1.Node{}
	if err := cp.Client.Get(ctx, types.NamespacedName{Name: nc.Status.NodeName}, n); err != nil {
		t.Fatal(err)
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, Reason: "NodeStatusUnknown",
		LastHeartbeatTime: metav1.NewTime(since), LastTransitionTime: metav1.NewTime(since)}}
	if err := cp.Client.Status().Update(ctx, n); err != nil {
		t.Fatal(err)
	}
}

// A node NotReady for 30 minutes is replaced, one NotReady for less is not;
// when more than 20 % of a pool is NotReady, none is; do-not-disrupt does
// not hold a broken node. Mutations tried: no 20 % cap (the outage pool's
// nodes repaired); toleration ignored (the recent one repaired); held
// nodes skipped for every method (the held one kept).
func TestUnhealthyNodesAreRepaired(t *testing.T) {
	ctx := context.Background()
	np := createPool(t, "Never", v1.Budget{Nodes: "100%"})
	var claims []*v1.NodeClaim
	for range 10 {
		claims = append(claims, node(t, np, now, nil, pod("web", "ReplicaSet")))
	}
	notReady(t, claims[0], corev1.ConditionUnknown, now.Add(-31*time.Minute))
	notReady(t, claims[1], corev1.ConditionFalse, now.Add(-10*time.Minute))
	// A node annotated do-not-disrupt is repaired all the same.
	held := node(t, np, now, map[string]string{v1.DoNotDisruptAnnotationKey: "true"}, pod("held", "ReplicaSet"))
	notReady(t, held, corev1.ConditionUnknown, now.Add(-time.Hour))

	outage := createPool(t, "Never", v1.Budget{Nodes: "100%"})
	for i := range 5 {
		nc := node(t, outage, now, nil)
		if i < 2 {
			notReady(t, nc, corev1.ConditionUnknown, now.Add(-time.Hour))
		}
	}
	c := &Controller{Kube: cp.Client, Recorder: &recorder{reasons: map[string][]string{}}, Now: func() time.Time { return now }}
	got, err := c.Evaluate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sorted(names(got))) != fmt.Sprint(sorted([]string{claims[0].Name, held.Name})) {
		t.Fatalf("repaired %v, want %s (NotReady 31 min) and %s (do-not-disrupt, NotReady 1 h); %s is NotReady 10 min, the outage pool has 2 of 5 down",
			names(got), claims[0].Name, held.Name, claims[1].Name)
	}
	if got[0].Annotations[DisruptionReasonAnnotation] != "unhealthy" {
		t.Errorf("reason %q", got[0].Annotations[DisruptionReasonAnnotation])
	}
}

// health reports fixed impaired instances.
type health map[string]string

func (h health) ImpairedInstances(context.Context) (map[string]string, error) { return h, nil }

// An instance failing its EC2 status check is repaired once it has failed
// for the toleration, counted from when nodewright first saw it failing,
// even while its Node still says Ready. Mutation tried: Impaired ignored
// by unhealthy (not repaired).
func TestImpairedInstancesAreRepaired(t *testing.T) {
	ctx := context.Background()
	np := createPool(t, "Never", v1.Budget{Nodes: "100%"})
	var claims []*v1.NodeClaim
	for range 5 {
		claims = append(claims, node(t, np, now, nil, pod("web", "ReplicaSet")))
	}
	at := now
	c := &Controller{Kube: cp.Client, Recorder: &recorder{reasons: map[string][]string{}}, Now: func() time.Time { return at },
		Health: health{claims[0].Status.ProviderID: "instance status check failed"}}
	if got, err := c.Evaluate(ctx); err != nil || len(got) != 0 {
		t.Fatalf("repaired %v (%v) as soon as the check failed", names(got), err)
	}
	at = now.Add(RepairToleration + time.Second)
	got, err := c.Evaluate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != claims[0].Name {
		t.Errorf("repaired %v, want %s after %s impaired", names(got), claims[0].Name, RepairToleration)
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
