package aws

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
)

// ReasonPlacementGroupNotFound: spec.placementGroupSelector names a group
// EC2 does not have (or not in state available); Karpenter's reason.
const ReasonPlacementGroupNotFound = "PlacementGroupNotFound"

// placementGroupUnknown is EC2's error for a group name or id it does not
// know.
const placementGroupUnknown = "InvalidPlacementGroup.Unknown"

// describePlacementGroupsAPI is DescribePlacementGroups, which EC2 does not
// paginate.
type describePlacementGroupsAPI interface {
	DescribePlacementGroups(context.Context, *ec2.DescribePlacementGroupsInput, ...func(*ec2.Options)) (*ec2.DescribePlacementGroupsOutput, error)
}

// placementGroup looks up the group spec.placementGroupSelector names. It
// returns nil and no error when EC2 has no available group by that name or
// id: the user's to fix, not a lookup to retry.
func (r *NodeClassResolver) placementGroup(ctx context.Context, sel *awsv1.PlacementGroupSelector) (*ec2types.PlacementGroup, error) {
	in := &ec2.DescribePlacementGroupsInput{}
	if sel.ID != "" {
		in.GroupIds = []string{sel.ID}
	} else {
		in.GroupNames = []string{sel.Name}
	}
	out, err := r.ec2.DescribePlacementGroups(ctx, in)
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == placementGroupUnknown {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("describing placement group %s: %w", placementGroupSelectorText(sel), err)
	}
	for i, g := range out.PlacementGroups {
		if g.State == ec2types.PlacementGroupStateAvailable {
			return &out.PlacementGroups[i], nil
		}
	}
	return nil, nil
}

// placementGroupSelectorText names the selector in messages as the user
// wrote it.
func placementGroupSelectorText(sel *awsv1.PlacementGroupSelector) string {
	if sel.ID != "" {
		return "id " + sel.ID
	}
	return "name " + sel.Name
}

// placementGroupMessage says which group a class launches into, for the
// PlacementGroupReady condition: Karpenter's CRD this API follows has no
// status field for it.
func placementGroupMessage(g *ec2types.PlacementGroup) string {
	msg := fmt.Sprintf("placement group %s (name %s, strategy %s", aws.ToString(g.GroupId), aws.ToString(g.GroupName), g.Strategy)
	switch g.Strategy {
	case ec2types.PlacementStrategyPartition:
		msg += fmt.Sprintf(", %d partitions", aws.ToInt32(g.PartitionCount))
	case ec2types.PlacementStrategySpread:
		msg += ", spread level " + string(g.SpreadLevel)
	}
	return msg + ")"
}

// launchTemplatePlacement is the launch template's placement for the class:
// its placement group, by the name or id the selector gives (EC2 takes
// either), or nil.
func launchTemplatePlacement(nc *awsv1.EC2NodeClass) *ec2types.LaunchTemplatePlacementRequest {
	sel := nc.Spec.PlacementGroupSelector
	switch {
	case sel == nil:
		return nil
	case sel.ID != "":
		return &ec2types.LaunchTemplatePlacementRequest{GroupId: aws.String(sel.ID)}
	default:
		return &ec2types.LaunchTemplatePlacementRequest{GroupName: aws.String(sel.Name)}
	}
}

// placementLabels are the labels Karpenter gives a node in a placement
// group, from where EC2 put the instance: the group's id and, in a
// partition group, the partition.
func placementLabels(inst ec2types.Instance) map[string]string {
	labels := map[string]string{}
	if inst.Placement == nil || aws.ToString(inst.Placement.GroupId) == "" {
		return labels
	}
	labels[awsv1.LabelPlacementGroupID] = aws.ToString(inst.Placement.GroupId)
	if n := aws.ToInt32(inst.Placement.PartitionNumber); n > 0 {
		labels[awsv1.LabelPlacementGroupPartition] = fmt.Sprint(n)
	}
	return labels
}
