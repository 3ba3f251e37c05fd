package v1

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
)

func TestNillableDurationRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		in    string
		never bool
		d     time.Duration
	}{
		{in: `"30s"`, d: 30 * time.Second},
		{in: `"1h"`, d: time.Hour},
		{in: `"1h30m"`, d: 90 * time.Minute},
		{in: `"Never"`, never: true},
	} {
		var d NillableDuration
		if err := json.Unmarshal([]byte(tc.in), &d); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if d.IsNever() != tc.never {
			t.Errorf("%s: IsNever = %v", tc.in, d.IsNever())
		}
		if !tc.never && (d.Duration == nil || *d.Duration != tc.d) {
			t.Errorf("%s: duration = %v, want %v", tc.in, d.Duration, tc.d)
		}
		out, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != tc.in {
			t.Errorf("marshal of %s = %s: the user's text must come back unchanged", tc.in, out)
		}
	}
}

// Garbage decodes (an informer must not fail on one stored object) into a
// value whose Err names the problem, and is written back unchanged.
func TestNillableDurationGarbageDecodesInvalid(t *testing.T) {
	for _, in := range []string{`"soon"`, `30`, `"1d"`, `"9999999h"`} {
		var d NillableDuration
		if err := json.Unmarshal([]byte(in), &d); err != nil {
			t.Errorf("%s: decoding failed: %v", in, err)
			continue
		}
		if d.Err() == nil || d.Duration != nil || d.IsNever() || d.IsZero() {
			t.Errorf("%s: decoded as valid: %+v", in, d)
		}
	}
	var d NillableDuration
	_ = json.Unmarshal([]byte(`"9999999h"`), &d)
	if out, _ := json.Marshal(d); string(out) != `"9999999h"` {
		t.Errorf("an invalid value is written back as %s", out)
	}
}

// An unset duration is left out of the JSON, so the CRD default applies.
func TestUnsetDurationIsOmitted(t *testing.T) {
	b, err := json.Marshal(NodeClaimSpec{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "expireAfter") {
		t.Errorf("an unset expireAfter is sent: %s", b)
	}
	b, err = json.Marshal(NodeClaimSpec{ExpireAfter: MustParseNillableDuration("Never")})
	if err != nil || !strings.Contains(string(b), `"expireAfter":"Never"`) {
		t.Errorf("Never is not sent: %s %v", b, err)
	}
}

// The largest duration Go holds decodes; one hour more does not.
func TestDurationBounds(t *testing.T) {
	for in, ok := range map[string]bool{`"2562047h"`: true, `"2562048h"`: false, `"1h30m"`: true, `"90"`: false} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if (d.Err() == nil) != ok {
			t.Errorf("%s: Err = %v, want valid %v", in, d.Err(), ok)
		}
		if out, _ := json.Marshal(d); string(out) != in {
			t.Errorf("%s written back as %s", in, out)
		}
	}
}

// A NodePool list with one NodePool whose durations overflow decodes whole,
// through the same codec the informer uses, and the bad pool names each bad
// field. Mutation tried: NillableDuration.UnmarshalJSON returning the parse
// error (the code before this test) makes the whole list fail to decode with
// "invalid duration", which is what blinded the controller to every NodePool.
func TestNodePoolListWithAnOverflowingDurationDecodes(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	list := `{"apiVersion":"karpenter.sh/v1","kind":"NodePoolList","metadata":{},"items":[
	 {"apiVersion":"karpenter.sh/v1","kind":"NodePool","metadata":{"name":"good"},"spec":{"template":{"spec":{"expireAfter":"720h","requirements":[],"nodeClassRef":{"group":"karpenter.k8s.aws","kind":"EC2NodeClass","name":"default"}}},"disruption":{"consolidateAfter":"0s"}}},
	 {"apiVersion":"karpenter.sh/v1","kind":"NodePool","metadata":{"name":"bad"},"spec":{"template":{"spec":{"expireAfter":"9999999h","terminationGracePeriod":"99999999999h","requirements":[],"nodeClassRef":{"group":"karpenter.k8s.aws","kind":"EC2NodeClass","name":"default"}}},
	  "disruption":{"consolidateAfter":"3000000h","budgets":[{"nodes":"10%","schedule":"@daily","duration":"9999999h"}]}}}]}`
	obj, _, err := serializer.NewCodecFactory(scheme).UniversalDeserializer().Decode([]byte(list), nil, nil)
	if err != nil {
		t.Fatalf("one bad NodePool fails the whole list: %v", err)
	}
	pools := obj.(*NodePoolList).Items
	if len(pools) != 2 {
		t.Fatalf("decoded %d pools", len(pools))
	}
	if err := pools[0].DurationErrors(); err != nil {
		t.Errorf("good pool: %v", err)
	}
	if d := pools[0].Spec.Template.Spec.ExpireAfter.Duration; d == nil || *d != 720*time.Hour {
		t.Errorf("good pool's expireAfter = %v", d)
	}
	err = pools[1].DurationErrors()
	for _, field := range []string{"spec.template.spec.expireAfter", "spec.template.spec.terminationGracePeriod",
		"spec.disruption.consolidateAfter", "spec.disruption.budgets[0].duration"} {
		if err == nil || !strings.Contains(err.Error(), field+`: "`) {
			t.Errorf("bad pool's errors do not name %s: %v", field, err)
		}
	}
}

// A Disruption built in Go without ConsolidateAfter is written with "0s", the
// value a NodePool without a disruption block gets, so the CRD (which
// requires it in a block, as Karpenter's) accepts it; a value set is written
// as is. Mutation tried: Disruption.MarshalJSON removed -> the field is left
// out.
func TestDisruptionWritesConsolidateAfter(t *testing.T) {
	for _, tc := range []struct {
		in   Disruption
		want string
	}{
		{Disruption{ConsolidationPolicy: ConsolidationPolicyWhenEmpty}, `"consolidateAfter":"0s"`},
		{Disruption{ConsolidateAfter: MustParseNillableDuration("Never")}, `"consolidateAfter":"Never"`},
		{Disruption{ConsolidateAfter: MustParseNillableDuration("90s")}, `"consolidateAfter":"90s"`},
	} {
		b, err := json.Marshal(NodePoolSpec{Disruption: tc.in})
		if err != nil || !strings.Contains(string(b), tc.want) {
			t.Errorf("%+v: %s %v, want %s", tc.in, b, err, tc.want)
		}
	}
}
