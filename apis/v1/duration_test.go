package v1

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
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

func TestNillableDurationRejectsGarbage(t *testing.T) {
	for _, in := range []string{`"soon"`, `30`, `"1d"`} {
		var d NillableDuration
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("%s was accepted", in)
		}
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
