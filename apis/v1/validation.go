package v1

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// RuntimeValidate checks again, in the controller, what the CRD's rules
// check at admission about the pool's durations, template labels and
// requirements: a NodePool stored before a rule existed, or written with
// validation off, must not put restricted labels onto Nodes (the controller
// writes them with more privilege than a kubelet) or launch from values
// nothing can honour. Each error names the field to fix.
func (in *NodePool) RuntimeValidate() error {
	errs := []error{in.DurationErrors()}
	for _, k := range slices.Sorted(maps.Keys(in.Spec.Template.Labels)) {
		path := fmt.Sprintf("spec.template.metadata.labels[%q]", k)
		errs = append(errs, labelKeyErr(path, k), labelValueErr(path, in.Spec.Template.Labels[k]))
		if IsRestrictedLabel(k) {
			errs = append(errs, fmt.Errorf("%s: the label is in a domain Kubernetes or nodewright reserves; use another domain", path))
		}
	}
	for i, r := range in.Spec.Template.Spec.Requirements {
		path := fmt.Sprintf("spec.template.spec.requirements[%d]", i)
		errs = append(errs, labelKeyErr(path+".key", r.Key))
		if IsRestrictedLabel(r.Key) {
			errs = append(errs, fmt.Errorf("%s.key: label %q is restricted", path, r.Key))
		}
		if r.Operator == corev1.NodeSelectorOpIn || r.Operator == corev1.NodeSelectorOpNotIn {
			for j, v := range r.Values {
				errs = append(errs, labelValueErr(fmt.Sprintf("%s.values[%d]", path, j), v))
			}
		}
	}
	return errors.Join(errs...)
}

func labelKeyErr(path, k string) error {
	if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
		return fmt.Errorf("%s: invalid label key %q: %s", path, k, strings.Join(msgs, "; "))
	}
	return nil
}

func labelValueErr(path, v string) error {
	if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
		return fmt.Errorf("%s: invalid label value %q: %s", path, v, strings.Join(msgs, "; "))
	}
	return nil
}
