package aws

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"k8s.io/utils/clock"

	"github.com/nodewright/nodewright/pkg/catalog"
)

// Options describe the cluster the provider launches nodes for. One value is
// shared by the cloud provider and the EC2NodeClass reconciler, so both derive
// the same names (instance profiles, launch templates) from it.
type Options struct {
	// ClusterName tags every instance and launch template and names the
	// derived instance profiles. Required.
	ClusterName string
	// ClusterEndpoint is the API server URL nodes join (nodeadm's
	// cluster.apiServerEndpoint). Required: a node without it never registers.
	ClusterEndpoint string
	// ClusterCABundle is the API server's CA certificate, base64-encoded PEM
	// (nodeadm's cluster.certificateAuthority). Required.
	ClusterCABundle string
	// ClusterCIDR is the cluster's service CIDR (nodeadm's cluster.cidr), from
	// which nodeadm derives the cluster DNS address. Required.
	ClusterCIDR string
	// KubernetesVersion is the control plane's minor version, e.g. "1.37": it
	// picks the EKS-optimized AMIs an alias resolves to. Required; when
	// Version is set it is only the version at start.
	KubernetesVersion string
	// Version, when set, is asked for the control plane's version at each
	// resolution, so an upgraded control plane moves aliases to its AMIs
	// (and the nodes drift to them) without a restart.
	Version VersionSource
	// Region is where instances are launched. Required.
	Region string
	// VMMemoryOverheadPercent is the share of an instance type's memory the
	// hypervisor keeps; default catalog.DefaultVMMemoryOverheadPercent.
	VMMemoryOverheadPercent float64
	// MaxFleetOverrides bounds the (instance type, subnet) overrides of one
	// CreateFleet call, cheapest first, a pool's subnets together; default 60. EC2 documents no limit for
	// instant fleets but rejects very large requests, and more than a few
	// dozen pools never changes what an allocation strategy picks.
	MaxFleetOverrides int
	// LaunchTemplateTTL is how long a launch template may go unused before
	// it is deleted; default 30 minutes (see defaultLaunchTemplateTTL).
	LaunchTemplateTTL time.Duration
	// Clock stamps condition transitions and launch template use; default
	// the real clock.
	Clock clock.PassiveClock
}

// VersionSource tells the control plane's Kubernetes minor version ("1.37").
type VersionSource interface {
	KubernetesVersion(ctx context.Context) (string, error)
}

// defaultMaxFleetOverrides is Options.MaxFleetOverrides' default.
const defaultMaxFleetOverrides = 60

// clusterNamePattern is what EKS accepts as a cluster name; anything else
// would make invalid launch template and instance profile names.
var clusterNamePattern = regexp.MustCompile(`^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$`)

// withDefaults validates o and fills its defaults.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	if !clusterNamePattern.MatchString(o.ClusterName) {
		errs = append(errs, fmt.Errorf("cluster name %q: want 1-100 letters, digits, '-' or '_', starting with a letter or digit", o.ClusterName))
	}
	for _, f := range []struct{ name, value string }{
		{"cluster endpoint", o.ClusterEndpoint}, {"cluster CA bundle", o.ClusterCABundle}, {"cluster CIDR", o.ClusterCIDR},
		{"Kubernetes version", o.KubernetesVersion}, {"region", o.Region},
	} {
		if f.value == "" {
			errs = append(errs, fmt.Errorf("%s is required", f.name))
		}
	}
	if o.VMMemoryOverheadPercent < 0 || o.VMMemoryOverheadPercent >= 1 {
		errs = append(errs, fmt.Errorf("VM memory overhead %v: want a fraction in [0, 1)", o.VMMemoryOverheadPercent))
	}
	if len(errs) > 0 {
		return o, fmt.Errorf("aws provider options: %w", errors.Join(errs...))
	}
	if o.VMMemoryOverheadPercent == 0 {
		o.VMMemoryOverheadPercent = catalog.DefaultVMMemoryOverheadPercent
	}
	if o.MaxFleetOverrides <= 0 {
		o.MaxFleetOverrides = defaultMaxFleetOverrides
	}
	if o.LaunchTemplateTTL <= 0 {
		o.LaunchTemplateTTL = defaultLaunchTemplateTTL
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return o, nil
}
