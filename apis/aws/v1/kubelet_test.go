package v1

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func kubelet(t *testing.T, raw string) KubeletConfiguration {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatal(err)
	}
	k := KubeletConfiguration{}
	for key, v := range m {
		k[key] = apiextensionsv1.JSON{Raw: v}
	}
	return k
}

func TestKubeletSettings(t *testing.T) {
	k := kubelet(t, `{"maxPods": 58, "podsPerCore": 10, "systemReserved": {"cpu": "100m", "memory": "100Mi"},
		"kubeReserved": {"cpu": "70m"}, "evictionHard": {"memory.available": "5%"},
		"evictionSoft": {"memory.available": "500Mi"}, "evictionSoftGracePeriod": {"memory.available": "1m30s"},
		"imageGCHighThresholdPercent": 85, "imageGCLowThresholdPercent": 80, "clusterDNS": ["10.100.0.10"],
		"serializeImagePulls": false}`)
	s, errs := k.Settings(field.NewPath("spec", "kubelet"))
	if len(errs) > 0 {
		t.Fatalf("valid configuration rejected: %v", errs.ToAggregate())
	}
	if *s.MaxPods != 58 || *s.PodsPerCore != 10 {
		t.Errorf("maxPods/podsPerCore = %d/%d", *s.MaxPods, *s.PodsPerCore)
	}
	if got := s.SystemReserved["memory"]; got.Cmp(resource.MustParse("100Mi")) != 0 {
		t.Errorf("systemReserved memory = %v", got.String())
	}
	if s.EvictionSoftGracePeriod["memory.available"] != 90*time.Second {
		t.Errorf("grace period = %v", s.EvictionSoftGracePeriod)
	}
	if s.EvictionHard["memory.available"] != "5%" || s.ClusterDNS[0] != "10.100.0.10" {
		t.Errorf("eviction/clusterDNS not carried: %+v", s)
	}
}

func TestKubeletSettingsErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		raw, field, msg string
	}{
		{`{"maxPodz": 10}`, "spec.kubelet", `unknown kubelet configuration field "maxPodz"`},
		{`{"maxPods": "ten"}`, "spec.kubelet", "does not match the kubelet configuration"},
		{`{"maxPods": -1}`, "spec.kubelet.maxPods", "greater than or equal to 0"},
		{`{"systemReserved": {"gpu": "1"}}`, "spec.kubelet.systemReserved[gpu]", "Unsupported value"},
		{`{"kubeReserved": {"memory": "-1Gi"}}`, "spec.kubelet.kubeReserved[memory]", "negative"},
		{`{"kubeReserved": {"memory": "lots"}}`, "spec.kubelet.kubeReserved[memory]", "resource quantity"},
		{`{"evictionHard": {"disk.available": "10%"}}`, "spec.kubelet.evictionHard[disk.available]", "Unsupported value"},
		{`{"evictionHard": {"memory.available": "120%"}}`, "spec.kubelet.evictionHard[memory.available]", "percentage between"},
		{`{"evictionSoft": {"memory.available": "1Gi"}}`, "spec.kubelet.evictionSoftGracePeriod[memory.available]", "needs a grace period"},
		{`{"evictionSoftGracePeriod": {"memory.available": "1m"}}`, "spec.kubelet.evictionSoftGracePeriod[memory.available]", "no matching evictionSoft"},
		{`{"evictionSoft": {"memory.available": "1Gi"}, "evictionSoftGracePeriod": {"memory.available": "soon"}}`, "spec.kubelet.evictionSoftGracePeriod[memory.available]", "duration"},
		{`{"imageGCHighThresholdPercent": 50, "imageGCLowThresholdPercent": 60}`, "spec.kubelet.imageGCHighThresholdPercent", "greater than imageGCLowThresholdPercent"},
		{`{"imageGCHighThresholdPercent": 101}`, "spec.kubelet.imageGCHighThresholdPercent", "between 0 and 100"},
		{`{"registerWithTaints": []}`, "spec.kubelet.registerWithTaints", "set by nodewright"},
	} {
		_, errs := kubelet(t, tc.raw).Settings(field.NewPath("spec", "kubelet"))
		if len(errs) == 0 {
			t.Errorf("%s was accepted", tc.raw)
			continue
		}
		text := errs.ToAggregate().Error()
		if !strings.Contains(text, tc.field+":") || !strings.Contains(text, tc.msg) {
			t.Errorf("%s: want %s: ...%s..., got %s", tc.raw, tc.field, tc.msg, text)
		}
	}
}
