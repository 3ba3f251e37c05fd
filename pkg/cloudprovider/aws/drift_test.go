package aws

import (
	"context"
	"testing"

	"k8s.io/utils/ptr"

	"github.com/nodewright/nodewright/test/ec2sim"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
)

// A launched claim records its class's hash; it drifts when the class's
// static fields change (not under another hash version, where it is
// re-stamped instead) and when its image is no longer among the class's
// resolved AMIs (here the class is pinned to the previous release).
// The same for its subnet and security groups against the class's status.
// Mutation tried: IsDrifted ignoring status.amis (the pinned class's claim
// not drifted).
func TestIsDrifted(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProvider(t, nc)
	claim, err := p.Create(ctx, newClaim(nc.Name, req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand), req(v1.LabelInstanceTypeStable, seedTypes...), req(v1.LabelTopologyZone, seedZones...)))
	if err != nil {
		t.Fatal(err)
	}
	if claim.Annotations[awsv1.EC2NodeClassHashAnnotationKey] != nc.Hash() || claim.Annotations[awsv1.EC2NodeClassHashVersionAnnotationKey] != awsv1.EC2NodeClassHashVersion {
		t.Fatalf("launched claim annotations %v: want the class's hash", claim.Annotations)
	}
	if reason, err := p.IsDrifted(ctx, claim); err != nil || reason != "" {
		t.Fatalf("fresh claim drifted: %q %v", reason, err)
	}

	changed := nc.DeepCopy()
	changed.Spec.Tags = map[string]string{"team": "b"}
	if reason, _ := e.cloudProvider(t, changed).IsDrifted(ctx, claim); reason != DriftNodeClass {
		t.Errorf("after a tag change: %q, want %s", reason, DriftNodeClass)
	}
	oldVersion := claim.DeepCopy()
	oldVersion.Annotations[awsv1.EC2NodeClassHashVersionAnnotationKey] = "v0"
	if reason, _ := e.cloudProvider(t, changed).IsDrifted(ctx, oldVersion); reason != "" {
		t.Errorf("a claim of another hash version drifted: %q", reason)
	}
	if got, _ := e.cloudProvider(t, changed).RestampNodeClassHash(ctx, oldVersion); got[awsv1.EC2NodeClassHashAnnotationKey] != changed.Hash() {
		t.Errorf("re-stamp %v, want the class's current hash", got)
	}

	if claim.Annotations[SubnetAnnotation] == "" || claim.Annotations[SecurityGroupsAnnotation] != "sg-0a00000000000001" {
		t.Errorf("launched claim annotations %v: want its subnet and security groups", claim.Annotations)
	}
	moved := nc.DeepCopy()
	moved.Status.Subnets = []awsv1.Subnet{{ID: "subnet-elsewhere", Zone: claim.Labels[v1.LabelTopologyZone]}}
	if reason, _ := e.cloudProvider(t, moved).IsDrifted(ctx, claim); reason != DriftSubnet {
		t.Errorf("with the class's subnets changed: %q, want %s", reason, DriftSubnet)
	}
	regrouped := nc.DeepCopy()
	regrouped.Status.SecurityGroups = append(regrouped.Status.SecurityGroups, awsv1.SecurityGroup{ID: "sg-0b00000000000002", Name: "default"})
	if reason, _ := e.cloudProvider(t, regrouped).IsDrifted(ctx, claim); reason != DriftSecurityGroup {
		t.Errorf("with a security group added to the class: %q, want %s", reason, DriftSecurityGroup)
	}

	pinned := seedNodeClass(t)
	pinned.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{ID: "ami-0a2023000000000a0"}}
	pinned.Spec.AMIFamily = ptr.To("AL2023")
	pinned = e.resolved(t, pinned)
	// As if launched from the pinned class (amiFamily is hashed), but with
	// the current image.
	launchedFromPinned := claim.DeepCopy()
	launchedFromPinned.Annotations[awsv1.EC2NodeClassHashAnnotationKey] = pinned.Hash()
	if reason, _ := e.cloudProvider(t, pinned).IsDrifted(ctx, launchedFromPinned); reason != DriftAMI {
		t.Errorf("with the class pinned to another image: %q, want %s", reason, DriftAMI)
	}
}

// An instance whose status check fails is reported by provider ID, through
// DescribeInstanceStatus on the simulator; a healthy one is not, and the
// answer is reused for a minute. Mutation tried: filtering on
// system-status only (the impaired instance not reported).
func TestImpairedInstances(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProvider(t, nc)
	var claims []*v1.NodeClaim
	for range 2 {
		c, err := p.Create(ctx, newClaim(nc.Name, req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand), req(v1.LabelInstanceTypeStable, seedTypes...), req(v1.LabelTopologyZone, seedZones...)))
		if err != nil {
			t.Fatal(err)
		}
		claims = append(claims, c)
	}
	_, id, err := ParseProviderID(claims[0].Status.ProviderID)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.sim.SetInstanceStatus(id, ec2sim.StatusImpaired); err != nil {
		t.Fatal(err)
	}
	got, err := p.ImpairedInstances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[claims[0].Status.ProviderID] != "instance status check failed" {
		t.Errorf("impaired %v, want only %s", got, claims[0].Status.ProviderID)
	}
	calls := e.sim.Calls("DescribeInstanceStatus")
	if _, err := p.ImpairedInstances(ctx); err != nil || e.sim.Calls("DescribeInstanceStatus") != calls {
		t.Errorf("a second ask within the minute called EC2 again (%v)", err)
	}
}
