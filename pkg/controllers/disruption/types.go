// Package disruption removes nodes that are not needed and replaces nodes
// that are not right. Each evaluation, for each NodePool, every Method (one
// file each: repair, drift, emptiness) picks the candidates it would
// disrupt, and as many as the pool's budget for the method's reason allows
// are disrupted through Disrupt (disrupt.go, which interruption and expiry
// use too). When no method disrupted anything, consolidation
// (consolidation.go) looks for one move over the whole cluster that deletes
// underused nodes or replaces them with cheaper ones. designs/disruption.md
// says why.
package disruption

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/nodewright/nodewright/apis/v1"
)

// Candidate is a node nodewright launched that a method may disrupt: ready,
// not being deleted, in a NodePool that still exists.
type Candidate struct {
	Claim *v1.NodeClaim
	Node  *corev1.Node
	Pool  *v1.NodePool
	// Pods bound to the node.
	Pods []*corev1.Pod
	// Idle is when a pod last came to or left the node: its
	// lastPodEventTime, or when it became initialized if no pod ever did.
	Idle time.Time
	// NeverUsed says no pod has come or gone since the node became
	// initialized: it may be the room just launched for pods still on
	// their way.
	NeverUsed bool
	// PodsMoving says pods still wait to move off a node being deleted
	// somewhere in the cluster: a new, never used node may be their
	// replacement.
	PodsMoving bool
	// PoolSize counts the pool's claims; PoolUnhealthy its candidates
	// unhealthy for RepairToleration.
	PoolSize, PoolUnhealthy int
	// Held says the Node or NodeClaim is annotated karpenter.sh/do-not-disrupt:
	// no voluntary disruption takes it (repair does).
	Held bool
	// Impaired names the cloud status check the instance fails ("": none),
	// failing since ImpairedSince.
	Impaired      string
	ImpairedSince time.Time
}

// Method is one way of choosing nodes to disrupt.
type Method interface {
	// Reason is the budget reason it counts against.
	Reason() v1.DisruptionReason
	// ShouldDisrupt reports whether c should go now; when not, why not, in
	// words for a log line.
	ShouldDisrupt(c *Candidate, now time.Time) (bool, string)
	// Annotation is the reason recorded on a disrupted claim and in
	// nodewright_disruption_decisions_total ("empty", ...).
	Annotation() string
	// DrainWait is how long a disrupted node may wait for its pods to have
	// room on other initialized nodes before it drains anyway; 0 drains at
	// once (nothing to move).
	DrainWait() time.Duration
	// Describe says, for the events, why c is disrupted.
	Describe(c *Candidate) string
}
