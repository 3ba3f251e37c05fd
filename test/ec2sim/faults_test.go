package ec2sim

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

func TestThrottleRateIsRetriedBySDK(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.sim.ThrottleRate("DescribeInstances", 0.5)
	for i := range 4 {
		if _, err := e.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{}); err != nil {
			t.Fatalf("call %d: every second attempt is throttled, the retry must pass: %v", i, err)
		}
	}
	// Attempts 2, 4 and 6 were throttled and retried: 7 in all.
	if got := e.sim.Calls("DescribeInstances"); got != 7 {
		t.Errorf("%d attempts for 4 calls at a throttle rate of 1/2, want 7", got)
	}
	e.sim.ThrottleRate("DescribeInstances", 1)
	if _, err := e.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{}); errorCode(err) != "RequestLimitExceeded" {
		t.Errorf("every attempt throttled: want RequestLimitExceeded after the retries, got %v", err)
	}
	e.sim.Heal()
	if _, err := e.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{}); err != nil {
		t.Errorf("after Heal: %v", err)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.launchTemplate(t, "nodes", "")
	in := fleetInput("nodes", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("m5.large", "ap-northeast-2a"))
	in.DryRun = aws.Bool(true)
	if _, err := e.ec2.CreateFleet(context.Background(), in); errorCode(err) != "DryRunOperation" {
		t.Errorf("dry run: want DryRunOperation, got %v", err)
	}
	if n := len(e.sim.Instances()); n != 0 {
		t.Errorf("a dry run launched %d instances", n)
	}
}

// EveryAction throttles a share of all EC2 calls, counted together. Fails when takeFault ignores EveryAction
// (tried removing the fallback: no call throttled).
func TestThrottleRateOfEveryAction(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.sim.ThrottleRate(EveryAction, 0.5)
	for i := range 2 {
		if _, err := e.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{}); err != nil {
			t.Fatalf("DescribeInstances %d: %v", i, err)
		}
		if _, err := e.ec2.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{}); err != nil {
			t.Fatalf("DescribeAvailabilityZones %d: %v", i, err)
		}
	}
	// Calls 2, 4, 6 of the shared count were throttled and retried: 7 in all.
	if got := e.sim.Calls("DescribeInstances") + e.sim.Calls("DescribeAvailabilityZones"); got != 7 {
		t.Errorf("%d attempts for 4 calls at a shared throttle rate of 1/2, want 7", got)
	}
}
