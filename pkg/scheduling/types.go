package scheduling

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
)

// Input is everything a plan is made from.
type Input struct {
	// Pods are the pending pods to place.
	Pods []*corev1.Pod
	// Nodes are the existing nodes and the in-flight ones (launched, not yet
	// Ready), with the pods already bound or nominated to them.
	Nodes []Node
	// NodePools new nodes may come from.
	NodePools []NodePool
	// DaemonSets holds one pod per DaemonSet (its template): their requests are
	// reserved on every new node they would run on.
	DaemonSets []*corev1.Pod
	// VolumeZones are the zones a pod's bound volumes confine it to.
	VolumeZones map[types.UID][]string

	cache   *solveCache
	without []Node
}

// Node is an existing or in-flight node.
type Node struct {
	Name        string
	Labels      map[string]string
	Taints      []corev1.Taint
	Allocatable corev1.ResourceList
	Pods        []*corev1.Pod
	// InFlight marks a node with no kubelet yet (a NodeClaim without its
	// Node): the DaemonSet pods that will run there are not bound, so their
	// requests are reserved on it as on a new node.
	InFlight bool
}

// NodePool is a NodePool with what it can launch.
type NodePool struct {
	Name   string
	Weight int32
	// Requirements are the template's requirements (template labels are
	// added as In requirements by the caller or by Labels below).
	Requirements requirements.Requirements
	// Labels are the template's labels; every new node carries them.
	Labels map[string]string
	// Taints of new nodes. Startup taints are left out: pods need not
	// tolerate them.
	Taints []corev1.Taint
	// Catalog is the region's catalog.
	Catalog *catalog.Catalog
	// Settings are the node class's; nil means the catalog's defaults.
	Settings *catalog.NodeSettings
	// Limits bound the capacity of the pool's nodes ("nodes" counts them);
	// Usage is what existing and in-flight nodes already take.
	Limits corev1.ResourceList
	Usage  corev1.ResourceList
}

// Options tune the solver.
type Options struct {
	// SpotRiskWeight weighs the spot interruption bucket against price; see
	// catalog.Offering.RiskAdjustedPrice. Negative means
	// catalog.DefaultSpotRiskWeight.
	SpotRiskWeight float64
	// MaxInstanceTypes bounds the fallback types kept per NodeClaim; default 60.
	MaxInstanceTypes int

	// maxNew, when above 0, spares the NodeClaim plans of a plan that opens
	// more new nodes than it: only Plan.Opened is set.
	maxNew int
}

// Plan is the solver's answer.
type Plan struct {
	// Existing maps node names to the pending pods placed there.
	Existing map[string][]*corev1.Pod
	// NodeClaims are the new nodes to launch.
	NodeClaims []*NodeClaimPlan
	// Unschedulable holds the pods placed nowhere, with a reason a person can
	// act on.
	Unschedulable []Unschedulable
	// Opened counts the new nodes the plan needs.
	Opened int
}

// NodeClaimPlan is one new node.
type NodeClaimPlan struct {
	NodePool string
	// Requirements of the claim: the pool's and the pods', narrowed to the
	// chosen zones, capacity types and instance types.
	Requirements requirements.Requirements
	// Labels are the values chosen for the custom keys the node must carry
	// (see resolveLabels); Requirements are narrowed to them.
	Labels map[string]string
	// InstanceTypes can all hold the pods, cheapest first: the launch tries them
	// in order when capacity runs out.
	InstanceTypes []catalog.Candidate
	Pods          []*corev1.Pod
	// Requests of the pods and DaemonSets.
	Requests Resources
	// Offering is the cheapest offering of the first instance type.
	Offering catalog.Offering
}

// Price is the hourly price of the planned node.
func (n *NodeClaimPlan) Price() float64 { return n.Offering.Price }

// Unschedulable is a pod the plan could not place.
type Unschedulable struct {
	Pod    *corev1.Pod
	Reason string
}

// Cost is the hourly price of the new nodes.
func (p *Plan) Cost() float64 {
	total := 0.0
	for _, n := range p.NodeClaims {
		total += n.Price()
	}
	return total
}

// Placed counts the pods the plan placed.
func (p *Plan) Placed() int {
	n := 0
	for _, pods := range p.Existing {
		n += len(pods)
	}
	for _, c := range p.NodeClaims {
		n += len(c.Pods)
	}
	return n
}
