package v1

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Never is the value of a NillableDuration that never elapses.
const Never = "Never"

// Decoding of every duration field in these kinds is total: a stored value
// Go cannot parse (the CRD pattern admits "9999999h", which overflows
// time.Duration, and objects stored before the CEL rule that now refuses it
// may still hold one) decodes into an invalid duration instead of failing.
// A decode error would fail the informer's whole list, so one bad NodePool
// would hide every NodePool from the controller, and a restart could not sync
// its caches. Readers ask Err and refuse the object with the field named.

// NillableDuration is a duration that may also be "Never". It keeps the text the
// user wrote, so that an update by the controller writes back "1h" rather than
// "1h0m0s" and users' diffs stay quiet.
//
// +kubebuilder:validation:Type=string
type NillableDuration struct {
	// Duration is nil for "Never", for an unset and for an invalid value.
	Duration *time.Duration `json:"-"`
	raw      string
}

// MustParseNillableDuration parses s like the apiserver would, and panics on bad
// input; it is meant for constants and tests.
func MustParseNillableDuration(s string) NillableDuration {
	var d NillableDuration
	_ = d.UnmarshalJSON([]byte(fmt.Sprintf("%q", s)))
	if err := d.Err(); err != nil {
		panic(err)
	}
	return d
}

// UnmarshalJSON accepts a Go duration string or "Never". It never fails: see
// Err.
func (d *NillableDuration) UnmarshalJSON(b []byte) error {
	s := rawText(b)
	if s == Never {
		*d = NillableDuration{raw: s}
		return nil
	}
	*d = NillableDuration{raw: s}
	if parsed, err := parseDuration(s); err == nil {
		d.Duration = &parsed
	}
	return nil
}

// Err says why the value read is not a duration; nil for a valid or unset one.
func (d NillableDuration) Err() error {
	if d.raw == "" || d.raw == Never || d.Duration != nil {
		return nil
	}
	_, err := parseDuration(d.raw)
	return err
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

// Duration is a length of time written as a Go duration ("30s", "1h30m"),
// in the fields Karpenter types as metav1.Duration. It reads the same JSON,
// but decoding never fails (see Err) and it writes back the text it read.
//
// +kubebuilder:validation:Type=string
type Duration struct {
	// Duration is zero for an invalid value; check Err.
	Duration time.Duration `json:"-"`
	raw      string
}

// NewDuration returns a valid Duration of d.
func NewDuration(d time.Duration) *Duration { return &Duration{Duration: d} }

// UnmarshalJSON never fails: see Err.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := rawText(b)
	parsed, err := parseDuration(s)
	if err != nil {
		parsed = 0
	}
	*d = Duration{Duration: parsed, raw: s}
	return nil
}

// MarshalJSON writes the text the duration was read from, or its canonical
// form.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// String returns the duration as written, or its canonical form.
func (d Duration) String() string {
	if d.raw != "" {
		return d.raw
	}
	return d.Duration.String()
}

// Err says why the value read is not a duration; nil for a valid one.
func (d Duration) Err() error {
	if d.raw == "" {
		return nil
	}
	_, err := parseDuration(d.raw)
	return err
}

// rawText is the string a JSON value holds, or the JSON itself when it is not
// a string (the schema says string, but decoding must not depend on that).
func rawText(b []byte) string {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		return s
	}
	return string(b)
}

// maxDuration is the longest time.Duration, about 2562047h.
const maxDuration = time.Duration(1<<63 - 1)

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as \"30s\", \"90m\" or \"720h\" (at most %dh): %w", s, maxDuration/time.Hour, err)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

// DurationErrors lists the NodePool's duration fields whose stored value is
// not a duration, each named by its path, so the controller can refuse the
// pool and say which field to fix.
func (in *NodePool) DurationErrors() error {
	var errs []error
	check := func(path string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	check("spec.disruption.consolidateAfter", in.Spec.Disruption.ConsolidateAfter.Err())
	for i, b := range in.Spec.Disruption.Budgets {
		if b.Duration != nil {
			check(fmt.Sprintf("spec.disruption.budgets[%d].duration", i), b.Duration.Err())
		}
	}
	check("spec.template.spec.expireAfter", in.Spec.Template.Spec.ExpireAfter.Err())
	if tgp := in.Spec.Template.Spec.TerminationGracePeriod; tgp != nil {
		check("spec.template.spec.terminationGracePeriod", tgp.Err())
	}
	return errors.Join(errs...)
}
