package scheduling

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/go-logr/logr"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
)

// podInfo is what the solver reads from a pod, parsed once per group.
type podInfo struct {
	namespace string
	labels    map[string]string
	requests  Resources
	unknown   []corev1.ResourceName
	// variants are the requirement sets to try, strictest first: each OR'ed
	// required node-affinity term, with the preferred terms applied and then
	// relaxed one at a time (lowest weight first), as kube-scheduler prefers
	// but does not require them.
	variants    []variant
	tolerations []corev1.Toleration
	spread      []spreadConstraint
	affinity    []podTerm // required pod affinity
	anti        []podTerm // required pod anti-affinity
	ports       []hostPort
	err         error // a constraint the solver cannot parse
}

type variant struct {
	idx  int // position in podInfo.variants
	reqs requirements.Requirements
	// soft applies the ScheduleAnyway spread constraints too.
	soft bool
	desc string
}

// spreadConstraint is a topology spread constraint bound to a term.
type spreadConstraint struct {
	term              int
	maxSkew           int
	minDomains        int
	required          bool
	honorNodeAffinity bool
}

// podTerm is a pod (anti-)affinity term bound to a term.
type podTerm struct{ term int }

type hostPort struct {
	ip       string
	protocol corev1.Protocol
	port     int32
}

func (a hostPort) conflicts(b hostPort) bool {
	if a.protocol != b.protocol || a.port != b.port {
		return false
	}
	return a.ip == b.ip || a.ip == "" || b.ip == "" || a.ip == "0.0.0.0" || b.ip == "0.0.0.0"
}

// groupKey is equal for pods the solver treats identically.
func groupKey(pod *corev1.Pod, volumeZones []string) string {
	var b strings.Builder
	b.WriteString(pod.Namespace)
	b.WriteByte('|')
	keys := make([]string, 0, len(pod.Labels))
	for k := range pod.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(pod.Labels[k])
		b.WriteByte(',')
	}
	spec := struct {
		C  []corev1.Container
		I  []corev1.Container
		O  corev1.ResourceList
		NS map[string]string
		A  *corev1.Affinity
		T  []corev1.Toleration
		TS []corev1.TopologySpreadConstraint
		V  []string
	}{containerShapes(pod.Spec.Containers), containerShapes(pod.Spec.InitContainers), pod.Spec.Overhead,
		pod.Spec.NodeSelector, pod.Spec.Affinity, pod.Spec.Tolerations, pod.Spec.TopologySpreadConstraints, volumeZones}
	data, _ := json.Marshal(spec)
	b.Write(data)
	return b.String()
}

// containerShapes keeps only what scheduling reads of containers.
func containerShapes(cs []corev1.Container) []corev1.Container {
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Resources: corev1.ResourceRequirements{Requests: c.Resources.Requests}, Ports: c.Ports, RestartPolicy: c.RestartPolicy}
	}
	return out
}

// parsePod builds a podInfo; terms registers topology terms.
func parsePod(pod *corev1.Pod, volumeZones []string, terms *termRegistry) *podInfo {
	info := &podInfo{namespace: pod.Namespace, labels: pod.Labels, tolerations: pod.Spec.Tolerations}
	info.requests, info.unknown = PodRequests(pod)
	for _, c := range pod.Spec.InitContainers {
		info.ports = appendHostPorts(info.ports, c.Ports)
	}
	for _, c := range pod.Spec.Containers {
		info.ports = appendHostPorts(info.ports, c.Ports)
	}
	base := requirements.Requirements{}
	for k, v := range pod.Spec.NodeSelector {
		base.Add(requirements.MustNew(k, corev1.NodeSelectorOpIn, v))
	}
	if len(volumeZones) > 0 {
		base.Add(requirements.MustNew(v1.LabelTopologyZone, corev1.NodeSelectorOpIn, volumeZones...))
	}
	var required []corev1.NodeSelectorTerm
	var preferred []corev1.PreferredSchedulingTerm
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil {
		if r := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution; r != nil {
			required = r.NodeSelectorTerms
		}
		preferred = append(preferred, a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution...)
		// Heaviest preferences are kept longest.
		sort.SliceStable(preferred, func(i, j int) bool { return preferred[i].Weight > preferred[j].Weight })
	}
	if len(required) == 0 {
		required = []corev1.NodeSelectorTerm{{}}
	}
	hasSoftSpread := false
	for _, c := range pod.Spec.TopologySpreadConstraints {
		hasSoftSpread = hasSoftSpread || c.WhenUnsatisfiable == corev1.ScheduleAnyway
	}
	for ti, term := range required {
		reqs, err := termRequirements(base, term.MatchExpressions)
		if err != nil {
			info.err = err
			return info
		}
		if reqs == nil {
			continue // a term that can never match
		}
		for keep := len(preferred); keep >= 0; keep-- {
			v := variant{reqs: copyReqs(reqs), soft: hasSoftSpread && keep == len(preferred)}
			ok := true
			for _, p := range preferred[:keep] {
				pr, err := termRequirements(v.reqs, p.Preference.MatchExpressions)
				if err != nil || pr == nil {
					ok = false
					break
				}
				v.reqs = pr
			}
			if !ok {
				continue
			}
			v.desc = fmt.Sprintf("node affinity term %d with %d of %d preferences", ti, keep, len(preferred))
			info.variants = append(info.variants, v)
			if keep == len(preferred) && hasSoftSpread {
				relaxed := variant{reqs: copyReqs(v.reqs), desc: v.desc + ", without ScheduleAnyway spread"}
				info.variants = append(info.variants, relaxed)
			}
		}
	}
	for i := range info.variants {
		info.variants[i].idx = i
	}
	for _, c := range pod.Spec.TopologySpreadConstraints {
		sel, err := selectorWithKeys(c.LabelSelector, c.MatchLabelKeys, pod.Labels)
		if err != nil {
			info.err = fmt.Errorf("topology spread constraint on %s: %w", c.TopologyKey, err)
			return info
		}
		sc := spreadConstraint{
			term:              terms.register(c.TopologyKey, []string{pod.Namespace}, sel),
			maxSkew:           int(c.MaxSkew),
			required:          c.WhenUnsatisfiable != corev1.ScheduleAnyway,
			honorNodeAffinity: c.NodeAffinityPolicy == nil || *c.NodeAffinityPolicy == corev1.NodeInclusionPolicyHonor,
		}
		if c.MinDomains != nil {
			sc.minDomains = int(*c.MinDomains)
		}
		info.spread = append(info.spread, sc)
	}
	if a := pod.Spec.Affinity; a != nil {
		if a.PodAffinity != nil {
			for _, t := range a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
				id, err := registerPodTerm(terms, pod, t)
				if err != nil {
					info.err = err
					return info
				}
				info.affinity = append(info.affinity, podTerm{id})
			}
		}
		if a.PodAntiAffinity != nil {
			for _, t := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
				id, err := registerPodTerm(terms, pod, t)
				if err != nil {
					info.err = err
					return info
				}
				info.anti = append(info.anti, podTerm{id})
			}
		}
	}
	return info
}

// nodeBase is what an existing node offers a plan: its room, what its bound
// pods take of it, their host ports, and which of them hold required
// anti-affinity (kube-scheduler checks an existing pod's anti-affinity
// against an incoming pod; its other constraints were checked when it was
// placed).
type nodeBase struct {
	alloc, used Resources
	ports       []hostPort
	taints      []corev1.Taint
	anti        []int // indexes into the node's pods
}

func readNode(n Node) *nodeBase {
	b := &nodeBase{}
	b.alloc, _ = ResourcesFrom(n.Allocatable)
	for _, t := range n.Taints {
		// An in-flight node's unregistered taint goes once it registers.
		if t.Key != v1.UnregisteredNoExecuteTaint.Key {
			b.taints = append(b.taints, t)
		}
	}
	for i, pod := range n.Pods {
		r, _ := PodRequests(pod)
		b.used = b.used.Add(r)
		for _, c := range pod.Spec.InitContainers {
			b.ports = appendHostPorts(b.ports, c.Ports)
		}
		for _, c := range pod.Spec.Containers {
			b.ports = appendHostPorts(b.ports, c.Ports)
		}
		if a := pod.Spec.Affinity; a != nil && a.PodAntiAffinity != nil && len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) > 0 {
			b.anti = append(b.anti, i)
		}
	}
	return b
}

func appendHostPorts(out []hostPort, ports []corev1.ContainerPort) []hostPort {
	for _, p := range ports {
		if p.HostPort > 0 {
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			out = append(out, hostPort{p.HostIP, proto, p.HostPort})
		}
	}
	return out
}

// solveCache keeps what is read from existing nodes across the solves of
// one consolidation, which differ only in the nodes left out. A nil cache
// reads every time.
type solveCache struct {
	// nodes are read by solves running at once: filled before they start.
	nodes map[string]*nodeBase
	// all are the nodes of the cluster; each solve's Input.Nodes are all
	// less Input.without. terms are the pods of all matching each term.
	all   []Node
	mu    sync.Mutex
	terms map[string]*term
	// pools are each NodePool's types that fit it, with their sizes: the
	// same in every solve (a pool's usage is not cached, only its catalog).
	pools map[string]*pooledTypes
}

type pooledTypes struct {
	cands           []catalog.Candidate
	err             error
	alloc, capacity []Resources
}

func (c *solveCache) pool(name string) *pooledTypes {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pools[name]
}

func (c *solveCache) keepPool(p *poolState) {
	if c == nil || p.Catalog == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pools[p.Name]; !ok {
		// Clipped: a solve never appends to them, but must not be able to.
		c.pools[p.Name] = &pooledTypes{slices.Clip(p.cands), p.err, slices.Clip(p.alloc), slices.Clip(p.capacity)}
	}
}

// counts are a term's matching pods over the whole cluster.
func (c *solveCache) counts(t *term) *term {
	c.mu.Lock()
	defer c.mu.Unlock()
	if got, ok := c.terms[t.id]; ok {
		return got
	}
	whole := &term{key: t.key, namespaces: t.namespaces, selector: t.selector, counts: map[string]int{}}
	countTerm(whole, c.all, 1)
	c.terms[t.id] = whole
	return whole
}

// countTerm adds sign for each pod of nodes that t matches, in its domain.
func countTerm(t *term, nodes []Node, sign int) {
	for _, n := range nodes {
		d, ok := n.Name, true
		if t.key != v1.LabelHostname {
			d, ok = n.Labels[t.key]
		}
		if !ok {
			continue
		}
		for _, pod := range n.Pods {
			if t.matches(pod.Namespace, pod.Labels) {
				t.counts[d] += sign
				t.total += sign
			}
		}
	}
}

func (c *solveCache) base(n Node) *nodeBase {
	if c == nil {
		return readNode(n)
	}
	b, ok := c.nodes[n.Name]
	if !ok {
		b = readNode(n)
		c.nodes[n.Name] = b
	}
	return b
}

func registerPodTerm(terms *termRegistry, pod *corev1.Pod, t corev1.PodAffinityTerm) (int, error) {
	sel, err := selectorWithKeys(t.LabelSelector, t.MatchLabelKeys, pod.Labels)
	if err != nil {
		return 0, fmt.Errorf("pod affinity term on %s: %w", t.TopologyKey, err)
	}
	namespaces := t.Namespaces
	if len(namespaces) == 0 && t.NamespaceSelector == nil {
		namespaces = []string{pod.Namespace}
	}
	// A namespace selector ({} is every namespace) is read as "all
	// namespaces": the solver does not see namespace labels.
	return terms.register(t.TopologyKey, namespaces, sel), nil
}

// selectorWithKeys adds matchLabelKeys (key = the pod's own value) to a
// selector. A nil selector matches nothing, as in kube-scheduler.
func selectorWithKeys(ls *metav1.LabelSelector, keys []string, podLabels map[string]string) (labels.Selector, error) {
	if ls == nil {
		return labels.Nothing(), nil
	}
	ls = ls.DeepCopy()
	for _, k := range keys {
		if v, ok := podLabels[k]; ok {
			ls.MatchExpressions = append(ls.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: metav1.LabelSelectorOpIn, Values: []string{v}})
		}
	}
	return metav1.LabelSelectorAsSelector(ls)
}

// termRequirements intersects node selector expressions into base; nil means
// the expressions can never hold together.
func termRequirements(base requirements.Requirements, exprs []corev1.NodeSelectorRequirement) (requirements.Requirements, error) {
	out := copyReqs(base)
	for _, e := range exprs {
		r, err := requirements.New(e.Key, e.Operator, e.Values...)
		if err != nil {
			return nil, fmt.Errorf("node affinity: %w", err)
		}
		out.Add(r)
	}
	for _, r := range out {
		if r.IsEmpty() && !r.AllowsAbsent() {
			return nil, nil
		}
	}
	return out, nil
}

func copyReqs(in requirements.Requirements) requirements.Requirements {
	out := make(requirements.Requirements, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

// tolerates reports whether tolerations tolerate every NoSchedule and NoExecute
// taint; PreferNoSchedule never blocks.
func tolerates(tolerations []corev1.Toleration, taints []corev1.Taint) (corev1.Taint, bool) {
	for i := range taints {
		t := &taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		ok := false
		for j := range tolerations {
			if tolerations[j].ToleratesTaint(logr.Discard(), t, false) {
				ok = true
				break
			}
		}
		if !ok {
			return *t, false
		}
	}
	return corev1.Taint{}, true
}
