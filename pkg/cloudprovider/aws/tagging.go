package aws

import (
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	v1 "github.com/nodewright/nodewright/apis/v1"
)

// What a launch tags, and where. Every resource a launch creates carries the
// cluster and NodePool tags: the IAM policy the chart ships
// (charts/nodewright/docs/iam-policy.json) allows creating a resource only
// with them (aws:RequestTag conditions), so an untagged one fails the whole
// launch with UnauthorizedOperation. test/iam proves it against the calls the
// end-to-end suites make.

// fleetTagSpecifications tag what CreateFleet names: the fleet, its instance
// and the instance's volumes, with the claim's tags.
func fleetTagSpecifications(tags []ec2types.Tag) []ec2types.TagSpecification {
	return []ec2types.TagSpecification{
		{ResourceType: ec2types.ResourceTypeInstance, Tags: tags},
		{ResourceType: ec2types.ResourceTypeVolume, Tags: tags},
		{ResourceType: ec2types.ResourceTypeFleet, Tags: tags},
	}
}

// launchTemplateTagSpecifications tag what an instance launched from the
// template creates besides itself, which CreateFleet cannot tag: its
// network interface, and for spot its spot request. A template for
// on-demand must not name spot requests: EC2 fails a launch whose instance
// has no resource of a type the template tags. Volumes are tagged here too,
// for launches that do not tag them.
func launchTemplateTagSpecifications(tags []ec2types.Tag, capacityType string) []ec2types.LaunchTemplateTagSpecificationRequest {
	out := []ec2types.LaunchTemplateTagSpecificationRequest{
		{ResourceType: ec2types.ResourceTypeVolume, Tags: tags},
		{ResourceType: ec2types.ResourceTypeNetworkInterface, Tags: tags},
	}
	if capacityType == v1.CapacityTypeSpot {
		out = append(out, ec2types.LaunchTemplateTagSpecificationRequest{ResourceType: ec2types.ResourceTypeSpotInstancesRequest, Tags: tags})
	}
	return out
}
