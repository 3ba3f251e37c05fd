package catalog

import (
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
)

// UnavailableOfferings remembers offerings (type, zone, capacity type) that just
// failed to launch for lack of capacity, or whose spot capacity was reclaimed,
// so the solver stops choosing them until the entry expires. Safe for
// concurrent use.
type UnavailableOfferings struct {
	mu      sync.RWMutex
	entries map[offeringKey]time.Time // expiry
	ttl     time.Duration
	clock   clock.PassiveClock
	seq     atomic.Uint64
}

type offeringKey struct{ instanceType, zone, capacityType string }

// UnavailableOptions configure the cache.
type UnavailableOptions struct {
	// TTL is how long an offering stays out; default 3 minutes, about how long
	// EC2 capacity pools take to recover in practice.
	TTL time.Duration
	// Clock is injected by tests; default the real clock.
	Clock clock.PassiveClock
}

// NewUnavailableOfferings returns an empty cache.
func NewUnavailableOfferings(opts UnavailableOptions) *UnavailableOfferings {
	if opts.TTL <= 0 {
		opts.TTL = 3 * time.Minute
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &UnavailableOfferings{entries: map[offeringKey]time.Time{}, ttl: opts.TTL, clock: opts.Clock}
}

// MarkUnavailable takes an offering out for the TTL (extending it if already out).
func (u *UnavailableOfferings) MarkUnavailable(instanceType, zone, capacityType string) {
	u.mu.Lock()
	u.entries[offeringKey{instanceType, zone, capacityType}] = u.clock.Now().Add(u.ttl)
	u.mu.Unlock()
	u.seq.Add(1)
}

// IsUnavailable reports whether the offering is out now.
func (u *UnavailableOfferings) IsUnavailable(instanceType, zone, capacityType string) bool {
	u.mu.RLock()
	expiry, ok := u.entries[offeringKey{instanceType, zone, capacityType}]
	u.mu.RUnlock()
	return ok && u.clock.Now().Before(expiry)
}

// current returns the offerings out now, nil when none: read once per Filter
// so the hot loop takes no lock.
func (u *UnavailableOfferings) current() map[offeringKey]struct{} {
	now := u.clock.Now()
	u.mu.RLock()
	defer u.mu.RUnlock()
	if len(u.entries) == 0 {
		return nil
	}
	out := make(map[offeringKey]struct{}, len(u.entries))
	for k, expiry := range u.entries {
		if now.Before(expiry) {
			out[k] = struct{}{}
		}
	}
	return out
}

// SeqNum changes whenever the set of unavailable offerings changes, including
// by expiry, so a solver can tell whether a plan made at an earlier SeqNum saw
// the same availability.
func (u *UnavailableOfferings) SeqNum() uint64 {
	now := u.clock.Now()
	u.mu.Lock()
	expired := false
	for k, expiry := range u.entries {
		if !now.Before(expiry) {
			delete(u.entries, k)
			expired = true
		}
	}
	u.mu.Unlock()
	if expired {
		u.seq.Add(1)
	}
	return u.seq.Load()
}

// Len is the number of offerings out now.
func (u *UnavailableOfferings) Len() int {
	now := u.clock.Now()
	u.mu.RLock()
	defer u.mu.RUnlock()
	n := 0
	for _, expiry := range u.entries {
		if now.Before(expiry) {
			n++
		}
	}
	return n
}
