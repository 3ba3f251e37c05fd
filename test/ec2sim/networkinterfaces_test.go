package ec2sim

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/nodewright/nodewright/pkg/catalog"
)

// A template's primary interface is launched as EC2 launches it: its
// security groups are the instance's, IPv4 prefixes only on Nitro types and
// at most one per address the interface holds besides its primary one, and
// connection tracking timeouts only within EC2's ranges; each refusal is a
// fleet error naming the pool, as EC2 refuses a launch parameter only at
// launch. Mutations tried: the Nitro check removed (m4.large launched with a
// prefix), the limit compared with IPv4PerENI instead of IPv4PerENI-1 (10
// prefixes on m5.large launched), the UdpTimeout range widened to 30-180 (61
// launched), the instance's groups taken from SecurityGroupIds only (the
// instance had none).
func TestFleetChecksTemplateInterfaces(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	template := func(name string, iface ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest) {
		t.Helper()
		iface.DeviceIndex, iface.Groups = aws.Int32(0), []string{sgNodes}
		if _, err := e.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
			LaunchTemplateName: aws.String(name),
			LaunchTemplateData: &ec2types.RequestLaunchTemplateData{
				ImageId:           aws.String(amiX86),
				NetworkInterfaces: []ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest{iface},
			},
		}); err != nil {
			t.Fatalf("creating launch template %s: %v", name, err)
		}
	}
	template("prefixes", ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest{
		Ipv4PrefixCount: aws.Int32(9),
		ConnectionTrackingSpecification: &ec2types.ConnectionTrackingSpecificationRequest{
			TcpEstablishedTimeout: aws.Int32(432000), UdpStreamTimeout: aws.Int32(60), UdpTimeout: aws.Int32(60),
		},
	})
	template("too-many-prefixes", ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest{Ipv4PrefixCount: aws.Int32(10)})
	template("udp-61", ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest{
		ConnectionTrackingSpecification: &ec2types.ConnectionTrackingSpecificationRequest{UdpTimeout: aws.Int32(61)},
	})
	template("tcp-59", ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest{
		ConnectionTrackingSpecification: &ec2types.ConnectionTrackingSpecificationRequest{TcpEstablishedTimeout: aws.Int32(59)},
	})

	out := e.createFleet(t, fleetInput("prefixes", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("m5.large", "ap-northeast-2a")))
	ids := launched(out)
	if len(ids) != 1 {
		t.Fatalf("9 prefixes on m5.large (10 addresses an interface): launched %v, errors %+v", ids, out.Errors)
	}
	if in := e.instance(t, ids[0]); len(in.SecurityGroupIDs) != 1 || in.SecurityGroupIDs[0] != sgNodes {
		t.Errorf("instance groups %v, want the primary interface's %s", in.SecurityGroupIDs, sgNodes)
	}
	lt, _ := e.sim.LaunchTemplate("prefixes")
	if n := lt.Data.NetworkInterfaces; len(n) != 1 || n[0].IPv4PrefixCount != 9 || n[0].ConnectionTracking != (ConnectionTracking{432000, 60, 60}) {
		t.Errorf("stored interfaces %+v", n)
	}

	for _, c := range []struct{ template, instanceType, code string }{
		{"prefixes", "m4.large", "InvalidParameterCombination"},
		{"too-many-prefixes", "m5.large", "PrivateIpAddressLimitExceeded"},
		{"udp-61", "m5.large", "InvalidParameterValue"},
		{"tcp-59", "m5.large", "InvalidParameterValue"},
	} {
		out := e.createFleet(t, fleetInput(c.template, ec2types.DefaultTargetCapacityTypeOnDemand, 1, override(c.instanceType, "ap-northeast-2a")))
		if ids := launched(out); len(ids) != 0 || len(out.Errors) != 1 || aws.ToString(out.Errors[0].ErrorCode) != c.code {
			t.Errorf("%s on %s: launched %v, errors %+v; want only %s", c.template, c.instanceType, ids, out.Errors, c.code)
		}
	}
}

// A template giving its groups on the primary interface is audited with
// those groups used, as IAM checks them. Mutation tried: the audit reading
// only SecurityGroupIds (no security-group check).
func TestAuditLogRecordsInterfaceGroups(t *testing.T) {
	e := newEnv(t)
	if _, err := e.ec2.CreateLaunchTemplate(context.Background(), &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("nodes"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{
			ImageId: aws.String(amiX86),
			NetworkInterfaces: []ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest{{
				DeviceIndex: aws.Int32(0), Groups: []string{sgNodes}, Ipv4PrefixCount: aws.Int32(1),
			}},
		},
	}); err != nil {
		t.Fatal(err)
	}
	if ids := launched(e.createFleet(t, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("m5.large", "ap-northeast-2a")))); len(ids) != 1 {
		t.Fatalf("launched %v", ids)
	}
	fleet := lastCall(t, e.sim, "ec2:CreateFleet")
	for _, action := range []string{"ec2:CreateFleet", "ec2:RunInstances"} {
		check(t, fleet, action, arn("security-group/"+sgNodes))
	}
}

// A template's interfaces are placed as EC2 places them (spec
// networkInterfaces): a primary interface on card 0 device 0 that is not
// EFA-only, each (card, device) once, card and device indexes within the
// type's network cards and interfaces per card, EFA only on types that
// support it, one a card and at most the type's maximum, and no public
// address with several interfaces. Mutations tried, each launched what EC2
// refuses: the card check removed (efa-pair on c5n.18xlarge), the EFA
// maximum check removed (efa-one on m5.large, which takes none), the
// maximum compared with the card count instead of EFAInterfaces (efa-pair
// with one EFA allowed),
// the duplicate check removed (dup), the primary check removed
// (no-primary).
func TestFleetChecksInterfaceLayout(t *testing.T) {
	ctx := context.Background()
	iface := func(card, device int32, kind string) ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest {
		return ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest{
			NetworkCardIndex: aws.Int32(card), DeviceIndex: aws.Int32(device), InterfaceType: aws.String(kind), Groups: []string{sgNodes},
		}
	}
	templates := map[string][]ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest{
		"efa-pair":         {iface(0, 0, "interface"), iface(0, 1, "efa-only"), iface(1, 0, "efa-only")},
		"efa-one":          {iface(0, 0, "interface"), iface(0, 1, "efa-only")},
		"dup":              {iface(0, 0, "interface"), iface(0, 0, "interface")},
		"no-primary":       {iface(0, 1, "interface")},
		"efa-only-primary": {iface(0, 0, "efa-only")},
		"two-efa-one-card": {iface(0, 0, "efa"), iface(0, 1, "efa-only")},
		"deep-device":      {iface(0, 0, "interface"), iface(1, 8, "interface")},
		"public-multi":     {iface(0, 0, "interface"), iface(0, 1, "interface")},
	}
	templates["public-multi"][0].AssociatePublicIpAddress = aws.Bool(true)
	newEnvWithTemplates := func(edit func(*catalog.Snapshot)) *env {
		e := newEnvOn(t, edit)
		for name, interfaces := range templates {
			if _, err := e.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
				LaunchTemplateName: aws.String(name),
				LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(amiX86), NetworkInterfaces: interfaces},
			}); err != nil {
				t.Fatalf("creating launch template %s: %v", name, err)
			}
		}
		return e
	}
	e := newEnvWithTemplates(nil)
	// The node of an instance with EFA interfaces advertises them, as the
	// EFA device plugin does. Mutation tried: EFAInterfaces not set at
	// launch (the node had no vpc.amazonaws.com/efa).
	out := e.createFleet(t, fleetInput("efa-pair", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("c6in.32xlarge", "ap-northeast-2a")))
	if ids := launched(out); len(ids) == 1 {
		node, err := e.sim.kubeletNode(e.instance(t, ids[0]))
		if err != nil {
			t.Fatal(err)
		}
		if q := node.Status.Capacity[catalog.ResourceEFA]; q.Value() != 2 {
			t.Errorf("node of an instance with 2 EFA interfaces has %s %s", catalog.ResourceEFA, q.String())
		}
	}
	// c6in.32xlarge: 2 cards of 8 interfaces, 2 EFAs; c5n.18xlarge: 1 card, 1 EFA.
	for _, c := range []struct{ template, instanceType, code string }{
		{"efa-pair", "c6in.32xlarge", ""},
		{"efa-one", "c5n.18xlarge", ""},
		{"efa-pair", "c5n.18xlarge", "InvalidParameterValue"},
		{"efa-one", "m5.large", "InvalidParameterCombination"},
		{"dup", "c5n.18xlarge", "InvalidParameterValue"},
		{"no-primary", "c5n.18xlarge", "InvalidParameterValue"},
		{"efa-only-primary", "c5n.18xlarge", "InvalidParameterCombination"},
		{"two-efa-one-card", "c5n.18xlarge", "InvalidParameterCombination"},
		{"deep-device", "c6in.32xlarge", "InvalidParameterValue"},
		{"public-multi", "c5n.18xlarge", "InvalidParameterCombination"},
	} {
		checkFleetOutcome(t, e, c.template, c.instanceType, c.code)
	}
	// A type taking fewer EFAs than it has cards (as DescribeInstanceTypes
	// says for some): one EFA an instance.
	e = newEnvWithTemplates(func(s *catalog.Snapshot) {
		for i := range s.Types {
			if s.Types[i].Name == "c6in.32xlarge" {
				s.Types[i].EFAInterfaces = 1
			}
		}
	})
	checkFleetOutcome(t, e, "efa-pair", "c6in.32xlarge", "InvalidParameterCombination")
}

// checkFleetOutcome launches one instanceType from template and checks it
// launched (code "") or failed with only code.
func checkFleetOutcome(t *testing.T, e *env, template, instanceType, code string) {
	t.Helper()
	out := e.createFleet(t, fleetInput(template, ec2types.DefaultTargetCapacityTypeOnDemand, 1, override(instanceType, "ap-northeast-2a")))
	ids := launched(out)
	if code == "" {
		if len(ids) != 1 {
			t.Errorf("%s on %s: launched %v, errors %+v; want one instance", template, instanceType, ids, out.Errors)
		}
		return
	}
	if len(ids) != 0 || len(out.Errors) != 1 || aws.ToString(out.Errors[0].ErrorCode) != code {
		t.Errorf("%s on %s: launched %v, errors %+v; want only %s", template, instanceType, ids, out.Errors, code)
	}
}
