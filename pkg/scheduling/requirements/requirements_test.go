package requirements

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/nodewright/nodewright/apis/v1"
)

func TestHasAndAbsence(t *testing.T) {
	for _, tc := range []struct {
		op          corev1.NodeSelectorOperator
		values      []string
		in, out     []string
		allowAbsent bool
	}{
		{corev1.NodeSelectorOpIn, []string{"a", "b"}, []string{"a", "b"}, []string{"c"}, false},
		{corev1.NodeSelectorOpNotIn, []string{"a"}, []string{"b", "z"}, []string{"a"}, true},
		{corev1.NodeSelectorOpExists, nil, []string{"a", "1"}, nil, false},
		{corev1.NodeSelectorOpDoesNotExist, nil, nil, []string{"a"}, true},
		{corev1.NodeSelectorOpGt, []string{"4"}, []string{"5", "100"}, []string{"4", "3", "x"}, false},
		{corev1.NodeSelectorOpLt, []string{"4"}, []string{"3", "-1"}, []string{"4", "5"}, false},
		{v1.NodeSelectorOpGte, []string{"4"}, []string{"4", "5"}, []string{"3"}, false},
		{v1.NodeSelectorOpLte, []string{"4"}, []string{"4", "3"}, []string{"5"}, false},
	} {
		r := MustNew("k", tc.op, tc.values...)
		for _, v := range tc.in {
			if !r.Has(v) {
				t.Errorf("%s %v must allow %q", tc.op, tc.values, v)
			}
		}
		for _, v := range tc.out {
			if r.Has(v) {
				t.Errorf("%s %v must not allow %q", tc.op, tc.values, v)
			}
		}
		if r.AllowsAbsent() != tc.allowAbsent {
			t.Errorf("%s: AllowsAbsent = %v", tc.op, r.AllowsAbsent())
		}
	}
}

func TestIntersect(t *testing.T) {
	in := MustNew("k", corev1.NodeSelectorOpIn, "1", "2", "3", "8")
	notIn := MustNew("k", corev1.NodeSelectorOpNotIn, "2")
	gt := MustNew("k", corev1.NodeSelectorOpGt, "1")
	lt := MustNew("k", corev1.NodeSelectorOpLt, "5")
	got := in.Intersect(notIn).Intersect(gt).Intersect(lt)
	if vals := got.Values(); len(vals) != 1 || vals[0] != "3" || got.Operator() != corev1.NodeSelectorOpIn {
		t.Errorf("In[1 2 3 8] ∩ NotIn[2] ∩ >1 ∩ <5 = %s, want In [3]", got)
	}
	if !gt.Intersect(MustNew("k", corev1.NodeSelectorOpLt, "2")).IsEmpty() {
		t.Error(">1 ∩ <2 must be empty over integers")
	}
	if got := notIn.Intersect(MustNew("k", corev1.NodeSelectorOpNotIn, "3")); got.Has("2") || got.Has("3") || !got.Has("4") {
		t.Errorf("NotIn[2] ∩ NotIn[3] = %s", got)
	}
	if _, err := New("k", corev1.NodeSelectorOpGt, "four"); err == nil {
		t.Error("Gt with a non-integer accepted")
	}
}

func TestRequirementsMatchesLabels(t *testing.T) {
	rs := Requirements{}
	rs.Add(MustNew("zone", corev1.NodeSelectorOpIn, "a", "b"))
	rs.Add(MustNew("zone", corev1.NodeSelectorOpNotIn, "b"))
	rs.Add(MustNew("gpu", corev1.NodeSelectorOpDoesNotExist))
	if !rs.Matches(map[string]string{"zone": "a"}) {
		t.Error("zone=a must match")
	}
	if rs.Matches(map[string]string{"zone": "b"}) || rs.Matches(map[string]string{"zone": "a", "gpu": "1"}) || rs.Matches(nil) {
		t.Error("zone=b, a GPU, or no zone must not match")
	}
}

// Writing requirements back and reading them again must give the same sets.
func TestNodeSelectorRequirementsRoundTrip(t *testing.T) {
	cases := [][]v1.NodeSelectorRequirementWithMinValues{
		{{Key: "a", Operator: corev1.NodeSelectorOpIn, Values: []string{"x", "y"}, MinValues: ptrInt(2)}},
		{{Key: "a", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"x"}}},
		{{Key: "a", Operator: corev1.NodeSelectorOpExists}, {Key: "a", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"x"}}},
		{{Key: "a", Operator: corev1.NodeSelectorOpDoesNotExist}},
		{{Key: "n", Operator: corev1.NodeSelectorOpGt, Values: []string{"4"}}, {Key: "n", Operator: corev1.NodeSelectorOpLt, Values: []string{"9"}}},
		{{Key: "n", Operator: corev1.NodeSelectorOpGt, Values: []string{"4"}}, {Key: "n", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"6"}}},
	}
	probe := []string{"", "x", "y", "z", "3", "5", "6", "8", "9", "10"}
	for i, in := range cases {
		want, err := FromNodePool(in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := FromNodePool(want.NodeSelectorRequirements())
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		for _, v := range probe {
			labels := map[string]string{}
			if v != "" {
				labels["a"], labels["n"] = v, v
			}
			if want.Matches(labels) != got.Matches(labels) {
				t.Errorf("case %d: %v and its round trip %v disagree on %q", i, in, want.NodeSelectorRequirements(), v)
			}
		}
		if in[0].MinValues != nil && (got["a"].MinValues == nil || *got["a"].MinValues != *in[0].MinValues) {
			t.Errorf("case %d: minValues lost", i)
		}
	}
}

func ptrInt(n int) *int { return &n }

// Any picks a value the requirement allows, the same every time, or says
// there is none.
func TestAny(t *testing.T) {
	for _, tc := range []struct {
		name string
		reqs []*Requirement
		want string
		ok   bool
	}{
		{"In picks the smallest", []*Requirement{MustNew("k", corev1.NodeSelectorOpIn, "b", "a")}, "a", true},
		{"Exists", []*Requirement{MustNew("k", corev1.NodeSelectorOpExists)}, "0", true},
		{"Exists NotIn", []*Requirement{MustNew("k", corev1.NodeSelectorOpExists), MustNew("k", corev1.NodeSelectorOpNotIn, "0", "1")}, "2", true},
		{"Gt", []*Requirement{MustNew("k", corev1.NodeSelectorOpGt, "7")}, "8", true},
		{"Gt Lt NotIn", []*Requirement{MustNew("k", corev1.NodeSelectorOpGt, "7"), MustNew("k", corev1.NodeSelectorOpLt, "10"), MustNew("k", corev1.NodeSelectorOpNotIn, "8")}, "9", true},
		{"Lt negative", []*Requirement{MustNew("k", corev1.NodeSelectorOpLt, "-3")}, "-4", true},
		{"Gt Lt empty", []*Requirement{MustNew("k", corev1.NodeSelectorOpGt, "7"), MustNew("k", corev1.NodeSelectorOpLt, "9"), MustNew("k", corev1.NodeSelectorOpNotIn, "8")}, "", false},
		{"In emptied", []*Requirement{MustNew("k", corev1.NodeSelectorOpIn, "a"), MustNew("k", corev1.NodeSelectorOpNotIn, "a")}, "", false},
	} {
		rs := Requirements{}
		for _, r := range tc.reqs {
			rs.Add(r)
		}
		got, ok := rs["k"].Any()
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: Any() = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
		if ok && !rs["k"].Has(got) {
			t.Errorf("%s: %q is not allowed by %s", tc.name, got, rs["k"])
		}
	}
}

// TestDeprecatedKeysAreNormalized: the beta keys and the EBS CSI zone key are
// read as their stable keys, so they narrow the catalog (fails without the
// NormalizedLabels lookup in New: the key stays beta; tried).
func TestDeprecatedKeysAreNormalized(t *testing.T) {
	for from, to := range map[string]string{
		"beta.kubernetes.io/arch":                  corev1.LabelArchStable,
		"beta.kubernetes.io/os":                    corev1.LabelOSStable,
		"beta.kubernetes.io/instance-type":         corev1.LabelInstanceTypeStable,
		"failure-domain.beta.kubernetes.io/zone":   corev1.LabelTopologyZone,
		"failure-domain.beta.kubernetes.io/region": corev1.LabelTopologyRegion,
		"topology.ebs.csi.aws.com/zone":            corev1.LabelTopologyZone,
		"example.com/team":                         "example.com/team",
	} {
		if r := MustNew(from, corev1.NodeSelectorOpIn, "x"); r.Key != to {
			t.Errorf("%s became %s, want %s", from, r.Key, to)
		}
	}
	reqs, err := FromNodePool([]v1.NodeSelectorRequirementWithMinValues{
		{Key: "failure-domain.beta.kubernetes.io/zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"us-east-1a", "us-east-1b"}},
		{Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"us-east-1b", "us-east-1c"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 1 || !reqs[corev1.LabelTopologyZone].Has("us-east-1b") || reqs[corev1.LabelTopologyZone].Len() != 1 {
		t.Errorf("beta and stable zone requirements should intersect to us-east-1b, got %v", reqs)
	}
}
