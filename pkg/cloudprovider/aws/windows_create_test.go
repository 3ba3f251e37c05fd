package aws

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/ptr"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/ec2sim"
)

// TestWindowsAliasResolves: windows2019@latest, windows2022@latest and
// windows2025@latest resolve through the public
// /aws/service/ami-windows-latest/Windows_Server-<year>-English-Core-EKS_Optimized-<k8s version>
// parameters to one x86 image each, required on amd64 Windows nodes of
// the edition's build, and the class is Ready. Mutations tried: the
// parameter without -Core (nothing resolves, not Ready), every edition
// given 2022's build (2019's and 2025's requirements differ).
func TestWindowsAliasResolves(t *testing.T) {
	reqs := `[{"key":"kubernetes.io/arch","operator":"In","values":["amd64"]},{"key":"kubernetes.io/os","operator":"In","values":["windows"]},{"key":"node.kubernetes.io/windows-build","operator":"In","values":["%s"]}]`
	for _, tc := range []struct{ alias, ami, build string }{
		{"windows2019@latest", "ami-0e20190000000a137", "10.0.17763"},
		{"windows2022@latest", "ami-0e20220000000a137", "10.0.20348"},
		{"windows2025@latest", "ami-0e20250000000a137", "10.0.26100"},
	} {
		t.Run(tc.alias, func(t *testing.T) {
			e := newEnv(t)
			nc := seedNodeClass(t)
			nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: tc.alias}}
			nc = e.resolved(t, nc)
			if want := []string{tc.ami + " " + fmt.Sprintf(reqs, tc.build)}; !reflect.DeepEqual(amiSummaries(nc), want) {
				t.Errorf("AMIs:\n%s\nwant\n%s", strings.Join(amiSummaries(nc), "\n"), strings.Join(want, "\n"))
			}
			if !meta.IsStatusConditionTrue(nc.Status.Conditions, ConditionTypeReady) {
				t.Errorf("not Ready: %+v", nc.Status.Conditions)
			}
		})
	}
}

// TestCreateWindows: a windows2022@latest class's catalog holds only x86
// types, each labelled kubernetes.io/os=windows and the 2022 build (so a
// pod selecting Windows finds them and one selecting Linux none); a claim
// for a Windows node launches the Windows image with a 50GiB /dev/sda1 root
// volume (the nodes' ephemeral storage) and PowerShell user data calling Start-EKSBootstrap.ps1, the
// claim carries the Windows labels, and the simulated node registers as
// Windows with the claim's labels and taints. Mutations tried:
// restrictCatalog not relabelling Windows types (the Windows image matches
// no type: no catalog), claimFromInstance leaving the region catalog's
// os=linux on the claim, the Linux default disk for Windows (/dev/xvda
// 20GiB), rootVolumeSize ignoring Windows (20Gi ephemeral), dispatching Windows to the AL2 writer (user data not PowerShell).
func TestCreateWindows(t *testing.T) {
	e := newEnv(t)
	nc := seedNodeClass(t)
	nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: "windows2022@latest"}}
	nc = e.resolved(t, nc)
	p := e.cloudProvider(t, nc)

	c, _, err := p.Catalog(context.Background(), pool(nc.Name))
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range c.Types {
		if it.Labels[v1.LabelOSStable] != "windows" || it.Labels[v1.LabelWindowsBuild] != "10.0.20348" || it.Labels[v1.LabelArchStable] != v1.ArchitectureAmd64 {
			t.Fatalf("%s is labelled os=%s build=%q arch=%s, want windows 10.0.20348 amd64", it.Name,
				it.Labels[v1.LabelOSStable], it.Labels[v1.LabelWindowsBuild], it.Labels[v1.LabelArchStable])
		}
	}
	if c.Get("m5.xlarge") == nil || c.Get("c6g.large") != nil {
		t.Errorf("m5.xlarge offered %v, c6g.large offered %v: want the x86 type only", c.Get("m5.xlarge") != nil, c.Get("c6g.large") != nil)
	}

	claim := newClaim(nc.Name, req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand), req(v1.LabelInstanceTypeStable, "m5.xlarge"), req(v1.LabelOSStable, "windows"))
	got, err := p.Create(context.Background(), claim)
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels[v1.LabelOSStable] != "windows" || got.Labels[v1.LabelWindowsBuild] != "10.0.20348" {
		t.Errorf("claim labels os=%q build=%q, want windows 10.0.20348", got.Labels[v1.LabelOSStable], got.Labels[v1.LabelWindowsBuild])
	}
	inst := simInstance(t, e.sim, got.Status.ProviderID)
	if inst.ImageID != "ami-0e20220000000a137" {
		t.Errorf("image %s, want the Windows Server 2022 EKS image", inst.ImageID)
	}
	lt := onlyTemplate(t, e.sim)
	var disks []string
	for _, b := range lt.Data.BlockDeviceMappings {
		disks = append(disks, fmt.Sprintf("%s %s %dGiB encrypted=%t", b.DeviceName, b.VolumeType, b.VolumeSize, b.Encrypted))
	}
	if want := []string{"/dev/sda1 gp3 50GiB encrypted=true"}; !reflect.DeepEqual(disks, want) {
		t.Errorf("block devices %q, want Windows' root volume %q", disks, want)
	}
	if s, err := NodeSettings(nc, 0); err != nil || s.EphemeralStorage == nil || s.EphemeralStorage.String() != "50Gi" {
		t.Errorf("nodes' ephemeral storage %v (%v), want the 50Gi root volume", s.EphemeralStorage, err)
	}
	text, err := lt.Data.DecodedUserData()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(text, "<powershell>\n") || !strings.Contains(text, "& $EKSBootstrapScriptFile -EKSClusterName 'my-cluster'") {
		t.Fatalf("user data is not the Start-EKSBootstrap.ps1 PowerShell:\n%s", text)
	}
	reg, err := ec2sim.ParseKubeletRegistration(text)
	if err != nil {
		t.Fatalf("the simulated node does not read its user data: %v", err)
	}
	if reg.Labels["karpenter.sh/nodepool"] != "batch-processing" || reg.Labels[awsv1.LabelEC2NodeClass] != nc.Name || len(reg.Taints) == 0 {
		t.Errorf("the node registers with labels %v taints %v", reg.Labels, reg.Taints)
	}
}

// TestWindowsAMIFamily: spec.amiFamily Windows2019 with an image chosen by
// id (no alias) is Ready, its catalog is Windows of the 2019 build, and its
// launch template gets the PowerShell user data. Mutations tried: the
// Windows families dropped from validate's switch (not Ready: AMI family
// not supported), windowsBuild reading the alias only (types stay linux:
// no catalog).
func TestWindowsAMIFamily(t *testing.T) {
	e := newEnv(t)
	nc := seedNodeClass(t)
	nc.Spec.AMIFamily = ptr.To("Windows2019")
	nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{ID: "ami-0e20190000000a137"}}
	nc = e.resolved(t, nc)
	if !meta.IsStatusConditionTrue(nc.Status.Conditions, ConditionTypeReady) {
		t.Fatalf("not Ready: %+v", nc.Status.Conditions)
	}
	c, _, err := e.cloudProvider(t, nc).Catalog(context.Background(), pool(nc.Name))
	if err != nil {
		t.Fatal(err)
	}
	if it := c.Get("m5.xlarge"); it == nil || it.Labels[v1.LabelOSStable] != "windows" || it.Labels[v1.LabelWindowsBuild] != "10.0.17763" {
		t.Errorf("m5.xlarge in the catalog: %v, want it labelled windows 10.0.17763", it)
	}
	if ud := templateUserData(t, nc); !strings.HasPrefix(ud, "<powershell>\n") {
		t.Errorf("user data is not PowerShell:\n%s", ud)
	}
}
