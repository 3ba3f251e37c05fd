package v1

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// The template hash changes with what a node is made of and not with how
// nodewright treats the pool. Mutation tried: hashing the whole template
// (the requirements and expireAfter cases changed it).
func TestNodePoolHashCoversWhatANodeIsMadeOf(t *testing.T) {
	base := func() *NodePool {
		np := &NodePool{}
		np.Spec.Template.Labels = map[string]string{"team": "a", "tier": "b"}
		np.Spec.Template.Spec.Taints = []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}}
		np.Spec.Template.Spec.NodeClassRef = &NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"}
		np.Spec.Template.Spec.Requirements = []NodeSelectorRequirementWithMinValues{{Key: "kubernetes.io/arch", Operator: corev1.NodeSelectorOpIn, Values: []string{"amd64"}}}
		return np
	}
	h := base().Hash()
	if h == "" || base().Hash() != h {
		t.Fatalf("hash %q is not stable", h)
	}
	for name, change := range map[string]func(*NodePool){
		"requirements":           func(np *NodePool) { np.Spec.Template.Spec.Requirements[0].Values = []string{"arm64"} },
		"expireAfter":            func(np *NodePool) { np.Spec.Template.Spec.ExpireAfter = MustParseNillableDuration("1h") },
		"terminationGracePeriod": func(np *NodePool) { np.Spec.Template.Spec.TerminationGracePeriod = NewDuration(time.Hour) },
		"weight":                 func(np *NodePool) { np.Spec.Weight = ptr.To(int32(10)) },
		"disruption":             func(np *NodePool) { np.Spec.Disruption.ConsolidateAfter = MustParseNillableDuration("5m") },
	} {
		np := base()
		change(np)
		if np.Hash() != h {
			t.Errorf("changing %s changed the hash", name)
		}
	}
	for name, change := range map[string]func(*NodePool){
		"a label":       func(np *NodePool) { np.Spec.Template.Labels["team"] = "c" },
		"an annotation": func(np *NodePool) { np.Spec.Template.Annotations = map[string]string{"a": "b"} },
		"a taint":       func(np *NodePool) { np.Spec.Template.Spec.Taints = nil },
		"a startupTaint": func(np *NodePool) {
			np.Spec.Template.Spec.StartupTaints = []corev1.Taint{{Key: "s", Effect: corev1.TaintEffectNoSchedule}}
		},
		"the node class": func(np *NodePool) { np.Spec.Template.Spec.NodeClassRef.Name = "other" },
	} {
		np := base()
		change(np)
		if np.Hash() == h {
			t.Errorf("changing %s left the hash", name)
		}
	}
}
