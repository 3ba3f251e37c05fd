package operator

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/version"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// serverVersion reads the API server's version at most once per ttl: an
// upgraded control plane is seen within minutes (its AMIs resolved, the
// nodes drifting to them), and the resolutions in between cost no request.
// A failed read keeps the last version known: an API server restarting is
// no reason to stop resolving images.
type serverVersion struct {
	read func() (*version.Info, error)
	ttl  time.Duration
	now  func() time.Time

	mu   sync.Mutex
	last string
	at   time.Time
}

// versionTTL is how stale the control plane version may be.
const versionTTL = 5 * time.Minute

// KubernetesVersion returns the minor version, "1.37".
func (s *serverVersion) KubernetesVersion(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last != "" && s.now().Sub(s.at) < s.ttl {
		return s.last, nil
	}
	info, err := s.read()
	if err != nil {
		if s.last != "" {
			log.FromContext(ctx).Info("reading the Kubernetes version failed, keeping the last one", "version", s.last, "error", err.Error())
			return s.last, nil
		}
		return "", err
	}
	if v := minorVersion(info); v != s.last {
		if s.last != "" {
			log.FromContext(ctx).Info("control plane version changed", "from", s.last, "to", v)
		}
		s.last = v
	}
	s.at = s.now()
	return s.last, nil
}

// startupBackoff is how long a replica starting while the API server is
// down waits for it (1 s doubling to 30 s, about 3.5 min in all) before it
// gives up and exits.
var startupBackoff = wait.Backoff{Duration: time.Second, Factor: 2, Steps: 10, Cap: 30 * time.Second}

// first reads the version at start, retrying with backoff: a replica
// restarted while the API server is down (an upgrade, a restart) would
// otherwise crash-loop until it is back.
func (s *serverVersion) first(ctx context.Context, backoff wait.Backoff) (string, error) {
	var version string
	var last error
	err := wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
		v, err := s.KubernetesVersion(ctx)
		if err != nil {
			last = err
			log.FromContext(ctx).Info("reading the Kubernetes version failed; retrying", "error", err.Error())
			return false, nil
		}
		version = v
		return true, nil
	})
	if err != nil {
		return "", fmt.Errorf("%w (last error: %v)", err, last)
	}
	return version, nil
}

// minorVersion is "major.minor"; EKS reports minors like "37+", the AMI
// parameters name "1.37".
func minorVersion(info *version.Info) string {
	return info.Major + "." + strings.TrimSuffix(info.Minor, "+")
}
