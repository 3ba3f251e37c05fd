package aws

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/nodewright/nodewright/test/ec2sim"
	"github.com/samber/lo"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
)

// TestSeedNodeClassResolves: the seed EC2NodeClass resolves to the
// scenario's four private subnets, the cluster security group, the AL2023
// images of each architecture (and the GPU one) and its instance profile.
func TestSeedNodeClassResolves(t *testing.T) {
	e := newEnv(t)
	status, err := e.resolver(t).Resolve(context.Background(), seedNodeClass(t))
	if err != nil {
		t.Fatal(err)
	}
	wantSubnets := []awsv1.Subnet{
		{ID: "subnet-0a000000000000001", Zone: "ap-northeast-2a", ZoneID: "apne2-az1"},
		{ID: "subnet-0b000000000000002", Zone: "ap-northeast-2b", ZoneID: "apne2-az2"},
		{ID: "subnet-0c000000000000003", Zone: "ap-northeast-2c", ZoneID: "apne2-az3"},
		{ID: "subnet-0d000000000000004", Zone: "ap-northeast-2d", ZoneID: "apne2-az4"},
	}
	if !reflect.DeepEqual(status.Subnets, wantSubnets) {
		t.Errorf("subnets = %+v\nwant the four private ones %+v", status.Subnets, wantSubnets)
	}
	if want := []awsv1.SecurityGroup{{ID: "sg-0a00000000000001", Name: "eks-cluster-sg-my-cluster"}}; !reflect.DeepEqual(status.SecurityGroups, want) {
		t.Errorf("security groups = %+v, want the cluster's %+v", status.SecurityGroups, want)
	}
	amis := map[string]string{}
	for _, a := range status.AMIs {
		reqs, _ := json.Marshal(a.Requirements)
		amis[a.ID] = a.Name + " " + string(reqs)
	}
	want := map[string]string{
		"ami-0a2023000000000a1": `amazon-eks-node-al2023-x86_64-standard-1.37-v20261101 [{"key":"kubernetes.io/arch","operator":"In","values":["amd64"]},{"key":"karpenter.k8s.aws/instance-gpu-count","operator":"DoesNotExist"},{"key":"karpenter.k8s.aws/instance-accelerator-count","operator":"DoesNotExist"}]`,
		"ami-0a2023000000000b1": `amazon-eks-node-al2023-arm64-standard-1.37-v20261101 [{"key":"kubernetes.io/arch","operator":"In","values":["arm64"]},{"key":"karpenter.k8s.aws/instance-gpu-count","operator":"DoesNotExist"},{"key":"karpenter.k8s.aws/instance-accelerator-count","operator":"DoesNotExist"}]`,
		"ami-0a2023000000000c1": `amazon-eks-node-al2023-x86_64-nvidia-1.37-v20261101 [{"key":"kubernetes.io/arch","operator":"In","values":["amd64"]},{"key":"karpenter.k8s.aws/instance-gpu-count","operator":"Exists"}]`,
	}
	if !reflect.DeepEqual(amis, want) {
		t.Errorf("AMIs:\n%v\nwant\n%v", amis, want)
	}
	if status.InstanceProfile != "KarpenterNodeInstanceProfile" {
		t.Errorf("instance profile = %q, want the spec's", status.InstanceProfile)
	}
	for _, c := range append(readinessConditions, ConditionTypeReady) {
		if cond := meta.FindStatusCondition(status.Conditions, c); cond == nil || cond.Status != metav1.ConditionTrue || cond.ObservedGeneration != 1 {
			t.Errorf("condition %s = %+v, want True for generation 1", c, cond)
		}
	}
	if e.sim.Calls("AmazonSSM.GetParameter") == 0 {
		t.Error("the alias was not resolved through SSM")
	}
}

// TestSelectorMatchingNothingIsNamed: a term that selects nothing makes its
// condition and Ready False, with a message quoting the term.
func TestSelectorMatchingNothingIsNamed(t *testing.T) {
	for _, tc := range []struct {
		name, condition, reason, message string
		edit                             func(*awsv1.EC2NodeClass)
	}{
		{"subnet tags", awsv1.ConditionTypeSubnetsReady, ReasonSubnetsNotFound, `no subnet matches subnetSelectorTerms[0] {"tags":{"Tier":"nope"}}`,
			func(nc *awsv1.EC2NodeClass) {
				nc.Spec.SubnetSelectorTerms = []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"Tier": "nope"}}}
			}},
		{"subnet id", awsv1.ConditionTypeSubnetsReady, ReasonSubnetsNotFound, `no subnet matches subnetSelectorTerms[0] {"id":"subnet-0f000000000000009"}, subnetSelectorTerms[1] {"tags":{"Name":"private-2a","Tier":"public"}}`,
			func(nc *awsv1.EC2NodeClass) {
				nc.Spec.SubnetSelectorTerms = []awsv1.SubnetSelectorTerm{{ID: "subnet-0f000000000000009"}, {Tags: map[string]string{"Tier": "public", "Name": "private-2a"}}}
			}},
		{"security group name", awsv1.ConditionTypeSecurityGroupsReady, ReasonSecurityGroupsNotFound, `no security group matches securityGroupSelectorTerms[0] {"name":"no-such-group"}`,
			func(nc *awsv1.EC2NodeClass) {
				nc.Spec.SecurityGroupSelectorTerms = []awsv1.SecurityGroupSelectorTerm{{Name: "no-such-group"}}
			}},
		{"AMI name", awsv1.ConditionTypeAMIsReady, ReasonAMINotFound, `no AMI matches amiSelectorTerms[0] {"name":"my-golden-image-*"}`,
			func(nc *awsv1.EC2NodeClass) {
				nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Name: "my-golden-image-*"}}
				nc.Spec.AMIFamily = ptr.To("AL2023")
			}},
		{"AMI alias release", awsv1.ConditionTypeAMIsReady, ReasonAMINotFound, `no AMI matches amiSelectorTerms[0] alias al2023@v20200101`,
			func(nc *awsv1.EC2NodeClass) {
				nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: "al2023@v20200101"}}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			nc := seedNodeClass(t)
			tc.edit(nc)
			status, err := e.resolver(t).Resolve(context.Background(), nc)
			if err != nil {
				t.Fatal(err)
			}
			c := meta.FindStatusCondition(status.Conditions, tc.condition)
			if c == nil || c.Status != metav1.ConditionFalse || c.Reason != tc.reason || c.Message != tc.message {
				t.Errorf("%s = %+v\nwant False, %s, %q", tc.condition, c, tc.reason, tc.message)
			}
			ready := meta.FindStatusCondition(status.Conditions, ConditionTypeReady)
			if ready == nil || ready.Status != metav1.ConditionFalse || !strings.Contains(ready.Message, tc.condition+"=False: "+tc.message) {
				t.Errorf("Ready = %+v, want False naming %s", ready, tc.condition)
			}
		})
	}
}

// TestSelectorTerms: terms are ORed, a term's fields ANDed, "*" matches any
// value, and a term that matched nothing is named even when others matched.
func TestSelectorTerms(t *testing.T) {
	e := newEnv(t)
	nc := seedNodeClass(t)
	nc.Spec.SubnetSelectorTerms = []awsv1.SubnetSelectorTerm{
		{Tags: map[string]string{"Tier": "*", "Name": "*"}},
		{Tags: map[string]string{"Tier": "private", "Name": "public-2a"}},
	}
	nc.Spec.SecurityGroupSelectorTerms = []awsv1.SecurityGroupSelectorTerm{{ID: "sg-0b00000000000002"}, {Name: "eks-cluster-sg-my-cluster"}}
	status, err := e.resolver(t).Resolve(context.Background(), nc)
	if err != nil {
		t.Fatal(err)
	}
	if len(status.Subnets) != 5 {
		t.Errorf("Tier=* and Name=* select %d subnets, want all 5", len(status.Subnets))
	}
	if status.Subnets[len(status.Subnets)-1].ID != "subnet-0e000000000000005" {
		t.Errorf("subnets are not ordered by free addresses: %+v", status.Subnets)
	}
	c := meta.FindStatusCondition(status.Conditions, awsv1.ConditionTypeSubnetsReady)
	if c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, `subnetSelectorTerms[1] {"tags":{"Name":"public-2a","Tier":"private"}} matched nothing`) {
		t.Errorf("SubnetsReady = %+v, want True naming the term that matched nothing", c)
	}
	if got := status.SecurityGroups; len(got) != 2 || got[0].ID != "sg-0a00000000000001" || got[1].Name != "default" {
		t.Errorf("security groups by id or name = %+v, want both", got)
	}
}

// TestAMITerms: a pinned alias release missing from SSM is found by its image
// name; name terms keep the newest image per architecture.
func TestAMITerms(t *testing.T) {
	e := newEnv(t)
	nc := seedNodeClass(t)
	nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: "al2023@v20261001"}}
	status, err := e.resolver(t).Resolve(context.Background(), nc)
	if err != nil {
		t.Fatal(err)
	}
	if len(status.AMIs) != 1 || status.AMIs[0].ID != "ami-0a2023000000000a0" {
		t.Errorf("al2023@v20261001 = %+v, want the October x86 image", status.AMIs)
	}

	nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Name: "amazon-eks-node-al2023-*-standard-1.37-*", Owner: "amazon"}}
	nc.Spec.AMIFamily = ptr.To("AL2023")
	status, err = e.resolver(t).Resolve(context.Background(), nc)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range status.AMIs {
		got = append(got, a.ID+" "+a.Requirements[0].Values[0])
	}
	if want := []string{"ami-0a2023000000000a1 amd64", "ami-0a2023000000000b1 arm64"}; !reflect.DeepEqual(got, want) {
		t.Errorf("name term = %v, want the newest image per architecture %v", got, want)
	}
	nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{ID: "ami-0a2023000000000a0"}, {ID: "ami-0a2023000000000b1"}}
	status, _ = e.resolver(t).Resolve(context.Background(), nc)
	if len(status.AMIs) != 2 || status.AMIs[0].ID != "ami-0a2023000000000b1" || status.AMIs[1].ID != "ami-0a2023000000000a0" {
		t.Errorf("id terms = %+v, want both, newest first", status.AMIs)
	}
}

// TestAMITermsByTagsAndSSMParameter: a tags term selects the images carrying
// every tag (any value for "*"), an ssmParameter term the image the
// parameter names (fails when the term's tags or parameter are not read:
// every image, or none; tried dropping the tag filter).
func TestAMITermsByTagsAndSSMParameter(t *testing.T) {
	e := newEnvWith(t, func(s *ec2sim.Scenario, _ *catalog.Snapshot) {
		for i := range s.Images {
			if s.Images[i].ID == "ami-0a2023000000000a0" {
				s.Images[i].Tags = map[string]string{"team": "platform", "golden": "2026-10"}
			}
		}
	})
	nc := seedNodeClass(t)
	nc.Spec.AMIFamily = ptr.To("AL2023")
	for _, tc := range []struct {
		term awsv1.AMISelectorTerm
		want []string
	}{
		{awsv1.AMISelectorTerm{Tags: map[string]string{"team": "platform", "golden": "*"}}, []string{"ami-0a2023000000000a0"}},
		{awsv1.AMISelectorTerm{Tags: map[string]string{"team": "platform", "golden": "2026-11"}}, nil},
		{awsv1.AMISelectorTerm{SSMParameter: "/aws/service/eks/optimized-ami/1.37/amazon-linux-2023/arm64/standard/recommended/image_id"}, []string{"ami-0a2023000000000b1"}},
	} {
		nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{tc.term}
		status, err := e.resolver(t).Resolve(context.Background(), nc)
		if err != nil {
			t.Fatal(err)
		}
		got := lo.Map(status.AMIs, func(a awsv1.AMI, _ int) string { return a.ID })
		if len(got) == 0 {
			got = nil
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("term %+v selected %v, want %v", tc.term, got, tc.want)
		}
	}
}

// TestValidationCondition: what the provider cannot launch with is reported
// on ValidationSucceeded and keeps the node class from being Ready.
func TestValidationCondition(t *testing.T) {
	e := newEnv(t)
	nc := seedNodeClass(t)
	nc.Spec.Kubelet = awsv1.KubeletConfiguration{"evictionHard": apiextensionsv1.JSON{Raw: []byte(`{"disk.available":"5%"}`)}}
	nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Name: "amazon-eks-node-al2023-*"}}
	nc.Spec.AMIFamily = ptr.To("Windows2022")
	nc.Spec.InstanceStorePolicy = ptr.To(awsv1.InstanceStorePolicyRAID0)
	status, err := e.resolver(t).Resolve(context.Background(), nc)
	if err != nil {
		t.Fatal(err)
	}
	c := meta.FindStatusCondition(status.Conditions, awsv1.ConditionTypeValidationSucceeded)
	if c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "spec.kubelet.evictionHard[disk.available]") || !strings.Contains(c.Message, "spec.instanceStorePolicy RAID0 is not supported with the Windows2022 AMI family") {
		t.Errorf("ValidationSucceeded = %+v", c)
	}
	if meta.IsStatusConditionTrue(status.Conditions, ConditionTypeReady) {
		t.Error("an invalid node class is Ready")
	}
}

// TestBottlerocketAliasResolves: bottlerocket@latest and a pinned release
// (with or without its v) resolve through Bottlerocket's public SSM
// parameters to the aws-k8s image of each architecture (for types without
// accelerators and for Neuron types) and the nvidia image (for GPU types),
// and the class is Ready. Mutations tried: the nvidia variant's parameter
// without "-nvidia" (its entry gets the standard image), keeping the v of
// v1.49.0 in the parameter (the pinned alias resolves nothing).
func TestBottlerocketAliasResolves(t *testing.T) {
	standard := `[{"key":"kubernetes.io/arch","operator":"In","values":["%s"]},{"key":"karpenter.k8s.aws/instance-gpu-count","operator":"DoesNotExist"},{"key":"karpenter.k8s.aws/instance-accelerator-count","operator":"DoesNotExist"}]`
	gpu := `[{"key":"kubernetes.io/arch","operator":"In","values":["%s"]},{"key":"karpenter.k8s.aws/instance-gpu-count","operator":"Exists"}]`
	neuron := `[{"key":"kubernetes.io/arch","operator":"In","values":["%s"]},{"key":"karpenter.k8s.aws/instance-accelerator-count","operator":"Exists"}]`
	latest := []string{
		"ami-0b07000000000a150 " + fmt.Sprintf(standard, "amd64"), "ami-0b07000000000c150 " + fmt.Sprintf(gpu, "amd64"), "ami-0b07000000000a150 " + fmt.Sprintf(neuron, "amd64"),
		"ami-0b07000000000b150 " + fmt.Sprintf(standard, "arm64"), "ami-0b07000000000b150 " + fmt.Sprintf(neuron, "arm64"),
	}
	for _, tc := range []struct {
		alias string
		want  []string
	}{
		{"bottlerocket@latest", latest},
		{"bottlerocket@v1.50.0", latest},
		{"bottlerocket@1.50.0", latest},
		{"bottlerocket@v1.49.0", []string{"ami-0b07000000000a149 " + fmt.Sprintf(standard, "amd64"), "ami-0b07000000000a149 " + fmt.Sprintf(neuron, "amd64")}},
	} {
		t.Run(tc.alias, func(t *testing.T) {
			e := newEnv(t)
			nc := seedNodeClass(t)
			nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: tc.alias}}
			nc = e.resolved(t, nc)
			if got := amiSummaries(nc); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("AMIs:\n%s\nwant\n%s", strings.Join(amiSummaries(nc), "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestUnsupportedFamilyIsNamed: a family nodewright writes no user data for
// (one the CRD would refuse, as from an older or newer schema) makes the
// class not Ready, with a message naming the field it came from and the
// families that are supported. (Before, the message named neither.)
// Mutation tried: familyField returning "" (the messages lose the field).
func TestUnsupportedFamilyIsNamed(t *testing.T) {
	for _, tc := range []struct {
		name, field string
		edit        func(*awsv1.EC2NodeClass)
	}{
		{"alias ubuntu", "spec.amiSelectorTerms[0].alias ubuntu@latest: AMI family ubuntu", func(nc *awsv1.EC2NodeClass) {
			nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: "ubuntu@latest"}}
		}},
		{"amiFamily Ubuntu", "spec.amiFamily: AMI family Ubuntu", func(nc *awsv1.EC2NodeClass) {
			nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Name: "amazon-eks-node-al2023-*"}}
			nc.Spec.AMIFamily = ptr.To("Ubuntu")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			nc := seedNodeClass(t)
			tc.edit(nc)
			status, err := e.resolver(t).Resolve(context.Background(), nc)
			if err != nil {
				t.Fatal(err)
			}
			ready := meta.FindStatusCondition(status.Conditions, ConditionTypeReady)
			if ready == nil || ready.Status != metav1.ConditionFalse || !strings.Contains(ready.Message, tc.field+" is not supported") || !strings.Contains(ready.Message, "AL2, AL2023, Bottlerocket and Windows2019/2022/2025") {
				t.Errorf("Ready = %+v\nwant False naming %q and the supported families", ready, tc.field)
			}
		})
	}
}

// TestResolutionFailureKeepsStatus: EC2 failing keeps what was resolved, so a
// throttled API never takes a working node class out of service.
func TestResolutionFailureKeepsStatus(t *testing.T) {
	e := newEnv(t)
	nc := e.resolved(t, seedNodeClass(t))
	e.sim.FailAlways("DescribeSubnets", "InternalError", 500)
	status, err := e.resolver(t).Resolve(context.Background(), nc)
	if err == nil || !strings.Contains(err.Error(), "describing subnets") {
		t.Fatalf("want the DescribeSubnets failure returned, got %v", err)
	}
	if len(status.Subnets) != 4 || !meta.IsStatusConditionTrue(status.Conditions, ConditionTypeReady) {
		t.Errorf("a failed lookup dropped the resolved subnets or readiness: %+v", status)
	}
	fresh := seedNodeClass(t)
	status, _ = e.resolver(t).Resolve(context.Background(), fresh)
	if c := meta.FindStatusCondition(status.Conditions, awsv1.ConditionTypeSubnetsReady); c == nil || c.Status != metav1.ConditionUnknown || c.Reason != ReasonResolutionFailed {
		t.Errorf("first resolution failing: SubnetsReady = %+v, want Unknown", c)
	}
	if c := meta.FindStatusCondition(status.Conditions, ConditionTypeReady); c.Status != metav1.ConditionUnknown {
		t.Errorf("Ready = %+v, want Unknown while subnets are unresolved", c)
	}
}

// TestResolutionFailureAfterSpecChange: a class switched to another AMI
// whose lookup fails is not Ready for its new generation (AMIsReady Unknown,
// Ready naming the failed lookup), so Create refuses to launch the AMI the old
// spec selected; once the lookup works the new AMI is resolved and launched.
// Mutation tried: keeping a failed part's condition whatever generation it
// was resolved for (the old `if FindStatusCondition(...) == nil`): Ready
// came out True for generation 2 and Create launched the old AMI.
func TestResolutionFailureAfterSpecChange(t *testing.T) {
	e := newEnv(t)
	old := e.resolved(t, seedNodeClass(t))
	changed := old.DeepCopy()
	changed.Generation = 2
	changed.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{ID: "ami-0a2023000000000a0"}}
	changed.Spec.AMIFamily = ptr.To(amiFamilyAL2023)
	e.sim.FailAlways("DescribeImages", "InternalError", 500)
	e.sim.FailAlways("GetParameter", "InternalServerError", 500)
	status, err := e.resolver(t).Resolve(context.Background(), changed)
	if err == nil {
		t.Fatal("the failed AMI lookup was not returned")
	}
	if c := meta.FindStatusCondition(status.Conditions, awsv1.ConditionTypeAMIsReady); c == nil || c.Status != metav1.ConditionUnknown || c.Reason != ReasonResolutionFailed || c.ObservedGeneration != 2 {
		t.Errorf("AMIsReady = %+v, want Unknown (ResolutionFailed) for generation 2", c)
	}
	ready := meta.FindStatusCondition(status.Conditions, ConditionTypeReady)
	if ready.Status == metav1.ConditionTrue || ready.Reason != ReasonResolutionFailed || !strings.Contains(ready.Message, awsv1.ConditionTypeAMIsReady) {
		t.Errorf("Ready = %+v, want not True, reason ResolutionFailed, naming AMIsReady", ready)
	}
	changed.Status = status
	_, err = e.cloudProvider(t, changed).Create(context.Background(), newClaim(changed.Name, req(v1.LabelInstanceTypeStable, "m5.xlarge")))
	if !cloudprovider.IsNodeClassNotReady(err) || !strings.Contains(err.Error(), awsv1.ConditionTypeAMIsReady) {
		t.Errorf("Create on the stale resolution: want a NodeClassNotReadyError naming AMIsReady, got %v", err)
	}
	if n := e.sim.Calls("CreateFleet"); n != 0 {
		t.Errorf("CreateFleet called %d times while the new AMI is unresolved", n)
	}

	e.sim.Heal()
	changed = e.resolved(t, changed)
	launched, err := e.cloudProvider(t, changed).Create(context.Background(), newClaim(changed.Name, req(v1.LabelInstanceTypeStable, "m5.xlarge")))
	if err != nil {
		t.Fatal(err)
	}
	if launched.Status.ImageID != "ami-0a2023000000000a0" {
		t.Errorf("launched %s, want the new spec's ami-0a2023000000000a0", launched.Status.ImageID)
	}
}
