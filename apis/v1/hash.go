package v1

import (
	"encoding/json"
	"hash/fnv"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// NodePoolHashVersion is the version of NodePool.Hash. A NodeClaim stamped
// with another version is re-stamped, not drifted: a nodewright upgrade that
// changes what the hash covers must not replace every node.
const NodePoolHashVersion = "v1"

// Hash digests the parts of the NodePool's template that shape a node once
// it is launched: template labels and annotations, taints, startup taints
// and the node class reference. Requirements are checked against the
// claim's labels instead (a widened requirement drifts nothing), and the
// behavioural fields (expireAfter, terminationGracePeriod, and everything
// outside the template: weight, limits, disruption) change what nodewright
// does, not what a node is.
func (np *NodePool) Hash() string {
	t := np.Spec.Template
	return Digest(struct {
		Labels        map[string]string   `json:"labels,omitempty"`
		Annotations   map[string]string   `json:"annotations,omitempty"`
		Taints        []corev1.Taint      `json:"taints,omitempty"`
		StartupTaints []corev1.Taint      `json:"startupTaints,omitempty"`
		NodeClassRef  *NodeClassReference `json:"nodeClassRef,omitempty"`
	}{t.Labels, t.Annotations, t.Spec.Taints, t.Spec.StartupTaints, t.Spec.NodeClassRef})
}

// Digest is the decimal FNV-64a of v's JSON (maps are written with sorted
// keys, so equal values digest equally): the hashes drift compares.
func Digest(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only unsupported types fail, and none of the API's are.
		panic(err)
	}
	h := fnv.New64a()
	_, _ = h.Write(b)
	return strconv.FormatUint(h.Sum64(), 10)
}
