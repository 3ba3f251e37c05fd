package disruption

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/nodewright/nodewright/apis/v1"
)

// Repair settings, as Karpenter's NodeRepair.
const (
	// RepairToleration is how long a node's Ready condition may stay False
	// or Unknown before the node is replaced.
	RepairToleration = 30 * time.Minute
	// RepairMaxUnhealthyShare: when more of a pool's nodes than this are
	// unhealthy, none is repaired. Many nodes failing at once is an outage
	// (the network, the control plane), which new nodes would not survive
	// either; deleting them all would only lose their pods' state.
	RepairMaxUnhealthyShare = 0.2
)

// Repair replaces nodes that have been NotReady (Ready False or Unknown),
// or whose instance has failed its cloud status checks (EC2's
// DescribeInstanceStatus), for RepairToleration, within the pool's
// Unhealthy budget. The drain
// starts at once: the pods are not running anyway, and termination stops
// waiting for a pod its kubelet no longer confirms one minute past its
// grace period.
type Repair struct{}

// Reason is the Unhealthy budget reason.
func (Repair) Reason() v1.DisruptionReason { return v1.DisruptionReasonUnhealthy }

// Annotation is "unhealthy".
func (Repair) Annotation() string { return "unhealthy" }

// DrainWait is 0: waiting for room helps no pod on a dead node.
func (Repair) DrainWait() time.Duration { return 0 }

// Describe says since when the node is not ready.
func (Repair) Describe(c *Candidate) string {
	if c.Impaired != "" {
		return fmt.Sprintf("Unhealthy: %s since %s; replacing it", c.Impaired, c.ImpairedSince.UTC().Format(time.RFC3339))
	}
	if cond := readyCondition(c.Node); cond != nil {
		return fmt.Sprintf("Unhealthy: Ready has been %s since %s (%s); replacing it", cond.Status, cond.LastTransitionTime.UTC().Format(time.RFC3339), cond.Reason)
	}
	return "Unhealthy"
}

// ShouldDisrupt reports whether c's node has been unhealthy for the
// toleration, in a pool not mostly unhealthy.
func (Repair) ShouldDisrupt(c *Candidate, now time.Time) (bool, string) {
	if !unhealthy(c, now) {
		return false, "healthy"
	}
	if c.PoolSize > 0 && float64(c.PoolUnhealthy) > RepairMaxUnhealthyShare*float64(c.PoolSize) {
		return false, fmt.Sprintf("%d of the NodePool's %d nodes are unhealthy, more than the %.0f%% repair replaces", c.PoolUnhealthy, c.PoolSize, 100*RepairMaxUnhealthyShare)
	}
	return true, ""
}

// unhealthy reports whether c's node has been NotReady, or its instance
// failing a status check, for RepairToleration. A node without a Ready
// condition is judged by its instance alone.
func unhealthy(c *Candidate, now time.Time) bool {
	if c.Impaired != "" && !c.ImpairedSince.Add(RepairToleration).After(now) {
		return true
	}
	cond := readyCondition(c.Node)
	return cond != nil && cond.Status != corev1.ConditionTrue && !cond.LastTransitionTime.Add(RepairToleration).After(now)
}

func readyCondition(n *corev1.Node) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}
