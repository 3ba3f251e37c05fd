package disruption

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/metrics"
)

// Annotations nodewright sets on a NodeClaim it decides to take away.
const (
	// DisruptionReasonAnnotation says why the claim is being deleted
	// (spot_interrupted, expired, ...), for people and for metrics.
	DisruptionReasonAnnotation = "nodewright.io/disruption-reason"
	// DrainByAnnotation (RFC 3339) asks termination to launch the
	// replacement first: the node is cordoned at once, but its pods are
	// evicted only once they have room on other ready nodes, or at this time
	// at the latest, so they move once instead of waiting pending for a node
	// to boot.
	DrainByAnnotation = "nodewright.io/drain-by"
)

// Outcome is what Disrupt did to a claim.
type Outcome int

// Outcomes of Disrupt.
const (
	// Unchanged: the claim was already going, at least as soon as asked, or
	// is gone.
	Unchanged Outcome = iota
	// Disrupted: the claim was annotated and deleted.
	Disrupted
	// Hastened: the claim was already deleting with a later drain-by time,
	// which now says the earlier one.
	Hastened
)

// Disrupt deletes a NodeClaim for reason, recording the reason (and, when
// drainBy is set, the latest time to start draining) on it first so that
// termination and people can see why. The decision is counted in
// nodewright_disruption_decisions_total: "replace" when the drain waits for
// a replacement, "delete" when it starts at once.
//
// A claim already being deleted is not deleted twice, but a newer notice may
// be more urgent than the one that started the deletion: a spot warning
// (two minutes) after a rebalance recommendation or expiry (five). Its
// drain-by time then moves earlier, never later; a zero drainBy (the
// instance is going now) moves it to now. The reason annotation keeps the
// first reason, which the metrics counted.
func Disrupt(ctx context.Context, kube client.Client, nc *v1.NodeClaim, reason string, drainBy time.Time, now time.Time) (Outcome, error) {
	if !nc.DeletionTimestamp.IsZero() {
		return hasten(ctx, kube, nc, reason, drainBy, now)
	}
	patch := client.MergeFromWithOptions(nc.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if nc.Annotations == nil {
		nc.Annotations = map[string]string{}
	}
	nc.Annotations[DisruptionReasonAnnotation] = reason
	decision := "delete"
	if !drainBy.IsZero() {
		nc.Annotations[DrainByAnnotation] = drainBy.UTC().Format(time.RFC3339)
		decision = "replace"
	}
	if err := kube.Patch(ctx, nc, patch); err != nil {
		if apierrors.IsNotFound(err) {
			return Unchanged, nil
		}
		return Unchanged, fmt.Errorf("annotating nodeclaim %s with disruption reason %s: %w", nc.Name, reason, err)
	}
	if err := kube.Delete(ctx, nc); err != nil {
		if apierrors.IsNotFound(err) {
			return Unchanged, nil
		}
		return Unchanged, fmt.Errorf("deleting nodeclaim %s (%s): %w", nc.Name, reason, err)
	}
	metrics.DisruptionDecisions.WithLabelValues(nc.Labels[v1.NodePoolLabelKey], reason, decision).Inc()
	return Disrupted, nil
}

// hasten moves a deleting claim's drain-by time earlier. A claim without
// one drains at once already. The patch carries the resourceVersion, so a
// concurrent change (termination's own progress) makes it fail and the
// caller retry rather than overwrite.
func hasten(ctx context.Context, kube client.Client, nc *v1.NodeClaim, reason string, drainBy, now time.Time) (Outcome, error) {
	current, ok := DrainBy(nc)
	if !ok {
		return Unchanged, nil
	}
	if drainBy.IsZero() || drainBy.Before(now) {
		drainBy = now
	}
	drainBy = drainBy.UTC().Truncate(time.Second) // RFC 3339 as written keeps whole seconds
	if !drainBy.Before(current) {
		return Unchanged, nil
	}
	patch := client.MergeFromWithOptions(nc.DeepCopy(), client.MergeFromWithOptimisticLock{})
	nc.Annotations[DrainByAnnotation] = drainBy.Format(time.RFC3339)
	if err := kube.Patch(ctx, nc, patch); err != nil {
		if apierrors.IsNotFound(err) {
			return Unchanged, nil
		}
		return Unchanged, fmt.Errorf("moving the drain of nodeclaim %s earlier for %s: %w", nc.Name, reason, err)
	}
	return Hastened, nil
}

// CapacityBlockExpiring is the reason of a claim whose instance is in an
// EC2 capacity block about to end (the AWS provider decides it).
const CapacityBlockExpiring = "capacity_block_expiring"

// CapacityReservationInterrupted is the reason of a claim whose instance's
// interruptible capacity reservation is being reclaimed by its owner.
const CapacityReservationInterrupted = "capacity_reservation_interrupted"

// CloudDriven reports whether the claim is being deleted because its
// instance is going whatever nodewright does (a spot interruption, an
// interruptible reservation reclaimed, a scheduled retirement, a capacity
// block ending, an instance stopping or terminated): its drain races the
// instance and must not slow down.
func CloudDriven(nc *v1.NodeClaim) bool {
	reason := nc.Annotations[DisruptionReasonAnnotation]
	return reason == "spot_interrupted" || reason == CapacityReservationInterrupted || reason == "scheduled_change" || reason == CapacityBlockExpiring ||
		strings.HasPrefix(reason, "instance_")
}

// DrainBy reads a claim's DrainByAnnotation; ok is false when it has none
// or it does not parse (then the drain starts at once).
func DrainBy(nc *v1.NodeClaim) (time.Time, bool) {
	v, ok := nc.Annotations[DrainByAnnotation]
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, v)
	return t, err == nil
}
