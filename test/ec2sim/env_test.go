package ec2sim

import (
	"context"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"

	"github.com/nodewright/nodewright/pkg/catalog"
)

const region = "ap-northeast-2"

// The scenario's private subnets, one per zone, and its AL2023 images.
const (
	subnet2a = "subnet-0a000000000000001"
	subnet2b = "subnet-0b000000000000002"
	subnet2c = "subnet-0c000000000000003"
	subnet2d = "subnet-0d000000000000004"
	amiX86   = "ami-0a2023000000000a1"
	amiARM   = "ami-0a2023000000000b1"
	sgNodes  = "sg-0a00000000000001"
)

var zoneSubnets = map[string]string{
	"ap-northeast-2a": subnet2a, "ap-northeast-2b": subnet2b, "ap-northeast-2c": subnet2c, "ap-northeast-2d": subnet2d,
}

// env is a simulator with real SDK clients pointed at it.
type env struct {
	sim *Server
	ec2 *ec2.Client
	ssm *ssm.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvOn(t, nil)
}

// newEnvOn is newEnv over the embedded snapshot as edit changes it.
func newEnvOn(t *testing.T, edit func(*catalog.Snapshot)) *env {
	t.Helper()
	scenario, err := LoadScenario(region)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := catalog.EmbeddedSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(snap)
	}
	sim, err := Start(scenario, snap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	cfg := aws.Config{
		Region:      region,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDSIMULATOR", "secret", ""),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts, o.MaxBackoff = 5, 10*time.Millisecond
			})
		},
	}
	return &env{
		sim: sim,
		ec2: ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = aws.String(sim.URL) }),
		ssm: ssm.NewFromConfig(cfg, func(o *ssm.Options) { o.BaseEndpoint = aws.String(sim.URL) }),
	}
}

// launchTemplate creates a template for amd64 nodes with the given user data.
func (e *env) launchTemplate(t *testing.T, name, userData string) string {
	t.Helper()
	out, err := e.ec2.CreateLaunchTemplate(context.Background(), &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(name),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{
			ImageId:          aws.String(amiX86),
			UserData:         aws.String(base64.StdEncoding.EncodeToString([]byte(userData))),
			SecurityGroupIds: []string{sgNodes},
		},
	})
	if err != nil {
		t.Fatalf("creating launch template %s: %v", name, err)
	}
	return aws.ToString(out.LaunchTemplate.LaunchTemplateId)
}

// override is a pool for a fleet request: a type in a zone's subnet.
func override(instanceType, zone string) ec2types.FleetLaunchTemplateOverridesRequest {
	return ec2types.FleetLaunchTemplateOverridesRequest{
		InstanceType: ec2types.InstanceType(instanceType), SubnetId: aws.String(zoneSubnets[zone]), AvailabilityZone: aws.String(zone),
	}
}

// fleetInput builds an instant fleet request on the named template.
func fleetInput(lt string, capacityType ec2types.DefaultTargetCapacityType, n int32, overrides ...ec2types.FleetLaunchTemplateOverridesRequest) *ec2.CreateFleetInput {
	return &ec2.CreateFleetInput{
		Type: ec2types.FleetTypeInstant,
		LaunchTemplateConfigs: []ec2types.FleetLaunchTemplateConfigRequest{{
			LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecificationRequest{LaunchTemplateName: aws.String(lt), Version: aws.String("$Latest")},
			Overrides:                   overrides,
		}},
		TargetCapacitySpecification: &ec2types.TargetCapacitySpecificationRequest{TotalTargetCapacity: aws.Int32(n), DefaultTargetCapacityType: capacityType},
	}
}

// launched lists the ids a fleet answer launched.
func launched(out *ec2.CreateFleetOutput) []string {
	var ids []string
	for _, in := range out.Instances {
		ids = append(ids, in.InstanceIds...)
	}
	return ids
}

// errorCode is the API error code of err, "" if it is not one.
func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}
