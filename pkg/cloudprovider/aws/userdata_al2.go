package aws

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
)

// al2KubeletFlag is one spec.kubelet field and the kubelet flag that carries
// it through bootstrap.sh's --kubelet-extra-args; value is false when the
// field is not set.
type al2KubeletFlag struct {
	field, flag string
	value       func(awsv1.KubeletSettings) (string, bool)
}

// al2KubeletFlags maps the spec.kubelet fields Karpenter's EC2NodeClass has
// to kubelet flags, in the order Karpenter writes them. clusterDNS is not
// here: bootstrap.sh takes it as --dns-cluster-ip and writes it into the
// kubelet's configuration itself. Any other kubelet field is refused:
// bootstrap.sh takes no configuration file, only flags, and the kubelet has
// no flag for most of its configuration.
var al2KubeletFlags = []al2KubeletFlag{
	{"maxPods", "max-pods", func(k awsv1.KubeletSettings) (string, bool) { return intFlag(k.MaxPods) }},
	{"podsPerCore", "pods-per-core", func(k awsv1.KubeletSettings) (string, bool) { return intFlag(k.PodsPerCore) }},
	{"systemReserved", "system-reserved", func(k awsv1.KubeletSettings) (string, bool) { return resourceFlag(k.SystemReserved) }},
	{"kubeReserved", "kube-reserved", func(k awsv1.KubeletSettings) (string, bool) { return resourceFlag(k.KubeReserved) }},
	{"evictionHard", "eviction-hard", func(k awsv1.KubeletSettings) (string, bool) { return thresholdFlag(k.EvictionHard) }},
	{"evictionSoft", "eviction-soft", func(k awsv1.KubeletSettings) (string, bool) { return thresholdFlag(k.EvictionSoft) }},
	{"evictionSoftGracePeriod", "eviction-soft-grace-period", func(k awsv1.KubeletSettings) (string, bool) {
		pairs := make([]string, 0, len(k.EvictionSoftGracePeriod))
		for _, signal := range sortedKeys(k.EvictionSoftGracePeriod) {
			pairs = append(pairs, signal+"="+k.EvictionSoftGracePeriod[signal].String())
		}
		return strings.Join(pairs, ","), len(pairs) > 0
	}},
	{"evictionMaxPodGracePeriod", "eviction-max-pod-grace-period", func(k awsv1.KubeletSettings) (string, bool) {
		return intFlag(k.EvictionMaxPodGracePeriod)
	}},
	{"imageGCHighThresholdPercent", "image-gc-high-threshold", func(k awsv1.KubeletSettings) (string, bool) {
		return intFlag(k.ImageGCHighThresholdPercent)
	}},
	{"imageGCLowThresholdPercent", "image-gc-low-threshold", func(k awsv1.KubeletSettings) (string, bool) {
		return intFlag(k.ImageGCLowThresholdPercent)
	}},
	{"cpuCFSQuota", "cpu-cfs-quota", func(k awsv1.KubeletSettings) (string, bool) {
		if k.CPUCFSQuota == nil {
			return "", false
		}
		return strconv.FormatBool(*k.CPUCFSQuota), true
	}},
}

func intFlag(v *int32) (string, bool) {
	if v == nil {
		return "", false
	}
	return strconv.Itoa(int(*v)), true
}

// resourceFlag renders a reservation as the kubelet reads it:
// cpu=100m,memory=100Mi, sorted by resource.
func resourceFlag(l corev1.ResourceList) (string, bool) {
	pairs := make([]string, 0, len(l))
	for name, q := range l {
		pairs = append(pairs, string(name)+"="+q.String())
	}
	slices.Sort(pairs)
	return strings.Join(pairs, ","), len(pairs) > 0
}

// thresholdFlag renders eviction thresholds as the kubelet reads them:
// memory.available<5%, sorted by signal.
func thresholdFlag(m map[string]string) (string, bool) {
	pairs := make([]string, 0, len(m))
	for _, signal := range sortedKeys(m) {
		pairs = append(pairs, signal+"<"+m[signal])
	}
	return strings.Join(pairs, ","), len(pairs) > 0
}

// al2KubeletProblems lists the spec.kubelet fields an AL2 node cannot be
// given, each named with what to do instead.
func al2KubeletProblems(k awsv1.KubeletConfiguration) []string {
	return kubeletExtraArgsProblems(k, amiFamilyAL2, "bootstrap.sh passes the kubelet only the flags Karpenter's fields map to; set it from a script in spec.userData, or use AL2023")
}

// kubeletExtraArgsProblems lists the spec.kubelet fields a family whose
// bootstrap script takes kubelet flags only (AL2's bootstrap.sh, Windows'
// Start-EKSBootstrap.ps1) cannot pass: all but al2KubeletFlags' and
// clusterDNS. why says why and what to do instead.
func kubeletExtraArgsProblems(k awsv1.KubeletConfiguration, family, why string) []string {
	var problems []string
	for _, key := range sortedKeys(k) {
		if key == "clusterDNS" || slices.ContainsFunc(al2KubeletFlags, func(f al2KubeletFlag) bool { return f.field == key }) {
			continue
		}
		problems = append(problems, fmt.Sprintf("%s is not supported with the %s AMI family (%s)", field.NewPath("spec", "kubelet", key), family, why))
	}
	return problems
}

// al2UserData writes MIME multipart user data for the EKS AL2 AMI, as
// Karpenter does: the user's parts first (a script that is not MIME is one
// shell part), then nodewright's script calling /etc/eks/bootstrap.sh with
// the cluster, its DNS address (spec.kubelet.clusterDNS, else the tenth
// address of the service CIDR, rather than the address bootstrap.sh would
// guess from the VPC), the claim's labels and taints and the kubelet
// settings as --kubelet-extra-args, and --local-disks raid0 for
// instanceStorePolicy RAID0. With maxPods set, --use-max-pods false stops
// bootstrap.sh writing its ENI-based limit over it.
func al2UserData(o Options, b bootstrap) (string, error) {
	kubelet, errs := b.Kubelet.Settings(field.NewPath("spec", "kubelet"))
	if len(errs) > 0 {
		return "", errs.ToAggregate()
	}
	if problems := al2KubeletProblems(b.Kubelet); len(problems) > 0 {
		return "", fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	args, dns, err := kubeletExtraArgs(o, b, kubelet)
	if err != nil {
		return "", err
	}

	var script strings.Builder
	script.WriteString("#!/bin/bash -xe\n")
	script.WriteString("exec > >(tee /var/log/user-data.log|logger -t user-data -s 2>/dev/console) 2>&1\n")
	fmt.Fprintf(&script, "/etc/eks/bootstrap.sh %s --apiserver-endpoint %s --b64-cluster-ca %s", shellQuote(o.ClusterName), shellQuote(o.ClusterEndpoint), shellQuote(o.ClusterCABundle))
	script.WriteString(" \\\n--container-runtime containerd")
	if prefix, err := netip.ParsePrefix(o.ClusterCIDR); err == nil && prefix.Addr().Is6() {
		fmt.Fprintf(&script, " \\\n--ip-family ipv6 --service-ipv6-cidr %s", shellQuote(o.ClusterCIDR))
	}
	fmt.Fprintf(&script, " \\\n--dns-cluster-ip %s", shellQuote(dns))
	if kubelet.MaxPods != nil {
		script.WriteString(" \\\n--use-max-pods false")
	}
	if b.InstanceStoreRAID0 {
		script.WriteString(" \\\n--local-disks raid0")
	}
	if len(args) > 0 {
		fmt.Fprintf(&script, " \\\n--kubelet-extra-args %s", shellQuote(strings.Join(args, " ")))
	}
	script.WriteString("\n")

	parts, err := userParts(b.UserData, contentTypeShell)
	if err != nil {
		return "", fmt.Errorf("reading spec.userData: %w", err)
	}
	return mimeUserData(append(parts, typedPart(contentTypeShell+`; charset="us-ascii"`, []byte(script.String()))))
}

// kubeletExtraArgs are the kubelet flags a bootstrap script that takes
// flags only passes on: the claim's labels and taints, then the kubelet
// settings Karpenter maps, and --cluster-dns when clusterDNS has several
// addresses (the scripts take one, dns: spec.kubelet.clusterDNS's first,
// else the tenth address of the service CIDR, rather than the address the
// script would guess from the VPC).
func kubeletExtraArgs(o Options, b bootstrap, kubelet awsv1.KubeletSettings) (args []string, dns string, err error) {
	if len(b.Labels) > 0 {
		args = append(args, fmt.Sprintf("--node-labels=%q", formatLabels(b.Labels)))
	}
	if len(b.Taints) > 0 {
		args = append(args, fmt.Sprintf("--register-with-taints=%q", formatTaints(b.Taints)))
	}
	for _, f := range al2KubeletFlags {
		if v, ok := f.value(kubelet); ok {
			args = append(args, "--"+f.flag+"="+v)
		}
	}
	if len(kubelet.ClusterDNS) == 0 {
		dns, err = clusterDNS(o.ClusterCIDR)
		return args, dns, err
	}
	if len(kubelet.ClusterDNS) > 1 {
		args = append(args, "--cluster-dns="+strings.Join(kubelet.ClusterDNS, ","))
	}
	return args, kubelet.ClusterDNS[0], nil
}

// shellQuote quotes s as one shell word: in single quotes, a single quote
// in it closed, escaped and reopened.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
