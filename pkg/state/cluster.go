// Package state is the provisioner's view of the cluster: nodes, the
// NodeClaims in flight, the pods bound to each and the pods waiting, read from
// the manager's informer cache. It turns them into the solver's input so that
// capacity already launched (or about to be) is used before anything new.
package state

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/scheduling"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
)

// Cluster reads the cluster through an informer-backed reader and remembers
// the NodeClaims it was told were created until the reader sees them, so a
// provisioning round right after another never launches the same capacity
// twice because the cache lagged.
type Cluster struct {
	reader client.Reader

	mu      sync.Mutex
	created map[string]createdClaim
	// nominated are the pods a created claim was planned for, by pod UID.
	nominated map[types.UID]nomination

	// roomMu serializes the FitsElsewhere callers that need a fresh view,
	// so the claims waiting for their replacements at once share one
	// snapshot (room) instead of listing the cluster each.
	roomMu sync.Mutex
	room   *roomView
	// now is the clock of the room's reuse.
	now func() time.Time
}

// roomView is the running nodes FitsElsewhere places pods on.
type roomView struct {
	at time.Time
	in scheduling.Input
}

// roomTTL is how long a roomView is reused: one pass of the termination
// controller over its waiting claims, well under its shortest requeue.
const roomTTL = time.Second

// nomination is the claim a pod was planned onto.
type nomination struct {
	claim string
	at    time.Time
}

// nominationGrace is how long after its claim's node is initialized a
// nominated pod still counts as placed there: kube-scheduler binds it within
// seconds, and one it cannot bind is planned again.
const nominationGrace = time.Minute

type createdClaim struct {
	claim *v1.NodeClaim
	at    time.Time
}

// createdTTL bounds how long a created claim is remembered without the cache
// seeing it (a claim deleted before the cache caught up must not linger).
const createdTTL = time.Minute

// NewCluster reads through reader (the manager's cache).
func NewCluster(reader client.Reader) *Cluster {
	return &Cluster{reader: reader, created: map[string]createdClaim{}, nominated: map[types.UID]nomination{}, now: time.Now}
}

// ClaimCreated records a NodeClaim the provisioner just created, and the
// pending pods it was planned for: until kube-scheduler binds them they are
// counted on the claim, not planned again (a later round placing them
// differently over the claims in flight could find one no claim fits and
// launch again).
func (c *Cluster) ClaimCreated(nc *v1.NodeClaim, pods ...*corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.created[nc.Name] = createdClaim{nc.DeepCopy(), now}
	for _, p := range pods {
		if p.Spec.NodeName == "" {
			c.nominated[p.UID] = nomination{nc.Name, now}
		}
	}
}

// Snapshot is the cluster at one moment, in the solver's terms.
type Snapshot struct {
	// Pending are the pods kube-scheduler could not place, followed by the
	// pods that must move off nodes being deleted (see Reschedulable): room
	// is planned for those before they are evicted.
	Pending []*corev1.Pod
	// Rescheduling counts the pods at the end of Pending that are still
	// bound to a node being deleted.
	Rescheduling int
	// Starting names the nodes that registered but are not initialized
	// (their claim not Initialized): planned on, but not yet running pods.
	Starting map[string]bool
	// Nodes are existing nodes and in-flight NodeClaims, with bound pods.
	Nodes []scheduling.Node
	// DaemonSets holds one template pod per DaemonSet.
	DaemonSets []*corev1.Pod
	// VolumeZones are the zones a pending pod's bound volumes pin it to.
	VolumeZones map[types.UID][]string
	// Claims are the live (not deleting) NodeClaims by pool.
	Claims map[string][]*v1.NodeClaim
	// Deleting are the NodeClaims being drained or terminated by pool: their
	// instances still run and still count against the pool's limits.
	Deleting map[string][]*v1.NodeClaim
}

// DaemonSetPods is one template pod per DaemonSet: what the solver reserves
// room for on every new node the DaemonSet would run on.
func DaemonSetPods(dss []appsv1.DaemonSet) []*corev1.Pod {
	pods := make([]*corev1.Pod, 0, len(dss))
	for i := range dss {
		ds := &dss[i]
		pods = append(pods, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: ds.Name, Namespace: ds.Namespace, Labels: ds.Spec.Template.Labels},
			Spec:       ds.Spec.Template.Spec,
		})
	}
	return pods
}

// Snapshot lists everything and assembles the view.
func (c *Cluster) Snapshot(ctx context.Context) (*Snapshot, error) {
	var (
		nodes  corev1.NodeList
		claims v1.NodeClaimList
		pods   corev1.PodList
		dss    appsv1.DaemonSetList
	)
	for what, list := range map[string]client.ObjectList{"nodes": &nodes, "nodeclaims": &claims, "pods": &pods, "daemonsets": &dss} {
		if err := c.reader.List(ctx, list); err != nil {
			return nil, fmt.Errorf("listing %s: %w", what, err)
		}
	}
	s := &Snapshot{Claims: map[string][]*v1.NodeClaim{}, Deleting: map[string][]*v1.NodeClaim{}, VolumeZones: map[types.UID][]string{}, Starting: map[string]bool{}}
	byNode := map[string][]*corev1.Pod{}
	var pending []*corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		switch {
		case p.Spec.NodeName != "":
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
			}
		case Provisionable(p):
			pending = append(pending, p)
		}
	}
	s.DaemonSets = DaemonSetPods(dss.Items)

	claimByProvider := map[string]*v1.NodeClaim{}
	seen := map[string]bool{}
	live := func(nc *v1.NodeClaim) {
		seen[nc.Name] = true
		pool := nc.Labels[v1.NodePoolLabelKey]
		if nc.DeletionTimestamp.IsZero() {
			s.Claims[pool] = append(s.Claims[pool], nc)
		} else {
			s.Deleting[pool] = append(s.Deleting[pool], nc)
		}
		if nc.Status.ProviderID != "" {
			claimByProvider[nc.Status.ProviderID] = nc
		}
	}
	for i := range claims.Items {
		live(&claims.Items[i])
	}
	c.mu.Lock()
	for name, cc := range c.created {
		switch {
		case seen[name] || time.Since(cc.at) > createdTTL:
			delete(c.created, name)
		default:
			live(cc.claim)
		}
	}
	c.mu.Unlock()
	// In name order: the claims remembered above come out of a map, and the
	// solver's answer should not depend on that.
	for _, list := range s.Claims {
		slices.SortFunc(list, func(a, b *v1.NodeClaim) int { return strings.Compare(a.Name, b.Name) })
	}

	hasNode := map[string]bool{}
	// viewOf is the index in s.Nodes of each live claim's node.
	viewOf := map[string]int{}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		nc := claimByProvider[n.Spec.ProviderID]
		if nc != nil {
			hasNode[nc.Name] = true
		}
		if !n.DeletionTimestamp.IsZero() || (nc != nil && !nc.DeletionTimestamp.IsZero()) {
			for _, p := range byNode[n.Name] {
				if Reschedulable(p) {
					s.Pending = append(s.Pending, p)
					s.Rescheduling++
				}
			}
			continue
		}
		if nc != nil && !conditionTrue(nc.Status.Conditions, v1.ConditionTypeInitialized) {
			s.Starting[n.Name] = true
		}
		if nc != nil {
			viewOf[nc.Name] = len(s.Nodes)
		}
		s.Nodes = append(s.Nodes, nodeView(n, nc, byNode[n.Name]))
	}
	for _, pool := range slices.Sorted(maps.Keys(s.Claims)) {
		for _, nc := range s.Claims[pool] {
			if !hasNode[nc.Name] {
				viewOf[nc.Name] = len(s.Nodes)
				s.Nodes = append(s.Nodes, inFlightView(nc))
			}
		}
	}
	s.Pending = append(c.placeNominated(pending, s, viewOf, claimsByName(s)), s.Pending...)
	if err := c.volumeZones(ctx, s); err != nil {
		return nil, err
	}
	return s, nil
}

// placeNominated puts the pending pods a live claim was created for on that
// claim's node (they are on their way there) and returns the others. A
// nomination ends with its claim, or nominationGrace after the claim's node
// was initialized (kube-scheduler did not bind the pod: plan it again).
func (c *Cluster) placeNominated(pending []*corev1.Pod, s *Snapshot, viewOf map[string]int, claims map[string]*v1.NodeClaim) []*corev1.Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*corev1.Pod
	waiting := map[types.UID]bool{}
	for _, p := range pending {
		waiting[p.UID] = true
		nom, ok := c.nominated[p.UID]
		nc := claims[nom.claim]
		i, hasView := viewOf[nom.claim]
		if ok && nc != nil && hasView && !nominationOver(nc) {
			s.Nodes[i].Pods = append(s.Nodes[i].Pods, p)
			continue
		}
		delete(c.nominated, p.UID)
		out = append(out, p)
	}
	for uid := range c.nominated {
		if !waiting[uid] {
			delete(c.nominated, uid) // bound, or gone
		}
	}
	return out
}

// nominationOver says a claim's node has been initialized for longer than
// nominationGrace.
func nominationOver(nc *v1.NodeClaim) bool {
	for _, cond := range nc.Status.Conditions {
		if cond.Type == v1.ConditionTypeInitialized && cond.Status == metav1.ConditionTrue {
			return time.Since(cond.LastTransitionTime.Time) > nominationGrace
		}
	}
	return false
}

func claimsByName(s *Snapshot) map[string]*v1.NodeClaim {
	out := map[string]*v1.NodeClaim{}
	for _, list := range s.Claims {
		for _, nc := range list {
			out[nc.Name] = nc
		}
	}
	return out
}

// volumeZones pins pending pods with bound persistent volumes to the zones
// those volumes' node affinity names (an EBS volume lives in one zone).
func (c *Cluster) volumeZones(ctx context.Context, s *Snapshot) error {
	for _, p := range s.Pending {
		var zones []string
		for _, vol := range p.Spec.Volumes {
			if vol.PersistentVolumeClaim == nil {
				continue
			}
			pvc := &corev1.PersistentVolumeClaim{}
			if err := c.reader.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: vol.PersistentVolumeClaim.ClaimName}, pvc); err != nil {
				if apierrors.IsNotFound(err) {
					continue
				}
				return fmt.Errorf("reading claim %s/%s of pod %s: %w", p.Namespace, vol.PersistentVolumeClaim.ClaimName, p.Name, err)
			}
			if pvc.Spec.VolumeName == "" {
				continue
			}
			pv := &corev1.PersistentVolume{}
			if err := c.reader.Get(ctx, client.ObjectKey{Name: pvc.Spec.VolumeName}, pv); err != nil {
				if apierrors.IsNotFound(err) {
					continue
				}
				return fmt.Errorf("reading volume %s of pod %s/%s: %w", pvc.Spec.VolumeName, p.Namespace, p.Name, err)
			}
			if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
				continue
			}
			for _, term := range pv.Spec.NodeAffinity.Required.NodeSelectorTerms {
				for _, e := range term.MatchExpressions {
					if (e.Key == corev1.LabelTopologyZone || e.Key == corev1.LabelFailureDomainBetaZone) && e.Operator == corev1.NodeSelectorOpIn {
						zones = append(zones, e.Values...)
					}
				}
			}
		}
		if len(zones) > 0 {
			s.VolumeZones[p.UID] = zones
		}
	}
	return nil
}

// nodeView is a node as the solver should see it. A node still starting
// (registered, not initialized) carries the unregistered taint and startup
// taints that go away on their own: it is seen with its claim's taints only,
// or pods waiting for it would make the provisioner launch another.
func nodeView(n *corev1.Node, nc *v1.NodeClaim, pods []*corev1.Pod) scheduling.Node {
	view := scheduling.Node{Name: n.Name, Labels: n.Labels, Taints: n.Spec.Taints, Allocatable: n.Status.Allocatable, Pods: pods}
	if nc != nil && !conditionTrue(nc.Status.Conditions, v1.ConditionTypeInitialized) {
		view.Taints = nc.Spec.Taints
		labels := map[string]string{}
		for k, v := range nc.Labels {
			labels[k] = v
		}
		for k, v := range n.Labels {
			labels[k] = v
		}
		view.Labels = labels
		if len(view.Allocatable) == 0 {
			view.Allocatable = nc.Status.Allocatable
		}
	}
	return view
}

// inFlightView is a NodeClaim with no Node yet. Before launch its size is
// the requests it was planned for (the pods it was made for fit exactly);
// after launch, the instance's allocatable. Its labels are the launched
// instance's, or the single-valued requirements before launch.
func inFlightView(nc *v1.NodeClaim) scheduling.Node {
	labels := map[string]string{}
	if reqs, err := requirements.FromNodePool(nc.Spec.Requirements); err == nil {
		for k, r := range reqs {
			if vals := r.Values(); r.Operator() == corev1.NodeSelectorOpIn && len(vals) == 1 {
				labels[k] = vals[0]
			}
		}
	}
	for k, v := range nc.Labels {
		labels[k] = v
	}
	labels[corev1.LabelHostname] = nc.Name
	alloc := nc.Status.Allocatable
	if len(alloc) == 0 {
		alloc = nc.Spec.Resources.Requests.DeepCopy()
		if _, ok := alloc[corev1.ResourcePods]; !ok {
			alloc[corev1.ResourcePods] = resource.MustParse("110")
		}
	}
	return scheduling.Node{Name: nc.Name, Labels: labels, Taints: nc.Spec.Taints, Allocatable: alloc, InFlight: true}
}

// Reschedulable reports whether a pod on a node being deleted will need
// room elsewhere once evicted: it is running or about to, not already
// terminating, and a controller (not a DaemonSet, not the kubelet for a
// static pod) will create it again. A bare pod evicted is gone for good, so
// no room is planned for it.
func Reschedulable(p *corev1.Pod) bool {
	if !p.DeletionTimestamp.IsZero() || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return false
	}
	owner := metav1.GetControllerOf(p)
	return owner != nil && owner.Kind != "DaemonSet" && owner.Kind != "Node"
}

// FitsElsewhere reports whether pods would all find room on the cluster's
// running nodes (initialized, not being deleted, not the node they are on):
// the replacement for a node being drained is up, so evicting them now moves
// them once, straight to a node.
func (c *Cluster) FitsElsewhere(ctx context.Context, pods []*corev1.Pod) (bool, error) {
	if len(pods) == 0 {
		return true, nil
	}
	in, err := c.roomInput(ctx)
	if err != nil {
		return false, err
	}
	in.Pods = pods
	plan := scheduling.Solve(in, scheduling.Options{SpotRiskWeight: -1})
	return len(plan.Unschedulable) == 0 && len(plan.NodeClaims) == 0, nil
}

// roomInput is the solver's input of running nodes (initialized, not in
// flight, not deleting), from a snapshot at most roomTTL old. The solver
// only reads its input, so callers share it.
func (c *Cluster) roomInput(ctx context.Context) (scheduling.Input, error) {
	c.roomMu.Lock()
	defer c.roomMu.Unlock()
	if c.room != nil && c.now().Sub(c.room.at) < roomTTL {
		return c.room.in, nil
	}
	snap, err := c.Snapshot(ctx)
	if err != nil {
		return scheduling.Input{}, err
	}
	var nodes []scheduling.Node
	for _, n := range snap.Nodes {
		if !n.InFlight && !snap.Starting[n.Name] {
			nodes = append(nodes, n)
		}
	}
	c.room = &roomView{at: c.now(), in: scheduling.Input{Nodes: nodes, DaemonSets: snap.DaemonSets, VolumeZones: snap.VolumeZones}}
	return c.room.in, nil
}

// Provisionable reports whether a pod is one the provisioner should find
// room for: unbound, not terminating, not gated, marked unschedulable by
// kube-scheduler, and not a DaemonSet pod (those follow nodes).
func Provisionable(p *corev1.Pod) bool {
	// A nominated pod is preempting its way onto an existing node.
	if p.Spec.NodeName != "" || p.Status.NominatedNodeName != "" || !p.DeletionTimestamp.IsZero() || len(p.Spec.SchedulingGates) > 0 ||
		p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	for _, o := range p.OwnerReferences {
		if o.Kind == "DaemonSet" {
			return false
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return true
		}
	}
	return false
}

func conditionTrue(conds []metav1.Condition, t string) bool {
	for _, c := range conds {
		if c.Type == t {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}
