package aws

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
	"github.com/nodewright/nodewright/test/ec2sim"
)

func (e *env) placementGroup(t *testing.T, g ec2sim.PlacementGroup) string {
	t.Helper()
	id, err := e.sim.AddPlacementGroup(g)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// spec.placementGroupSelector (name or id) resolves into PlacementGroupReady
// naming the group's id and strategy; a group EC2 does not have makes the
// class not Ready; without a selector the condition is absent, as in
// Karpenter. Fails when the lookup is skipped (tried: placementGroup
// returning nil, nil: the named group was not found), when a missing group
// leaves the class Ready (tried: PlacementGroupReady left out of the
// readiness list) and when the field is refused (tried: validation naming
// spec.placementGroupSelector.name as not supported: ValidationSucceeded False).
func TestResolvePlacementGroupSelector(t *testing.T) {
	e := newEnv(t)
	kafka := e.placementGroup(t, ec2sim.PlacementGroup{Name: "kafka", Strategy: ec2sim.StrategyPartition, PartitionCount: 3})
	training := e.placementGroup(t, ec2sim.PlacementGroup{Name: "training", Strategy: ec2sim.StrategyCluster})
	resolve := func(sel *awsv1.PlacementGroupSelector) awsv1.EC2NodeClassStatus {
		t.Helper()
		nc := seedNodeClass(t)
		nc.Spec.PlacementGroupSelector = sel
		status, err := e.resolver(t).Resolve(context.Background(), nc)
		if err != nil {
			t.Fatal(err)
		}
		return status
	}
	for sel, want := range map[awsv1.PlacementGroupSelector][]string{
		{Name: "kafka"}:  {kafka, "strategy partition", "3 partitions"},
		{ID: training}:   {training, "name training", "strategy cluster"},
		{Name: "absent"}: nil,
	} {
		status := resolve(&sel)
		c := meta.FindStatusCondition(status.Conditions, awsv1.ConditionTypePlacementGroupReady)
		if want == nil {
			if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonPlacementGroupNotFound || !strings.Contains(c.Message, "name absent") {
				t.Errorf("%+v: PlacementGroupReady %+v, want False naming the selector", sel, c)
			}
			if meta.IsStatusConditionTrue(status.Conditions, ConditionTypeReady) {
				t.Errorf("%+v: the class is Ready without its placement group", sel)
			}
			continue
		}
		if c == nil || c.Status != metav1.ConditionTrue {
			t.Fatalf("%+v: PlacementGroupReady %+v", sel, c)
		}
		for _, w := range want {
			if !strings.Contains(c.Message, w) {
				t.Errorf("%+v: message %q lacks %q", sel, c.Message, w)
			}
		}
		if !meta.IsStatusConditionTrue(status.Conditions, ConditionTypeReady) {
			t.Errorf("%+v: not Ready: %+v", sel, status.Conditions)
		}
	}
	if c := meta.FindStatusCondition(resolve(nil).Conditions, awsv1.ConditionTypePlacementGroupReady); c != nil {
		t.Errorf("no selector: PlacementGroupReady %+v", c)
	}
}

// A class with spec.placementGroupSelector launches into the group: a
// partition group's instances land in its partitions and the claims carry
// karpenter.k8s.aws/placement-group-id and -partition from the instance; a
// cluster group keeps the class's launches in the zone of its first
// instance; a requirement on the placement labels never becomes a kubelet
// label and matches no type (the solver cannot know where EC2 will put the
// instance, so such a pod is refused, not given a node without the label). Fails when the template has no placement (tried: dropping
// data.Placement: the instances were in no group), when the labels are not
// read from the instance (tried: not copying placementLabels: no labels) and
// when requirements set them or match types (tried: the two keys left out
// of catalog.CatalogKeys: the requirement became a kubelet label and
// matched every type); with the simulator's cluster rule
// dropped, the second cluster launch went to the cheaper other zone.
func TestCreateLaunchesIntoThePlacementGroup(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	kafka := e.placementGroup(t, ec2sim.PlacementGroup{Name: "kafka", Strategy: ec2sim.StrategyPartition, PartitionCount: 2})
	nc := seedNodeClass(t)
	nc.Spec.PlacementGroupSelector = &awsv1.PlacementGroupSelector{Name: "kafka"}
	resolved := e.resolved(t, nc)
	p := e.cloudProvider(t, resolved)
	partitions := map[string]bool{}
	for range 2 {
		got, err := p.Create(ctx, newClaim(resolved.Name, req(v1.LabelInstanceTypeStable, seedTypes...), req(v1.LabelTopologyZone, seedZones[0])))
		if err != nil {
			t.Fatal(err)
		}
		in := simInstance(t, e.sim, got.Status.ProviderID)
		if in.PlacementGroupID != kafka || in.PlacementGroupName != "kafka" {
			t.Fatalf("instance %s not in group kafka: %+v", in.ID, in)
		}
		if got.Labels[awsv1.LabelPlacementGroupID] != kafka {
			t.Errorf("labels %v, want %s=%s", got.Labels, awsv1.LabelPlacementGroupID, kafka)
		}
		partitions[got.Labels[awsv1.LabelPlacementGroupPartition]] = true
	}
	if !partitions["1"] || !partitions["2"] {
		t.Errorf("partition labels %v, want 1 and 2", partitions)
	}

	e.placementGroup(t, ec2sim.PlacementGroup{Name: "training", Strategy: ec2sim.StrategyCluster})
	cluster := seedNodeClass(t)
	cluster.Name = "training"
	cluster.Spec.PlacementGroupSelector = &awsv1.PlacementGroupSelector{Name: "training"}
	resolved = e.resolved(t, cluster)
	p = e.cloudProvider(t, resolved)
	first, err := p.Create(ctx, newClaim(resolved.Name, req(v1.LabelInstanceTypeStable, seedTypes...), req(v1.LabelTopologyZone, seedZones[1])))
	if err != nil {
		t.Fatal(err)
	}
	second, err := p.Create(ctx, newClaim(resolved.Name, req(v1.LabelInstanceTypeStable, seedTypes...), req(v1.LabelTopologyZone, seedZones...)))
	if err != nil {
		t.Fatal(err)
	}
	if first.Labels[v1.LabelTopologyZone] != seedZones[1] || second.Labels[v1.LabelTopologyZone] != seedZones[1] {
		t.Errorf("cluster group zones %s and %s, want both %s", first.Labels[v1.LabelTopologyZone], second.Labels[v1.LabelTopologyZone], seedZones[1])
	}
	if _, ok := second.Labels[awsv1.LabelPlacementGroupPartition]; ok {
		t.Errorf("a cluster group's node has a partition label: %v", second.Labels)
	}

	claim := newClaim(resolved.Name, v1.NodeSelectorRequirementWithMinValues{Key: awsv1.LabelPlacementGroupID, Operator: corev1.NodeSelectorOpIn, Values: []string{kafka}})
	if labels := nodeLabels(claim, resolved, v1.CapacityTypeOnDemand); labels[awsv1.LabelPlacementGroupID] != "" {
		t.Errorf("kubelet labels %v take the placement group from a requirement", labels)
	}
	for _, key := range []string{awsv1.LabelPlacementGroupID, awsv1.LabelPlacementGroupPartition} {
		reqs := requirements.Requirements{key: requirements.MustNew(key, corev1.NodeSelectorOpIn, "1")}
		if got, err := e.offline(t).Filter(reqs); err == nil {
			t.Errorf("a requirement on %s matched %d types: the solver would plan a node it cannot promise", key, len(got))
		}
	}
}
