package aws

import (
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/utils/ptr"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	"github.com/nodewright/nodewright/test/ec2sim"
)

// TestAL2UserDataGolden: one golden file per kubelet setting (and one
// without any, one for instanceStorePolicy RAID0, one with the user's
// script), under testdata/al2. Each is the whole MIME document an AL2 node
// gets, so a change in any flag's name or format shows as a diff; run with
// -update to accept one. Each must also be read by the simulator's node as
// a kubelet would. Mutations tried: image-gc-high-threshold written as
// image-gc-high-threshold-percent (imageGCHighThresholdPercent.txt
// differs), eviction thresholds written signal=value (evictionHard.txt
// differs), --use-max-pods false left out (maxPods.txt differs), RAID0
// ignored (instanceStorePolicy-RAID0.txt differs), the user's script after
// ours (userData.txt differs), the DNS address left out for several
// (clusterDNS-several.txt differs).
func TestAL2UserDataGolden(t *testing.T) {
	for _, tc := range append(kubeletFlagCases(), []struct{ name, kubelet, userData string }{
		{"instanceStorePolicy-RAID0", "", ""},
		{"userData", "", "#!/bin/bash\necho 'before bootstrap'\n"},
	}...) {
		t.Run(tc.name, func(t *testing.T) {
			b := bottlerocketBootstrap(kubeletJSON(t, tc.kubelet), tc.userData)
			b.InstanceStoreRAID0 = tc.name == "instanceStorePolicy-RAID0"
			ud, err := al2UserData(testOptions, b)
			if err != nil {
				t.Fatal(err)
			}
			checkGoldenNode(t, filepath.Join("testdata", "al2", tc.name+".txt"), ud)
		})
	}
}

// checkGoldenNode checks user data against its golden file, and that the
// simulator's node reads it as a kubelet would: bottlerocketBootstrap's
// labels and taints.
func checkGoldenNode(t *testing.T, path, ud string) {
	t.Helper()
	checkGolden(t, path, ud)
	reg, err := ec2sim.ParseKubeletRegistration(ud)
	if err != nil {
		t.Fatalf("the simulated node does not read its user data: %v", err)
	}
	if reg.Labels["team"] != "data" || len(reg.Taints) != 2 {
		t.Errorf("the node registers with labels %v taints %v", reg.Labels, reg.Taints)
	}
}

// kubeletFlagCases are golden cases for the families whose bootstrap script
// takes the kubelet settings as flags (AL2, Windows): none, then one per
// setting Karpenter maps.
func kubeletFlagCases() []struct{ name, kubelet, userData string } {
	return []struct{ name, kubelet, userData string }{
		{"none", "", ""},
		{"clusterDNS", `{"clusterDNS":["10.0.1.100"]}`, ""},
		{"clusterDNS-several", `{"clusterDNS":["10.0.1.100","10.0.1.101"]}`, ""},
		{"maxPods", `{"maxPods":42}`, ""},
		{"podsPerCore", `{"podsPerCore":4}`, ""},
		{"systemReserved", `{"systemReserved":{"cpu":"100m","memory":"100Mi","ephemeral-storage":"1Gi"}}`, ""},
		{"kubeReserved", `{"kubeReserved":{"cpu":"200m","memory":"100Mi","ephemeral-storage":"3Gi"}}`, ""},
		{"evictionHard", `{"evictionHard":{"memory.available":"5%","nodefs.available":"10%"}}`, ""},
		{"evictionSoft", `{"evictionSoft":{"memory.available":"500Mi","nodefs.available":"15%"},"evictionSoftGracePeriod":{"memory.available":"1m","nodefs.available":"1m30s"}}`, ""},
		{"evictionMaxPodGracePeriod", `{"evictionMaxPodGracePeriod":60}`, ""},
		{"imageGCHighThresholdPercent", `{"imageGCHighThresholdPercent":85}`, ""},
		{"imageGCLowThresholdPercent", `{"imageGCLowThresholdPercent":80}`, ""},
		{"cpuCFSQuota", `{"cpuCFSQuota":false}`, ""},
	}
}

// TestAL2KubeletProblems: a kubelet field bootstrap.sh has no flag for is
// refused by validation (naming it) and by the writer; the mapped ones and
// clusterDNS are not. Mutation tried: accepting every field (no problem for
// kubeAPIQPS).
func TestAL2KubeletProblems(t *testing.T) {
	k := kubeletJSON(t, `{"clusterDNS":["10.0.1.100"],"maxPods":42,"cpuCFSQuota":false,"kubeAPIQPS":30}`)
	problems := al2KubeletProblems(k)
	if len(problems) != 1 || !strings.Contains(problems[0], "spec.kubelet.kubeAPIQPS is not supported with the AL2 AMI family") {
		t.Errorf("problems %q, want one naming spec.kubelet.kubeAPIQPS", problems)
	}
	if _, err := al2UserData(testOptions, bootstrap{Kubelet: k}); err == nil || !strings.Contains(err.Error(), "kubeAPIQPS") {
		t.Errorf("writer error %v, want one naming kubeAPIQPS", err)
	}
}

// TestAL2TemplateUsesBootstrapSh: an AL2 class (by alias or amiFamily) gets
// the bootstrap.sh user data in its launch template, with --local-disks
// raid0 only for instanceStorePolicy RAID0. Mutations tried: dispatching AL2
// to the AL2023 writer (no bootstrap.sh), not passing the policy (no
// --local-disks with RAID0).
func TestAL2TemplateUsesBootstrapSh(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spec  awsv1.EC2NodeClassSpec
		raid0 bool
	}{
		{"alias", awsv1.EC2NodeClassSpec{AMISelectorTerms: []awsv1.AMISelectorTerm{{Alias: "al2@latest"}}}, false},
		{"amiFamily", awsv1.EC2NodeClassSpec{AMISelectorTerms: []awsv1.AMISelectorTerm{{ID: "ami-0a2000000000000a1"}}, AMIFamily: ptr.To("AL2")}, false},
		{"RAID0", awsv1.EC2NodeClassSpec{AMISelectorTerms: []awsv1.AMISelectorTerm{{Alias: "al2@latest"}}, InstanceStorePolicy: ptr.To(awsv1.InstanceStorePolicyRAID0)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ud := templateUserData(t, &awsv1.EC2NodeClass{Spec: tc.spec})
			ps := parts(t, ud)
			last := ps[len(ps)-1]
			if !strings.HasPrefix(last[0], "text/x-shellscript") || !strings.Contains(last[1], "/etc/eks/bootstrap.sh 'my-cluster' --apiserver-endpoint ") {
				t.Fatalf("last part %q, want the bootstrap.sh script", last)
			}
			if strings.Contains(last[1], "--local-disks raid0") != tc.raid0 {
				t.Errorf("--local-disks raid0 in the script = %v, want %v:\n%s", !tc.raid0, tc.raid0, last[1])
			}
		})
	}
}
