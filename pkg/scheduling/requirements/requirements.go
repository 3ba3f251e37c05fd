// Package requirements is the algebra of node selector requirements: the label
// constraints of NodePools, pods and instance types, with Karpenter's extensions
// (Gte, Lte, minValues). A Requirement is a set of allowed values for one key,
// kept in a form where intersection is cheap, so the catalog filter and the
// solver can combine constraints millions of times per plan.
package requirements

import (
	"cmp"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	v1 "github.com/nodewright/nodewright/apis/v1"
)

// NormalizedLabels maps deprecated label keys that mean the same thing as a
// well-known key to that key: the beta Kubernetes labels that kubelets still
// set, and the EBS CSI driver's zone key that PV node affinity and
// StorageClass allowedTopologies use. Karpenter normalizes the same keys.
var NormalizedLabels = map[string]string{
	corev1.LabelFailureDomainBetaZone:   corev1.LabelTopologyZone,
	corev1.LabelFailureDomainBetaRegion: corev1.LabelTopologyRegion,
	"beta.kubernetes.io/arch":           corev1.LabelArchStable,
	"beta.kubernetes.io/os":             corev1.LabelOSStable,
	corev1.LabelInstanceType:            corev1.LabelInstanceTypeStable,
	"topology.ebs.csi.aws.com/zone":     corev1.LabelTopologyZone,
}

// Requirement is the set of values one label key may take. The set is either
// Values (complement false) or everything but Values (complement true), further
// narrowed to integers in (greaterThan, lessThan) when those are set.
// Whether a node without the key satisfies it is kept apart (absentOK): an
// impossible In [] and DoesNotExist have the same (empty) value set but differ
// exactly there.
type Requirement struct {
	Key         string
	complement  bool
	absentOK    bool
	values      sets.Set[string]
	greaterThan *int64
	lessThan    *int64
	// MinValues asks for at least this many distinct values of Key among the
	// instance types a node may launch as.
	MinValues *int
}

// New builds a requirement from an operator and values, as written in a
// NodePool or a pod's node affinity. A deprecated alias key (see
// NormalizedLabels) becomes its stable key, as in Karpenter: the catalog and
// the solver know the stable keys only, and a pod selecting
// beta.kubernetes.io/arch would otherwise get a node labelled with it but of
// any architecture.
func New(key string, op corev1.NodeSelectorOperator, values ...string) (*Requirement, error) {
	if stable, ok := NormalizedLabels[key]; ok {
		key = stable
	}
	r := &Requirement{Key: key, values: sets.New[string]()}
	switch op {
	case corev1.NodeSelectorOpIn:
		r.values.Insert(values...)
	case corev1.NodeSelectorOpNotIn:
		r.complement = true
		r.absentOK = true
		r.values.Insert(values...)
	case corev1.NodeSelectorOpExists:
		r.complement = true
	case corev1.NodeSelectorOpDoesNotExist:
		r.absentOK = true
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt, v1.NodeSelectorOpGte, v1.NodeSelectorOpLte:
		if len(values) != 1 {
			return nil, fmt.Errorf("requirement %s %s needs exactly one integer value, got %d", key, op, len(values))
		}
		n, err := strconv.ParseInt(values[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("requirement %s %s: %q is not an integer", key, op, values[0])
		}
		r.complement = true
		// Bounds are kept exclusive; the inclusive ends of int64 have no
		// exclusive form, and would wrap around to allow nothing.
		if op == v1.NodeSelectorOpGte && n == math.MinInt64 || op == v1.NodeSelectorOpLte && n == math.MaxInt64 {
			return nil, fmt.Errorf("requirement %s %s %d: out of range, every integer is; use Exists", key, op, n)
		}
		switch op {
		case corev1.NodeSelectorOpGt:
			r.greaterThan = &n
		case v1.NodeSelectorOpGte:
			n--
			r.greaterThan = &n
		case corev1.NodeSelectorOpLt:
			r.lessThan = &n
		case v1.NodeSelectorOpLte:
			n++
			r.lessThan = &n
		}
	default:
		return nil, fmt.Errorf("requirement %s: unknown operator %q", key, op)
	}
	return r, nil
}

// MustNew is New for constants and tests.
func MustNew(key string, op corev1.NodeSelectorOperator, values ...string) *Requirement {
	r, err := New(key, op, values...)
	if err != nil {
		panic(err)
	}
	return r
}

// Has reports whether value is allowed.
func (r *Requirement) Has(value string) bool {
	if r.greaterThan != nil || r.lessThan != nil {
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return false
		}
		if (r.greaterThan != nil && n <= *r.greaterThan) || (r.lessThan != nil && n >= *r.lessThan) {
			return false
		}
	}
	return r.complement != r.values.Has(value)
}

// AllowsAbsent reports whether a node without the key satisfies the
// requirement: NotIn and DoesNotExist do, In, Exists, Gt and Lt do not.
func (r *Requirement) AllowsAbsent() bool { return r.absentOK }

// Operator returns the operator the requirement is equivalent to.
func (r *Requirement) Operator() corev1.NodeSelectorOperator {
	switch {
	case r.greaterThan != nil || r.lessThan != nil:
		return corev1.NodeSelectorOpGt // a bounded range; see String
	case r.complement && r.values.Len() == 0:
		return corev1.NodeSelectorOpExists
	case r.complement:
		return corev1.NodeSelectorOpNotIn
	case r.values.Len() == 0 && r.absentOK:
		return corev1.NodeSelectorOpDoesNotExist
	default:
		return corev1.NodeSelectorOpIn
	}
}

// Values returns the listed values, sorted: the allowed ones for In, the
// excluded ones for NotIn.
func (r *Requirement) Values() []string { return sets.List(r.values) }

// Len is the number of allowed values, or math.MaxInt for an open set.
func (r *Requirement) Len() int {
	if r.complement {
		return math.MaxInt
	}
	return r.values.Len()
}

// Intersect returns the values allowed by both r and other (same key).
func (r *Requirement) Intersect(other *Requirement) *Requirement {
	out := &Requirement{Key: r.Key, greaterThan: maxPtr(r.greaterThan, other.greaterThan), lessThan: minPtr(r.lessThan, other.lessThan),
		absentOK: r.absentOK && other.absentOK}
	switch {
	case r.complement && other.complement:
		out.complement = true
		out.values = r.values.Union(other.values)
	case r.complement:
		out.values = other.values.Difference(r.values)
	case other.complement:
		out.values = r.values.Difference(other.values)
	default:
		out.values = r.values.Intersection(other.values)
	}
	// A bounded finite set keeps only the values inside the bounds.
	if !out.complement && (out.greaterThan != nil || out.lessThan != nil) {
		for v := range out.values {
			if !out.withinBounds(v) {
				out.values.Delete(v)
			}
		}
		out.greaterThan, out.lessThan = nil, nil
	}
	out.MinValues = maxPtr(r.MinValues, other.MinValues)
	return out
}

// IsEmpty reports whether no value is allowed (the key may still be absent, see
// AllowsAbsent). A range is empty when every integer in it is excluded
// (Gt 1, Lt 3, NotIn 2) or it lies past the ends of int64.
func (r *Requirement) IsEmpty() bool {
	if !r.complement {
		return r.values.Len() == 0
	}
	if r.greaterThan == nil && r.lessThan == nil {
		return false // infinitely many values, finitely many excluded
	}
	_, ok := r.Any()
	return !ok
}

func (r *Requirement) withinBounds(v string) bool {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return false
	}
	return (r.greaterThan == nil || n > *r.greaterThan) && (r.lessThan == nil || n < *r.lessThan)
}

// String renders the requirement for messages, e.g. `zone In [a b]`.
func (r *Requirement) String() string {
	var b strings.Builder
	b.WriteString(r.Key)
	switch op := r.Operator(); op {
	case corev1.NodeSelectorOpGt:
		if r.greaterThan != nil {
			fmt.Fprintf(&b, " >%d", *r.greaterThan)
		}
		if r.lessThan != nil {
			fmt.Fprintf(&b, " <%d", *r.lessThan)
		}
		if r.values.Len() > 0 {
			fmt.Fprintf(&b, " NotIn [%s]", strings.Join(r.Values(), " "))
		}
	case corev1.NodeSelectorOpExists, corev1.NodeSelectorOpDoesNotExist:
		b.WriteString(" " + string(op))
	default:
		vals := r.Values()
		if len(vals) > 5 {
			vals = append(vals[:5], fmt.Sprintf("and %d more", r.values.Len()-5))
		}
		fmt.Fprintf(&b, " %s [%s]", op, strings.Join(vals, " "))
	}
	return b.String()
}

// Any returns one value a node's label may take to satisfy r, chosen
// without randomness so that a plan is repeatable: the smallest listed value
// of In; for an open set (Exists, NotIn with Exists, Gt, Lt) the smallest
// integer it allows, counting up from 0 or from its lower bound. ok is false
// when no value is allowed.
func (r *Requirement) Any() (string, bool) {
	if !r.complement {
		if r.values.Len() == 0 {
			return "", false
		}
		return r.Values()[0], true
	}
	from, n := int64(0), int64(r.values.Len())
	switch {
	case r.greaterThan != nil && *r.greaterThan == math.MaxInt64:
		return "", false
	case r.greaterThan != nil:
		from = *r.greaterThan + 1
	case r.lessThan != nil && *r.lessThan <= n:
		// The n+1 integers just below the bound, or as many as int64 has.
		from = math.MinInt64
		if *r.lessThan > math.MinInt64+n+1 {
			from = *r.lessThan - 1 - n
		}
	}
	// At most len(values)+1 candidates are needed: each excluded value
	// rules out one.
	for v, n := from, 0; n <= r.values.Len(); v, n = v+1, n+1 {
		if r.lessThan != nil && v >= *r.lessThan {
			break
		}
		if s := strconv.FormatInt(v, 10); r.Has(s) {
			return s, true
		}
	}
	return "", false
}

// Requirements are requirements on distinct keys, all of which must hold.
type Requirements map[string]*Requirement

// FromNodePool converts a NodePool's or NodeClaim's requirements, intersecting
// repeated keys.
func FromNodePool(in []v1.NodeSelectorRequirementWithMinValues) (Requirements, error) {
	out := Requirements{}
	for _, req := range in {
		r, err := New(req.Key, req.Operator, req.Values...)
		if err != nil {
			return nil, err
		}
		r.MinValues = req.MinValues
		out.Add(r)
	}
	return out, nil
}

// Add intersects r into the set.
func (rs Requirements) Add(r *Requirement) {
	if existing, ok := rs[r.Key]; ok {
		rs[r.Key] = existing.Intersect(r)
		return
	}
	rs[r.Key] = r
}

// Keys returns the keys, sorted, for deterministic iteration.
func (rs Requirements) Keys() []string {
	keys := make([]string, 0, len(rs))
	for k := range rs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Matches reports whether a node with these labels satisfies every requirement.
func (rs Requirements) Matches(labels map[string]string) bool {
	for key, r := range rs {
		v, ok := labels[key]
		if !ok {
			if !r.AllowsAbsent() {
				return false
			}
			continue
		}
		if !r.Has(v) {
			return false
		}
	}
	return true
}

// maxPtr and minPtr pick the tighter of two optional bounds.
func maxPtr[T cmp.Ordered](a, b *T) *T {
	if a == nil || (b != nil && *b > *a) {
		return b
	}
	return a
}

func minPtr[T cmp.Ordered](a, b *T) *T {
	if a == nil || (b != nil && *b < *a) {
		return b
	}
	return a
}

// NodeSelectorRequirements writes the requirement back in the NodePool and
// NodeClaim form, so a planned claim carries exactly what the plan allowed.
func (r *Requirement) NodeSelectorRequirements() []v1.NodeSelectorRequirementWithMinValues {
	out := func(op corev1.NodeSelectorOperator, values ...string) v1.NodeSelectorRequirementWithMinValues {
		return v1.NodeSelectorRequirementWithMinValues{Key: r.Key, Operator: op, Values: values, MinValues: r.MinValues}
	}
	var list []v1.NodeSelectorRequirementWithMinValues
	if !r.complement {
		if r.values.Len() == 0 && r.absentOK {
			return append(list, out(corev1.NodeSelectorOpDoesNotExist))
		}
		return append(list, out(corev1.NodeSelectorOpIn, r.Values()...))
	}
	if r.greaterThan != nil {
		list = append(list, out(corev1.NodeSelectorOpGt, strconv.FormatInt(*r.greaterThan, 10)))
	}
	if r.lessThan != nil {
		list = append(list, out(corev1.NodeSelectorOpLt, strconv.FormatInt(*r.lessThan, 10)))
	}
	if r.values.Len() > 0 {
		list = append(list, out(corev1.NodeSelectorOpNotIn, r.Values()...))
	}
	// Gt and Lt already need the key; NotIn alone would allow its absence.
	if !r.absentOK && r.greaterThan == nil && r.lessThan == nil {
		list = append(list, out(corev1.NodeSelectorOpExists))
	}
	return list
}

// NodeSelectorRequirements writes every requirement back, sorted by key.
func (rs Requirements) NodeSelectorRequirements() []v1.NodeSelectorRequirementWithMinValues {
	var out []v1.NodeSelectorRequirementWithMinValues
	for _, k := range rs.Keys() {
		out = append(out, rs[k].NodeSelectorRequirements()...)
	}
	return out
}
