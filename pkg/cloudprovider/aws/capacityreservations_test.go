package aws

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
	"github.com/nodewright/nodewright/test/ec2sim"
)

func (e *env) reservation(t *testing.T, r ec2sim.CapacityReservation) string {
	t.Helper()
	id, err := e.sim.AddCapacityReservation(r)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// The terms select by tags, owner and id (ORed terms, ANDed fields) into
// status.capacityReservations with every field, a capacity block near its
// end is expiring, and CapacityReservationsReady names the terms that
// matched nothing while the class stays Ready. Fails when the owner filter
// is dropped (tried: the reservation of another owner was selected), when
// the expiry window is ignored (tried: the block stayed active) and when the
// field is still refused.
func TestResolveCapacityReservations(t *testing.T) {
	e := newEnv(t)
	end := e.sim.Now().Add(30 * time.Minute).Truncate(time.Second)
	ml := e.reservation(t, ec2sim.CapacityReservation{InstanceType: "c5.xlarge", Zone: "ap-northeast-2a", Total: 2, Tags: map[string]string{"team": "ml"}})
	e.reservation(t, ec2sim.CapacityReservation{InstanceType: "c5.xlarge", Zone: "ap-northeast-2a", Total: 2, Tags: map[string]string{"team": "ml"}, OwnerID: "999999999999"})
	block := e.reservation(t, ec2sim.CapacityReservation{InstanceType: "m5.xlarge", Zone: "ap-northeast-2c", Total: 1, ReservationType: ec2sim.ReservationTypeCapacityBlock, EndDate: end, MatchCriteria: ec2sim.MatchTargeted})
	nc := seedNodeClass(t)
	nc.Spec.CapacityReservationSelectorTerms = []awsv1.CapacityReservationSelectorTerm{
		{Tags: map[string]string{"team": "ml"}, OwnerID: e.scenario.AccountID},
		{ID: block},
		{ID: "cr-0000000000000000f"},
	}
	status, err := e.resolver(t).Resolve(context.Background(), nc)
	if err != nil {
		t.Fatal(err)
	}
	want := []awsv1.CapacityReservation{
		{ID: ml, InstanceType: "c5.xlarge", AvailabilityZone: "ap-northeast-2a", OwnerID: e.scenario.AccountID, InstanceMatchCriteria: "targeted", ReservationType: "default", State: "active"},
		{ID: block, InstanceType: "m5.xlarge", AvailabilityZone: "ap-northeast-2c", OwnerID: e.scenario.AccountID, InstanceMatchCriteria: "targeted", ReservationType: "capacity-block", State: "expiring", EndTime: &metav1.Time{Time: end}},
	}
	if len(status.CapacityReservations) != len(want) {
		t.Fatalf("reservations %+v, want %+v", status.CapacityReservations, want)
	}
	for i, got := range status.CapacityReservations {
		w := want[i]
		if got.ID != w.ID || got.InstanceType != w.InstanceType || got.AvailabilityZone != w.AvailabilityZone || got.OwnerID != w.OwnerID ||
			got.InstanceMatchCriteria != w.InstanceMatchCriteria || got.ReservationType != w.ReservationType || got.State != w.State ||
			(w.EndTime == nil) != (got.EndTime == nil) || w.EndTime != nil && !got.EndTime.Equal(w.EndTime) {
			t.Errorf("reservation %d = %+v, want %+v", i, got, w)
		}
	}
	c := meta.FindStatusCondition(status.Conditions, awsv1.ConditionTypeCapacityReservationsReady)
	if c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "capacityReservationSelectorTerms[2]") {
		t.Errorf("CapacityReservationsReady = %+v", c)
	}
	if !meta.IsStatusConditionTrue(status.Conditions, awsv1.ConditionTypeValidationSucceeded) || !meta.IsStatusConditionTrue(status.Conditions, ConditionTypeReady) {
		t.Errorf("the class is refused: %+v", status.Conditions)
	}
}

// A claim allowing reserved capacity launches into the class's reservation
// (targeted by the launch template), labelled reserved with the
// reservation's id and type; once the reservation is full the next claim
// falls back to on-demand in the same Create, and a claim allowing only
// reserved capacity gets an InsufficientCapacityError. Fails when the plan
// does not put reserved first (tried: reserved only while no spot or
// on-demand pool is left: the first Create failed), when the template does
// not target the reservation (tried: no CapacityReservationSpecification:
// the first node was on-demand, outside the reservation), and when a
// ReservationCapacityExceeded marks on-demand instead of reserved
// unavailable (tried: dropping the reserved override of the marked capacity
// type: four fleets asked the full reservation again).
func TestCreateFillsTheReservationThenFallsBack(t *testing.T) {
	e := newEnv(t)
	id := e.reservation(t, ec2sim.CapacityReservation{InstanceType: "c5.xlarge", Zone: "ap-northeast-2a", Total: 1})
	nc := seedNodeClass(t)
	nc.Spec.CapacityReservationSelectorTerms = []awsv1.CapacityReservationSelectorTerm{{ID: id}}
	nc = e.resolved(t, nc)
	p := e.cloudProvider(t, nc)
	claim := func(capacityTypes ...string) *v1.NodeClaim {
		return newClaim(nc.Name, req(v1.CapacityTypeLabelKey, capacityTypes...), req(v1.LabelInstanceTypeStable, seedTypes...), req(v1.LabelTopologyZone, seedZones...))
	}

	first, err := p.Create(context.Background(), claim(v1.CapacityTypeReserved, v1.CapacityTypeOnDemand))
	if err != nil {
		t.Fatal(err)
	}
	if first.Labels[v1.CapacityTypeLabelKey] != v1.CapacityTypeReserved || first.Labels[awsv1.LabelCapacityReservationID] != id ||
		first.Labels[awsv1.LabelCapacityReservationType] != "default" || first.Labels[v1.LabelInstanceTypeStable] != "c5.xlarge" ||
		first.Labels[v1.LabelTopologyZone] != "ap-northeast-2a" {
		t.Errorf("first claim labels %v", first.Labels)
	}
	if got := simInstance(t, e.sim, first.Status.ProviderID).CapacityReservationID; got != id {
		t.Errorf("first instance in reservation %q, want %s", got, id)
	}
	// Get describes it the same way, from EC2.
	if got, err := p.Get(context.Background(), first.Status.ProviderID); err != nil || got.Labels[v1.CapacityTypeLabelKey] != v1.CapacityTypeReserved || got.Labels[awsv1.LabelCapacityReservationID] != id {
		t.Errorf("Get: %v %v", err, got)
	}

	second, err := p.Create(context.Background(), claim(v1.CapacityTypeReserved, v1.CapacityTypeOnDemand))
	if err != nil {
		t.Fatal(err)
	}
	if second.Labels[v1.CapacityTypeLabelKey] != v1.CapacityTypeOnDemand || second.Labels[awsv1.LabelCapacityReservationID] != "" {
		t.Errorf("second claim labels %v", second.Labels)
	}
	if got := simInstance(t, e.sim, second.Status.ProviderID).CapacityReservationID; got != "" {
		t.Errorf("second instance in reservation %s", got)
	}

	_, err = p.Create(context.Background(), claim(v1.CapacityTypeReserved))
	if !errors.As(err, new(*cloudprovider.InsufficientCapacityError)) {
		t.Errorf("reserved-only claim with the reservation full: %v", err)
	}
}

// A capacity block is launched into by a capacity-block fleet and its node
// labelled reserved, capacity-reservation-type capacity-block; once it is
// expiring no new node goes into it. Fails when the fleet asks for
// on-demand (tried: targetCapacityType always on-demand: EC2 refused with
// InvalidParameterCombination) and when an expiring block is still offered
// (tried: catalogReservations ignoring the state: the launch went into it).
func TestCreateLaunchesIntoACapacityBlock(t *testing.T) {
	e := newEnv(t)
	end := e.sim.Now().Add(2 * time.Hour)
	id := e.reservation(t, ec2sim.CapacityReservation{InstanceType: "c5.xlarge", Zone: "ap-northeast-2a", Total: 2, ReservationType: ec2sim.ReservationTypeCapacityBlock, EndDate: end})
	nc := seedNodeClass(t)
	nc.Spec.CapacityReservationSelectorTerms = []awsv1.CapacityReservationSelectorTerm{{ID: id}}
	claim := func(nc *awsv1.EC2NodeClass) *v1.NodeClaim {
		return newClaim(nc.Name, req(v1.CapacityTypeLabelKey, v1.CapacityTypeReserved), req(v1.LabelInstanceTypeStable, seedTypes...), req(v1.LabelTopologyZone, seedZones...))
	}
	resolved := e.resolved(t, nc)
	got, err := e.cloudProvider(t, resolved).Create(context.Background(), claim(resolved))
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels[v1.CapacityTypeLabelKey] != v1.CapacityTypeReserved || got.Labels[awsv1.LabelCapacityReservationType] != "capacity-block" ||
		got.Labels[awsv1.LabelCapacityReservationID] != id {
		t.Errorf("labels %v", got.Labels)
	}
	if in := simInstance(t, e.sim, got.Status.ProviderID); in.CapacityReservationID != id || in.CapacityType != "capacity-block" {
		t.Errorf("instance %+v", in)
	}

	e.sim.Advance(90 * time.Minute) // 30 minutes left: expiring
	opts := testOptions
	opts.Clock = clocktesting.NewFakeClock(e.sim.Now())
	r, err := NewNodeClassResolver(e.clients, opts)
	if err != nil {
		t.Fatal(err)
	}
	expiring := nc.DeepCopy()
	if expiring.Status, err = r.Resolve(context.Background(), nc); err != nil {
		t.Fatal(err)
	}
	if s := expiring.Status.CapacityReservations; len(s) != 1 || s[0].State != "expiring" {
		t.Fatalf("reservations %+v", s)
	}
	if _, err := e.cloudProvider(t, expiring).Create(context.Background(), claim(expiring)); !errors.As(err, new(*cloudprovider.InsufficientCapacityError)) {
		t.Errorf("a launch into an expiring block: %v", err)
	}
}
