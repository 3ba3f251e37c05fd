package controllers

import (
	"context"
	"fmt"
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

// Disrupt deletes a NodeClaim for reason, recording the reason (and, when
// drainBy is set, the latest time to start draining) on it first so that
// termination and people can see why. A claim already being deleted is left
// alone and reported as not disrupted. The decision is counted in
// nodewright_disruption_decisions_total: "replace" when the drain waits for
// a replacement, "delete" when it starts at once.
func Disrupt(ctx context.Context, kube client.Client, nc *v1.NodeClaim, reason string, drainBy time.Time) (bool, error) {
	if !nc.DeletionTimestamp.IsZero() {
		return false, nil
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
			return false, nil
		}
		return false, fmt.Errorf("annotating nodeclaim %s with disruption reason %s: %w", nc.Name, reason, err)
	}
	if err := kube.Delete(ctx, nc); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("deleting nodeclaim %s (%s): %w", nc.Name, reason, err)
	}
	metrics.DisruptionDecisions.WithLabelValues(nc.Labels[v1.NodePoolLabelKey], reason, decision).Inc()
	return true, nil
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
