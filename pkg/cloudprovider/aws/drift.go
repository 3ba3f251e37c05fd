package aws

import (
	"context"
	"fmt"
	"slices"

	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
)

// NodeClass is an empty EC2NodeClass: the kind drift watches.
func (p *CloudProvider) NodeClass() client.Object { return &awsv1.EC2NodeClass{} }

// Drift reasons the AWS provider reports.
const (
	DriftNodeClass = "NodeClassDrifted"
	DriftAMI       = "AMIDrift"
)

// IsDrifted says why the claim's instance no longer matches its
// EC2NodeClass, or "" when it does or cannot be judged yet. A class whose
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
