package scheduling

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Resource indexes of a Resources vector. The solver compares vectors millions
// of times per plan, so resources are fixed slots of int64 rather than maps of
// Quantities.
const (
	ResCPU       = iota // millicores
	ResMemory           // bytes
	ResEphemeral        // bytes
	ResPods             // count
	ResNVIDIAGPU
	ResAMDGPU
	ResNeuron
	ResPodENI
	ResEFA
	numResources
)

var resourceNames = [numResources]corev1.ResourceName{
	corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage, corev1.ResourcePods,
	"nvidia.com/gpu", "amd.com/gpu", "aws.amazon.com/neuron", "vpc.amazonaws.com/pod-eni",
	"vpc.amazonaws.com/efa",
}

// Resources is an amount of each resource the solver knows.
type Resources [numResources]int64

// ResourcesFrom converts a ResourceList. Resources the solver does not know are
// returned by name, so a pod requesting one can be reported unschedulable
// rather than silently packed as if it asked for nothing.
func ResourcesFrom(list corev1.ResourceList) (Resources, []corev1.ResourceName) {
	var r Resources
	var unknown []corev1.ResourceName
	for name, q := range list {
		i := resourceIndex(name)
		if i < 0 {
			if !q.IsZero() {
				unknown = append(unknown, name)
			}
			continue
		}
		r[i] = quantityValue(i, q)
	}
	return r, unknown
}

func resourceIndex(name corev1.ResourceName) int {
	for i, n := range resourceNames {
		if n == name {
			return i
		}
	}
	return -1
}

func quantityValue(i int, q resource.Quantity) int64 {
	if i == ResCPU {
		return q.MilliValue()
	}
	return q.Value()
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	for i := range r {
		r[i] += o[i]
	}
	return r
}

// Sub returns r - o.
func (r Resources) Sub(o Resources) Resources {
	for i := range r {
		r[i] -= o[i]
	}
	return r
}

// Fits reports whether r fits within capacity.
func (r Resources) Fits(capacity Resources) bool {
	for i := range r {
		if r[i] > capacity[i] {
			return false
		}
	}
	return true
}

// Max returns the element-wise maximum.
func (r Resources) Max(o Resources) Resources {
	for i := range r {
		r[i] = max(r[i], o[i])
	}
	return r
}

// List converts back to a ResourceList, leaving out zeros.
func (r Resources) List() corev1.ResourceList {
	out := corev1.ResourceList{}
	for i, v := range r {
		if v == 0 {
			continue
		}
		if i == ResCPU {
			out[resourceNames[i]] = *resource.NewMilliQuantity(v, resource.DecimalSI)
		} else if i == ResMemory || i == ResEphemeral {
			out[resourceNames[i]] = *resource.NewQuantity(v, resource.BinarySI)
		} else {
			out[resourceNames[i]] = *resource.NewQuantity(v, resource.DecimalSI)
		}
	}
	return out
}

// String renders the non-zero resources, e.g. "cpu=2, memory=4Gi, pods=1".
func (r Resources) String() string {
	var parts []string
	list := r.List()
	for i, name := range resourceNames {
		if q, ok := list[name]; ok && r[i] != 0 {
			parts = append(parts, fmt.Sprintf("%s=%s", name, q.String()))
		}
	}
	return strings.Join(parts, ", ")
}

// PodRequests is what a pod needs of a node, as kube-scheduler counts it: the
// larger of its app containers (with restartable init containers, i.e.
// sidecars, which run alongside them) and each init container's peak (with the
// sidecars started before it), plus the pod overhead, plus one pod slot.
func PodRequests(pod *corev1.Pod) (Resources, []corev1.ResourceName) {
	var unknown []corev1.ResourceName
	add := func(list corev1.ResourceList) Resources {
		r, u := ResourcesFrom(list)
		unknown = append(unknown, u...)
		return r
	}
	var apps Resources
	for _, c := range pod.Spec.Containers {
		apps = apps.Add(add(c.Resources.Requests))
	}
	var sidecars, initPeak Resources
	for _, c := range pod.Spec.InitContainers {
		req := add(c.Resources.Requests)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars = sidecars.Add(req)
			initPeak = initPeak.Max(sidecars)
			continue
		}
		initPeak = initPeak.Max(sidecars.Add(req))
	}
	total := apps.Add(sidecars).Max(initPeak)
	total = total.Add(add(pod.Spec.Overhead))
	total[ResPods] = 1
	return total, unknown
}
