package aws

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/controllers/disruption"
	"github.com/nodewright/nodewright/test/harness"
)

// TestCapacityBlockNodesLeaveBeforeTheBlockEnds: from 40 minutes before a
// capacity block ends, its nodes are disrupted replacement-first with their
// drain due when EC2 starts reclaiming (30 minutes before the end); nodes of
// a block ending later, and of a default reservation ending now, stay, and
// the reconciler comes back when the later block enters its window. Fails
// when the window is ignored (tried: every block's claims disrupted at once)
// and when the drain-by time is left out (tried: zero drainBy, the claim
// drained at once with no replacement first).
func TestCapacityBlockNodesLeaveBeforeTheBlockEnds(t *testing.T) {
	cp := needControlPlane(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	nc := createNodeClass(t, cp)
	block := func(id, kind string, ends time.Duration) awsv1.CapacityReservation {
		return awsv1.CapacityReservation{ID: id, ReservationType: kind, EndTime: &metav1.Time{Time: now.Add(ends)},
			InstanceType: "p5.48xlarge", AvailabilityZone: "ap-northeast-2a", OwnerID: "111122223333", InstanceMatchCriteria: "targeted"}
	}
	nc.Status.CapacityReservations = []awsv1.CapacityReservation{
		block("cr-0ending000000000", reservationTypeCapacityBlock, 35*time.Minute),
		block("cr-0later0000000000", reservationTypeCapacityBlock, 2*time.Hour),
		block("cr-0default00000000", reservationTypeDefault, 10*time.Minute),
	}
	if err := cp.Client.Status().Update(ctx, nc); err != nil {
		t.Fatal(err)
	}
	claims := map[string]*v1.NodeClaim{}
	for _, id := range []string{"cr-0ending000000000", "cr-0later0000000000", "cr-0default00000000"} {
		c := newClaim(nc.Name)
		c.Name, c.UID = harness.Name("block"), ""
		c.Labels[awsv1.LabelCapacityReservationID] = id
		controllerutil.AddFinalizer(c, v1.TerminationFinalizer) // keep it visible while deleting
		if err := cp.Client.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			latest := &v1.NodeClaim{}
			if cp.Client.Get(ctx, client.ObjectKeyFromObject(c), latest) == nil {
				latest.Finalizers = nil
				_ = cp.Client.Update(ctx, latest)
				_ = cp.Client.Delete(ctx, latest)
			}
		})
		claims[id] = c
	}
	r := &CapacityBlockReconciler{Client: cp.Client, Clock: clocktesting.NewFakePassiveClock(now)}
	res, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(nc)})
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter != time.Minute {
		t.Errorf("requeue after %s, want a minute while a block is in its window", res.RequeueAfter)
	}
	for id, c := range claims {
		got := &v1.NodeClaim{}
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(c), got); err != nil {
			t.Fatal(err)
		}
		going := !got.DeletionTimestamp.IsZero()
		if want := id == "cr-0ending000000000"; going != want {
			t.Errorf("claim in %s: deleting %v, want %v", id, going, want)
			continue
		}
		if !going {
			continue
		}
		drainBy, ok := disruption.DrainBy(got)
		if !ok || !drainBy.Equal(now.Add(5*time.Minute)) || got.Annotations[disruption.DisruptionReasonAnnotation] != disruption.CapacityBlockExpiring {
			t.Errorf("claim in %s: drain by %v (%v), reason %q; want replacement first, drained by %v", id, drainBy, ok,
				got.Annotations[disruption.DisruptionReasonAnnotation], now.Add(5*time.Minute))
		}
		if !disruption.CloudDriven(got) {
			t.Errorf("claim in %s: not treated as cloud-driven; its instance goes whatever nodewright does", id)
		}
	}

	// With only the later block left, the reconciler returns when it
	// enters its window: 2h - 40m from now.
	nc.Status.CapacityReservations = nc.Status.CapacityReservations[1:2]
	if err := cp.Client.Status().Update(ctx, nc); err != nil {
		t.Fatal(err)
	}
	res, err = r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(nc)})
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter != 80*time.Minute {
		t.Errorf("requeue after %s, want 1h20m (when the later block's window opens)", res.RequeueAfter)
	}
}
