package scheduling

import (
	"fmt"
	"maps"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
	"github.com/samber/lo"
)

// capacity type indexes in masks.
var capacityTypes = []string{v1.CapacityTypeOnDemand, v1.CapacityTypeSpot, v1.CapacityTypeReserved}

func capacityIndex(ct string) int {
	for i, c := range capacityTypes {
		if c == ct {
			return i
		}
	}
	return -1
}

// solver holds one solve's state.
type solver struct {
	opts   Options
	terms  *termRegistry
	zones  []string // every zone any pool offers or any node is in, sorted
	zoneIx map[string]int
	pools  []*poolState
	groups []*podGroup
	nodes  []*nodeState
	daemon []*podInfo
	plan   *Plan
	newID  int
	// compatCache shares groupPools between groups with the same node
	// requirements and tolerations: most groups differ only in labels or
	// requests, and a filter over the catalog is the costliest step.
	compatCache map[string]*groupPool
	// free is the remaining demand of shareable groups.
	free Resources
	// share is the room each node forced by a capped group leaves for the
	// unconstrained pods (their demand spread over the forced nodes).
	share Resources
}

// poolState is a NodePool prepared for the solve.
type poolState struct {
	NodePool
	reqs     requirements.Requirements
	taints   []corev1.Taint
	cands    []catalog.Candidate
	byName   map[string]int
	alloc    []Resources
	capacity []Resources
	// offZone and offCT give each candidate offering's zone and capacity type
	// indexes, in the order of the type's offerings.
	offZone [][]uint8
	offCT   [][]uint8
	limits  Resources
	limited [numResources]bool
	maxNode int64 // -1: no node limit
	index   int
	used    Resources
	nodes   int64
	err     error
}

// podGroup is a set of pods the solver treats identically.
type podGroup struct {
	pods  []*corev1.Pod
	info  *podInfo
	next  int // pods[:next] are decided
	score float64
	key   string
	// matched are the terms this group's pods count in; antiMatched the ones
	// whose owners keep them out.
	matched     []int
	antiMatched []int
	needsZone   bool
	needsCT     bool
	perNodeCap  int
	// shareable groups have no topology or affinity of their own and may
	// share any node: they are sized against their aggregate demand.
	shareable bool
	// reachable caches, per variant, the zones the pods could get a node in.
	reachable map[int]uint64
	compat    map[[2]int]*groupPool // (pool, variant) -> compatibility
	cursor    map[int]int           // variant -> first node index worth trying
}

// groupPool is how a group's variant fits a pool.
type groupPool struct {
	ok bool
	// full: the group narrows none of the pool's candidates or offerings, so
	// placing it leaves a node's candidates as they are.
	full    bool
	reason  string
	entries []entry // candidates and their allowed offerings
	// custom are the non-catalog label requirements of a node planned for
	// the group (the pool's and the pod's); podCustom only the pod's, which
	// are what placing on an already planned node adds.
	custom    requirements.Requirements
	podCustom requirements.Requirements
	daemon    Resources
}

// entry is a candidate instance type with the offerings still allowed, as a
// mask over its offerings.
type entry struct {
	cand int32
	mask uint64
}

// nodeState is an existing, in-flight or planned node.
type nodeState struct {
	name     string
	existing bool
	// existingZone is an existing node's zone index, -1 when it has none.
	existingZone int
	labels       map[string]string // existing nodes
	taints       []corev1.Taint    // existing nodes
	pool         *poolState        // planned nodes
	reqs         requirements.Requirements
	entries      []entry
	target       int // index into entries of the type packed against
	zone         int // fixed zone index, -1 when free
	ct           int // fixed capacity type index, -1 when free
	capacity     Resources
	used         Resources
	pods         []*corev1.Pod
	ports        []hostPort
	// accounted is the capacity counted against the pool's limits.
	accounted Resources
	// zoneMask and ctMask cache zonesOf(entries) while masksValid.
	zoneMask   uint64
	ctMask     uint8
	masksValid bool
}

func (n *nodeState) capacityAccount() Resources { return n.accounted }

// Solve plans where every pending pod goes.
func Solve(in Input, opts Options) *Plan {
	if opts.SpotRiskWeight < 0 {
		opts.SpotRiskWeight = catalog.DefaultSpotRiskWeight
	}
	if opts.MaxInstanceTypes <= 0 {
		opts.MaxInstanceTypes = 60
	}
	s := &solver{opts: opts, terms: newTermRegistry(), zoneIx: map[string]int{}, plan: &Plan{Existing: map[string][]*corev1.Pod{}}, compatCache: map[string]*groupPool{}}
	s.buildGroups(in)
	s.buildPools(in)
	s.buildNodes(in)
	for _, d := range in.DaemonSets {
		s.daemon = append(s.daemon, parsePod(d, nil, newTermRegistry()))
	}
	s.reserveDaemons(in.Nodes)
	for _, g := range s.groups {
		s.prepareGroup(g)
	}
	s.orderGroups()
	var shareable []*podGroup
	for _, g := range s.groups {
		if g.shareable && g.info.err == nil && len(g.info.unknown) == 0 && len(g.info.variants) > 0 {
			shareable = append(shareable, g)
			continue
		}
		for g.next < len(g.pods) {
			if reason, ok := s.placeNext(g); !ok {
				s.plan.Unschedulable = append(s.plan.Unschedulable, Unschedulable{Pod: g.pods[g.next], Reason: reason})
				g.next++
			}
		}
	}
	s.packShareable(shareable)
	if opts.maxNew > 0 {
		// A caller that only wants plans of at most maxNew new nodes needs
		// no NodeClaim plans for a bigger one (their type lists are the
		// costliest part of a small solve).
		opened := lo.CountBy(s.nodes, func(n *nodeState) bool { return !n.existing && len(n.pods) > 0 })
		if opened > opts.maxNew {
			s.plan.Opened = opened
			return s.plan
		}
	}
	s.finish()
	s.plan.Opened = len(s.plan.NodeClaims)
	return s.plan
}

func (s *solver) buildGroups(in Input) {
	byKey := map[string]*podGroup{}
	for _, pod := range in.Pods {
		zones := in.VolumeZones[pod.UID]
		key := groupKey(pod, zones)
		g, ok := byKey[key]
		if !ok {
			g = &podGroup{key: key, info: parsePod(pod, zones, s.terms), compat: map[[2]int]*groupPool{}, cursor: map[int]int{}}
			r := g.info.requests
			g.score = math.Max(float64(r[ResCPU])/1000, float64(r[ResMemory])/(4<<30)) + 1000*float64(r[ResNVIDIAGPU]+r[ResAMDGPU]+r[ResNeuron])
			byKey[key] = g
			s.groups = append(s.groups, g)
		}
		g.pods = append(g.pods, pod)
	}
	// Largest first (first-fit decreasing); the key keeps it deterministic.
	sort.SliceStable(s.groups, func(i, j int) bool {
		if s.groups[i].score != s.groups[j].score {
			return s.groups[i].score > s.groups[j].score
		}
		return s.groups[i].key < s.groups[j].key
	})
	for _, g := range s.groups {
		sort.SliceStable(g.pods, func(i, j int) bool {
			a, b := g.pods[i], g.pods[j]
			if a.Namespace != b.Namespace {
				return a.Namespace < b.Namespace
			}
			return a.Name < b.Name
		})
	}
}

func (s *solver) addZone(z string) {
	if _, ok := s.zoneIx[z]; !ok && z != "" {
		s.zones = append(s.zones, z)
		s.zoneIx[z] = -1
	}
}

func (s *solver) buildPools(in Input) {
	var pools []*poolState
	for _, np := range in.NodePools {
		p := &poolState{NodePool: np, byName: map[string]int{}, maxNode: -1}
		p.reqs = copyReqs(np.Requirements)
		p.reqs.Add(requirements.MustNew(v1.NodePoolLabelKey, corev1.NodeSelectorOpIn, np.Name))
		for k, v := range np.Labels {
			p.reqs.Add(requirements.MustNew(k, corev1.NodeSelectorOpIn, v))
		}
		for _, t := range np.Taints {
			if t.Effect != corev1.TaintEffectPreferNoSchedule {
				p.taints = append(p.taints, t)
			}
		}
		for name, q := range np.Limits {
			if name == "nodes" {
				p.maxNode = q.Value()
				continue
			}
			if i := resourceIndex(name); i >= 0 {
				p.limited[i], p.limits[i] = true, quantityValue(i, q)
			}
		}
		p.used, _ = ResourcesFrom(np.Usage)
		if n, ok := np.Usage["nodes"]; ok {
			p.nodes = n.Value()
		}
		if np.Catalog == nil {
			p.err = fmt.Errorf("NodePool %s has no instance types (its node class is not ready)", np.Name)
		} else if cached := in.cache.pool(np.Name); cached != nil {
			p.cands, p.err, p.alloc, p.capacity = cached.cands, cached.err, cached.alloc, cached.capacity
		} else {
			p.cands, p.err = np.Catalog.Filter(p.reqs)
		}
		for _, c := range p.cands {
			for _, o := range c.Type.Offerings {
				s.addZone(o.Zone)
			}
		}
		pools = append(pools, p)
	}
	for _, n := range in.Nodes {
		s.addZone(n.Labels[v1.LabelTopologyZone])
	}
	sort.Strings(s.zones)
	for i, z := range s.zones {
		s.zoneIx[z] = i
	}
	for _, p := range pools {
		sized := len(p.alloc) == len(p.cands)
		for i, c := range p.cands {
			p.byName[c.Type.Name] = i
			if !sized {
				alloc, capacity := c.Type.Allocatable, c.Type.Capacity
				if p.Settings != nil {
					capacity, alloc = c.Type.Spec.Resources(*p.Settings)
				}
				a, _ := ResourcesFrom(alloc)
				cp, _ := ResourcesFrom(capacity)
				p.alloc, p.capacity = append(p.alloc, a), append(p.capacity, cp)
			}
			zs, cts := make([]uint8, len(c.Type.Offerings)), make([]uint8, len(c.Type.Offerings))
			for j, o := range c.Type.Offerings {
				zs[j], cts[j] = uint8(s.zoneIx[o.Zone]), uint8(max(capacityIndex(o.CapacityType), 0))
			}
			p.offZone, p.offCT = append(p.offZone, zs), append(p.offCT, cts)
		}
	}
	// Higher weight first, then name: weight is a preference, not a price.
	sort.SliceStable(pools, func(i, j int) bool {
		if pools[i].Weight != pools[j].Weight {
			return pools[i].Weight > pools[j].Weight
		}
		return pools[i].Name < pools[j].Name
	})
	for i, p := range pools {
		p.index = i
		in.cache.keepPool(p)
	}
	s.pools = pools
}

func (s *solver) buildNodes(in Input) {
	bases := make([]*nodeBase, len(in.Nodes))
	// One allocation for every existing node.
	states := make([]nodeState, len(in.Nodes))
	for i, n := range in.Nodes {
		b := in.cache.base(n)
		bases[i] = b
		// Shared with other solves of the same cache: clipped, so a commit's
		// append copies instead of writing into the shared arrays.
		ez, ok := s.zoneIx[n.Labels[v1.LabelTopologyZone]]
		if !ok {
			ez = -1
		}
		states[i] = nodeState{name: n.Name, existing: true, existingZone: ez, labels: n.Labels, zone: -1, ct: -1, capacity: b.alloc,
			used: b.used, taints: b.taints, pods: slices.Clip(n.Pods), ports: slices.Clip(b.ports)}
		s.nodes = append(s.nodes, &states[i])
	}
	// Register the anti-affinity of pods already running: a pending pod they
	// select must keep away from them too.
	type owner struct {
		node int
		term int
	}
	var owners []owner
	for i, n := range in.Nodes {
		for _, pi := range bases[i].anti {
			pod := n.Pods[pi]
			for _, t := range pod.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
				// A term that does not parse would have kept the pod from binding.
				if id, err := registerPodTerm(s.terms, pod, t); err == nil {
					owners = append(owners, owner{i, id})
				}
			}
		}
	}
	for _, t := range s.terms.terms {
		if in.cache == nil || in.cache.all == nil {
			countTerm(t, in.Nodes, 1)
			continue
		}
		// Counted once over the whole cluster, less the nodes left out.
		base := in.cache.counts(t)
		maps.Copy(t.counts, base.counts)
		t.total = base.total
		countTerm(t, in.without, -1)
	}
	for _, o := range owners {
		t := s.terms.terms[o.term]
		if d, ok := s.domain(s.nodes[o.node], t.key); ok {
			t.owners[d]++
		}
	}
}

// orderGroups puts groups that force a node count (a per-node cap from
// hostname anti-affinity, hostname spread or host ports) first, so the other
// pods can fill the nodes they open, and works out how much of the other pods'
// demand each forced node should leave room for.
func (s *solver) orderGroups() {
	sort.SliceStable(s.groups, func(i, j int) bool {
		ci, cj := s.groups[i].perNodeCap < math.MaxInt, s.groups[j].perNodeCap < math.MaxInt
		return ci && !cj
	})
	forced := 0
	var free Resources
	for _, g := range s.groups {
		if g.perNodeCap < math.MaxInt {
			forced = max(forced, (len(g.pods)+g.perNodeCap-1)/g.perNodeCap)
			continue
		}
		if !g.needsZone && !g.needsCT && len(g.info.affinity) == 0 && len(g.info.anti) == 0 {
			g.shareable = true
			for range g.pods {
				free = free.Add(g.info.requests)
			}
		}
	}
	s.free = free
	if forced > 0 {
		for i := range free {
			s.share[i] = free[i] / int64(forced)
		}
	}
}

// prepareGroup finds the terms a group counts in and its per-node cap.
func (s *solver) prepareGroup(g *podGroup) {
	info := g.info
	for i, t := range s.terms.terms {
		if t.matches(info.namespace, info.labels) {
			g.matched = append(g.matched, i)
			g.antiMatched = append(g.antiMatched, i) // checked against owners
			g.needsZone = g.needsZone || t.key == v1.LabelTopologyZone
			g.needsCT = g.needsCT || t.key == v1.CapacityTypeLabelKey
		}
	}
	for _, sc := range info.spread {
		key := s.terms.terms[sc.term].key
		g.needsZone = g.needsZone || key == v1.LabelTopologyZone
		g.needsCT = g.needsCT || key == v1.CapacityTypeLabelKey
	}
	for _, pt := range append(append([]podTerm(nil), info.affinity...), info.anti...) {
		key := s.terms.terms[pt.term].key
		g.needsZone = g.needsZone || key == v1.LabelTopologyZone
		g.needsCT = g.needsCT || key == v1.CapacityTypeLabelKey
	}
	g.perNodeCap = math.MaxInt
	for _, sc := range info.spread {
		t := s.terms.terms[sc.term]
		if t.key == v1.LabelHostname && sc.required && t.matches(info.namespace, info.labels) {
			g.perNodeCap = min(g.perNodeCap, sc.maxSkew)
		}
	}
	for _, a := range info.anti {
		t := s.terms.terms[a.term]
		if t.key == v1.LabelHostname && t.matches(info.namespace, info.labels) {
			g.perNodeCap = 1
		}
	}
	if len(info.ports) > 0 {
		g.perNodeCap = 1
	}
}

// placeNext places g's next pod, trying each variant on every node, then on a
// new node; it returns the reason when nothing worked.
func (s *solver) placeNext(g *podGroup) (string, bool) {
	info := g.info
	if info.err != nil {
		return info.err.Error(), false
	}
	if len(info.unknown) > 0 {
		return fmt.Sprintf("requests %v, which no instance type provides", info.unknown), false
	}
	if len(info.variants) == 0 {
		return "its required node affinity can never be satisfied", false
	}
	var reasons []string
	for vi, v := range info.variants {
		cursor := g.cursor[vi]
		advancing := true
		allowed := s.allowedZones(g, v)
		for ni := cursor; ni < len(s.nodes); ni++ {
			n := s.nodes[ni]
			if z := s.nodeZone(n); z >= 0 && allowed&(1<<z) == 0 {
				// Refused by zone alone: cheap to skip, but counts may change.
				advancing = false
				continue
			}
			ok, permanent := s.tryPlace(n, g, vi, v)
			if ok {
				g.next++
				return "", true
			}
			if advancing && permanent {
				g.cursor[vi] = ni + 1
			} else {
				advancing = false
			}
		}
		reason, ok := s.openNode(g, vi, v)
		if ok {
			g.next++
			return "", true
		}
		reasons = append(reasons, reason)
	}
	return reasons[len(reasons)-1], false
}

// nodeZone is the zone index a node is in, -1 when not yet fixed.
func (s *solver) nodeZone(n *nodeState) int {
	if !n.existing {
		return n.zone
	}
	return n.existingZone
}

// allowedZones is the mask of zones g's zone-keyed spread, affinity and
// anti-affinity allow right now, computed once per attempt so that nodes in
// other zones are skipped with a bit test.
func (s *solver) allowedZones(g *podGroup, v variant) uint64 {
	if !g.needsZone {
		return math.MaxUint64
	}
	var mask uint64
	probe := &nodeState{existing: true, labels: map[string]string{}}
	for z, name := range s.zones {
		probe.labels[v1.LabelTopologyZone] = name
		if s.zoneTermsOK(probe, g, v) {
			mask |= 1 << z
		}
	}
	return mask
}

// zoneTermsOK runs the zone-keyed part of topologyCheck.
func (s *solver) zoneTermsOK(n *nodeState, g *podGroup, v variant) bool {
	info := g.info
	for _, sc := range info.spread {
		t := s.terms.terms[sc.term]
		if t.key != v1.LabelTopologyZone || (!sc.required && !v.soft) {
			continue
		}
		d := n.labels[v1.LabelTopologyZone]
		minCount := 0
		if domains := s.eligibleZones(g, v, sc.honorNodeAffinity); len(domains) >= sc.minDomains {
			minCount = t.minCount(domains)
		}
		self := 0
		if t.matches(info.namespace, info.labels) {
			self = 1
		}
		if t.counts[d]+self-minCount > sc.maxSkew {
			return false
		}
	}
	for _, a := range info.affinity {
		t := s.terms.terms[a.term]
		if t.key == v1.LabelTopologyZone && t.counts[n.labels[v1.LabelTopologyZone]] == 0 && !(t.total == 0 && t.matches(info.namespace, info.labels)) {
			return false
		}
	}
	for _, a := range info.anti {
		t := s.terms.terms[a.term]
		if t.key == v1.LabelTopologyZone && t.counts[n.labels[v1.LabelTopologyZone]] > 0 {
			return false
		}
	}
	for _, ti := range g.antiMatched {
		t := s.terms.terms[ti]
		if t.key == v1.LabelTopologyZone && t.owners[n.labels[v1.LabelTopologyZone]] > 0 {
			return false
		}
	}
	return true
}

// compat computes, once, how a group's variant fits a pool.
func (s *solver) compat(g *podGroup, p *poolState, pi, vi int, v variant) *groupPool {
	key := [2]int{pi, vi}
	if gp, ok := g.compat[key]; ok {
		return gp
	}
	shared := compatKey(pi, v, g.info.tolerations)
	if gp, ok := s.compatCache[shared]; ok {
		g.compat[key] = gp
		return gp
	}
	gp := &groupPool{}
	g.compat[key] = gp
	s.compatCache[shared] = gp
	if p.err != nil {
		gp.reason = p.err.Error()
		return gp
	}
	if t, ok := tolerates(g.info.tolerations, p.taints); !ok {
		gp.reason = fmt.Sprintf("NodePool %s has taint %s=%s:%s, which the pod does not tolerate", p.Name, t.Key, t.Value, t.Effect)
		return gp
	}
	reqs := copyReqs(p.reqs)
	for _, r := range v.reqs {
		reqs.Add(r)
	}
	gp.custom, gp.podCustom = requirements.Requirements{}, requirements.Requirements{}
	for key, r := range v.reqs {
		if !catalog.CatalogKeys[key] {
			gp.podCustom[key] = r
		}
	}
	for key, r := range reqs {
		if catalog.CatalogKeys[key] {
			continue
		}
		if key == v1.LabelHostname && !r.AllowsAbsent() {
			gp.reason = fmt.Sprintf("it requires %s, which only an existing node has", r)
			return gp
		}
		_, poolDefines := p.reqs[key]
		if r.IsEmpty() && !r.AllowsAbsent() || (!poolDefines && !r.AllowsAbsent()) {
			gp.reason = fmt.Sprintf("NodePool %s cannot give its nodes the label %s", p.Name, r)
			return gp
		}
		gp.custom[key] = r
	}
	cands, err := p.Catalog.Filter(reqs)
	if err != nil {
		gp.reason = fmt.Sprintf("NodePool %s: %v", p.Name, err)
		return gp
	}
	for _, c := range cands {
		if i, ok := p.byName[c.Type.Name]; ok {
			gp.entries = append(gp.entries, entry{cand: int32(i), mask: c.Mask & p.cands[i].Mask})
		}
	}
	for _, d := range s.daemon {
		if s.daemonRuns(d, p, reqs) {
			gp.daemon = gp.daemon.Add(d.requests)
		}
	}
	gp.ok = len(gp.entries) > 0
	gp.full = len(gp.entries) == len(p.cands)
	for _, e := range gp.entries {
		gp.full = gp.full && e.mask == p.cands[e.cand].Mask
	}
	if !gp.ok {
		gp.reason = fmt.Sprintf("no instance type in NodePool %s satisfies %s", p.Name, describeReqs(reqs))
	}
	return gp
}

// compatKey identifies what compat depends on besides the pool.
func compatKey(pool int, v variant, tolerations []corev1.Toleration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d|", pool)
	for _, k := range v.reqs.Keys() {
		b.WriteString(v.reqs[k].String())
		b.WriteByte(';')
	}
	for _, t := range tolerations {
		fmt.Fprintf(&b, "|%s/%s/%s/%s", t.Key, t.Operator, t.Value, t.Effect)
	}
	return b.String()
}

// reserveDaemons takes, on each in-flight node, the requests of the
// DaemonSets whose pods will run there: those that tolerate its taints and
// whose node requirements its labels meet. buildNodes put in.Nodes first in
// s.nodes, in order.
func (s *solver) reserveDaemons(nodes []Node) {
	for i, n := range nodes {
		if !n.InFlight {
			continue
		}
		ns := s.nodes[i]
		for _, d := range s.daemon {
			if len(d.variants) == 0 {
				continue
			}
			if _, ok := tolerates(d.tolerations, ns.taints); !ok {
				continue
			}
			if d.variants[len(d.variants)-1].reqs.Matches(ns.labels) {
				ns.used = ns.used.Add(d.requests)
			}
		}
	}
}

// daemonRuns reports whether a DaemonSet pod would run on a node planned with
// reqs in pool p: it tolerates the pool's taints, and some instance type the
// node could be also satisfies the DaemonSet's node requirements.
func (s *solver) daemonRuns(d *podInfo, p *poolState, reqs requirements.Requirements) bool {
	if _, ok := tolerates(d.tolerations, p.taints); !ok || len(d.variants) == 0 {
		return false
	}
	dreqs := d.variants[len(d.variants)-1].reqs // without its preferences
	if !compatible(dreqs, reqs) {
		return false
	}
	merged := copyReqs(reqs)
	for _, r := range dreqs {
		merged.Add(r)
	}
	_, err := p.Catalog.Filter(merged)
	return err == nil
}

// compatible reports whether a node meeting node could meet want: every key
// both constrain has a common value.
func compatible(want, node requirements.Requirements) bool {
	for key, r := range want {
		if nr, ok := node[key]; ok {
			in := nr.Intersect(r)
			if in.IsEmpty() && !(nr.AllowsAbsent() && r.AllowsAbsent()) {
				return false
			}
		}
	}
	return true
}

func describeReqs(reqs requirements.Requirements) string {
	var parts []string
	for _, k := range reqs.Keys() {
		if k == v1.NodePoolLabelKey {
			continue
		}
		parts = append(parts, reqs[k].String())
	}
	if len(parts) == 0 {
		return "its requirements"
	}
	return strings.Join(parts, ", ")
}

// tryPlace places g's next pod on n if it fits; permanent says a refusal will
// hold for the rest of the solve (resources, requirements, taints, ports,
// anti-affinity), so the group's cursor may move past n.
func (s *solver) tryPlace(n *nodeState, g *podGroup, vi int, v variant) (ok, permanent bool) {
	info := g.info
	// A planned node keeps the type it was sized as: letting it grow to any
	// larger compatible type would balloon every node to the largest one.
	if !(n.used.Add(info.requests)).Fits(n.capacity) {
		return false, true
	}
	for _, hp := range info.ports {
		for _, used := range n.ports {
			if hp.conflicts(used) {
				return false, true
			}
		}
	}
	var entries []entry
	var custom requirements.Requirements
	if n.existing {
		if !v.reqs.Matches(n.labels) {
			return false, true
		}
		if _, ok := tolerates(info.tolerations, n.taints); !ok {
			return false, true
		}
	} else {
		gp := s.compat(g, n.pool, n.pool.index, vi, v)
		if !gp.ok {
			return false, true
		}
		entries = n.entries
		if !gp.full {
			entries = intersectEntries(n.entries, gp.entries)
			if len(entries) == 0 {
				return false, true
			}
		}
		custom = n.reqs
		if len(gp.podCustom) > 0 {
			custom = copyReqs(n.reqs)
			for _, r := range gp.podCustom {
				custom.Add(r)
			}
			for _, r := range custom {
				if r.IsEmpty() && !r.AllowsAbsent() {
					return false, true
				}
			}
		}
	}
	zone, ct := n.zone, n.ct
	if !n.existing && (g.needsZone || g.needsCT) {
		var found bool
		zone, ct, found = s.chooseDomain(n, g, v, entries)
		if !found {
			return false, false
		}
	} else if ok, permanent := s.topologyCheck(n, g, v, n.zone, n.ct); !ok {
		return false, permanent
	}
	if !n.existing {
		fixZ, fixC := -1, -1
		if zone != n.zone {
			fixZ = zone
		}
		if ct != n.ct {
			fixC = ct
		}
		entries = s.restrict(n.pool, entries, fixZ, fixC)
		target := n.target
		if len(entries) != len(n.entries) || (len(entries) > 0 && &entries[0] != &n.entries[0]) {
			target = indexOfCand(entries, n.entries[n.target].cand)
		}
		if target < 0 {
			// Narrowing dropped the type; take the cheapest that still fits.
			target = s.pickTarget(n.pool, entries, n.used.Add(info.requests), n)
			if target < 0 {
				return false, len(entries) == 0
			}
		}
		changed := target != n.target || len(entries) != len(n.entries)
		n.entries, n.target, n.reqs = entries, target, custom
		n.zone, n.ct = zone, ct
		if changed {
			n.masksValid = false
			s.retarget(n)
		}
	}
	s.commit(n, g)
	return true, false
}

func indexOfCand(entries []entry, cand int32) int {
	i := sort.Search(len(entries), func(i int) bool { return entries[i].cand >= cand })
	if i < len(entries) && entries[i].cand == cand && entries[i].mask != 0 {
		return i
	}
	return -1
}

// pickTarget returns the index in entries of the cheapest type that holds
// used, has an allowed offering and keeps the pool within its limits; -1 when
// none does.
func (s *solver) pickTarget(p *poolState, entries []entry, used Resources, n *nodeState) int {
	best, bestPrice := -1, math.Inf(1)
	var current Resources
	if n != nil {
		current = n.accounted
	}
	for i, e := range entries {
		if e.mask == 0 || !used.Fits(p.alloc[e.cand]) || !s.withinLimits(p, current, p.capacity[e.cand]) {
			continue
		}
		if price := s.price(p, e); price < bestPrice {
			best, bestPrice = i, price
		}
	}
	return best
}

func (s *solver) withinLimits(p *poolState, old, next Resources) bool {
	after := p.used.Sub(old).Add(next)
	for i := range after {
		if p.limited[i] && after[i] > p.limits[i] {
			return false
		}
	}
	return true
}

// price is an entry's cheapest allowed offering, risk-adjusted.
func (s *solver) price(p *poolState, e entry) float64 {
	best := math.Inf(1)
	offs := p.cands[e.cand].Type.Offerings
	for m := e.mask; m != 0; m &= m - 1 {
		j := bits.TrailingZeros64(m)
		if j < len(offs) {
			best = math.Min(best, offs[j].RiskAdjustedPrice(s.opts.SpotRiskWeight))
		}
	}
	return best
}

// choices yields fixed when it is set (>= 0), else each bit of set below n.
func choices(fixed int, set uint64, n int) func(func(int) bool) {
	return func(yield func(int) bool) {
		if fixed >= 0 || set == 0 {
			yield(fixed)
			return
		}
		for i := range n {
			if set&(1<<i) != 0 && !yield(i) {
				return
			}
		}
	}
}

// priceIn is price restricted to a zone and capacity type (-1: any).
func (s *solver) priceIn(p *poolState, e entry, zone, ct int) float64 {
	best := math.Inf(1)
	offs := p.cands[e.cand].Type.Offerings
	for m := e.mask; m != 0; m &= m - 1 {
		j := bits.TrailingZeros64(m)
		if (zone >= 0 && int(p.offZone[e.cand][j]) != zone) || (ct >= 0 && int(p.offCT[e.cand][j]) != ct) {
			continue
		}
		best = math.Min(best, offs[j].RiskAdjustedPrice(s.opts.SpotRiskWeight))
	}
	return best
}

// restrict keeps the offerings in zone and capacity type (-1: any).
func (s *solver) restrict(p *poolState, entries []entry, zone, ct int) []entry {
	if zone < 0 && ct < 0 {
		return entries
	}
	out := make([]entry, 0, len(entries))
	for _, e := range entries {
		m := e.mask
		for mm := m; mm != 0; mm &= mm - 1 {
			j := bits.TrailingZeros64(mm)
			if (zone >= 0 && int(p.offZone[e.cand][j]) != zone) || (ct >= 0 && int(p.offCT[e.cand][j]) != ct) {
				m &^= 1 << j
			}
		}
		if m != 0 {
			out = append(out, entry{e.cand, m})
		}
	}
	return out
}

// intersectEntries keeps the candidates in both lists (both sorted by cand),
// with the offerings both allow.
func intersectEntries(a, b []entry) []entry {
	out := make([]entry, 0, min(len(a), len(b)))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i].cand < b[j].cand:
			i++
		case a[i].cand > b[j].cand:
			j++
		default:
			if m := a[i].mask & b[j].mask; m != 0 {
				out = append(out, entry{a[i].cand, m})
			}
			i++
			j++
		}
	}
	return out
}

// zonesOf returns the zones and capacity types the entries still offer.
func (s *solver) zonesOf(p *poolState, entries []entry) (zones uint64, cts uint8) {
	for _, e := range entries {
		for m := e.mask; m != 0; m &= m - 1 {
			j := bits.TrailingZeros64(m)
			zones |= 1 << p.offZone[e.cand][j]
			cts |= 1 << p.offCT[e.cand][j]
		}
	}
	return zones, cts
}

// domain is n's value of a topology key, if it has one yet.
func (s *solver) domain(n *nodeState, key string) (string, bool) {
	if key == v1.LabelHostname {
		return n.name, true
	}
	if n.existing {
		d, ok := n.labels[key]
		return d, ok
	}
	switch key {
	case v1.LabelTopologyZone:
		if n.zone >= 0 {
			return s.zones[n.zone], true
		}
		return "", false
	case v1.CapacityTypeLabelKey:
		if n.ct >= 0 {
			return capacityTypes[n.ct], true
		}
		return "", false
	case awsv1.LabelTopologyZoneID:
		return "", false
	}
	if d, ok := n.pool.Labels[key]; ok {
		return d, true
	}
	if r, ok := n.reqs[key]; ok && r.Len() == 1 {
		return r.Values()[0], true
	}
	return "", false
}

// eligibleZones are the zones a spread constraint balances over. With
// nodeAffinityPolicy Honor (the default) those are the zones the pod can get a
// node in: an existing node it fits the affinity and taints of, or a NodePool
// it is compatible with that offers the zone. A zone no such node can ever be
// in would otherwise hold the minimum at 0 and block every placement.
func (s *solver) eligibleZones(g *podGroup, v variant, honor bool) []string {
	if !honor {
		return s.zones
	}
	if g.reachable == nil {
		g.reachable = map[int]uint64{}
	}
	mask, ok := g.reachable[v.idx]
	if !ok {
		for _, n := range s.nodes {
			if n.existing && v.reqs.Matches(n.labels) {
				if _, tol := tolerates(g.info.tolerations, n.taints); tol {
					if z := s.nodeZone(n); z >= 0 {
						mask |= 1 << z
					}
				}
			}
		}
		for _, p := range s.pools {
			if gp := s.compat(g, p, p.index, v.idx, v); gp.ok {
				z, _ := s.zonesOf(p, gp.entries)
				mask |= z
			}
		}
		g.reachable[v.idx] = mask
	}
	var out []string
	for z, name := range s.zones {
		if mask&(1<<z) != 0 {
			out = append(out, name)
		}
	}
	return out
}

func (s *solver) topologyOK(n *nodeState, g *podGroup, v variant, zone, ct int) bool {
	ok, _ := s.topologyCheck(n, g, v, zone, ct)
	return ok
}

// topologyCheck checks spread, affinity and anti-affinity with n in the given
// zone and capacity type. A refusal is permanent when counts can only grow
// against the pod: anti-affinity, a missing topology label, hostname spread
// (a node's count never falls, and the minimum stays 0).
func (s *solver) topologyCheck(n *nodeState, g *podGroup, v variant, zone, ct int) (bool, bool) {
	if n.existing {
		return s.topologyAt(n, g, v)
	}
	saveZ, saveC := n.zone, n.ct
	n.zone, n.ct = zone, ct
	ok, permanent := s.topologyAt(n, g, v)
	n.zone, n.ct = saveZ, saveC
	return ok, permanent
}

// topologyAt is topologyCheck for the node's current zone and capacity type.
func (s *solver) topologyAt(n *nodeState, g *podGroup, v variant) (bool, bool) {
	info := g.info
	for _, sc := range info.spread {
		if !sc.required && !v.soft {
			continue
		}
		t := s.terms.terms[sc.term]
		d, ok := s.domain(n, t.key)
		if !ok {
			return false, true
		}
		var minCount int
		switch t.key {
		case v1.LabelHostname:
			minCount = 0 // a new node, with none, can always be added
		case v1.LabelTopologyZone:
			domains := s.eligibleZones(g, v, sc.honorNodeAffinity)
			if len(domains) < sc.minDomains {
				minCount = 0
			} else {
				minCount = t.minCount(domains)
			}
		case v1.CapacityTypeLabelKey:
			minCount = t.minCount([]string{v1.CapacityTypeOnDemand, v1.CapacityTypeSpot})
		default:
			minCount = 0
		}
		self := 0
		if t.matches(info.namespace, info.labels) {
			self = 1
		}
		if t.counts[d]+self-minCount > sc.maxSkew {
			return false, t.key == v1.LabelHostname
		}
	}
	for _, a := range info.affinity {
		t := s.terms.terms[a.term]
		d, ok := s.domain(n, t.key)
		if !ok {
			return false, true
		}
		if t.counts[d] == 0 && !(t.total == 0 && t.matches(info.namespace, info.labels)) {
			return false, false
		}
	}
	for _, a := range info.anti {
		t := s.terms.terms[a.term]
		if d, ok := s.domain(n, t.key); ok && t.counts[d] > 0 {
			return false, true
		}
	}
	for _, ti := range g.antiMatched {
		t := s.terms.terms[ti]
		if d, ok := s.domain(n, t.key); ok && t.owners[d] > 0 {
			return false, true
		}
	}
	return true, false
}

// chooseDomain picks the zone and capacity type a planned node must commit to
// for g: among those its entries offer, the ones the topology allows; for a
// zone spread the least-filled, then the cheapest for the node's type.
func (s *solver) chooseDomain(n *nodeState, g *podGroup, v variant, entries []entry) (int, int, bool) {
	var zones uint64
	var cts uint8
	if len(entries) == len(n.entries) && n.masksValid {
		zones, cts = n.zoneMask, n.ctMask
	} else {
		zones, cts = s.zonesOf(n.pool, entries)
		if len(entries) == len(n.entries) {
			n.zoneMask, n.ctMask, n.masksValid = zones, cts, true
		}
	}
	zoneSet, ctSet := uint64(0), uint8(0)
	if g.needsZone && n.zone < 0 {
		zoneSet = zones & s.allowedZones(g, v)
	}
	if g.needsCT && n.ct < 0 {
		ctSet = cts
	}
	var spreadTerm *term
	for _, sc := range g.info.spread {
		if t := s.terms.terms[sc.term]; t.key == v1.LabelTopologyZone && (sc.required || v.soft) {
			spreadTerm = t
			break
		}
	}
	targetIx := indexOfCand(entries, n.entries[n.target].cand)
	bestZ, bestC, found := -1, -1, false
	bestCount, bestPrice := math.MaxInt, math.Inf(1)
	for z := range choices(n.zone, zoneSet, len(s.zones)) {
		for c := range choices(n.ct, uint64(ctSet), len(capacityTypes)) {
			if !s.topologyOK(n, g, v, z, c) {
				continue
			}
			price := math.Inf(1)
			if targetIx >= 0 {
				price = s.priceIn(n.pool, entries[targetIx], z, c)
			}
			if math.IsInf(price, 1) {
				restricted := s.restrict(n.pool, entries, z, c)
				ti := s.pickTarget(n.pool, restricted, n.used.Add(g.info.requests), n)
				if ti < 0 {
					continue
				}
				price = s.price(n.pool, restricted[ti])
			}
			count := 0
			if spreadTerm != nil && z >= 0 {
				count = spreadTerm.counts[s.zones[z]]
			}
			if count < bestCount || (count == bestCount && price < bestPrice) {
				bestZ, bestC, bestCount, bestPrice, found = z, c, count, price, true
			}
		}
	}
	return bestZ, bestC, found
}

// retarget re-reads the packing capacity after the target changed.
func (s *solver) retarget(n *nodeState) {
	p := n.pool
	old := n.capacityAccount()
	next := p.capacity[n.entries[n.target].cand]
	p.used = p.used.Sub(old).Add(next)
	n.capacity = p.alloc[n.entries[n.target].cand]
	n.accounted = next
}

// commit records g's next pod on n.
func (s *solver) commit(n *nodeState, g *podGroup) {
	pod, info := g.pods[g.next], g.info
	n.used = n.used.Add(info.requests)
	if g.shareable {
		s.free = s.free.Sub(info.requests)
	}
	n.pods = append(n.pods, pod)
	n.ports = append(n.ports, info.ports...)
	for _, ti := range g.matched {
		t := s.terms.terms[ti]
		if d, ok := s.domain(n, t.key); ok {
			t.counts[d]++
			t.total++
		}
	}
	for _, a := range info.anti {
		t := s.terms.terms[a.term]
		if d, ok := s.domain(n, t.key); ok {
			t.owners[d]++
		}
	}
	if n.existing {
		s.plan.Existing[n.name] = append(s.plan.Existing[n.name], pod)
	}
}
