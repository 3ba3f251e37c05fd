package aws

import (
	"context"
	"strings"
	"testing"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/ec2sim"
)

// fleetCheck is the latest CreateFleet's check of action on a resource whose
// ARN ends in suffix, from the simulator's audit log.
func fleetCheck(t *testing.T, sim *ec2sim.Server, action, suffix string) ec2sim.Check {
	t.Helper()
	calls := sim.AuditLog()
	for i := len(calls) - 1; i >= 0; i-- {
		if calls[i].Action != "ec2:CreateFleet" {
			continue
		}
		for _, c := range calls[i].Checks {
			if c.Action == action && strings.HasSuffix(c.Resource, suffix) {
				return c
			}
		}
		t.Fatalf("the last CreateFleet has no check of %s on *%s", action, suffix)
	}
	t.Fatal("no CreateFleet in the audit log")
	return ec2sim.Check{}
}

// Every resource a launch creates carries the cluster and NodePool tags the
// chart's IAM policy requires: the fleet, instance and volumes through
// CreateFleet's TagSpecifications, the network interface and (spot only)
// the spot request through the launch template's. Removing the fleet
// TagSpecification from fleetTagSpecifications fails this with "fleet/*
// request tags map[]"; tagging spot requests in an on-demand template fails
// it with "the on-demand template tags spot-instances-request".
func TestLaunchTagsEverythingItCreates(t *testing.T) {
	e := newEnv(t)
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProvider(t, nc)
	want := map[string]string{"kubernetes.io/cluster/my-cluster": "owned", "karpenter.sh/nodepool": "batch-processing", "eks:eks-cluster-name": "my-cluster", "karpenter.k8s.aws/ec2nodeclass": "default"}
	for _, capacityType := range []string{v1.CapacityTypeSpot, v1.CapacityTypeOnDemand} {
		claim := newClaim(nc.Name, req(v1.CapacityTypeLabelKey, capacityType), req(v1.LabelInstanceTypeStable, "m5.xlarge"))
		got, err := p.Create(context.Background(), claim)
		if err != nil {
			t.Fatal(err)
		}
		created := []string{"fleet/*", "instance/*", "volume/*", "network-interface/*"}
		if capacityType == v1.CapacityTypeSpot {
			created = append(created, "spot-instances-request/*")
		}
		for _, resource := range created {
			tags := fleetCheck(t, e.sim, "ec2:CreateFleet", resource).RequestTags
			for k, v := range want {
				if tags[k] != v {
					t.Errorf("%s launch: %s request tags %v, want %s=%s", capacityType, resource, tags, k, v)
					break
				}
			}
		}
		if tags := fleetCheck(t, e.sim, "ec2:CreateFleet", "instance/*").RequestTags; tags[awsv1.TagNodeClaim] != claim.Name {
			t.Errorf("%s launch: instance request tags %v lack the claim", capacityType, tags)
		}
		inst := simInstance(t, e.sim, got.Status.ProviderID)
		lt, ok := e.sim.LaunchTemplate(inst.LaunchTemplateID)
		if !ok {
			t.Fatalf("launch template %s not found", inst.LaunchTemplateID)
		}
		_, spot := lt.Data.TagSpecifications["spot-instances-request"]
		if capacityType == v1.CapacityTypeOnDemand && spot {
			t.Errorf("the on-demand template tags spot-instances-request: a launch from it would fail")
		}
		if lt.Data.TagSpecifications["network-interface"]["kubernetes.io/cluster/my-cluster"] != "owned" {
			t.Errorf("%s template's network interface tags %v", capacityType, lt.Data.TagSpecifications["network-interface"])
		}
	}
}
