package interruption

import (
	"context"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
	"github.com/nodewright/nodewright/pkg/controllers/disruption"
)

// An interruptible reservation's warning disrupts the claim
// replacement-first as a spot warning does (drain a minute before the
// instance goes, cloud-driven so the drain is not slowed down) and keeps the
// reservation's offering, not the spot one, out of new launches. Fails when
// the kind is not acted on (tried: dropping its case: the claim stayed),
// when the reason is not cloud-driven (tried: CloudDriven without it) and
// when the spot pool is marked instead (tried: avoidPool with spot).
func TestCapacityReservationInterruptionDisruptsReplacementFirst(t *testing.T) {
	c, rec, offs := newController(false)
	nc := launchedClaim(t, "reserved-pool")
	patch := client.MergeFrom(nc.DeepCopy())
	nc.Labels[v1.CapacityTypeLabelKey] = v1.CapacityTypeReserved
	if err := cp.Client.Patch(context.Background(), nc, patch); err != nil {
		t.Fatal(err)
	}
	sent := now.Add(-30 * time.Second)
	before := decisions("reserved-pool", disruption.CapacityReservationInterrupted, "replace")
	got := interrupt(t, c, cloudprovider.CapacityReservationInterruption, nc, sent)
	if r := got.Annotations[disruption.DisruptionReasonAnnotation]; r != "capacity_reservation_interrupted" || !disruption.CloudDriven(got) {
		t.Errorf("reason %q, cloud-driven %v", r, disruption.CloudDriven(got))
	}
	if by, ok := disruption.DrainBy(got); !ok || !by.Equal(sent.Add(time.Minute)) {
		t.Errorf("drain by %v (%v), want a minute before the instance goes: %v", by, ok, sent.Add(time.Minute))
	}
	if !offs.IsUnavailable("m5.large", "ap-northeast-2a", v1.CapacityTypeReserved) || offs.Len() != 1 {
		t.Errorf("the reclaimed reservation's offering is not the one out: %d out", offs.Len())
	}
	if d := decisions("reserved-pool", disruption.CapacityReservationInterrupted, "replace") - before; d != 1 {
		t.Errorf("disruption decisions counted %v, want 1", d)
	}
	if r := rec.reasons(); r != "*v1.NodeClaim:CapacityReservationInterrupted,*v1.Node:CapacityReservationInterrupted" {
		t.Errorf("events %s", r)
	}
}
