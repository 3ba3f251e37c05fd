package iam

import (
	"context"
	"encoding/base64"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	provider "github.com/nodewright/nodewright/pkg/cloudprovider/aws"
	"github.com/nodewright/nodewright/test/ec2sim"
)

// instanceProfileCalls drives nodewright's instance profile management
// against the simulator through the life of two node classes with
// spec.role: one whose profile it creates, then moves to another role and
// deletes; one whose profile Karpenter made (ownership tags, no region tag),
// which it tags, reuses and deletes. It returns the calls, having checked
// that every IAM action nodewright uses was made.
func instanceProfileCalls(t *testing.T) []ec2sim.Call {
	t.Helper()
	const region = "ap-northeast-2"
	sim, err := ec2sim.StartRegion(region)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	ctx := context.Background()
	clients, err := provider.NewClients(ctx, provider.ClientOptions{Region: region, Endpoint: sim.URL,
		StaticCredentials: &aws.Credentials{AccessKeyID: ec2sim.SimulatorAccessKeyID, SecretAccessKey: "secret"}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := provider.NewNodeClassResolver(clients, provider.Options{ClusterName: "my-cluster", ClusterEndpoint: "https://my-cluster.eks.example",
		ClusterCABundle: base64.StdEncoding.EncodeToString([]byte("ca")), ClusterCIDR: "10.100.0.0/16", KubernetesVersion: "1.37", Region: region})
	if err != nil {
		t.Fatal(err)
	}
	created := &awsv1.EC2NodeClass{Spec: awsv1.EC2NodeClassSpec{Role: "KarpenterNodeRole"}}
	created.Name, created.Generation = "default", 1
	adopted := created.DeepCopy()
	adopted.Name = "karpenter-made"
	// Karpenter's profile, made before nodewright ran; its calls are not
	// evaluated.
	name := aws.String(provider.InstanceProfileName("my-cluster", region, adopted.Name))
	if _, err := clients.IAM.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: name, Tags: []iamtypes.Tag{
		{Key: aws.String("kubernetes.io/cluster/my-cluster"), Value: aws.String("owned")},
		{Key: aws.String(awsv1.TagEC2NodeClass), Value: aws.String(adopted.Name)},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := clients.IAM.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: name, RoleName: aws.String("KarpenterNodeRole")}); err != nil {
		t.Fatal(err)
	}
	before := len(sim.AuditLog())

	for _, step := range []func() error{
		func() error { _, err := r.Resolve(ctx, created); return err },
		func() error {
			created.Spec.Role, created.Generation = "KarpenterGPUNodeRole", 2
			_, err := r.Resolve(ctx, created)
			return err
		},
		func() error { _, err := r.Resolve(ctx, adopted); return err },
		func() error { return r.DeleteInstanceProfile(ctx, created) },
		func() error { return r.DeleteInstanceProfile(ctx, adopted) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	calls := sim.AuditLog()[before:]
	made := map[string]bool{}
	for _, c := range calls {
		made[c.Action] = c.Error == ""
	}
	for _, action := range []string{"iam:GetInstanceProfile", "iam:CreateInstanceProfile", "iam:TagInstanceProfile",
		"iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile"} {
		if !made[action] {
			t.Errorf("no successful %s among the calls", action)
		}
	}
	return calls
}

// The chart's policy allows every IAM call nodewright makes for instance
// profiles, the iam:PassRole of AddRoleToInstanceProfile for the node role
// included, and denies only passing a role other than ${NODE_ROLE_NAME} (the
// GPU role the class moves to): a second node role must be added to the
// PassNodeRole statement, as the install guide says. Tried: removing the
// ManageOurInstanceProfiles statement denies the AddRoleToInstanceProfile,
// RemoveRoleFromInstanceProfile and DeleteInstanceProfile checks; sending
// only the missing tag on TagInstanceProfile is denied by
// TagOurInstanceProfiles.
func TestPolicyAllowsInstanceProfileManagement(t *testing.T) {
	denials := evaluate(t, ChartPolicy(), instanceProfileCalls(t))
	if len(denials) != 1 || denials[0].Call != "iam:AddRoleToInstanceProfile" || denials[0].Check.Action != "iam:PassRole" ||
		denials[0].Check.Resource != "arn:aws:iam::111122223333:role/KarpenterGPUNodeRole" {
		t.Errorf("want only the PassRole of the role that is not the node role denied; got:\n%s", denialList(denials))
	}
}

// The policy grants instance profile actions only on the cluster's profiles
// with its tags: another cluster's profile, an untagged one, and the
// creation of an untagged one are denied.
func TestPolicyScopesInstanceProfiles(t *testing.T) {
	arn := "arn:aws:iam::111122223333:instance-profile/my-cluster_1"
	owned := map[string][]string{"aws:ResourceTag/kubernetes.io/cluster/my-cluster": {"owned"},
		"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": {"default"}, "aws:ResourceTag/topology.kubernetes.io/region": {"ap-northeast-2"}}
	calls := []ec2sim.Call{
		{Action: "iam:DeleteInstanceProfile", Checks: []ec2sim.Check{{Action: "iam:DeleteInstanceProfile", Resource: "arn:aws:iam::111122223333:instance-profile/other_1", Context: owned}}},
		{Action: "iam:DeleteInstanceProfile", Checks: []ec2sim.Check{{Action: "iam:DeleteInstanceProfile", Resource: arn}}},
		{Action: "iam:CreateInstanceProfile", Checks: []ec2sim.Check{{Action: "iam:CreateInstanceProfile", Resource: arn}}},
		{Action: "iam:AddRoleToInstanceProfile", Checks: []ec2sim.Check{{Action: "iam:AddRoleToInstanceProfile", Resource: arn, Context: owned}}},
	}
	denials := evaluate(t, ChartPolicy(), calls)
	if len(denials) != 3 || denials[0].Call != "iam:DeleteInstanceProfile" || denials[1].Call != "iam:DeleteInstanceProfile" || denials[2].Call != "iam:CreateInstanceProfile" {
		t.Errorf("want the two deletions and the untagged creation denied, the tagged role change allowed; got:\n%s", denialList(denials))
	}
}
