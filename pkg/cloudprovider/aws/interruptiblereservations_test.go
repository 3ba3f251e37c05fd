package aws

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/ec2sim"
)

// A claim can ask for, or keep away from, an interruptible reservation with
// karpenter.k8s.aws/capacity-reservation-interruptible, and its node says
// which it got, also when Get describes it again from EC2. Fails when the
// catalog does not answer the key per offering (tried offeringValue
// returning "" for it: the claim for "true" found no offering) and when the
// claim's label ignores the reservation (tried always "false": the
// interruptible node was labelled false).
func TestCreateSelectsOrAvoidsAnInterruptibleReservation(t *testing.T) {
	e := newEnv(t)
	lent := e.reservation(t, ec2sim.CapacityReservation{InstanceType: "c5.xlarge", Zone: "ap-northeast-2a", Total: 1, Interruptible: true})
	owned := e.reservation(t, ec2sim.CapacityReservation{InstanceType: "c5.xlarge", Zone: "ap-northeast-2c", Total: 1})
	nc := seedNodeClass(t)
	nc.Spec.CapacityReservationSelectorTerms = []awsv1.CapacityReservationSelectorTerm{{ID: lent}, {ID: owned}}
	nc = e.resolved(t, nc)
	p := e.cloudProvider(t, nc)
	claim := func(op corev1.NodeSelectorOperator) *v1.NodeClaim {
		return newClaim(nc.Name, req(v1.CapacityTypeLabelKey, v1.CapacityTypeReserved), req(v1.LabelInstanceTypeStable, seedTypes...), req(v1.LabelTopologyZone, seedZones...),
			v1.NodeSelectorRequirementWithMinValues{Key: awsv1.LabelCapacityReservationInterruptible, Operator: op, Values: []string{"true"}})
	}
	for _, c := range []struct {
		op          corev1.NodeSelectorOperator
		reservation string
		label       string
	}{
		{corev1.NodeSelectorOpNotIn, owned, "false"},
		{corev1.NodeSelectorOpIn, lent, "true"},
	} {
		got, err := p.Create(context.Background(), claim(c.op))
		if err != nil {
			t.Fatalf("%s true: %v", c.op, err)
		}
		if got.Labels[awsv1.LabelCapacityReservationID] != c.reservation || got.Labels[awsv1.LabelCapacityReservationInterruptible] != c.label {
			t.Errorf("%s true: labels %v, want reservation %s interruptible %s", c.op, got.Labels, c.reservation, c.label)
		}
		if again, err := p.Get(context.Background(), got.Status.ProviderID); err != nil || again.Labels[awsv1.LabelCapacityReservationInterruptible] != c.label {
			t.Errorf("%s true: Get: %v %v", c.op, err, again)
		}
	}
}
