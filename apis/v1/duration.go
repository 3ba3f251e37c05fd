package v1

import (
	"encoding/json"
	"fmt"
	"time"
)

// Never is the value of a NillableDuration that never elapses.
const Never = "Never"

// NillableDuration is a duration that may also be "Never". It keeps the text the
// user wrote, so that an update by the controller writes back "1h" rather than
// "1h0m0s" and users' diffs stay quiet.
//
// +kubebuilder:validation:Type=string
type NillableDuration struct {
	// Duration is nil for "Never".
	Duration *time.Duration `json:"-"`
	raw      string
}

// MustParseNillableDuration parses s like the apiserver would, and panics on bad
// input; it is meant for constants and tests.
func MustParseNillableDuration(s string) NillableDuration {
	var d NillableDuration
	if err := d.UnmarshalJSON([]byte(fmt.Sprintf("%q", s))); err != nil {
		panic(err)
	}
	return d
}

// UnmarshalJSON accepts a Go duration string or "Never".
func (d *NillableDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"30s\" or \"Never\": %w", err)
	}
	if s == Never {
		*d = NillableDuration{raw: s}
		return nil
	}
	parsed, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("parsing duration %q: %w", s, err)
	}
	*d = NillableDuration{Duration: &parsed, raw: s}
	return nil
}

// MarshalJSON writes the text the duration was read from, or a canonical form.
func (d NillableDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// String returns the duration as written, "Never", or "" when unset.
func (d NillableDuration) String() string {
	switch {
	case d.raw != "":
		return d.raw
	case d.Duration == nil:
		return ""
	default:
		return d.Duration.String()
	}
}

// IsNever reports whether the duration never elapses.
func (d NillableDuration) IsNever() bool { return d.raw == Never }

// IsZero reports an unset duration, so that a client leaving it out sends
// nothing and the apiserver applies the CRD default ("" is not a duration).
func (d NillableDuration) IsZero() bool { return d.raw == "" && d.Duration == nil }
