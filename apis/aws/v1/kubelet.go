package v1

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
)

// KubeletConfiguration is the kubelet configuration exactly as the user wrote it,
// keyed by upstream KubeletConfiguration (v1beta1) field names. It is kept as raw
// JSON so that nothing a user sets is lost on a read-modify-write by a client
// built against an older field list; Settings gives the typed, validated view.
type KubeletConfiguration map[string]apiextensionsv1.JSON

// KubeletSettings are the kubelet settings nodewright itself acts on: they decide
// a node's allocatable resources and pod capacity, which the solver packs against.
type KubeletSettings struct {
	ClusterDNS                  []string
	MaxPods                     *int32
	PodsPerCore                 *int32
	SystemReserved              corev1.ResourceList
	KubeReserved                corev1.ResourceList
	EvictionHard                map[string]string
	EvictionSoft                map[string]string
	EvictionSoftGracePeriod     map[string]time.Duration
	EvictionMaxPodGracePeriod   *int32
	ImageGCHighThresholdPercent *int32
	ImageGCLowThresholdPercent  *int32
	CPUCFSQuota                 *bool
}

// EvictionSignals are the eviction signals the kubelet accepts in
// evictionHard, evictionSoft and evictionSoftGracePeriod.
var EvictionSignals = sets.New("memory.available", "nodefs.available", "nodefs.inodesFree",
	"imagefs.available", "imagefs.inodesFree", "pid.available")

// ReservedResources are the resources systemReserved and kubeReserved may hold.
var ReservedResources = sets.New("cpu", "memory", "ephemeral-storage", "pid")

// kubeletOwnedFields are kubelet fields nodewright sets itself; a user value
// would fight the controller (registerWithTaints carries the unregistered taint).
var kubeletOwnedFields = sets.New("registerWithTaints")

// Settings decodes and validates the configuration. Every problem is reported,
// each with its field path under path (normally spec.kubelet), so one status
// condition can tell the user all that is wrong at once.
func (k KubeletConfiguration) Settings(path *field.Path) (KubeletSettings, field.ErrorList) {
	var errs field.ErrorList
	var settings KubeletSettings
	if len(k) == 0 {
		return settings, nil
	}
	raw, err := json.Marshal(k)
	if err != nil {
		return settings, field.ErrorList{field.InternalError(path, err)}
	}
	for key := range k {
		if kubeletOwnedFields.Has(key) {
			errs = append(errs, field.Forbidden(path.Child(key), "set by nodewright; it cannot be overridden"))
		}
	}
	var upstream kubeletv1beta1.KubeletConfiguration
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&upstream); err != nil {
		return settings, append(errs, field.Invalid(path, string(raw), kubeletDecodeError(err)))
	}

	settings = KubeletSettings{
		ClusterDNS:                  upstream.ClusterDNS,
		EvictionHard:                upstream.EvictionHard,
		EvictionSoft:                upstream.EvictionSoft,
		ImageGCHighThresholdPercent: upstream.ImageGCHighThresholdPercent,
		ImageGCLowThresholdPercent:  upstream.ImageGCLowThresholdPercent,
		CPUCFSQuota:                 upstream.CPUCFSQuota,
	}
	if _, ok := k["maxPods"]; ok {
		settings.MaxPods = &upstream.MaxPods
		if upstream.MaxPods < 0 {
			errs = append(errs, field.Invalid(path.Child("maxPods"), upstream.MaxPods, "must be greater than or equal to 0"))
		}
	}
	if _, ok := k["evictionMaxPodGracePeriod"]; ok {
		settings.EvictionMaxPodGracePeriod = &upstream.EvictionMaxPodGracePeriod
	}
	if _, ok := k["podsPerCore"]; ok {
		settings.PodsPerCore = &upstream.PodsPerCore
		if upstream.PodsPerCore < 0 {
			errs = append(errs, field.Invalid(path.Child("podsPerCore"), upstream.PodsPerCore, "must be greater than or equal to 0"))
		}
	}
	var reservedErrs field.ErrorList
	settings.SystemReserved, reservedErrs = reservedResources(path.Child("systemReserved"), upstream.SystemReserved)
	errs = append(errs, reservedErrs...)
	settings.KubeReserved, reservedErrs = reservedResources(path.Child("kubeReserved"), upstream.KubeReserved)
	errs = append(errs, reservedErrs...)
	errs = append(errs, evictionThresholds(path.Child("evictionHard"), upstream.EvictionHard)...)
	errs = append(errs, evictionThresholds(path.Child("evictionSoft"), upstream.EvictionSoft)...)

	gracePath := path.Child("evictionSoftGracePeriod")
	for signal, value := range upstream.EvictionSoftGracePeriod {
		if !EvictionSignals.Has(signal) {
			errs = append(errs, field.NotSupported(gracePath.Key(signal), signal, sets.List(EvictionSignals)))
			continue
		}
		d, err := time.ParseDuration(value)
		if err != nil || d < 0 {
			errs = append(errs, field.Invalid(gracePath.Key(signal), value, "must be a non-negative duration such as 1m30s"))
			continue
		}
		if settings.EvictionSoftGracePeriod == nil {
			settings.EvictionSoftGracePeriod = map[string]time.Duration{}
		}
		settings.EvictionSoftGracePeriod[signal] = d
		if _, ok := upstream.EvictionSoft[signal]; !ok {
			errs = append(errs, field.Invalid(gracePath.Key(signal), value, "has no matching evictionSoft threshold"))
		}
	}
	for signal := range upstream.EvictionSoft {
		if _, ok := upstream.EvictionSoftGracePeriod[signal]; !ok {
			errs = append(errs, field.Required(gracePath.Key(signal), "every evictionSoft threshold needs a grace period"))
		}
	}

	for name, percent := range map[string]*int32{
		"imageGCHighThresholdPercent": upstream.ImageGCHighThresholdPercent,
		"imageGCLowThresholdPercent":  upstream.ImageGCLowThresholdPercent,
	} {
		if percent != nil && (*percent < 0 || *percent > 100) {
			errs = append(errs, field.Invalid(path.Child(name), *percent, "must be between 0 and 100"))
		}
	}
	if high, low := upstream.ImageGCHighThresholdPercent, upstream.ImageGCLowThresholdPercent; high != nil && low != nil && *high <= *low {
		errs = append(errs, field.Invalid(path.Child("imageGCHighThresholdPercent"), *high,
			fmt.Sprintf("must be greater than imageGCLowThresholdPercent (%d)", *low)))
	}
	return settings, errs
}

// reservedResources parses a systemReserved or kubeReserved map.
func reservedResources(path *field.Path, in map[string]string) (corev1.ResourceList, field.ErrorList) {
	if len(in) == 0 {
		return nil, nil
	}
	var errs field.ErrorList
	out := corev1.ResourceList{}
	for name, value := range in {
		if !ReservedResources.Has(name) {
			errs = append(errs, field.NotSupported(path.Key(name), name, sets.List(ReservedResources)))
			continue
		}
		q, err := resource.ParseQuantity(value)
		if err != nil {
			errs = append(errs, field.Invalid(path.Key(name), value, "must be a resource quantity such as 100m or 1Gi"))
			continue
		}
		if q.Sign() < 0 {
			errs = append(errs, field.Invalid(path.Key(name), value, "cannot be a negative resource quantity"))
			continue
		}
		out[corev1.ResourceName(name)] = q
	}
	return out, errs
}

// evictionThresholds checks an evictionHard or evictionSoft map: known signals,
// each a percentage (0-100%) or a quantity.
func evictionThresholds(path *field.Path, in map[string]string) field.ErrorList {
	var errs field.ErrorList
	for signal, value := range in {
		if !EvictionSignals.Has(signal) {
			errs = append(errs, field.NotSupported(path.Key(signal), signal, sets.List(EvictionSignals)))
			continue
		}
		if percent, ok := strings.CutSuffix(value, "%"); ok {
			if p, err := strconv.ParseFloat(percent, 64); err != nil || p < 0 || p > 100 {
				errs = append(errs, field.Invalid(path.Key(signal), value, "must be a percentage between 0% and 100%"))
			}
			continue
		}
		if q, err := resource.ParseQuantity(value); err != nil || q.Sign() < 0 {
			errs = append(errs, field.Invalid(path.Key(signal), value, "must be a percentage or a non-negative quantity such as 100Mi"))
		}
	}
	return errs
}

// kubeletDecodeError turns the decoder's message into one a user can act on.
func kubeletDecodeError(err error) string {
	msg := err.Error()
	if field, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return "unknown kubelet configuration field " + field
	}
	return "does not match the kubelet configuration: " + strings.TrimPrefix(msg, "json: ")
}
