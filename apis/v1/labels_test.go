package v1

import "testing"

func TestIsRestrictedLabel(t *testing.T) {
	for key, want := range map[string]bool{
		"karpenter.sh/nodepool":                   true,
		"kubernetes.io/hostname":                  true,
		"karpenter.sh/custom":                     true,
		"sub.karpenter.sh/custom":                 true,
		"kubernetes.io/custom":                    true,
		"example.k8s.io/x":                        true,
		"foo.kubernetes.io":                       true, // no prefix: the whole key is the domain, as in the CEL rule
		"karpenter.sh/capacity-type":              false,
		"topology.kubernetes.io/zone":             false,
		"node.kubernetes.io/instance-type":        false,
		"node.kubernetes.io/role":                 false,
		"node-restriction.kubernetes.io/reserved": false,
		"kops.k8s.io/instancegroup":               false,
		"kubernetes.io/arch":                      false,
		"example.com/team":                        false,
		"team":                                    false,
	} {
		if got := IsRestrictedLabel(key); got != want {
			t.Errorf("IsRestrictedLabel(%q) = %v, want %v", key, got, want)
		}
	}
}
