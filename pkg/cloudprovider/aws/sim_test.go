package aws

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
)

// These tests hold the simulator to what the real SDK expects of EC2, for the
// read calls the EC2NodeClass resolution will make.

func TestSimulatorSubnetsBySelector(t *testing.T) {
	e := newEnv(t)
	out, err := e.clients.EC2.DescribeSubnets(context.Background(), &ec2.DescribeSubnetsInput{
		Filters: []ec2types.Filter{{Name: aws.String("tag:Tier"), Values: []string{"private"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	zones := map[string]bool{}
	for _, s := range out.Subnets {
		zones[aws.ToString(s.AvailabilityZone)] = true
		if aws.ToString(s.AvailabilityZoneId) == "" || aws.ToInt32(s.AvailableIpAddressCount) == 0 || len(s.Tags) == 0 {
			t.Errorf("subnet %s lacks zone id, free IPs or tags", aws.ToString(s.SubnetId))
		}
	}
	if len(out.Subnets) != 4 || len(zones) != 4 {
		t.Errorf("Tier=private selects %d subnets in %d zones, want 4 in 4", len(out.Subnets), len(zones))
	}
	byID, err := e.clients.EC2.DescribeSubnets(context.Background(), &ec2.DescribeSubnetsInput{SubnetIds: []string{"subnet-0e000000000000005"}})
	if err != nil || len(byID.Subnets) != 1 || byID.Subnets[0].Tags[0].Value == nil {
		t.Errorf("subnet by id: %v %v", byID, err)
	}
}

func TestSimulatorSecurityGroupsAndImages(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sgs, err := e.clients.EC2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{
		Filters: []ec2types.Filter{{Name: aws.String("tag:kubernetes.io/cluster/my-cluster"), Values: []string{"owned"}}},
	})
	if err != nil || len(sgs.SecurityGroups) != 1 || aws.ToString(sgs.SecurityGroups[0].GroupId) != "sg-0a00000000000001" {
		t.Errorf("security group by cluster tag: %+v %v", sgs, err)
	}
	imgs, err := e.clients.EC2.DescribeImages(ctx, &ec2.DescribeImagesInput{
		Owners:  []string{"amazon"},
		Filters: []ec2types.Filter{{Name: aws.String("name"), Values: []string{"amazon-eks-node-al2023-x86_64-standard-1.37-*"}}},
	})
	if err != nil || len(imgs.Images) != 2 {
		t.Fatalf("AL2023 x86 images by name pattern: %+v %v", imgs, err)
	}
	if imgs.Images[0].Architecture != ec2types.ArchitectureValuesX8664 || aws.ToString(imgs.Images[0].CreationDate) == "" {
		t.Errorf("image lacks architecture or creation date: %+v", imgs.Images[0])
	}
	self, err := e.clients.EC2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}})
	if err != nil || len(self.Images) != 0 {
		t.Errorf("no image is owned by the account itself: %+v %v", self, err)
	}
}

func TestSimulatorPagingAndErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	first, err := e.clients.EC2.DescribeInstanceTypeOfferings(ctx, &ec2.DescribeInstanceTypeOfferingsInput{
		LocationType: ec2types.LocationTypeAvailabilityZone, MaxResults: aws.Int32(5),
		Filters: []ec2types.Filter{{Name: aws.String("location"), Values: []string{"ap-northeast-2c"}}},
	})
	if err != nil || len(first.InstanceTypeOfferings) != 5 || first.NextToken == nil {
		t.Fatalf("first page: %d offerings, token %v, err %v", len(first.InstanceTypeOfferings), first.NextToken, err)
	}
	second, err := e.clients.EC2.DescribeInstanceTypeOfferings(ctx, &ec2.DescribeInstanceTypeOfferingsInput{
		LocationType: ec2types.LocationTypeAvailabilityZone, MaxResults: aws.Int32(5), NextToken: first.NextToken,
		Filters: []ec2types.Filter{{Name: aws.String("location"), Values: []string{"ap-northeast-2c"}}},
	})
	if err != nil || len(second.InstanceTypeOfferings) != 5 || second.InstanceTypeOfferings[0].InstanceType == first.InstanceTypeOfferings[0].InstanceType {
		t.Errorf("second page repeats or fails: %v", err)
	}
	_, err = e.clients.EC2.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{MaxResults: aws.Int32(1000)})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "InvalidParameterValue" {
		t.Errorf("MaxResults 1000 on DescribeInstanceTypes: want InvalidParameterValue, got %v", err)
	}
	_, err = e.clients.EC2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "InvalidAction" {
		t.Errorf("an unsimulated action: want InvalidAction, got %v", err)
	}
}

func TestClientsRetryFiveTimesByDefault(t *testing.T) {
	e := newEnv(t)
	if got := e.clients.EC2.Options().Retryer.MaxAttempts(); got != 5 {
		t.Errorf("EC2 client makes %d attempts, want 5", got)
	}
	e.sim.Throttle("DescribeAvailabilityZones", 4)
	if _, err := e.clients.EC2.DescribeAvailabilityZones(context.Background(), &ec2.DescribeAvailabilityZonesInput{}); err != nil {
		t.Errorf("four throttled attempts then success must succeed: %v", err)
	}
}
