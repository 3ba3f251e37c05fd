package aws

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
)

// bottlerocketKubeletSetting is one spec.kubelet field and the Bottlerocket
// setting it becomes; value is false when the field is not set.
type bottlerocketKubeletSetting struct {
	field, setting string
	value          func(awsv1.KubeletSettings) (any, bool)
}

// bottlerocketKubelet maps the spec.kubelet fields Karpenter's EC2NodeClass
// has to the Bottlerocket settings under [settings.kubernetes] that carry
// them. Bottlerocket has no podsPerCore setting (Karpenter ignores the field
// for Bottlerocket; nodewright refuses it), and any other kubelet field is
// refused too: Bottlerocket takes no free-form kubelet configuration, the
// user sets such a setting in spec.userData.
var bottlerocketKubelet = []bottlerocketKubeletSetting{
	{"clusterDNS", "cluster-dns-ip", func(k awsv1.KubeletSettings) (any, bool) {
		switch len(k.ClusterDNS) {
		case 0:
			return nil, false
		case 1:
			return k.ClusterDNS[0], true
		}
		return k.ClusterDNS, true // Bottlerocket takes a list for several
	}},
	{"maxPods", "max-pods", func(k awsv1.KubeletSettings) (any, bool) { return intSetting(k.MaxPods) }},
	{"systemReserved", "system-reserved", func(k awsv1.KubeletSettings) (any, bool) {
		return quantities(k.SystemReserved), len(k.SystemReserved) > 0
	}},
	{"kubeReserved", "kube-reserved", func(k awsv1.KubeletSettings) (any, bool) {
		return quantities(k.KubeReserved), len(k.KubeReserved) > 0
	}},
	{"evictionHard", "eviction-hard", func(k awsv1.KubeletSettings) (any, bool) { return k.EvictionHard, len(k.EvictionHard) > 0 }},
	{"evictionSoft", "eviction-soft", func(k awsv1.KubeletSettings) (any, bool) { return k.EvictionSoft, len(k.EvictionSoft) > 0 }},
	{"evictionSoftGracePeriod", "eviction-soft-grace-period", func(k awsv1.KubeletSettings) (any, bool) {
		out := map[string]string{}
		for signal, d := range k.EvictionSoftGracePeriod {
			out[signal] = d.String()
		}
		return out, len(out) > 0
	}},
	{"evictionMaxPodGracePeriod", "eviction-max-pod-grace-period", func(k awsv1.KubeletSettings) (any, bool) {
		return intSetting(k.EvictionMaxPodGracePeriod)
	}},
	// Strings, as Karpenter writes them (older Bottlerocket releases take no
	// integer here).
	{"imageGCHighThresholdPercent", "image-gc-high-threshold-percent", func(k awsv1.KubeletSettings) (any, bool) {
		return percentSetting(k.ImageGCHighThresholdPercent)
	}},
	{"imageGCLowThresholdPercent", "image-gc-low-threshold-percent", func(k awsv1.KubeletSettings) (any, bool) {
		return percentSetting(k.ImageGCLowThresholdPercent)
	}},
	{"cpuCFSQuota", "cpu-cfs-quota-enforced", func(k awsv1.KubeletSettings) (any, bool) {
		if k.CPUCFSQuota == nil {
			return nil, false
		}
		return *k.CPUCFSQuota, true
	}},
}

func intSetting(v *int32) (any, bool) {
	if v == nil {
		return nil, false
	}
	return int64(*v), true
}

func percentSetting(v *int32) (any, bool) {
	if v == nil {
		return nil, false
	}
	return strconv.Itoa(int(*v)), true
}

func quantities(l corev1.ResourceList) map[string]string {
	out := make(map[string]string, len(l))
	for k, q := range l {
		out[string(k)] = q.String()
	}
	return out
}

// bottlerocketKubeletProblems lists the spec.kubelet fields a Bottlerocket
// node cannot be given, each named with what to do instead.
func bottlerocketKubeletProblems(k awsv1.KubeletConfiguration) []string {
	var problems []string
	for _, key := range sortedKeys(k) {
		if !slices.ContainsFunc(bottlerocketKubelet, func(m bottlerocketKubeletSetting) bool { return m.field == key }) {
			problems = append(problems, fmt.Sprintf("%s is not supported with the Bottlerocket AMI family (Bottlerocket takes only the kubelet settings it names; set the matching one under [settings.kubernetes] in spec.userData)",
				field.NewPath("spec", "kubelet", key)))
		}
	}
	return problems
}

// bottlerocketSettings parses the user's Bottlerocket user data, which must be
// TOML whose settings, settings.bootstrap-commands, settings.kubernetes and
// its node-labels and node-taints, when given, are tables; "" is an empty document. Errors name
// spec.userData.
func bottlerocketSettings(userData string) (map[string]any, error) {
	doc := map[string]any{}
	if err := toml.Unmarshal([]byte(userData), &doc); err != nil {
		return nil, fmt.Errorf("spec.userData is not valid TOML, which the Bottlerocket AMI family requires: %w", err)
	}
	settings, err := table(doc, "settings")
	if err != nil {
		return nil, fmt.Errorf("spec.userData: %w", err)
	}
	if v, set := settings["bootstrap-commands"]; set {
		if _, ok := v.(map[string]any); !ok {
			return nil, fmt.Errorf("spec.userData: settings.bootstrap-commands is a %T, want a table", v)
		}
	}
	k8s, err := table(settings, "kubernetes")
	if err != nil {
		return nil, fmt.Errorf("spec.userData: settings.%w", err)
	}
	// Tables nodewright merges into: checked here, so validation refuses
	// them before any launch does.
	for _, key := range []string{"node-labels", "node-taints"} {
		if v, set := k8s[key]; set {
			if _, ok := v.(map[string]any); !ok {
				return nil, fmt.Errorf("spec.userData: settings.kubernetes.%s is a %T, want a table", key, v)
			}
		}
	}
	return doc, nil
}

// table returns doc[key] as a table, creating it when absent.
func table(doc map[string]any, key string) (map[string]any, error) {
	switch v := doc[key].(type) {
	case nil:
		t := map[string]any{}
		doc[key] = t
		return t, nil
	case map[string]any:
		return v, nil
	default:
		return nil, fmt.Errorf("%s is a %T, want a table", key, v)
	}
}

// raid0Command is the Bottlerocket bootstrap command (Karpenter's name) that
// builds the instance store into one array and binds the kubelet's,
// containerd's and pod logs' directories onto it, for instanceStorePolicy
// RAID0. Essential: a node without the disk its allocatable counts on must
// not join.
const raid0Command = "000-mount-instance-storage"

// bottlerocketUserData writes Bottlerocket's TOML user data: the user's
// settings from spec.userData, with the ones nodewright needs set over them,
// as Karpenter documents: the cluster (name, API server, CA, DNS address),
// the kubelet settings spec.kubelet gives, the node's labels (merged, ours
// winning a key both set) and taints (ours replacing the user's of a key
// both set). The cluster DNS address is the user's when they set one, else
// spec.kubelet.clusterDNS, else the tenth address of the service CIDR, as
// nodeadm derives it. With instanceStorePolicy RAID0 a bootstrap command
// builds the instance store array (see raid0Command). The output is canonical (keys sorted), so the same
// inputs give the same launch template.
func bottlerocketUserData(o Options, b bootstrap) (string, error) {
	doc, err := bottlerocketSettings(b.UserData)
	if err != nil {
		return "", err
	}
	settings, _ := table(doc, "settings")
	k8s, _ := table(settings, "kubernetes")
	k8s["cluster-name"] = o.ClusterName
	k8s["api-server"] = o.ClusterEndpoint
	k8s["cluster-certificate"] = o.ClusterCABundle
	if _, set := k8s["cluster-dns-ip"]; !set {
		dns, err := clusterDNS(o.ClusterCIDR)
		if err != nil {
			return "", err
		}
		k8s["cluster-dns-ip"] = dns
	}
	kubelet, errs := b.Kubelet.Settings(field.NewPath("spec", "kubelet"))
	if len(errs) > 0 {
		return "", errs.ToAggregate()
	}
	if problems := bottlerocketKubeletProblems(b.Kubelet); len(problems) > 0 {
		return "", fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	for _, m := range bottlerocketKubelet {
		if v, ok := m.value(kubelet); ok {
			k8s[m.setting] = v
		}
	}
	if len(b.Labels) > 0 {
		labels, err := table(k8s, "node-labels")
		if err != nil {
			return "", fmt.Errorf("spec.userData: settings.kubernetes.%w", err)
		}
		maps.Copy(labels, toAny(b.Labels))
	}
	if len(b.Taints) > 0 {
		taints, err := table(k8s, "node-taints")
		if err != nil {
			return "", fmt.Errorf("spec.userData: settings.kubernetes.%w", err)
		}
		ours := map[string][]string{}
		for _, t := range b.Taints {
			ours[t.Key] = append(ours[t.Key], t.Value+":"+string(t.Effect))
		}
		for k, v := range ours {
			slices.Sort(v)
			taints[k] = v
		}
	}
	if b.InstanceStoreRAID0 {
		commands, err := table(settings, "bootstrap-commands")
		if err != nil {
			return "", fmt.Errorf("spec.userData: settings.%w", err)
		}
		commands[raid0Command] = map[string]any{
			"commands": [][]string{{"apiclient", "ephemeral-storage", "init"},
				{"apiclient", "ephemeral-storage", "bind", "--dirs", "/var/lib/containerd", "/var/lib/kubelet", "/var/log/pods"}},
			"mode": "always", "essential": true,
		}
	}
	out, err := toml.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("writing Bottlerocket settings: %w", err)
	}
	return string(out), nil
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// clusterDNS is the cluster DNS service's address in the service CIDR: its
// tenth address (10.100.0.10 in 10.100.0.0/16, fd00::a in fd00::/108).
func clusterDNS(serviceCIDR string) (string, error) {
	prefix, err := netip.ParsePrefix(serviceCIDR)
	if err != nil {
		return "", fmt.Errorf("cluster service CIDR %q: %w", serviceCIDR, err)
	}
	addr := prefix.Masked().Addr()
	for range 10 {
		addr = addr.Next()
	}
	if !prefix.Contains(addr) {
		return "", fmt.Errorf("cluster service CIDR %s has no tenth address for the DNS service", serviceCIDR)
	}
	return addr.String(), nil
}
