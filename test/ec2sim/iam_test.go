package ec2sim

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
)

func iamClient(e *env) *iam.Client {
	return iam.New(iam.Options{
		Region: region, BaseEndpoint: aws.String(e.sim.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDSIMULATOR", "secret", ""),
		Retryer:     retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = 1 }),
	})
}

// The real IAM client drives an instance profile through its life, and each
// step AWS refuses is refused with AWS's error code: a second profile of the
// same name (EntityAlreadyExists, also in another case), a role that does not
// exist and a profile that does not (NoSuchEntity), a second role
// (LimitExceeded: one role per profile), deleting a profile that holds a role
// (DeleteConflict). Mutations tried: dropping the role quota check lets the
// second AddRoleToInstanceProfile succeed; deleting without the role check
// lets the first DeleteInstanceProfile succeed; both fail this test.
func TestInstanceProfileLifecycle(t *testing.T) {
	e := newEnv(t)
	c := iamClient(e)
	ctx := context.Background()
	name := aws.String("my-cluster_123")

	created, err := c.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: name,
		Tags: []iamtypes.Tag{{Key: aws.String("kubernetes.io/cluster/my-cluster"), Value: aws.String("owned")}}})
	if err != nil {
		t.Fatal(err)
	}
	if p := created.InstanceProfile; aws.ToString(p.Arn) != "arn:aws:iam::111122223333:instance-profile/my-cluster_123" || len(p.Roles) != 0 || len(p.Tags) != 1 || p.CreateDate == nil {
		t.Errorf("created %+v", p)
	}
	for _, n := range []string{"my-cluster_123", "MY-CLUSTER_123"} {
		if _, err := c.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(n)}); errorCode(err) != "EntityAlreadyExists" {
			t.Errorf("creating %s again: want EntityAlreadyExists, got %v", n, err)
		}
	}
	if _, err := c.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: name, RoleName: aws.String("NoSuchRole")}); errorCode(err) != "NoSuchEntity" {
		t.Errorf("adding a role that does not exist: want NoSuchEntity, got %v", err)
	}
	if _, err := c.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: name, RoleName: aws.String("KarpenterNodeRole")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: name, RoleName: aws.String("KarpenterGPUNodeRole")}); errorCode(err) != "LimitExceeded" {
		t.Errorf("adding a second role: want LimitExceeded, got %v", err)
	}
	got, err := c.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: name})
	if err != nil || len(got.InstanceProfile.Roles) != 1 || aws.ToString(got.InstanceProfile.Roles[0].RoleName) != "KarpenterNodeRole" ||
		aws.ToString(got.InstanceProfile.Roles[0].Arn) != "arn:aws:iam::111122223333:role/KarpenterNodeRole" {
		t.Fatalf("profile after adding the role: %+v %v", got, err)
	}
	if _, err := c.DeleteInstanceProfile(ctx, &iam.DeleteInstanceProfileInput{InstanceProfileName: name}); errorCode(err) != "DeleteConflict" {
		t.Errorf("deleting a profile with a role: want DeleteConflict, got %v", err)
	}
	if _, err := c.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{InstanceProfileName: name, RoleName: aws.String("KarpenterGPUNodeRole")}); errorCode(err) != "NoSuchEntity" {
		t.Errorf("removing a role the profile does not hold: want NoSuchEntity, got %v", err)
	}
	if _, err := c.TagInstanceProfile(ctx, &iam.TagInstanceProfileInput{InstanceProfileName: name, Tags: []iamtypes.Tag{{Key: aws.String("team"), Value: aws.String("a")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{InstanceProfileName: name, RoleName: aws.String("KarpenterNodeRole")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteInstanceProfile(ctx, &iam.DeleteInstanceProfileInput{InstanceProfileName: name}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: name}); errorCode(err) != "NoSuchEntity" {
		t.Errorf("getting a deleted profile: want NoSuchEntity, got %v", err)
	}
	if _, err := c.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String("no/slash")}); errorCode(err) != "ValidationError" {
		t.Errorf("a name with a slash: want ValidationError, got %v", err)
	}
	// The scenario's own profiles are there with their roles.
	if p, ok := e.sim.InstanceProfile("KarpenterNodeInstanceProfile"); !ok || p.Role != "KarpenterNodeRole" {
		t.Errorf("scenario profile: %+v %v", p, ok)
	}
}

// IAM calls are audited with the profile's ARN, the tags the call puts and
// those the profile has, and AddRoleToInstanceProfile with the iam:PassRole
// of its role. Mutation tried: auditing AddRoleToInstanceProfile without the
// PassRole check fails the last assertion.
func TestInstanceProfileAudit(t *testing.T) {
	e := newEnv(t)
	c := iamClient(e)
	ctx := context.Background()
	name := aws.String("my-cluster_9")
	owned := []iamtypes.Tag{{Key: aws.String("kubernetes.io/cluster/my-cluster"), Value: aws.String("owned")}}
	if _, err := c.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: name, Tags: owned}); err != nil {
		t.Fatal(err)
	}
	arn := "arn:aws:iam::111122223333:instance-profile/my-cluster_9"
	if ch := lastCall(t, e.sim, "iam:CreateInstanceProfile").Checks; len(ch) != 1 || ch[0].Resource != arn ||
		ch[0].Context["aws:RequestTag/kubernetes.io/cluster/my-cluster"][0] != "owned" || ch[0].ResourceTags != nil {
		t.Errorf("CreateInstanceProfile checks: %+v", ch)
	}
	if _, err := c.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: name, RoleName: aws.String("KarpenterNodeRole")}); err != nil {
		t.Fatal(err)
	}
	ch := lastCall(t, e.sim, "iam:AddRoleToInstanceProfile").Checks
	if len(ch) != 2 || ch[0].Action != "iam:AddRoleToInstanceProfile" || ch[0].Context["aws:ResourceTag/kubernetes.io/cluster/my-cluster"][0] != "owned" {
		t.Fatalf("AddRoleToInstanceProfile checks: %+v", ch)
	}
	if ch[1].Action != "iam:PassRole" || ch[1].Resource != "arn:aws:iam::111122223333:role/KarpenterNodeRole" || ch[1].Context["iam:PassedToService"][0] != "ec2.amazonaws.com" {
		t.Errorf("AddRoleToInstanceProfile passes the role as %+v", ch[1])
	}
}
