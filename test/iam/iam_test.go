package iam

import (
	"context"
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/nodewright/nodewright/test/ec2sim"
)

// The policy the chart shipped before issue 11: it requires the cluster and
// NodePool request tags on every resource a launch creates, which the
// launches of then did not put on the fleet, the network interface and the
// spot request.
var policyBefore = filepath.Join("testdata", "iam-policy-before-issue-11.json")

var vars = Vars{"CLUSTER_NAME": "my-cluster", "AWS_ACCOUNT_ID": "111122223333", "NODE_ROLE_NAME": "KarpenterNodeRole", "INTERRUPTION_QUEUE": "my-cluster-interruptions", "AWS_REGION": "ap-northeast-2"}

func tags(kv ...string) []ec2types.Tag {
	var out []ec2types.Tag
	for i := 0; i < len(kv); i += 2 {
		out = append(out, ec2types.Tag{Key: aws.String(kv[i]), Value: aws.String(kv[i+1])})
	}
	return out
}

// clusterTags are the tags nodewright puts on what it creates (resourceTags
// in pkg/cloudprovider/aws).
var clusterTags = tags("kubernetes.io/cluster/my-cluster", "owned", "eks:eks-cluster-name", "my-cluster",
	"karpenter.k8s.aws/ec2nodeclass", "default", "karpenter.sh/nodepool", "default")

// launch makes one spot launch the way nodewright does, through the
// simulator: a launch template and a CreateFleet. tagged says whether they
// tag everything they create, as nodewright does since issue 11, or only
// volumes and the instance, as before.
func launch(t *testing.T, tagged bool) []ec2sim.Call {
	t.Helper()
	sim, err := ec2sim.StartRegion("ap-northeast-2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	client := ec2.New(ec2.Options{Region: "ap-northeast-2", BaseEndpoint: aws.String(sim.URL),
		Credentials: credentials.NewStaticCredentialsProvider(ec2sim.SimulatorAccessKeyID, "secret", "")})
	ctx := context.Background()
	specs := []ec2types.LaunchTemplateTagSpecificationRequest{{ResourceType: ec2types.ResourceTypeVolume, Tags: clusterTags}}
	if tagged {
		specs = append(specs,
			ec2types.LaunchTemplateTagSpecificationRequest{ResourceType: ec2types.ResourceTypeNetworkInterface, Tags: clusterTags},
			ec2types.LaunchTemplateTagSpecificationRequest{ResourceType: ec2types.ResourceTypeSpotInstancesRequest, Tags: clusterTags})
	}
	if _, err := client.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("nodewright/my-cluster/0123456789abcdef"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{
			ImageId: aws.String("ami-0a2023000000000a1"), SecurityGroupIds: []string{"sg-0a00000000000001"},
			IamInstanceProfile: &ec2types.LaunchTemplateIamInstanceProfileSpecificationRequest{Name: aws.String("KarpenterNodeInstanceProfile")},
			UserData:           aws.String(base64.StdEncoding.EncodeToString([]byte("#!/bin/sh"))),
			TagSpecifications:  specs,
		},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: clusterTags}},
	}); err != nil {
		t.Fatal(err)
	}
	instanceTags := append(tags("karpenter.sh/nodeclaim", "default-abcde", "Name", "default-abcde"), clusterTags...)
	fleetSpecs := []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: instanceTags}}
	if tagged {
		fleetSpecs = append(fleetSpecs,
			ec2types.TagSpecification{ResourceType: ec2types.ResourceTypeVolume, Tags: instanceTags},
			ec2types.TagSpecification{ResourceType: ec2types.ResourceTypeFleet, Tags: instanceTags})
	}
	out, err := client.CreateFleet(ctx, &ec2.CreateFleetInput{
		Type: ec2types.FleetTypeInstant,
		LaunchTemplateConfigs: []ec2types.FleetLaunchTemplateConfigRequest{{
			LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecificationRequest{LaunchTemplateName: aws.String("nodewright/my-cluster/0123456789abcdef"), Version: aws.String("$Latest")},
			Overrides: []ec2types.FleetLaunchTemplateOverridesRequest{{
				InstanceType: "c5.large", SubnetId: aws.String("subnet-0a000000000000001"), AvailabilityZone: aws.String("ap-northeast-2a"),
			}},
		}},
		TargetCapacitySpecification: &ec2types.TargetCapacitySpecificationRequest{TotalTargetCapacity: aws.Int32(1), DefaultTargetCapacityType: ec2types.DefaultTargetCapacityTypeSpot},
		SpotOptions:                 &ec2types.SpotOptionsRequest{AllocationStrategy: ec2types.SpotAllocationStrategyPriceCapacityOptimized},
		TagSpecifications:           fleetSpecs,
	})
	if err != nil || len(out.Instances) != 1 {
		t.Fatalf("CreateFleet: %v %+v", err, out)
	}
	if _, err := client.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: out.Instances[0].InstanceIds}); err != nil {
		t.Fatal(err)
	}
	return sim.AuditLog()
}

func evaluate(t *testing.T, policy string, calls []ec2sim.Call) []Denial {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	denials, err := Evaluate(ctx, policy, vars, calls)
	if err != nil {
		t.Fatal(err)
	}
	return denials
}

// The policy shipped before issue 11 denies a launch whose fleet, network
// interface and spot request carry no request tags, naming the statement
// whose conditions they fail; tagging them as nodewright now does makes the
// chart's policy allow every check of the launch, and the old policy too.
// Leaving the fleet untagged again (tagged=false for the second launch)
// fails the last assertion with the fleet/* denial quoted in the first.
func TestEvaluateFindsTheUntaggedLaunch(t *testing.T) {
	denials := evaluate(t, policyBefore, launch(t, false))
	denied := map[string]Denial{}
	for _, d := range denials {
		if d.Call != "ec2:CreateFleet" {
			t.Errorf("unexpected denial %s", d)
		}
		denied[d.Check.Action+" "+strings.TrimPrefix(d.Check.Resource, "arn:aws:ec2:ap-northeast-2:111122223333:")] = d
	}
	for _, want := range []string{
		"ec2:CreateFleet fleet/*",
		"ec2:CreateFleet network-interface/*", "ec2:RunInstances network-interface/*",
		"ec2:CreateFleet spot-instances-request/*", "ec2:RunInstances spot-instances-request/*",
	} {
		d, ok := denied[want]
		if !ok {
			t.Errorf("no denial of %s; denials:\n%s", want, denialList(denials))
			continue
		}
		if d.Decision != "ImplicitlyDenied" || len(d.Reasons) != 1 ||
			!strings.Contains(d.Reasons[0], "statement LaunchTaggedForTheCluster grants") ||
			!strings.Contains(d.Reasons[0], `StringEquals aws:RequestTag/kubernetes.io/cluster/my-cluster "owned" (the request has no aws:RequestTag/kubernetes.io/cluster/my-cluster)`) {
			t.Errorf("denial of %s does not name the statement and the missing tag:\n%s", want, d)
		}
	}
	if len(denied) != 5 {
		t.Errorf("want the 5 denials above, got:\n%s", denialList(denials))
	}

	tagged := launch(t, true)
	for _, policy := range []string{ChartPolicy(), policyBefore} {
		if denials := evaluate(t, policy, tagged); len(denials) != 0 {
			t.Errorf("%s denies the tagged launch:\n%s", policy, denialList(denials))
		}
	}
}

// Checks outside a launch: a role other than the node role, an action no
// statement names, and a queue other than the interruption queue are denied,
// each with what the policy does grant.
func TestEvaluateExplainsWhatThePolicyGrants(t *testing.T) {
	calls := []ec2sim.Call{{Action: "ec2:CreateFleet", Checks: []ec2sim.Check{
		{Action: "iam:PassRole", Resource: "arn:aws:iam::111122223333:role/Admin", Context: map[string][]string{"iam:PassedToService": {"ec2.amazonaws.com"}}},
		{Action: "iam:PassRole", Resource: "arn:aws:iam::111122223333:role/KarpenterNodeRole", Context: map[string][]string{"iam:PassedToService": {"ec2.amazonaws.com"}}},
	}}, {Action: "ec2:DescribeVolumes", Checks: []ec2sim.Check{{Action: "ec2:DescribeVolumes", Resource: "*"}}},
		{Action: "sqs:ReceiveMessage", Checks: []ec2sim.Check{{Action: "sqs:ReceiveMessage", Resource: "arn:aws:sqs:ap-northeast-2:111122223333:other"}}},
		{Action: "ssm:GetParameter", Checks: []ec2sim.Check{{Action: "ssm:GetParameter", Resource: "arn:aws:ssm:ap-northeast-2::parameter/aws/service/eks/optimized-ami/1.37/amazon-linux-2023/x86_64/standard/recommended/image_id"}}},
	}
	denials := evaluate(t, ChartPolicy(), calls)
	want := []string{
		"no statement grants iam:PassRole on arn:aws:iam::111122223333:role/Admin; statements with the action cover only: PassNodeRole (arn:aws:iam::111122223333:role/KarpenterNodeRole)",
		"no statement grants ec2:DescribeVolumes on *; no statement names the action",
		"no statement grants sqs:ReceiveMessage on arn:aws:sqs:ap-northeast-2:111122223333:other; statements with the action cover only: InterruptionQueue (arn:aws:sqs:*:111122223333:my-cluster-interruptions)",
	}
	if len(denials) != len(want) {
		t.Fatalf("want %d denials, got:\n%s", len(want), denialList(denials))
	}
	for i, d := range denials {
		if len(d.Reasons) == 0 || d.Reasons[0] != want[i] {
			t.Errorf("denial %d:\n%s\nwant reason %q", i, d, want[i])
		}
	}
}

// A placeholder the caller does not fill is an error, not a silent deny.
func TestEvaluateRefusesAnUnfilledPlaceholder(t *testing.T) {
	_, err := Evaluate(context.Background(), ChartPolicy(), Vars{"CLUSTER_NAME": "my-cluster"}, nil)
	if err == nil || !strings.Contains(err.Error(), "no --var for ${AWS_ACCOUNT_ID}") {
		t.Errorf("got %v", err)
	}
}

func denialList(denials []Denial) string {
	var b strings.Builder
	for _, d := range denials {
		b.WriteString("  " + d.String() + "\n")
	}
	return b.String()
}
