package aws

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
	"github.com/samber/lo"
)

// NodeClass is an empty EC2NodeClass: the kind drift watches.
func (p *CloudProvider) NodeClass() client.Object { return &awsv1.EC2NodeClass{} }

// Drift reasons the AWS provider reports.
const (
	DriftNodeClass     = "NodeClassDrifted"
	DriftAMI           = "AMIDrift"
	DriftSubnet        = "SubnetDrift"
	DriftSecurityGroup = "SecurityGroupDrift"
)

// Annotations Create puts on a claim: the instance's subnet and security
// groups (sorted, comma-separated) as launched.
const (
	SubnetAnnotation         = "nodewright.io/subnet-id"
	SecurityGroupsAnnotation = "nodewright.io/security-group-ids"
)

// IsDrifted says why the claim's instance no longer matches its
// EC2NodeClass, or "" when it does or cannot be judged yet: the class's
// hash changed, its image is not among status.amis, its subnet is not among
// status.subnets, or its security groups are not status.securityGroups. A class whose
// status is not resolved for its current spec (or that is gone) judges
// nothing: a failed lookup must not replace every node. A claim stamped by
// another hash version is not drifted by its hash (see
// awsv1.EC2NodeClassHashVersion); the drift controller re-stamps it.
func (p *CloudProvider) IsDrifted(ctx context.Context, claim *v1.NodeClaim) (string, error) {
	nc, err := p.readyNodeClass(ctx, claim.Spec.NodeClassRef)
	if cloudprovider.IsNodeClassNotReady(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the node class of nodeclaim %s: %w", claim.Name, err)
	}
	if claim.Annotations[awsv1.EC2NodeClassHashVersionAnnotationKey] == awsv1.EC2NodeClassHashVersion {
		if h, ok := claim.Annotations[awsv1.EC2NodeClassHashAnnotationKey]; ok && h != nc.Hash() {
			return DriftNodeClass, nil
		}
	}
	if image := claim.Status.ImageID; image != "" && len(nc.Status.AMIs) > 0 &&
		!slices.ContainsFunc(nc.Status.AMIs, func(a awsv1.AMI) bool { return a.ID == image }) {
		return DriftAMI, nil
	}
	// Claims launched before these annotations existed are not judged on them.
	if subnet, ok := claim.Annotations[SubnetAnnotation]; ok && len(nc.Status.Subnets) > 0 &&
		!slices.ContainsFunc(nc.Status.Subnets, func(s awsv1.Subnet) bool { return s.ID == subnet }) {
		return DriftSubnet, nil
	}
	if groups, ok := claim.Annotations[SecurityGroupsAnnotation]; ok && len(nc.Status.SecurityGroups) > 0 {
		want := lo.Map(nc.Status.SecurityGroups, func(g awsv1.SecurityGroup, _ int) string { return g.ID })
		slices.Sort(want)
		if strings.Join(slices.Compact(want), ",") != groups {
			return DriftSecurityGroup, nil
		}
	}
	return "", nil
}

// RestampNodeClassHash returns the node class hash annotations a claim
// stamped under another hash version should carry now (nil when its version
// is current, it has none, or the class cannot be read).
func (p *CloudProvider) RestampNodeClassHash(ctx context.Context, claim *v1.NodeClaim) (map[string]string, error) {
	v, ok := claim.Annotations[awsv1.EC2NodeClassHashVersionAnnotationKey]
	if !ok || v == awsv1.EC2NodeClassHashVersion {
		return nil, nil
	}
	nc, err := p.readyNodeClass(ctx, claim.Spec.NodeClassRef)
	if cloudprovider.IsNodeClassNotReady(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return map[string]string{awsv1.EC2NodeClassHashAnnotationKey: nc.Hash(), awsv1.EC2NodeClassHashVersionAnnotationKey: awsv1.EC2NodeClassHashVersion}, nil
}
