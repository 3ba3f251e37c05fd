package operator

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/version"
)

// The control plane's version is read again once its TTL has passed (an
// upgrade is seen without a restart), not on every resolution, and a failed
// read keeps the last version. Fails when the version is read once and kept
// (tried: the TTL check returning the cached value forever), and when a
// failed read fails the resolution (tried: the error returned as is).
func TestServerVersionIsReadAgainAfterItsTTL(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	answers := []*version.Info{{Major: "1", Minor: "37+"}, {Major: "1", Minor: "38"}}
	var reads int
	var fail bool
	s := &serverVersion{ttl: versionTTL, now: func() time.Time { return now }, read: func() (*version.Info, error) {
		if fail {
			return nil, errors.New("connection refused")
		}
		reads++
		return answers[min(reads, len(answers))-1], nil
	}}
	ctx := context.Background()
	get := func() string {
		t.Helper()
		v, err := s.KubernetesVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := get(); v != "1.37" {
		t.Errorf("EKS's 37+ read as %q, want 1.37", v)
	}
	now = now.Add(time.Minute)
	if v := get(); v != "1.37" || reads != 1 {
		t.Errorf("within the TTL: %s after %d reads, want 1.37 after 1", v, reads)
	}
	now = now.Add(versionTTL)
	if v := get(); v != "1.38" {
		t.Errorf("after an upgrade and the TTL: %s, want 1.38", v)
	}
	fail = true
	now = now.Add(versionTTL)
	if v := get(); v != "1.38" {
		t.Errorf("a failed read: %s, want the last version 1.38", v)
	}
	empty := &serverVersion{ttl: versionTTL, now: time.Now, read: func() (*version.Info, error) { return nil, errors.New("down") }}
	if _, err := empty.KubernetesVersion(ctx); err == nil {
		t.Error("no version ever read and the read fails: want an error")
	}
}

// A replica starting while the API server is down waits for it instead of
// exiting at once (both replicas crash-looped through the chaos suite's API
// server restart). Fails when first does not retry (tried: Steps 1).
func TestFirstVersionWaitsForTheAPIServer(t *testing.T) {
	calls := 0
	s := &serverVersion{ttl: versionTTL, now: time.Now, read: func() (*version.Info, error) {
		calls++
		if calls < 3 {
			return nil, errors.New("connection refused")
		}
		return &version.Info{Major: "1", Minor: "37"}, nil
	}}
	backoff := startupBackoff
	backoff.Duration, backoff.Cap = time.Millisecond, 10*time.Millisecond
	v, err := s.first(context.Background(), backoff)
	if err != nil || v != "1.37" {
		t.Errorf("after two refused reads: %q, %v; want 1.37", v, err)
	}
	backoff.Steps = 2
	down := &serverVersion{ttl: versionTTL, now: time.Now, read: func() (*version.Info, error) { return nil, errors.New("connection refused") }}
	if _, err := down.first(context.Background(), backoff); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("an API server that stays down: %v, want an error naming the last failure", err)
	}
}
