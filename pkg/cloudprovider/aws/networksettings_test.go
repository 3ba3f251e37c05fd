package aws

import (
	"context"
	"fmt"
	"testing"

	"k8s.io/utils/ptr"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/test/ec2sim"
)

// ipPrefixCount and connectionTracking reach the instance's primary
// interface in the launch template (with the security groups, which EC2
// then takes from the interface), and the simulator, which refuses them as
// EC2 does, launches it. Mutations tried: Ipv4PrefixCount left out of
// networkInterfaces, then ConnectionTrackingSpecification left out (the
// template lacked each); networkInterfaces only for associatePublicIPAddress
// (no interface at all).
func TestNetworkSettingsReachTheLaunchTemplate(t *testing.T) {
	e := newEnv(t)
	nc := seedNodeClass(t)
	nc.Spec.IPPrefixCount = ptr.To[int32](9)
	nc.Spec.ConnectionTracking = &awsv1.ConnectionTracking{TCPEstablishedTimeout: ptr.To[int32](3600), UDPStreamTimeout: ptr.To[int32](120), UDPTimeout: ptr.To[int32](45)}
	nc = e.resolved(t, nc)
	p := e.cloudProvider(t, nc)
	claim, err := p.Create(context.Background(), newClaim(nc.Name, req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand), req(v1.LabelInstanceTypeStable, "m5.large")))
	if err != nil {
		t.Fatal(err)
	}
	d := onlyTemplate(t, e.sim).Data
	want := ec2sim.NetworkInterface{
		SecurityGroupIDs: []string{"sg-0a00000000000001"}, IPv4PrefixCount: 9,
		ConnectionTracking: ec2sim.ConnectionTracking{TCPEstablishedTimeout: 3600, UDPStreamTimeout: 120, UDPTimeout: 45},
	}
	if len(d.NetworkInterfaces) != 1 || len(d.SecurityGroupIDs) != 0 || !equalInterfaces(d.NetworkInterfaces[0], want) {
		t.Errorf("template interfaces %+v and groups %v; want only %+v", d.NetworkInterfaces, d.SecurityGroupIDs, want)
	}
	_, id, err := ParseProviderID(claim.Status.ProviderID)
	if err != nil {
		t.Fatal(err)
	}
	if in, ok := e.sim.Instance(id); !ok || len(in.SecurityGroupIDs) != 1 {
		t.Errorf("instance %s: found %v, groups %v", id, ok, in.SecurityGroupIDs)
	}
}

func equalInterfaces(a, b ec2sim.NetworkInterface) bool {
	return a.DeviceIndex == b.DeviceIndex && a.NetworkCardIndex == b.NetworkCardIndex && a.InterfaceType == b.InterfaceType &&
		a.IPv4PrefixCount == b.IPv4PrefixCount && a.ConnectionTracking == b.ConnectionTracking &&
		len(a.SecurityGroupIDs) == len(b.SecurityGroupIDs) && (len(a.SecurityGroupIDs) == 0 || a.SecurityGroupIDs[0] == b.SecurityGroupIDs[0])
}

// A class with ipPrefixCount plans only types EC2 assigns that many
// prefixes on: Nitro types (and metal) whose interface holds one more
// address than the prefixes. Mutations tried: allow always true (m4.large,
// Xen, offered); the limit compared with IPv4PerENI (m5.large offered for 10
// prefixes, which EC2 refuses); the catalog cache key without the needs (the
// second class got the first one's catalog).
func TestPrefixCountNarrowsTheCatalog(t *testing.T) {
	e := newEnv(t)
	var classes []*awsv1.EC2NodeClass
	for _, prefixes := range []int32{0, 9, 10} {
		nc := seedNodeClass(t)
		nc.Name = fmt.Sprintf("prefixes-%d", prefixes)
		nc.Spec.IPPrefixCount = ptr.To(prefixes)
		classes = append(classes, e.resolved(t, nc))
	}
	p := e.cloudProvider(t, classes...) // one catalog cache for all three
	catalogOf := func(prefixes int32) map[string]bool {
		t.Helper()
		c, _, err := p.Catalog(context.Background(), pool(fmt.Sprintf("prefixes-%d", prefixes)))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, it := range c.Types {
			out[it.Name] = true
		}
		return out
	}
	for _, c := range []struct {
		prefixes  int32
		in, notIn []string
	}{
		{0, []string{"m4.large", "t3.medium", "m5.large"}, nil},
		{9, []string{"m5.large", "m5.metal"}, []string{"m4.large", "t3.medium"}},
		{10, []string{"m5.xlarge"}, []string{"m5.large", "m4.large"}},
	} {
		types := catalogOf(c.prefixes)
		for _, name := range c.in {
			if !types[name] {
				t.Errorf("ipPrefixCount %d: %s missing", c.prefixes, name)
			}
		}
		for _, name := range c.notIn {
			if types[name] {
				t.Errorf("ipPrefixCount %d: %s offered, EC2 refuses it", c.prefixes, name)
			}
		}
	}
}

// cpuOptions.nestedVirtualization reaches the template's CpuOptions; enabled,
// the class plans and launches only types EC2 lists the feature for (m5.xlarge
// in the simulator here, standing in for c8i/m8i/r8i, which the embedded
// snapshot predates), read from DescribeInstanceTypes; disabled, any type.
// Mutations tried: CpuOptions left out of the template (template lacked
// it); typeNeeds ignoring nested virtualization (m5.large planned, and its
// launch refused); specFromEC2 not reading the processor features (no type
// left for the enabled class).
func TestNestedVirtualization(t *testing.T) {
	e := newEnvWith(t, func(_ *ec2sim.Scenario, s *catalog.Snapshot) {
		for i := range s.Types {
			if s.Types[i].Name == "m5.xlarge" {
				s.Types[i].NestedVirtualization = true
			}
		}
	})
	var classes []*awsv1.EC2NodeClass
	for _, setting := range []string{"enabled", "disabled"} {
		nc := seedNodeClass(t)
		nc.Name = "nested-" + setting
		nc.Spec.CPUOptions = &awsv1.CPUOptions{NestedVirtualization: ptr.To(setting)}
		classes = append(classes, e.resolved(t, nc))
	}
	p := e.cloudProvider(t, classes...)
	ctx := context.Background()
	enabled, _, err := p.Catalog(ctx, pool("nested-enabled"))
	if err != nil {
		t.Fatal(err)
	}
	if len(enabled.Types) != 1 || enabled.Types[0].Name != "m5.xlarge" {
		t.Errorf("enabled: catalog of %d types, want only m5.xlarge", len(enabled.Types))
	}
	disabled, _, err := p.Catalog(ctx, pool("nested-disabled"))
	if err != nil {
		t.Fatal(err)
	}
	if disabled.Get("m5.large") == nil {
		t.Error("disabled: m5.large missing")
	}
	if _, err := p.Create(ctx, newClaim("nested-enabled", req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand), req(v1.LabelInstanceTypeStable, "m5.large", "m5.xlarge"))); err != nil {
		t.Fatal(err)
	}
	if lt := onlyTemplate(t, e.sim); lt.Data.NestedVirtualization != "enabled" {
		t.Errorf("template nested virtualization %q, want enabled", lt.Data.NestedVirtualization)
	}
	if _, err := p.Create(ctx, newClaim("nested-enabled", req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand), req(v1.LabelInstanceTypeStable, "m5.large"))); err == nil {
		t.Error("a claim for m5.large only launched with nested virtualization enabled")
	}
}
