package aws

import (
	"context"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
)

func pool(nodeClass string) *v1.NodePool {
	p := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "batch-processing"}}
	p.Spec.Template.Spec.NodeClassRef = &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: nodeClass}
	return p
}

// TestCatalogFollowsTheNodeClass: a NodePool's catalog offers only the zones
// of its node class's subnets and the types its AMIs run on, shares the
// unavailable offerings with the launch path, and comes with the node
// class's settings.
func TestCatalogFollowsTheNodeClass(t *testing.T) {
	e := newEnv(t)
	nc := seedNodeClass(t)
	nc.Spec.SubnetSelectorTerms = []awsv1.SubnetSelectorTerm{{ID: "subnet-0a000000000000001"}, {ID: "subnet-0c000000000000003"}}
	nc.Spec.Kubelet = awsv1.KubeletConfiguration{"maxPods": apiextensionsv1.JSON{Raw: []byte("17")}}
	nc = e.resolved(t, nc)
	p := e.cloudProvider(t, nc)
	c, settings, err := p.Catalog(context.Background(), pool(nc.Name))
	if err != nil {
		t.Fatal(err)
	}
	region := p.instanceTypes.Catalog()
	zones := map[string]bool{}
	for _, it := range c.Types {
		for _, o := range it.Offerings {
			zones[o.Zone] = true
		}
	}
	if len(zones) != 2 || !zones["ap-northeast-2a"] || !zones["ap-northeast-2c"] {
		t.Errorf("catalog zones %v, want the subnets' 2a and 2c", zones)
	}
	for _, name := range []string{"m5.xlarge", "c6g.large", "g4dn.xlarge"} {
		if c.Get(name) == nil {
			t.Errorf("%s is missing: the node class has an image for it", name)
		}
	}
	for _, name := range []string{"g5g.xlarge", "inf1.xlarge"} {
		if region.Get(name) == nil {
			t.Fatalf("%s is not offered in the region: the test needs it", name)
		}
		if c.Get(name) != nil {
			t.Errorf("%s is offered but the node class has no image for it (no arm64 GPU, no Neuron image)", name)
		}
	}
	if c.Unavailable != region.Unavailable {
		t.Error("the NodePool's catalog does not share the unavailable offerings the launch marks")
	}
	if settings == nil || settings.MaxPods == nil || *settings.MaxPods != 17 {
		t.Errorf("settings %+v, want the node class's maxPods 17", settings)
	}
	again, _, _ := p.Catalog(context.Background(), pool(nc.Name))
	if again != c {
		t.Error("the catalog is rebuilt on every call for an unchanged node class")
	}
}

// TestCatalogNeedsAReadyNodeClass: a pool whose node class is missing or not
// ready gets a NodeClassNotReadyError that says why.
func TestCatalogNeedsAReadyNodeClass(t *testing.T) {
	e := newEnv(t)
	broken := seedNodeClass(t)
	broken.Name = "broken"
	broken.Spec.SubnetSelectorTerms = []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"Tier": "nope"}}}
	status, _ := e.resolver(t).Resolve(context.Background(), broken)
	broken.Status = status
	if meta.IsStatusConditionTrue(status.Conditions, ConditionTypeReady) {
		t.Fatal("a node class without subnets is Ready")
	}
	p := e.cloudProvider(t, broken)
	for name, want := range map[string]string{
		"missing": "node class missing is not ready: EC2NodeClass not found",
		"broken":  `node class broken is not ready: SubnetsReady=False: no subnet matches subnetSelectorTerms[0] {"tags":{"Tier":"nope"}}`,
	} {
		_, _, err := p.Catalog(context.Background(), pool(name))
		if !cloudprovider.IsNodeClassNotReady(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("Catalog for %s: got %v, want a NodeClassNotReadyError saying %q", name, err, want)
		}
	}
}
