package requirements

import (
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/nodewright/nodewright/apis/v1"
)

var fuzzOps = []corev1.NodeSelectorOperator{
	corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn, corev1.NodeSelectorOpExists, corev1.NodeSelectorOpDoesNotExist,
	corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt, v1.NodeSelectorOpGte, v1.NodeSelectorOpLte,
}

// fuzzRequirement builds a requirement from fuzz bytes: an operator and up to
// three values drawn from a small universe of words and integers, so the two
// sides overlap often enough to be interesting.
func fuzzRequirement(op uint8, a, b, c int8) *Requirement {
	universe := func(x int8) string {
		if x < 0 {
			return []string{"a", "b", "c", "m5", "spot"}[int(-x)%5]
		}
		return strconv.Itoa(int(x) % 20)
	}
	o := fuzzOps[int(op)%len(fuzzOps)]
	var values []string
	switch o {
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt, v1.NodeSelectorOpGte, v1.NodeSelectorOpLte:
		values = []string{strconv.Itoa(int(a) % 20)}
	case corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn:
		values = []string{universe(a), universe(b), universe(c)}
	}
	r, err := New("k", o, values...)
	if err != nil {
		panic(err)
	}
	return r
}

// FuzzIntersect: intersection is commutative, never admits a value either side
// excludes, and keeps every value both admit; the same holds for a missing key.
func FuzzIntersect(f *testing.F) {
	for op1 := range uint8(8) {
		for op2 := range uint8(8) {
			f.Add(op1, int8(3), int8(-1), int8(7), op2, int8(5), int8(-2), int8(3))
		}
	}
	f.Fuzz(func(t *testing.T, op1 uint8, a1, b1, c1 int8, op2 uint8, a2, b2, c2 int8) {
		x, y := fuzzRequirement(op1, a1, b1, c1), fuzzRequirement(op2, a2, b2, c2)
		xy, yx := x.Intersect(y), y.Intersect(x)
		probes := []string{"a", "b", "c", "m5", "spot", "zz", "-1"}
		for i := range 21 {
			probes = append(probes, strconv.Itoa(i))
		}
		for _, v := range probes {
			both := x.Has(v) && y.Has(v)
			if xy.Has(v) != yx.Has(v) {
				t.Fatalf("%s ∩ %s not commutative at %q", x, y, v)
			}
			if xy.Has(v) != both {
				t.Fatalf("(%s) ∩ (%s) = %s: Has(%q) = %v, but the sides say %v and %v", x, y, xy, v, xy.Has(v), x.Has(v), y.Has(v))
			}
		}
		if xy.AllowsAbsent() && !(x.AllowsAbsent() && y.AllowsAbsent()) {
			t.Fatalf("%s ∩ %s allows a missing key that a side does not", x, y)
		}
	})
}
