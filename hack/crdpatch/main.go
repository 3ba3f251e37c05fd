// Command crdpatch finishes the CRDs controller-gen writes, adding the schema
// constraints that cannot be expressed as markers because they sit on types we do
// not own (corev1.Taint, metav1.Condition) or on map values:
//
//   - taints and startupTaints: key, value and effect validation, as the apiserver
//     applies to Node taints, so a bad taint is rejected at apply time rather than
//     when the node registers;
//   - NodePool template labels: every value must be a valid label value;
//   - NodeClaim status conditions: reason and message optional, as Karpenter's
//     NodeClaim schema has them, so NodeClaims moved from Karpenter restore.
//
// Usage: crdpatch DIR (every *.yaml in DIR is rewritten in place).
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

const (
	// qualifiedNamePattern is a label key: an optional DNS subdomain prefix and a name.
	qualifiedNamePattern = `^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(\/))?([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`
	labelValuePattern    = `^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`
	optionalReason       = `^([A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?|)$`
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: crdpatch DIR")
		os.Exit(2)
	}
	files, err := filepath.Glob(filepath.Join(os.Args[1], "*.yaml"))
	if err != nil || len(files) == 0 {
		fmt.Fprintf(os.Stderr, "crdpatch: no CRDs in %s\n", os.Args[1])
		os.Exit(1)
	}
	for _, file := range files {
		if err := patchFile(file); err != nil {
			fmt.Fprintf(os.Stderr, "crdpatch: %s: %v\n", file, err)
			os.Exit(1)
		}
	}
}

func patchFile(file string) error {
	in, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(bytes.TrimPrefix(in, []byte("---\n")), &crd); err != nil {
		return fmt.Errorf("parsing CRD: %w", err)
	}
	for i := range crd.Spec.Versions {
		schema := crd.Spec.Versions[i].Schema.OpenAPIV3Schema
		spec := schema.Properties["spec"]
		patchTaints(&spec)
		patchTemplateLabels(&spec)
		schema.Properties["spec"] = spec
		if crd.Spec.Names.Kind == "NodeClaim" {
			status := schema.Properties["status"]
			relaxConditions(&status)
			schema.Properties["status"] = status
		}
	}
	out, err := yaml.Marshal(&crd)
	if err != nil {
		return fmt.Errorf("writing CRD: %w", err)
	}
	// A CRD read back from the apiserver has a status; generated ones must not.
	out = bytes.Replace(out, []byte("status:\n  acceptedNames:\n    kind: \"\"\n    plural: \"\"\n  conditions: null\n  storedVersions: null\n"), nil, 1)
	return os.WriteFile(file, append([]byte("---\n"), out...), 0o644)
}

// patchTaints walks the schema and constrains every taints/startupTaints list.
func patchTaints(s *apiextensionsv1.JSONSchemaProps) {
	for name, prop := range s.Properties {
		if (name == "taints" || name == "startupTaints") && prop.Items != nil && prop.Items.Schema != nil {
			item := prop.Items.Schema
			key, value, effect := item.Properties["key"], item.Properties["value"], item.Properties["effect"]
			key.MinLength = ptr(int64(1))
			key.Pattern = qualifiedNamePattern
			value.Pattern = qualifiedNamePattern
			effect.Enum = []apiextensionsv1.JSON{{Raw: []byte(`"NoSchedule"`)}, {Raw: []byte(`"PreferNoSchedule"`)}, {Raw: []byte(`"NoExecute"`)}}
			item.Properties["key"], item.Properties["value"], item.Properties["effect"] = key, value, effect
			item.Required = []string{"effect", "key"}
		}
		patchTaints(&prop)
		s.Properties[name] = prop
	}
}

// patchTemplateLabels constrains the values of spec.template.metadata.labels.
func patchTemplateLabels(spec *apiextensionsv1.JSONSchemaProps) {
	template, ok := spec.Properties["template"]
	if !ok {
		return
	}
	metadata := template.Properties["metadata"]
	labels := metadata.Properties["labels"]
	if labels.AdditionalProperties == nil || labels.AdditionalProperties.Schema == nil {
		return
	}
	labels.AdditionalProperties.Schema.Pattern = labelValuePattern
	labels.AdditionalProperties.Schema.MaxLength = ptr(int64(63))
	metadata.Properties["labels"] = labels
	template.Properties["metadata"] = metadata
	spec.Properties["template"] = template
}

// relaxConditions makes reason and message optional on status.conditions.
func relaxConditions(status *apiextensionsv1.JSONSchemaProps) {
	conditions, ok := status.Properties["conditions"]
	if !ok || conditions.Items == nil || conditions.Items.Schema == nil {
		return
	}
	item := conditions.Items.Schema
	item.Required = []string{"lastTransitionTime", "status", "type"}
	reason := item.Properties["reason"]
	reason.MinLength = nil
	reason.Pattern = optionalReason
	item.Properties["reason"] = reason
	status.Properties["conditions"] = conditions
}

func ptr[T any](v T) *T { return &v }
