package disruption

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/nodewright/nodewright/apis/v1"
)

// NewNodeGrace is how long a node no pod has used since its initialization
// stays, whatever consolidateAfter says: the pods it was launched for bind
// within seconds of it becoming ready.
const NewNodeGrace = time.Minute

// Emptiness deletes nodes that have run no workload pod for the pool's
// consolidateAfter, under every consolidation policy. DaemonSet, static
// (mirror), finished and terminating pods do not count: they go with the
// node or are already gone. Nothing needs to move, so the drain starts at
// once.
type Emptiness struct{}

// Reason is the Empty budget reason.
func (Emptiness) Reason() v1.DisruptionReason { return v1.DisruptionReasonEmpty }

// Annotation is "empty".
func (Emptiness) Annotation() string { return "empty" }

// Describe says since when c is empty.
func (Emptiness) Describe(c *Candidate) string {
	return fmt.Sprintf("Empty since %s (consolidateAfter %s)", c.Idle.UTC().Format(time.RFC3339), c.Pool.Spec.Disruption.ConsolidateAfter.String())
}

// DrainWait is 0: an empty node has nothing to move.
func (Emptiness) DrainWait() time.Duration { return 0 }

// ShouldDisrupt reports whether c has been empty for consolidateAfter.
func (Emptiness) ShouldDisrupt(c *Candidate, now time.Time) (bool, string) {
	after := c.Pool.Spec.Disruption.ConsolidateAfter
	switch {
	case after.IsNever():
		return false, "consolidateAfter is Never"
	case after.Err() != nil:
		return false, fmt.Sprintf("spec.disruption.consolidateAfter: %v", after.Err())
	}
	var wait time.Duration
	if after.Duration != nil {
		wait = *after.Duration
	}
	if n := workloadPods(c.Pods); n > 0 {
		return false, fmt.Sprintf("%d pods run on it", n)
	}
	// Karpenter's validation pass, for an empty node: it must have stayed
	// empty (no pod came or went, lastPodEventTime says) for the validation
	// delay before it goes, even with consolidateAfter 0s, so a pod bound
	// just as the node emptied is not evicted with it.
	wait = max(wait, DefaultValidationDelay)
	if c.NeverUsed {
		// A node launched for pending pods is empty from its initialization
		// until kube-scheduler binds them, and a replacement launched first
		// stays empty until the old node's drain moves its pods: with
		// consolidateAfter 0s (the default) it would be deleted before use.
		if c.PodsMoving {
			return false, "never used, and pods still wait to move off a node being deleted"
		}
		wait = max(wait, NewNodeGrace)
	}
	if left := c.Idle.Add(wait).Sub(now); left > 0 {
		return false, fmt.Sprintf("empty, but a pod came or went %s ago (consolidateAfter %s)", now.Sub(c.Idle).Round(time.Second), after.String())
	}
	return true, ""
}

// workloadPods counts the pods that would have to move off the node.
func workloadPods(pods []*corev1.Pod) int { return WorkloadPods(pods) }

// WorkloadPods counts the pods that keep a node from being empty: running or
// pending, not going, not mirror or DaemonSet pods.
func WorkloadPods(pods []*corev1.Pod) int {
	n := 0
	for _, p := range pods {
		if !p.DeletionTimestamp.IsZero() || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
			continue
		}
		if owner := metav1.GetControllerOf(p); owner != nil && owner.Kind == "DaemonSet" {
			continue
		}
		n++
	}
	return n
}
