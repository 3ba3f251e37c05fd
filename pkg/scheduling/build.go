package scheduling

// The solver's state built from its Input: pod groups, pools with their
// filtered catalogs, existing nodes, and the DaemonSet room each new node
// keeps.

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
	corev1 "k8s.io/api/core/v1"
)

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
