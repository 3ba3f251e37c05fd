package operator

import (
	"context"
	"strings"
	"sync"
	"time"

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

// minorVersion is "major.minor"; EKS reports minors like "37+", the AMI
// parameters name "1.37".
func minorVersion(info *version.Info) string {
	return info.Major + "." + strings.TrimSuffix(info.Minor, "+")
}
