// The file is not named userdata_windows.go: Go would build it for GOOS=windows only.

package aws

import (
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
)

// windowsBuilds are the Windows build numbers (node.kubernetes.io/windows-build,
// major.minor.build as the kubelet reports it) of the EKS-optimized Windows
// Server images, by AMI family. A class of one of these families launches
// Windows nodes: its catalog labels types kubernetes.io/os=windows and this
// build, so only pods that select Windows land there.
var windowsBuilds = map[string]string{
	amiFamilyWindows2019: "10.0.17763",
	amiFamilyWindows2022: "10.0.20348",
	amiFamilyWindows2025: "10.0.26100",
}

// windowsBuild is the Windows build of nc's AMI family, "" for a Linux one.
func windowsBuild(nc *awsv1.EC2NodeClass) string {
	return windowsBuilds[AMIFamily(nc)]
}

// windowsBuildOf is windowsBuild, "" for no class.
func windowsBuildOf(nc *awsv1.EC2NodeClass) string {
	if nc == nil {
		return ""
	}
	return windowsBuild(nc)
}

// windowsProblems lists what a Windows class asks for that an EKS Windows
// node cannot do: a kubelet field Start-EKSBootstrap.ps1 has no flag for,
// instanceStorePolicy RAID0 (the script builds no array) and an IPv6
// cluster (EKS runs Windows nodes in IPv4 clusters only).
func windowsProblems(nc *awsv1.EC2NodeClass, clusterCIDR string) []string {
	family := AMIFamily(nc)
	problems := kubeletExtraArgsProblems(nc.Spec.Kubelet, family,
		"Start-EKSBootstrap.ps1 passes the kubelet only the flags Karpenter's fields map to; set it from spec.userData's PowerShell")
	if ptr.Deref(nc.Spec.InstanceStorePolicy, "") == awsv1.InstanceStorePolicyRAID0 {
		problems = append(problems, fmt.Sprintf("spec.instanceStorePolicy RAID0 is not supported with the %s AMI family (Start-EKSBootstrap.ps1 builds no instance store array)", family))
	}
	if prefix, err := netip.ParsePrefix(clusterCIDR); err == nil && prefix.Addr().Is6() {
		problems = append(problems, fmt.Sprintf("%s: the %s AMI family cannot join this IPv6 cluster (EKS supports Windows nodes in IPv4 clusters only)", familyField(nc), family))
	}
	return problems
}

// windowsUserData writes the PowerShell user data of an EKS-optimized
// Windows node, as Karpenter does: one <powershell> block, the user's own
// PowerShell first (its <powershell> tags dropped, EC2Launch runs one
// block), then the call to Start-EKSBootstrap.ps1 with the cluster, its DNS
// address (spec.kubelet.clusterDNS, else the tenth address of the service
// CIDR) and the claim's labels, taints and kubelet settings as
// -KubeletExtraArgs. Windows nodes take no MIME document: EC2Launch would run
// it as PowerShell, so MIME in spec.userData is refused.
func windowsUserData(o Options, b bootstrap) (string, error) {
	kubelet, errs := b.Kubelet.Settings(field.NewPath("spec", "kubelet"))
	if len(errs) > 0 {
		return "", errs.ToAggregate()
	}
	if problems := kubeletExtraArgsProblems(b.Kubelet, "Windows", "Start-EKSBootstrap.ps1 passes the kubelet only the flags Karpenter's fields map to"); len(problems) > 0 {
		return "", fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	if b.InstanceStoreRAID0 {
		return "", fmt.Errorf("spec.instanceStorePolicy RAID0 is not supported with Windows AMI families")
	}
	if prefix, err := netip.ParsePrefix(o.ClusterCIDR); err == nil && prefix.Addr().Is6() {
		return "", fmt.Errorf("windows nodes cannot join the IPv6 cluster %s", o.ClusterName)
	}
	user := strings.TrimSpace(b.UserData)
	if strings.HasPrefix(user, "MIME-Version:") || strings.HasPrefix(user, "Content-Type:") {
		return "", fmt.Errorf("spec.userData: a Windows node runs its user data as PowerShell, not a MIME document")
	}
	user = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(user, "<powershell>"), "</powershell>"))

	args, dns, err := kubeletExtraArgs(o, b, kubelet)
	if err != nil {
		return "", err
	}
	var script strings.Builder
	script.WriteString("<powershell>\n")
	if user != "" {
		script.WriteString(user + "\n")
	}
	script.WriteString(`[string]$EKSBootstrapScriptFile = "$env:ProgramFiles\Amazon\EKS\Start-EKSBootstrap.ps1"` + "\n")
	fmt.Fprintf(&script, "& $EKSBootstrapScriptFile -EKSClusterName %s -APIServerEndpoint %s -Base64ClusterCA %s",
		psQuote(o.ClusterName), psQuote(o.ClusterEndpoint), psQuote(o.ClusterCABundle))
	if len(args) > 0 {
		fmt.Fprintf(&script, " -KubeletExtraArgs %s", psQuote(strings.Join(args, " ")))
	}
	fmt.Fprintf(&script, " -DNSClusterIP %s\n", psQuote(dns))
	script.WriteString("</powershell>\n")
	return script.String(), nil
}

// psQuote quotes s as one PowerShell single-quoted string, in which only a
// single quote is special (written twice).
func psQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
