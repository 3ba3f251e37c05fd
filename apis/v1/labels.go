package v1

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
)

// Well-known label keys. The karpenter.sh keys are Karpenter's, kept verbatim so
// that pods, PDBs and dashboards written for Karpenter select the same nodes.
const (
	NodePoolLabelKey        = Group + "/nodepool"
	CapacityTypeLabelKey    = Group + "/capacity-type"
	NodeInitializedLabelKey = Group + "/initialized"
	NodeRegisteredLabelKey  = Group + "/registered"

	ArchitectureAmd64    = "amd64"
	ArchitectureArm64    = "arm64"
	CapacityTypeSpot     = "spot"
	CapacityTypeOnDemand = "on-demand"
	CapacityTypeReserved = "reserved"
)

// Well-known annotation keys.
const (
	// DoNotDisruptAnnotationKey on a pod or a node blocks voluntary disruption of the
	// node it runs on (consolidation, drift, expiration), but not termination that a
	// user asked for.
	DoNotDisruptAnnotationKey = Group + "/do-not-disrupt"
	// NodePoolHashAnnotationKey records the hash of the NodePool template a NodeClaim
	// was made from, so drift can be detected when the template changes.
	NodePoolHashAnnotationKey        = Group + "/nodepool-hash"
	NodePoolHashVersionAnnotationKey = Group + "/nodepool-hash-version"
	// NodeClaimTerminationTimestampAnnotationKey is the time by which a draining node
	// is terminated whatever its pods say (from terminationGracePeriod).
	NodeClaimTerminationTimestampAnnotationKey = Group + "/nodeclaim-termination-timestamp"
)

// TerminationFinalizer holds NodeClaims and Nodes until their instance is gone and
// their pods drained.
const TerminationFinalizer = Group + "/termination"

// Taints nodewright places on nodes it manages.
var (
	// DisruptedNoScheduleTaint keeps new pods off a node that is being drained.
	DisruptedNoScheduleTaint = corev1.Taint{Key: Group + "/disrupted", Effect: corev1.TaintEffectNoSchedule}
	// UnregisteredNoExecuteTaint is placed on a node at launch (through the user data)
	// and removed once nodewright has synced the NodeClaim's labels and taints onto
	// it, so no pod lands on a node before it looks like what it was launched as.
	UnregisteredNoExecuteTaint = corev1.Taint{Key: Group + "/unregistered", Effect: corev1.TaintEffectNoExecute}
)

// Kubernetes well-known label keys used for scheduling.
const (
	LabelHostname           = corev1.LabelHostname
	LabelTopologyZone       = corev1.LabelTopologyZone
	LabelTopologyRegion     = corev1.LabelTopologyRegion
	LabelInstanceTypeStable = corev1.LabelInstanceTypeStable
	LabelArchStable         = corev1.LabelArchStable
	LabelOSStable           = corev1.LabelOSStable
	LabelWindowsBuild       = corev1.LabelWindowsBuild
)

// WellKnownLabels are the labels nodewright can satisfy by choosing an instance
// type, offering or zone; requirements on them narrow the catalog rather than
// being copied onto the node.
var WellKnownLabels = sets.New(
	NodePoolLabelKey,
	LabelTopologyZone,
	LabelTopologyRegion,
	LabelInstanceTypeStable,
	LabelArchStable,
	LabelOSStable,
	CapacityTypeLabelKey,
	LabelWindowsBuild,
)

// RestrictedLabels may never be set by a user in a NodePool template or
// requirement, even though their domain may be.
var RestrictedLabels = sets.New(NodePoolLabelKey, LabelHostname)

// kubernetesIOAllowed are the kubernetes.io keys users may constrain: the
// topology, arch and OS labels every node carries.
var kubernetesIOAllowed = sets.New(
	"beta.kubernetes.io/instance-type", "failure-domain.beta.kubernetes.io/region",
	"beta.kubernetes.io/os", "beta.kubernetes.io/arch", "failure-domain.beta.kubernetes.io/zone",
	LabelTopologyZone, LabelTopologyRegion, LabelInstanceTypeStable, LabelArchStable, LabelOSStable,
	LabelWindowsBuild,
)

// IsRestrictedLabel reports whether a user may not set key in a NodePool template
// or requirement, because Kubernetes or nodewright owns it. It is the Go twin of
// the CRD's CEL rules (same domains, same exceptions) for code paths that
// validate without an apiserver, such as `nodewright simulate`; a test keeps the
// two in agreement.
func IsRestrictedLabel(key string) bool {
	if RestrictedLabels.Has(key) {
		return true
	}
	// As in the CEL rule, the domain is everything before the first slash, or the
	// whole key when it has none.
	domain, _, _ := strings.Cut(key, "/")
	switch {
	case strings.HasSuffix(domain, "kubernetes.io"):
		return !kubernetesIOAllowed.Has(key) &&
			!strings.HasSuffix(domain, "node.kubernetes.io") &&
			!strings.HasSuffix(domain, "node-restriction.kubernetes.io")
	case strings.HasSuffix(domain, "k8s.io"):
		return !strings.HasSuffix(domain, "kops.k8s.io")
	case strings.HasSuffix(domain, Group):
		return key != CapacityTypeLabelKey
	}
	return false
}
