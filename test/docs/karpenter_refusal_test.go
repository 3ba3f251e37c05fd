package docs

import "testing"

// TestNamesSetField holds the docs-examples checker to its promise: a
// refusal counts only when its message names a field the example sets.
// Mutations tried: returning true for any message with a spec path (the
// rows naming unset fields fail); dropping the index stripping (the indexed
// and keyed rows fail); accepting any field under a set block (the "other
// error on an unset field" row fails).
func TestNamesSetField(t *testing.T) {
	class := map[string]any{"spec": map[string]any{
		"role":             "KarpenterNodeRole",
		"instanceProfile":  "KarpenterNodeInstanceProfile",
		"amiSelectorTerms": []any{map[string]any{"alias": "windows2022@latest"}},
		"kubelet":          map[string]any{"maxPods": 20},
	}}
	pool := map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"labels": map[string]any{"kubernetes.io/hostname": "x"}},
	}}}
	for _, tc := range []struct {
		name string
		msg  string
		obj  map[string]any
		want string
	}{
		{"field path of a set field", `EC2NodeClass.karpenter.k8s.aws "a" is invalid: spec: Invalid value: "object": must specify exactly one of ['role', 'instanceProfile']; spec.role: Forbidden`, class, "spec.role"},
		{"indexed path", "AMIsReady=False: spec.amiSelectorTerms[0].alias windows2022@latest: AMI family Windows2022 is not supported", class, "spec.amiSelectorTerms[0].alias"},
		{"keyed path", `spec.template.metadata.labels["kubernetes.io/hostname"]: the label is in a domain Kubernetes or nodewright reserves`, pool, `spec.template.metadata.labels["kubernetes.io/hostname"]`},
		{"quoted field under the reported path", `spec: Invalid value: "object": must specify exactly one of ['role', 'instanceProfile']`, class, "spec.role"},
		{"quoted name that is not set", `spec: Invalid value: "object": expected at least one, got none, ['tags', 'id']`, class, ""},
		{"relative indexed path", `AMIsReady=False: no AMI matches amiSelectorTerms[0] alias windows2022@latest`, class, "amiSelectorTerms[0]"},
		{"required field under a set block", `NodePool.karpenter.sh "p" is invalid: [spec.kubelet.podsPerCore: Required value, <nil>: Invalid value: null]`, class, "spec.kubelet.podsPerCore"},
		{"required field under spec itself", `spec.userData: Required value`, class, ""},
		{"other error on an unset field under a set block", `spec.kubelet.podsPerCore: Invalid value: 3`, class, ""},
		{"no field named", "must specify exactly one of ['role', 'instanceProfile']", class, ""},
		{"only spec named", `spec: Invalid value: "object": something is wrong`, class, ""},
		{"names a field the manifest does not set", "spec.userData: cannot be parsed", class, ""},
		{"spec inside a word", "inspec.role is not a path", class, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := namesSetField(tc.msg, tc.obj)
			if ok != (tc.want != "") || got != tc.want {
				t.Errorf("namesSetField(%q) = %q, %v; want %q", tc.msg, got, ok, tc.want)
			}
		})
	}
}
