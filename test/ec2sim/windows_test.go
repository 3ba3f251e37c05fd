package ec2sim

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// windowsUserData is the PowerShell user data Karpenter writes for an EKS
// Windows node, with a user's line before the bootstrap call.
const windowsUserData = `<powershell>
Write-Host 'before bootstrap'
[string]$EKSBootstrapScriptFile = "$env:ProgramFiles\Amazon\EKS\Start-EKSBootstrap.ps1"
& $EKSBootstrapScriptFile -EKSClusterName 'demo' -APIServerEndpoint 'https://demo.eks' -Base64ClusterCA 'Y2E=' -KubeletExtraArgs '--node-labels="karpenter.sh/nodepool=win,team=o''brien" --register-with-taints="os=windows:NoSchedule" --max-pods=29' -DNSClusterIP '10.100.0.10'
</powershell>
`

// TestParseWindowsUserData: the simulated node reads the labels, taints and
// pod limit from Start-EKSBootstrap.ps1's -KubeletExtraArgs (a doubled
// quote is one quote in PowerShell), and refuses a call PowerShell would
// stop: an unknown parameter, one without its value, no cluster name, an
// unclosed block. Mutations tried: not dispatching <powershell> to
// readPowerShell (no labels read), accepting any parameter name (the
// -NodeName call is accepted), keeping both quotes of ” (team=o”brien).
func TestParseWindowsUserData(t *testing.T) {
	got, err := ParseKubeletRegistration(windowsUserData)
	if err != nil {
		t.Fatal(err)
	}
	pods := int32(29)
	want := KubeletRegistration{
		Labels:  map[string]string{"karpenter.sh/nodepool": "win", "team": "o'brien"},
		Taints:  []corev1.Taint{{Key: "os", Value: "windows", Effect: corev1.TaintEffectNoSchedule}},
		MaxPods: &pods,
	}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("got %s\nwant %s", show(got), show(want))
	}
	for _, bad := range []string{
		strings.Replace(windowsUserData, " -DNSClusterIP", " -NodeName 'n' -DNSClusterIP", 1),
		strings.Replace(windowsUserData, "-EKSClusterName 'demo' ", "", 1),
		strings.Replace(windowsUserData, " -DNSClusterIP '10.100.0.10'", " -DNSClusterIP", 1),
		strings.Replace(windowsUserData, "</powershell>", "", 1),
	} {
		if _, err := ParseKubeletRegistration(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// TestWindowsImageNode: a Windows image is described with platform windows
// (lower case, as EC2 answers, though the SDK enum says Windows; and
// found by the platform filter), refused on an Arm type as EC2 does,
// and an instance of it registers as a Windows node of its build, with
// the labels of its user data. Mutations tried: the node always linux (os
// label linux), no windows-build label, platform left out of
// DescribeImages (filter finds nothing).
func TestWindowsImageNode(t *testing.T) {
	e := newEnv(t)
	const ami = "ami-0e20220000000a137"
	images, err := e.ec2.DescribeImages(context.Background(), &ec2.DescribeImagesInput{
		Owners: []string{"amazon"}, Filters: []ec2types.Filter{{Name: aws.String("platform"), Values: []string{"windows"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, img := range images.Images {
		ids = append(ids, aws.ToString(img.ImageId))
		if img.Platform != "windows" || aws.ToString(img.PlatformDetails) != "Windows" {
			t.Errorf("%s: platform %q details %q, want windows", aws.ToString(img.ImageId), img.Platform, aws.ToString(img.PlatformDetails))
		}
	}
	if len(ids) != 3 || !strings.Contains(strings.Join(ids, " "), ami) {
		t.Errorf("platform=windows images %v, want the three EKS Windows images", ids)
	}
	if _, err := e.ec2.CreateLaunchTemplate(context.Background(), &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("windows"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{
			ImageId: aws.String(ami), SecurityGroupIds: []string{sgNodes},
			UserData: aws.String(base64.StdEncoding.EncodeToString([]byte(windowsUserData))),
		},
	}); err != nil {
		t.Fatal(err)
	}
	arm := e.createFleet(t, fleetInput("windows", "on-demand", 1, override("m6g.large", "ap-northeast-2a")))
	if len(launched(arm)) != 0 {
		t.Errorf("a Windows (x86_64) image launched on m6g.large")
	}
	out := e.createFleet(t, fleetInput("windows", "on-demand", 1, override("m5.large", "ap-northeast-2a")))
	in := e.instance(t, launched(out)[0])
	node, err := e.sim.kubeletNode(in)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		corev1.LabelOSStable: "windows", "beta.kubernetes.io/os": "windows", corev1.LabelWindowsBuild: "10.0.20348",
		"karpenter.sh/nodepool": "win",
	} {
		if node.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, node.Labels[k], v)
		}
	}
	if node.Status.NodeInfo.OperatingSystem != "windows" || len(node.Spec.Taints) != 1 {
		t.Errorf("node OS %q taints %v", node.Status.NodeInfo.OperatingSystem, node.Spec.Taints)
	}
}
