package scheduling

import (
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
)

var fuzzOps = []corev1.NodeSelectorOperator{
	corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn, corev1.NodeSelectorOpExists, corev1.NodeSelectorOpDoesNotExist,
	corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt, v1.NodeSelectorOpGte, v1.NodeSelectorOpLte,
}

// fuzzReqs builds requirements on keys "a" and "b" from fuzz input; a key
// whose operator byte is 255 is left out, so keys only one side
// constrains occur too. Values come from a small universe so the sides
// meet often; integers span a range where bounds and exclusions collide.
func fuzzReqs(ops [2]uint8, vals [2][2]int8) requirements.Requirements {
	out := requirements.Requirements{}
	for i, key := range []string{"a", "b"} {
		if ops[i] == 255 {
			continue
		}
		op := fuzzOps[int(ops[i])%len(fuzzOps)]
		word := func(x int8) string {
			if x < 0 {
				return []string{"x", "y", "z"}[int(-x)%3]
			}
			return strconv.Itoa(int(x) % 6)
		}
		var values []string
		switch op {
		case corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn:
			values = []string{word(vals[i][0]), word(vals[i][1])}
		case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt, v1.NodeSelectorOpGte, v1.NodeSelectorOpLte:
			values = []string{strconv.Itoa(int(vals[i][0]) % 6)}
		}
		out.Add(requirements.MustNew(key, op, values...))
	}
	return out
}

// FuzzCompatible: compatible is symmetric, and says yes exactly when every
// key both sides constrain has a value both allow, or both allow the key to
// be absent. The witness is looked for among all values of the universe,
// independently of IsEmpty and Intersect, which compatible uses. Mutation
// tried: compatible ignoring that both sides allow the key to be absent
// fails the two-DoesNotExist seed.
func FuzzCompatible(f *testing.F) {
	for op := range uint8(8) {
		f.Add(op, uint8(7-op), int8(1), int8(-1), int8(3), int8(2), uint8(255), op, int8(2), int8(4), int8(0), int8(-2))
	}
	f.Add(uint8(3), uint8(255), int8(0), int8(0), int8(0), int8(0), uint8(3), uint8(255), int8(0), int8(0), int8(0), int8(0))     // both DoesNotExist
	f.Add(uint8(1), uint8(255), int8(-1), int8(-1), int8(0), int8(0), uint8(0), uint8(255), int8(-1), int8(-1), int8(0), int8(0)) // NotIn y, In y
	f.Add(uint8(4), uint8(255), int8(1), int8(0), int8(0), int8(0), uint8(5), uint8(255), int8(3), int8(0), int8(0), int8(0))     // Gt 1, Lt 3: only 2
	f.Fuzz(func(t *testing.T, wa, wb uint8, wa0, wa1, wb0, wb1 int8, na, nb uint8, na0, na1, nb0, nb1 int8) {
		want := fuzzReqs([2]uint8{wa, wb}, [2][2]int8{{wa0, wa1}, {wb0, wb1}})
		node := fuzzReqs([2]uint8{na, nb}, [2][2]int8{{na0, na1}, {nb0, nb1}})
		got := compatible(want, node)
		if got != compatible(node, want) {
			t.Fatalf("compatible not symmetric: %s / %s", describeReqs(want), describeReqs(node))
		}
		// Bounds lie in [-5, 5] and at most four values are excluded, so
		// a non-empty side allows something in [-10, 10].
		universe := []string{"x", "y", "z", "w"}
		for i := -10; i <= 10; i++ {
			universe = append(universe, strconv.Itoa(i))
		}
		meet := true
		for key, w := range want {
			n, ok := node[key]
			if !ok {
				continue
			}
			common := w.AllowsAbsent() && n.AllowsAbsent()
			for _, v := range universe {
				common = common || w.Has(v) && n.Has(v)
			}
			meet = meet && common
		}
		if got != meet {
			t.Fatalf("compatible(%s, %s) = %v, but a common value or absence exists: %v", describeReqs(want), describeReqs(node), got, meet)
		}
	})
}
