package v1

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// A NodePool that slipped past admission is refused at runtime with the
// field to fix; a valid one passes. Each case fails when its check is
// removed from RuntimeValidate (tried for the restricted template label and
// the requirement value).
func TestRuntimeValidate(t *testing.T) {
	valid := func() *NodePool {
		np := &NodePool{}
		np.Spec.Template.Labels = map[string]string{"team": "data", "node.kubernetes.io/lifecycle": "batch", CapacityTypeLabelKey: "spot"}
		np.Spec.Template.Spec.Requirements = []NodeSelectorRequirementWithMinValues{
			{Key: LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"ap-northeast-2a"}},
			{Key: "example.com/gpu", Operator: corev1.NodeSelectorOpExists},
		}
		return np
	}
	if err := valid().RuntimeValidate(); err != nil {
		t.Fatalf("valid pool refused: %v", err)
	}
	for name, tc := range map[string]struct {
		mutate func(*NodePool)
		want   string
	}{
		"restricted template label": {func(np *NodePool) { np.Spec.Template.Labels["node-role.kubernetes.io/control-plane"] = "" },
			`spec.template.metadata.labels["node-role.kubernetes.io/control-plane"]`},
		"nodepool label in template": {func(np *NodePool) { np.Spec.Template.Labels[NodePoolLabelKey] = "other" },
			`spec.template.metadata.labels["karpenter.sh/nodepool"]`},
		"invalid label value": {func(np *NodePool) { np.Spec.Template.Labels["team"] = "a,b=c" },
			`spec.template.metadata.labels["team"]: invalid label value`},
		"invalid label key": {func(np *NodePool) { np.Spec.Template.Labels["bad key"] = "x" },
			`spec.template.metadata.labels["bad key"]: invalid label key`},
		"restricted requirement": {func(np *NodePool) {
			np.Spec.Template.Spec.Requirements = append(np.Spec.Template.Spec.Requirements,
				NodeSelectorRequirementWithMinValues{Key: LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{"n"}})
		}, "spec.template.spec.requirements[2].key"},
		"invalid requirement value": {func(np *NodePool) {
			np.Spec.Template.Spec.Requirements[0].Values = []string{"a b"}
		}, "spec.template.spec.requirements[0].values[0]"},
	} {
		np := valid()
		tc.mutate(np)
		err := np.RuntimeValidate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error naming %s", name, err, tc.want)
		}
	}
}
