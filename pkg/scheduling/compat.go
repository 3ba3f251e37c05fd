package scheduling

// Whether a pod group fits a pool: requirements, taints, the instance types
// and offerings left, cached per requirements and tolerations.

import (
	"fmt"
	"slices"
	"strings"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
	corev1 "k8s.io/api/core/v1"
)

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
		// The catalog's only error: no type satisfies reqs.
		gp.reason = unsatisfiable(p, v, reqs)
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
		gp.reason = unsatisfiable(p, v, reqs)
	}
	return gp
}

// unsatisfiable says why no type of p satisfies reqs (p's requirements and
// v's): the first of the pod's requirements that no type p allows satisfies
// on its own, which is the one to change; else the whole set, as only the
// combination fails.
func unsatisfiable(p *poolState, v variant, reqs requirements.Requirements) string {
	for _, key := range v.reqs.Keys() {
		if !catalog.CatalogKeys[key] {
			continue
		}
		alone := copyReqs(p.reqs)
		alone.Add(v.reqs[key])
		cands, err := p.Catalog.Filter(alone)
		if err != nil || !slices.ContainsFunc(cands, func(c catalog.Candidate) bool { _, ok := p.byName[c.Type.Name]; return ok }) {
			allowed := "any value"
			if r, ok := p.reqs[key]; ok {
				allowed = r.String()
			}
			return fmt.Sprintf("no instance type in NodePool %s satisfies the pod's requirement %s (the NodePool allows %s)", p.Name, v.reqs[key], allowed)
		}
	}
	return fmt.Sprintf("no instance type in NodePool %s satisfies %s together", p.Name, describeReqs(reqs))
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
