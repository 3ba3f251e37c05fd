package ec2sim

import (
	"context"
	"encoding/base64"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

const account = "111122223333"

// lastCall is the latest recorded call of action.
func lastCall(t *testing.T, sim *Server, action string) Call {
	t.Helper()
	calls := sim.AuditLog()
	for i := len(calls) - 1; i >= 0; i-- {
		if calls[i].Action == action {
			return calls[i]
		}
	}
	t.Fatalf("no %s in the audit log", action)
	return Call{}
}

// check finds the check of action on resource.
func check(t *testing.T, c Call, action, resource string) Check {
	t.Helper()
	for _, ch := range c.Checks {
		if ch.Action == action && ch.Resource == resource {
			return ch
		}
	}
	var have []string
	for _, ch := range c.Checks {
		have = append(have, ch.Action+" "+ch.Resource)
	}
	t.Fatalf("%s has no check of %s on %s; it has:\n%s", c.Action, action, resource, strings.Join(have, "\n"))
	return Check{}
}

func arn(resource string) string { return "arn:aws:ec2:ap-northeast-2:" + account + ":" + resource }

var clusterTags = map[string]string{"kubernetes.io/cluster/my-cluster": "owned", "karpenter.sh/nodepool": "default"}

func tagList(tags map[string]string) []ec2types.Tag {
	var out []ec2types.Tag
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		out = append(out, ec2types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	return out
}

// A spot fleet from a template that tags network interfaces and spot
// requests is recorded with every resource IAM checks: the fleet and what
// its launch creates as type/* with their request tags (the template's for
// the types it tags), the implicit ec2:CreateTags with ec2:CreateAction,
// what it uses with their resource tags, and the instance profile's role.
// Dropping the template's tags from the created resources (the clone of
// lt.Data.TagSpecifications in createFleet's audit) fails the network
// interface's request tag assertion.
func TestAuditLogRecordsTheChecksOfAFleet(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	lt, err := e.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("nodes"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{
			ImageId: aws.String(amiX86), SecurityGroupIds: []string{sgNodes},
			IamInstanceProfile: &ec2types.LaunchTemplateIamInstanceProfileSpecificationRequest{Name: aws.String("KarpenterNodeInstanceProfile")},
			UserData:           aws.String(base64.StdEncoding.EncodeToString([]byte("#!/bin/sh"))),
			BlockDeviceMappings: []ec2types.LaunchTemplateBlockDeviceMappingRequest{{
				DeviceName: aws.String("/dev/xvdb"), Ebs: &ec2types.LaunchTemplateEbsBlockDeviceRequest{SnapshotId: aws.String("snap-0123456789abcdef0")},
			}},
			TagSpecifications: []ec2types.LaunchTemplateTagSpecificationRequest{
				{ResourceType: ec2types.ResourceTypeNetworkInterface, Tags: tagList(clusterTags)},
				{ResourceType: ec2types.ResourceTypeSpotInstancesRequest, Tags: tagList(clusterTags)},
			},
		},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: tagList(clusterTags)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ltID := aws.ToString(lt.LaunchTemplate.LaunchTemplateId)
	created := lastCall(t, e.sim, "ec2:CreateLaunchTemplate")
	if ch := check(t, created, "ec2:CreateLaunchTemplate", arn("launch-template/*")); !maps.Equal(ch.RequestTags, clusterTags) {
		t.Errorf("CreateLaunchTemplate request tags %v", ch.RequestTags)
	}
	if ch := check(t, created, "ec2:CreateTags", arn("launch-template/*")); !slices.Equal(ch.Context["ec2:CreateAction"], []string{"CreateLaunchTemplate"}) {
		t.Errorf("tag-on-create context %v", ch.Context)
	}

	in := fleetInput("nodes", ec2types.DefaultTargetCapacityTypeSpot, 1, override("c5.large", "ap-northeast-2a"))
	fleetTags := map[string]string{"kubernetes.io/cluster/my-cluster": "owned", "karpenter.sh/nodepool": "default", "karpenter.sh/nodeclaim": "default-abc"}
	in.TagSpecifications = []ec2types.TagSpecification{
		{ResourceType: ec2types.ResourceTypeFleet, Tags: tagList(fleetTags)},
		{ResourceType: ec2types.ResourceTypeInstance, Tags: tagList(fleetTags)},
	}
	out := e.createFleet(t, in)
	if len(launched(out)) != 1 {
		t.Fatalf("fleet launched %v, errors %+v", launched(out), out.Errors)
	}
	fleet := lastCall(t, e.sim, "ec2:CreateFleet")
	if fleet.Caller != SimulatorAccessKeyID || fleet.Error != "" {
		t.Errorf("caller %q error %q", fleet.Caller, fleet.Error)
	}
	ch := check(t, fleet, "ec2:CreateFleet", arn("fleet/*"))
	if !maps.Equal(ch.RequestTags, fleetTags) || ch.Context["aws:RequestTag/karpenter.sh/nodeclaim"][0] != "default-abc" ||
		!slices.Equal(ch.Context["aws:TagKeys"], []string{"karpenter.sh/nodeclaim", "karpenter.sh/nodepool", "kubernetes.io/cluster/my-cluster"}) {
		t.Errorf("fleet check %+v", ch)
	}
	check(t, fleet, "ec2:CreateTags", arn("fleet/*"))
	for _, action := range []string{"ec2:CreateFleet", "ec2:RunInstances"} {
		if ch := check(t, fleet, action, arn("instance/*")); !maps.Equal(ch.RequestTags, fleetTags) {
			t.Errorf("%s instance request tags %v", action, ch.RequestTags)
		}
		if ch := check(t, fleet, action, arn("network-interface/*")); !maps.Equal(ch.RequestTags, clusterTags) {
			t.Errorf("%s network interface request tags %v, want the template's", action, ch.RequestTags)
		}
		check(t, fleet, action, arn("spot-instances-request/*"))
		if ch := check(t, fleet, action, arn("volume/*")); ch.RequestTags != nil {
			t.Errorf("%s volume request tags %v, want none: nothing tags volumes", action, ch.RequestTags)
		}
		if ch := check(t, fleet, action, arn("launch-template/"+ltID)); !maps.Equal(ch.ResourceTags, clusterTags) || ch.Context["aws:ResourceTag/kubernetes.io/cluster/my-cluster"][0] != "owned" {
			t.Errorf("%s launch template check %+v", action, ch)
		}
		check(t, fleet, action, "arn:aws:ec2:ap-northeast-2::image/"+amiX86)
		check(t, fleet, action, "arn:aws:ec2:ap-northeast-2::snapshot/snap-0123456789abcdef0")
		check(t, fleet, action, arn("subnet/"+subnet2a))
		if ch := check(t, fleet, action, arn("security-group/"+sgNodes)); ch.ResourceTags["kubernetes.io/cluster/my-cluster"] != "owned" {
			t.Errorf("security group resource tags %v", ch.ResourceTags)
		}
	}
	for _, createAction := range []string{"CreateFleet", "RunInstances"} {
		found := false
		for _, ch := range fleet.Checks {
			if ch.Action == "ec2:CreateTags" && ch.Resource == arn("network-interface/*") && ch.Context["ec2:CreateAction"][0] == createAction {
				found = true
			}
		}
		if !found {
			t.Errorf("no ec2:CreateTags of the network interface with ec2:CreateAction %s", createAction)
		}
	}
	if ch := check(t, fleet, "iam:PassRole", "arn:aws:iam::"+account+":role/KarpenterNodeRole"); ch.Context["iam:PassedToService"][0] != "ec2.amazonaws.com" {
		t.Errorf("PassRole context %v", ch.Context)
	}

	// Terminating and deleting are checked on the resources' own tags.
	id := launched(out)[0]
	if _, err := e.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatal(err)
	}
	if ch := check(t, lastCall(t, e.sim, "ec2:TerminateInstances"), "ec2:TerminateInstances", arn("instance/"+id)); ch.ResourceTags["karpenter.sh/nodeclaim"] != "default-abc" {
		t.Errorf("terminate resource tags %v", ch.ResourceTags)
	}
	if _, err := e.ec2.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateName: aws.String("nodes")}); err != nil {
		t.Fatal(err)
	}
	if ch := check(t, lastCall(t, e.sim, "ec2:DeleteLaunchTemplate"), "ec2:DeleteLaunchTemplate", arn("launch-template/"+ltID)); !maps.Equal(ch.ResourceTags, clusterTags) {
		t.Errorf("delete resource tags %v", ch.ResourceTags)
	}
}

// An on-demand fleet asks for no spot request; Describe calls are checked on
// "*"; a failed call keeps its error code; public SSM parameters have no
// account in their ARN; a batch delete is authorized as sqs:DeleteMessage.
func TestAuditLogRecordsOtherCalls(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.launchTemplate(t, "nodes", "")
	e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("c5.large", "ap-northeast-2a")))
	for _, ch := range lastCall(t, e.sim, "ec2:CreateFleet").Checks {
		if strings.Contains(ch.Resource, "spot-instances-request") {
			t.Errorf("on-demand fleet checked %s on %s", ch.Action, ch.Resource)
		}
		if ch.Action == "iam:PassRole" {
			t.Errorf("a template without an instance profile passes no role: %+v", ch)
		}
	}
	if _, err := e.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{}); err != nil {
		t.Fatal(err)
	}
	if c := lastCall(t, e.sim, "ec2:DescribeInstances"); len(c.Checks) != 1 || c.Checks[0].Resource != "*" {
		t.Errorf("DescribeInstances checks %+v", c.Checks)
	}
	e.sim.FailNext("DescribeSubnets", "UnauthorizedOperation", 403, 1)
	_, _ = e.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	calls := e.sim.AuditLog()
	if c := calls[len(calls)-1]; c.Action != "ec2:DescribeSubnets" || c.Error != "UnauthorizedOperation" {
		t.Errorf("failed call recorded as %+v", c)
	}
	name := "/aws/service/eks/optimized-ami/1.37/amazon-linux-2023/x86_64/standard/recommended/image_id"
	if _, err := e.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	check(t, lastCall(t, e.sim, "ssm:GetParameter"), "ssm:GetParameter", "arn:aws:ssm:ap-northeast-2::parameter"+name)
	q := e.sim.CreateQueue("interruptions")
	_, _ = newSQS(e.sim).DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(q),
		Entries: []sqstypes.DeleteMessageBatchRequestEntry{{Id: aws.String("1"), ReceiptHandle: aws.String("x")}}})
	check(t, lastCall(t, e.sim, "sqs:DeleteMessageBatch"), "sqs:DeleteMessage", "arn:aws:sqs:ap-northeast-2:"+account+":interruptions")
}
