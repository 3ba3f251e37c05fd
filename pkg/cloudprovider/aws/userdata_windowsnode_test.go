package aws

import (
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/utils/ptr"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
)

// TestWindowsUserDataGolden: one golden file per kubelet setting (and one
// without any, one with the user's PowerShell), under testdata/windows.
// Each is the whole <powershell> block a Windows node gets, so a change in
// any flag's name or format shows as a diff; run with -update to accept
// one. Each must also be read by the simulator's node as
// Start-EKSBootstrap.ps1 and its kubelet would. Mutations tried: the user's
// PowerShell after the bootstrap call (userData.txt differs), its
// <powershell> tags kept (a nested block: userData.txt differs),
// -DNSClusterIP left out without clusterDNS (none.txt differs), single
// quotes not doubled (userData-quote.txt differs and the simulated node
// refuses the call).
func TestWindowsUserDataGolden(t *testing.T) {
	for _, tc := range append(kubeletFlagCases(), []struct{ name, kubelet, userData string }{
		{"userData", "", "<powershell>\nWrite-Host 'before bootstrap'\n</powershell>\n"},
		{"userData-quote", "", "Write-Host \"no tags\""},
	}...) {
		t.Run(tc.name, func(t *testing.T) {
			b := bottlerocketBootstrap(kubeletJSON(t, tc.kubelet), tc.userData)
			o := testOptions
			if tc.name == "userData-quote" {
				o.ClusterName = "team's-cluster"
			}
			ud, err := windowsUserData(o, b)
			if err != nil {
				t.Fatal(err)
			}
			checkGoldenNode(t, filepath.Join("testdata", "windows", tc.name+".txt"), ud)
		})
	}
}

// TestWindowsProblems: what a Windows node cannot be given is refused by
// validation naming the field, and by the writer: a kubelet field
// Start-EKSBootstrap.ps1 has no flag for, instanceStorePolicy RAID0, an
// IPv6 cluster, MIME user data. The mapped kubelet fields are not.
// Mutations tried: windowsProblems without the kubelet check (no problem
// for kubeAPIQPS), without the RAID0 check, the writer taking MIME user
// data as PowerShell.
func TestWindowsProblems(t *testing.T) {
	nc := &awsv1.EC2NodeClass{Spec: awsv1.EC2NodeClassSpec{
		AMISelectorTerms: []awsv1.AMISelectorTerm{{Alias: "windows2022@latest"}},
		Kubelet:          kubeletJSON(t, `{"clusterDNS":["10.0.1.100"],"maxPods":42,"cpuCFSQuota":false,"kubeAPIQPS":30}`),
	}}
	problems := windowsProblems(nc, testOptions.ClusterCIDR)
	if len(problems) != 1 || !strings.Contains(problems[0], "spec.kubelet.kubeAPIQPS is not supported with the Windows2022 AMI family") {
		t.Errorf("problems %q, want one naming spec.kubelet.kubeAPIQPS", problems)
	}
	nc.Spec.Kubelet = nil
	nc.Spec.InstanceStorePolicy = ptr.To(awsv1.InstanceStorePolicyRAID0)
	problems = windowsProblems(nc, "fd00:10::/108")
	if len(problems) != 2 || !strings.Contains(problems[0], "spec.instanceStorePolicy RAID0") || !strings.Contains(problems[1], "spec.amiSelectorTerms[0].alias windows2022@latest: the Windows2022 AMI family cannot join this IPv6 cluster") {
		t.Errorf("problems %q, want RAID0 and the IPv6 cluster named", problems)
	}
	for name, b := range map[string]bootstrap{
		"kubeAPIQPS": {Kubelet: kubeletJSON(t, `{"kubeAPIQPS":30}`)},
		"RAID0":      {InstanceStoreRAID0: true},
		"MIME":       {UserData: "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b--\n"},
	} {
		if _, err := windowsUserData(testOptions, b); err == nil {
			t.Errorf("%s: the writer accepted it", name)
		}
	}
}
