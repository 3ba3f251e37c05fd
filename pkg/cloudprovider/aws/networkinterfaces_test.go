package aws

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/scheduling"
	"github.com/nodewright/nodewright/test/ec2sim"
)

// efaLayout is spec.networkInterfaces as the EC2 user guide recommends it
// for EFA on a type with two network cards: the primary ENA interface, an
// EFA-only interface beside it on card 0 and one on card 1.
var efaLayout = []awsv1.NetworkInterface{
	{NetworkCardIndex: 0, DeviceIndex: 0, InterfaceType: awsv1.InterfaceTypeInterface},
	{NetworkCardIndex: 0, DeviceIndex: 1, InterfaceType: awsv1.InterfaceTypeEFAOnly},
	{NetworkCardIndex: 1, DeviceIndex: 0, InterfaceType: awsv1.InterfaceTypeEFAOnly},
}

// spec.networkInterfaces reaches the launch template as its interfaces,
// each with its networkCardIndex, deviceIndex and interfaceType and the
// class's security groups; ipPrefixCount only on the primary interface,
// connectionTracking only on ENA ones; and the simulator, which places
// interfaces as EC2 does, launches c6in.32xlarge (two cards, two EFAs) from
// it. Mutations tried: the class's interfaces ignored (one plain interface
// in the template); InterfaceType left out (every interface plain);
// prefixes on every interface (on the EFA-only ones too).
func TestNetworkInterfacesReachTheLaunchTemplate(t *testing.T) {
	e := newEnv(t)
	nc := seedNodeClass(t)
	nc.Spec.NetworkInterfaces = efaLayout
	nc.Spec.IPPrefixCount = ptr.To[int32](2)
	nc.Spec.ConnectionTracking = &awsv1.ConnectionTracking{UDPTimeout: ptr.To[int32](45)}
	nc = e.resolved(t, nc)
	p := e.cloudProvider(t, nc)
	claim, err := p.Create(context.Background(), newClaim(nc.Name, req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand), req(v1.LabelInstanceTypeStable, "c6in.32xlarge")))
	if err != nil {
		t.Fatal(err)
	}
	group := []string{"sg-0a00000000000001"}
	want := []ec2sim.NetworkInterface{
		{NetworkCardIndex: 0, DeviceIndex: 0, InterfaceType: "interface", SecurityGroupIDs: group, IPv4PrefixCount: 2, ConnectionTracking: ec2sim.ConnectionTracking{UDPTimeout: 45}},
		{NetworkCardIndex: 0, DeviceIndex: 1, InterfaceType: "efa-only", SecurityGroupIDs: group},
		{NetworkCardIndex: 1, DeviceIndex: 0, InterfaceType: "efa-only", SecurityGroupIDs: group},
	}
	d := onlyTemplate(t, e.sim).Data
	if len(d.NetworkInterfaces) != len(want) || len(d.SecurityGroupIDs) != 0 {
		t.Fatalf("template interfaces %+v and groups %v; want %+v", d.NetworkInterfaces, d.SecurityGroupIDs, want)
	}
	for i := range want {
		if !equalInterfaces(d.NetworkInterfaces[i], want[i]) {
			t.Errorf("template interface %d is %+v, want %+v", i, d.NetworkInterfaces[i], want[i])
		}
	}
	if claim.Labels[v1.LabelInstanceTypeStable] != "c6in.32xlarge" {
		t.Errorf("launched %s", claim.Labels[v1.LabelInstanceTypeStable])
	}
}

// A class's efa-only interfaces are its nodes' vpc.amazonaws.com/efa (the
// EFA device plugin's count), so the solver places pods requesting EFA on
// them; a class without has none, rather than promising devices it does
// not attach. Mutations tried: EFADevices not set in restrictCatalog (no
// EFA capacity); ResEFA left out of the solver's resources (the pod
// requesting it unschedulable).
func TestEFAInterfacesAreNodeCapacity(t *testing.T) {
	e := newEnv(t)
	efa := seedNodeClass(t)
	efa.Name, efa.Spec.NetworkInterfaces = "efa", efaLayout
	p := e.cloudProvider(t, e.resolved(t, efa), e.resolved(t, seedNodeClass(t)))
	for class, want := range map[string]int64{"efa": 2, seedNodeClass(t).Name: 0} {
		cat, _, err := p.Catalog(context.Background(), pool(class))
		if err != nil {
			t.Fatal(err)
		}
		it := cat.Get("c6in.32xlarge")
		if it == nil {
			t.Fatalf("%s: c6in.32xlarge missing", class)
		}
		if q := it.Allocatable[catalog.ResourceEFA]; q.Value() != want {
			t.Errorf("%s: c6in.32xlarge allocatable %s %s, want %d", class, catalog.ResourceEFA, q.String(), want)
		}
		if want == 0 {
			continue
		}
		need, unknown := scheduling.ResourcesFrom(corev1.ResourceList{catalog.ResourceEFA: resource.MustParse("2")})
		have, _ := scheduling.ResourcesFrom(it.Allocatable)
		if len(unknown) != 0 || !need.Fits(have) {
			t.Errorf("%s: a pod requesting 2 %s does not fit c6in.32xlarge (unknown to the solver: %v)", class, catalog.ResourceEFA, unknown)
		}
	}
}

// A class with spec.networkInterfaces plans only types EC2 launches them
// on: enough network cards for the highest networkCardIndex, interfaces a
// card for the highest deviceIndex, and EFA support for as many efa-only
// interfaces. Mutations tried: the cards need ignored (c5n.18xlarge, one
// card, offered for the two-card layout); the EFA need ignored (m5.large
// offered for EFA); devices compared with MaxENIs instead of the interfaces
// a card (c6in.32xlarge, 8 a card, offered for device 15).
func TestNetworkInterfacesNarrowTheCatalog(t *testing.T) {
	e := newEnv(t)
	layouts := map[string][]awsv1.NetworkInterface{
		"efa-two-cards": efaLayout,
		"efa-one-card":  efaLayout[:2],
		"two-cards":     {efaLayout[0], {NetworkCardIndex: 1, DeviceIndex: 0, InterfaceType: awsv1.InterfaceTypeInterface}},
		"device-15":     {efaLayout[0], {NetworkCardIndex: 0, DeviceIndex: 14, InterfaceType: awsv1.InterfaceTypeInterface}},
	}
	var classes []*awsv1.EC2NodeClass
	for name, layout := range layouts {
		nc := seedNodeClass(t)
		nc.Name, nc.Spec.NetworkInterfaces = name, layout
		classes = append(classes, e.resolved(t, nc))
	}
	p := e.cloudProvider(t, classes...)
	for _, c := range []struct {
		class     string
		in, notIn []string
	}{
		{"efa-two-cards", []string{"c6in.32xlarge", "p4d.24xlarge"}, []string{"c5n.18xlarge", "m5.large", "m6in.16xlarge"}},
		{"efa-one-card", []string{"c5n.18xlarge", "c6in.32xlarge"}, []string{"m5.large", "c5n.4xlarge"}},
		{"two-cards", []string{"c6in.32xlarge"}, []string{"c5n.18xlarge", "m5.large"}},
		{"device-15", []string{"c5n.18xlarge", "m5.24xlarge"}, []string{"c6in.32xlarge", "m5.large"}},
	} {
		cat, _, err := p.Catalog(context.Background(), pool(c.class))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range c.in {
			if cat.Get(name) == nil {
				t.Errorf("%s: %s missing", c.class, name)
			}
		}
		for _, name := range c.notIn {
			if cat.Get(name) != nil {
				t.Errorf("%s: %s offered, EC2 refuses the interfaces on it", c.class, name)
			}
		}
	}
}
