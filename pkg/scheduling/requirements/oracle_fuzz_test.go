package requirements

import (
	"math"
	"slices"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/nodewright/nodewright/apis/v1"
)

// oracle is what a node selector requirement means, written from the
// operator's definition with no shared code: whether a node whose label is
// value (present) satisfies op with values.
func oracle(op corev1.NodeSelectorOperator, values []string, value string) bool {
	bound := func(cmp func(v, n int64) bool) bool {
		v, err := strconv.ParseInt(value, 10, 64)
		n, nerr := strconv.ParseInt(values[0], 10, 64)
		return err == nil && nerr == nil && cmp(v, n)
	}
	switch op {
	case corev1.NodeSelectorOpIn:
		return slices.Contains(values, value)
	case corev1.NodeSelectorOpNotIn:
		return !slices.Contains(values, value)
	case corev1.NodeSelectorOpExists:
		return true
	case corev1.NodeSelectorOpDoesNotExist:
		return false
	case corev1.NodeSelectorOpGt:
		return bound(func(v, n int64) bool { return v > n })
	case corev1.NodeSelectorOpLt:
		return bound(func(v, n int64) bool { return v < n })
	case v1.NodeSelectorOpGte:
		return bound(func(v, n int64) bool { return v >= n })
	default: // Lte
		return bound(func(v, n int64) bool { return v <= n })
	}
}

// fuzzSide is one requirement from fuzz input: an operator, and either three
// free values (In, NotIn) or one integer anywhere in int64 (Gt, Lt, Gte,
// Lte), so the extremes are reached.
type fuzzSide struct {
	op     corev1.NodeSelectorOperator
	values []string
}

func newFuzzSide(op uint8, a, b, c string, n int64) fuzzSide {
	o := fuzzOps[int(op)%len(fuzzOps)]
	switch o {
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt, v1.NodeSelectorOpGte, v1.NodeSelectorOpLte:
		return fuzzSide{o, []string{strconv.FormatInt(n, 10)}}
	case corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn:
		return fuzzSide{o, []string{a, b, c}}
	}
	return fuzzSide{op: o}
}

// probes are values worth asking about: the sides' own values, integers
// around each bound, the int64 extremes and a word.
func probes(sides ...fuzzSide) []string {
	out := []string{"0", "1", "-1", "x", strconv.FormatInt(math.MaxInt64, 10), strconv.FormatInt(math.MinInt64, 10)}
	for _, s := range sides {
		for _, v := range s.values {
			out = append(out, v)
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				if n > math.MinInt64 {
					out = append(out, strconv.FormatInt(n-1, 10))
				}
				if n < math.MaxInt64 {
					out = append(out, strconv.FormatInt(n+1, 10))
				}
			}
		}
	}
	return out
}

// FuzzRequirementsAgainstTheirMeaning: a requirement, and the intersection
// of two, allow exactly the values the operators' definitions allow, for
// values anywhere in int64 and any words; IsEmpty is true exactly when no
// value is allowed (Any finds one otherwise); writing a requirement back as
// NodePool requirements and reading it again changes nothing. Mutations
// tried, each the code before its seed: Gte/Lte turned into an exclusive
// bound without a range check (Gte the smallest int64 wrapped round to allow
// nothing); IsEmpty looking only at the width of a range (Gt 1, Lt 3, NotIn
// 2 said non-empty; so did Gt the largest int64 and Lt the smallest).
func FuzzRequirementsAgainstTheirMeaning(f *testing.F) {
	for op1 := range uint8(8) {
		f.Add(op1, "a", "b", "7", int64(3), uint8(7-op1), "b", "c", "3", int64(5))
	}
	f.Add(uint8(6), "", "", "", int64(math.MinInt64), uint8(0), "1", "2", "3", int64(0)) // Gte the smallest int64
	f.Add(uint8(7), "", "", "", int64(math.MaxInt64), uint8(0), "1", "2", "3", int64(0)) // Lte the largest
	f.Add(uint8(4), "", "", "", int64(1), uint8(5), "2", "", "", int64(3))               // Gt 1, Lt 3, NotIn 2: nothing
	f.Add(uint8(4), "", "", "", int64(math.MaxInt64), uint8(0), "", "", "", int64(0))    // Gt the largest: nothing
	f.Add(uint8(5), "", "", "", int64(math.MinInt64), uint8(0), "", "", "", int64(0))    // Lt the smallest: nothing
	f.Fuzz(func(t *testing.T, op1 uint8, a1, b1, c1 string, n1 int64, op2 uint8, a2, b2, c2 string, n2 int64) {
		x, y := newFuzzSide(op1, a1, b1, c1, n1), newFuzzSide(op2, a2, b2, c2, n2)
		rx, errx := New("k", x.op, x.values...)
		ry, erry := New("k", y.op, y.values...)
		for _, s := range []struct {
			side fuzzSide
			err  error
		}{{x, errx}, {y, erry}} {
			// Only the inclusive ends of int64 are refused: every integer
			// is at least the smallest, and the exclusive bound kept
			// inside would wrap around.
			extreme := s.side.op == v1.NodeSelectorOpGte && s.side.values[0] == strconv.FormatInt(math.MinInt64, 10) ||
				s.side.op == v1.NodeSelectorOpLte && s.side.values[0] == strconv.FormatInt(math.MaxInt64, 10)
			if (s.err != nil) != extreme {
				t.Fatalf("%s %q: error %v", s.side.op, s.side.values, s.err)
			}
			if extreme {
				return
			}
		}
		// A third side narrows the intersection to a bounded range with
		// holes, where emptiness is hardest to see.
		rz := MustNew("k", corev1.NodeSelectorOpNotIn, a2, b2, c2)
		all := rx.Intersect(ry)
		holes := all.Intersect(rz)
		for _, v := range probes(x, y) {
			if got, want := rx.Has(v), oracle(x.op, x.values, v); got != want {
				t.Fatalf("%s %q: Has(%q) = %v, want %v", x.op, x.values, v, got, want)
			}
			want := oracle(x.op, x.values, v) && oracle(y.op, y.values, v)
			if all.Has(v) != want {
				t.Fatalf("%s %q ∩ %s %q = %s: Has(%q) = %v, want %v", x.op, x.values, y.op, y.values, all, v, all.Has(v), want)
			}
			if holes.Has(v) != (want && !slices.Contains([]string{a2, b2, c2}, v)) {
				t.Fatalf("%s ∩ NotIn %q = %s: Has(%q) = %v", all, []string{a2, b2, c2}, holes, v, holes.Has(v))
			}
		}
		for _, r := range []*Requirement{rx, ry, all, holes} {
			v, ok := r.Any()
			if ok == r.IsEmpty() || ok && !r.Has(v) {
				t.Fatalf("%s: IsEmpty %v, Any() = %q, %v (allowed: %v)", r, r.IsEmpty(), v, ok, ok && r.Has(v))
			}
			back, err := FromNodePool(r.NodeSelectorRequirements())
			if err != nil {
				t.Fatalf("%s written back as %v does not read: %v", r, r.NodeSelectorRequirements(), err)
			}
			rb := back["k"]
			if rb == nil {
				t.Fatalf("%s written back as nothing", r)
			}
			if rb.AllowsAbsent() != r.AllowsAbsent() {
				t.Fatalf("%s written back as %v: AllowsAbsent %v, was %v", r, r.NodeSelectorRequirements(), rb.AllowsAbsent(), r.AllowsAbsent())
			}
			for _, v := range probes(x, y) {
				if rb.Has(v) != r.Has(v) {
					t.Fatalf("%s written back as %v: Has(%q) %v, was %v", r, r.NodeSelectorRequirements(), v, rb.Has(v), r.Has(v))
				}
			}
		}
	})
}
