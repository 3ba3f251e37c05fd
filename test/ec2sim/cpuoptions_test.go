package ec2sim

import (
	"context"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/nodewright/nodewright/pkg/catalog"
)

// markNestedVirtualization makes m5.xlarge a type EC2 lists
// nested-virtualization for: it stands in for the 8th-generation Intel
// types (c8i, m8i, r8i) that have it, which the embedded snapshot predates.
func markNestedVirtualization(s *catalog.Snapshot) {
	for i := range s.Types {
		if s.Types[i].Name == "m5.xlarge" {
			s.Types[i].NestedVirtualization = true
		}
	}
}

// DescribeInstanceTypes lists nested-virtualization among the processor
// features of the types that have it, and a template enabling it launches
// only on those: elsewhere the override fails with Unsupported. Disabling
// it launches anywhere. Mutations tried: the fleet check removed (m5.large
// launched), the feature never served (m5.xlarge's features empty).
func TestFleetNestedVirtualizationOnlyWhereSupported(t *testing.T) {
	e := newEnvOn(t, markNestedVirtualization)
	ctx := context.Background()
	out, err := e.ec2.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{InstanceTypes: []ec2types.InstanceType{"m5.xlarge", "m5.large"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range out.InstanceTypes {
		has := slices.Contains(it.ProcessorInfo.SupportedFeatures, ec2types.SupportedAdditionalProcessorFeatureNestedVirtualization)
		if has != (it.InstanceType == "m5.xlarge") {
			t.Errorf("%s: processor features %v", it.InstanceType, it.ProcessorInfo.SupportedFeatures)
		}
	}
	for _, setting := range []ec2types.NestedVirtualizationSpecification{"enabled", "disabled"} {
		if _, err := e.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
			LaunchTemplateName: aws.String("nested-" + string(setting)),
			LaunchTemplateData: &ec2types.RequestLaunchTemplateData{
				ImageId: aws.String(amiX86), SecurityGroupIds: []string{sgNodes},
				CpuOptions: &ec2types.LaunchTemplateCpuOptionsRequest{NestedVirtualization: setting},
			},
		}); err != nil {
			t.Fatal(err)
		}
	}
	if lt, _ := e.sim.LaunchTemplate("nested-enabled"); lt.Data.NestedVirtualization != "enabled" {
		t.Errorf("stored nested virtualization %q", lt.Data.NestedVirtualization)
	}
	for _, c := range []struct {
		template, instanceType string
		launches               bool
	}{
		{"nested-enabled", "m5.xlarge", true},
		{"nested-enabled", "m5.large", false},
		{"nested-disabled", "m5.large", true},
	} {
		out := e.createFleet(t, fleetInput(c.template, ec2types.DefaultTargetCapacityTypeOnDemand, 1, override(c.instanceType, "ap-northeast-2a")))
		ids := launched(out)
		if c.launches && len(ids) != 1 {
			t.Errorf("%s on %s: no launch, errors %+v", c.template, c.instanceType, out.Errors)
		}
		if !c.launches && (len(ids) != 0 || len(out.Errors) != 1 || aws.ToString(out.Errors[0].ErrorCode) != "Unsupported") {
			t.Errorf("%s on %s: launched %v, errors %+v; want only Unsupported", c.template, c.instanceType, ids, out.Errors)
		}
	}
}
