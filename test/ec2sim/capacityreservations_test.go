package ec2sim

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// reservedTemplate is a launch template whose launches target reservation id.
func (e *env) reservedTemplate(t *testing.T, name, id string) {
	t.Helper()
	_, err := e.ec2.CreateLaunchTemplate(context.Background(), &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(name),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{
			ImageId: aws.String(amiX86), SecurityGroupIds: []string{sgNodes},
			CapacityReservationSpecification: &ec2types.LaunchTemplateCapacityReservationSpecificationRequest{
				CapacityReservationTarget: &ec2types.CapacityReservationTarget{CapacityReservationId: aws.String(id)},
			},
		},
	})
	if err != nil {
		t.Fatalf("creating launch template %s: %v", name, err)
	}
}

// Fails when the available count ignores launches (tried
// reservationUsedLocked returning 0) and when filters are ignored (tried
// skipping matchFilters).
func TestDescribeCapacityReservationsByFilterAndID(t *testing.T) {
	e := newEnv(t)
	end := e.sim.Now().Add(48 * time.Hour).Truncate(time.Second)
	odcr, err := e.sim.AddCapacityReservation(CapacityReservation{InstanceType: "c5.large", Zone: zones[0], Total: 2, Tags: map[string]string{"team": "ml"}})
	if err != nil {
		t.Fatal(err)
	}
	block, err := e.sim.AddCapacityReservation(CapacityReservation{InstanceType: "m5.large", Zone: zones[1], Total: 1, ReservationType: ReservationTypeCapacityBlock, EndDate: end, OwnerID: "444455556666"})
	if err != nil {
		t.Fatal(err)
	}
	e.reservedTemplate(t, "odcr", odcr)
	e.createFleet(t, fleetInput("odcr", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("c5.large", zones[0])))

	describe := func(in *ec2.DescribeCapacityReservationsInput) []ec2types.CapacityReservation {
		t.Helper()
		out, err := e.ec2.DescribeCapacityReservations(context.Background(), in)
		if err != nil {
			t.Fatalf("DescribeCapacityReservations: %v", err)
		}
		return out.CapacityReservations
	}
	byTag := describe(&ec2.DescribeCapacityReservationsInput{Filters: []ec2types.Filter{{Name: aws.String("tag:team"), Values: []string{"ml"}}}})
	if len(byTag) != 1 || aws.ToString(byTag[0].CapacityReservationId) != odcr {
		t.Fatalf("by tag: %+v", byTag)
	}
	r := byTag[0]
	if aws.ToInt32(r.TotalInstanceCount) != 2 || aws.ToInt32(r.AvailableInstanceCount) != 1 || r.State != ec2types.CapacityReservationStateActive ||
		r.InstanceMatchCriteria != ec2types.InstanceMatchCriteriaTargeted || r.ReservationType != ec2types.CapacityReservationTypeDefault ||
		aws.ToString(r.InstanceType) != "c5.large" || aws.ToString(r.AvailabilityZone) != zones[0] || r.EndDate != nil {
		t.Errorf("reservation %+v", r)
	}
	byOwner := describe(&ec2.DescribeCapacityReservationsInput{Filters: []ec2types.Filter{{Name: aws.String("owner-id"), Values: []string{"444455556666"}}}})
	if len(byOwner) != 1 || aws.ToString(byOwner[0].CapacityReservationId) != block || byOwner[0].ReservationType != ec2types.CapacityReservationTypeCapacityBlock ||
		byOwner[0].EndDate == nil || !byOwner[0].EndDate.Equal(end) {
		t.Errorf("by owner: %+v", byOwner)
	}
	if got := describe(&ec2.DescribeCapacityReservationsInput{CapacityReservationIds: []string{block}}); len(got) != 1 {
		t.Errorf("by id: %+v", got)
	}
	_, err = e.ec2.DescribeCapacityReservations(context.Background(), &ec2.DescribeCapacityReservationsInput{CapacityReservationIds: []string{"cr-0123456789abcdef0"}})
	if errorCode(err) != "InvalidCapacityReservationId.NotFound" {
		t.Errorf("unknown id: %v", err)
	}
	e.sim.Advance(49 * time.Hour)
	if got := describe(&ec2.DescribeCapacityReservationsInput{CapacityReservationIds: []string{block}}); got[0].State != "expired" {
		t.Errorf("after the end date the block is %s", got[0].State)
	}
}

// Fails when a targeted launch ignores the reservation's count (tried
// dropping the reservationUsedLocked check) or its type and zone (tried
// dropping the instance-type/zone check).
func TestFleetIntoAReservationHonoursItsCapacity(t *testing.T) {
	e := newEnv(t)
	id, err := e.sim.AddCapacityReservation(CapacityReservation{InstanceType: "c5.large", Zone: zones[0], Total: 1})
	if err != nil {
		t.Fatal(err)
	}
	e.reservedTemplate(t, "odcr", id)
	wrongType := e.createFleet(t, fleetInput("odcr", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("m5.large", zones[0])))
	wrongZone := e.createFleet(t, fleetInput("odcr", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("c5.large", zones[1])))
	for name, out := range map[string]*ec2.CreateFleetOutput{"type": wrongType, "zone": wrongZone} {
		if len(launched(out)) != 0 || len(out.Errors) != 1 || aws.ToString(out.Errors[0].ErrorCode) != "ReservationCapacityExceeded" {
			t.Errorf("wrong %s: launched %v, errors %+v", name, launched(out), out.Errors)
		}
	}
	first := e.createFleet(t, fleetInput("odcr", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("c5.large", zones[0])))
	ids := launched(first)
	if len(ids) != 1 {
		t.Fatalf("first launch: %v %+v", ids, first.Errors)
	}
	out, err := e.ec2.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: ids})
	if err != nil || aws.ToString(out.Reservations[0].Instances[0].CapacityReservationId) != id {
		t.Errorf("instance not in reservation %s: %v %+v", id, err, out)
	}
	full := e.createFleet(t, fleetInput("odcr", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("c5.large", zones[0])))
	if len(launched(full)) != 0 || len(full.Errors) != 1 || aws.ToString(full.Errors[0].ErrorCode) != "ReservationCapacityExceeded" {
		t.Fatalf("full reservation: launched %v, errors %+v", launched(full), full.Errors)
	}
	if _, err := e.ec2.TerminateInstances(context.Background(), &ec2.TerminateInstancesInput{InstanceIds: ids}); err != nil {
		t.Fatal(err)
	}
	if again := e.createFleet(t, fleetInput("odcr", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("c5.large", zones[0]))); len(launched(again)) != 1 {
		t.Errorf("a terminated instance's slot is not given back: %+v", again.Errors)
	}
	spot := e.createFleet(t, fleetInput("odcr", ec2types.DefaultTargetCapacityTypeSpot, 1, override("c5.large", zones[0])))
	if len(launched(spot)) != 0 || aws.ToString(spot.Errors[0].ErrorCode) != "InvalidParameterCombination" {
		t.Errorf("spot into a reservation: %+v", spot.Errors)
	}
}

// Fails when a capacity block takes on-demand launches (tried dropping the
// capacity-block check in reservationRefusalLocked).
func TestFleetIntoACapacityBlockNeedsItsCapacityType(t *testing.T) {
	e := newEnv(t)
	id, err := e.sim.AddCapacityReservation(CapacityReservation{InstanceType: "c5.large", Zone: zones[0], Total: 1, ReservationType: ReservationTypeCapacityBlock, EndDate: e.sim.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	e.reservedTemplate(t, "block", id)
	od := e.createFleet(t, fleetInput("block", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("c5.large", zones[0])))
	if len(launched(od)) != 0 || aws.ToString(od.Errors[0].ErrorCode) != "InvalidParameterCombination" {
		t.Errorf("on-demand into a block: %+v", od.Errors)
	}
	cb := e.createFleet(t, fleetInput("block", ec2types.DefaultTargetCapacityTypeCapacityBlock, 1, override("c5.large", zones[0])))
	if len(launched(cb)) != 1 || cb.Instances[0].Lifecycle != "capacity-block" {
		t.Fatalf("capacity-block launch: %+v %+v", cb.Instances, cb.Errors)
	}
}

// Fails when DescribeCapacityReservations drops the flag (tried removing
// Interruptible from the XML), when the warning is the spot one (tried
// publishing detailSpotInterruption for every EventInterrupted), when the
// notice does not run out (tried not setting shutdownAt in
// ReclaimCapacityReservation) and when the reclaimed reservation still takes
// launches (tried not zeroing Total).
func TestReclaimingAnInterruptibleReservationWarnsThenTerminates(t *testing.T) {
	e := newEnv(t)
	id, err := e.sim.AddCapacityReservation(CapacityReservation{InstanceType: "c5.large", Zone: zones[0], Total: 2, Interruptible: true})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := e.sim.AddCapacityReservation(CapacityReservation{InstanceType: "c5.large", Zone: zones[0], Total: 1})
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.ec2.DescribeCapacityReservations(context.Background(), &ec2.DescribeCapacityReservationsInput{CapacityReservationIds: []string{id, plain}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range out.CapacityReservations {
		got[aws.ToString(r.CapacityReservationId)] = aws.ToBool(r.Interruptible)
	}
	if !got[id] || got[plain] {
		t.Errorf("interruptible as described: %v, want %s only", got, id)
	}
	if err := e.sim.ReclaimCapacityReservation(plain); err == nil {
		t.Error("reclaiming a reservation that is not interruptible succeeded")
	}

	e.reservedTemplate(t, "icr", id)
	ids := launched(e.createFleet(t, fleetInput("icr", ec2types.DefaultTargetCapacityTypeOnDemand, 2, override("c5.large", zones[0]))))
	if len(ids) != 2 {
		t.Fatalf("launched %v", ids)
	}
	e.sim.Advance(time.Minute) // both running
	f := newFeed(t, e)
	if err := e.sim.ReclaimCapacityReservation(id); err != nil {
		t.Fatal(err)
	}
	events := f.drain(t)
	want := fmt.Sprintf("EC2 Capacity Reservation Instance Interruption Warning %s\nEC2 Capacity Reservation Instance Interruption Warning %s", ids[0], ids[1])
	if s := summaries(t, events); s != want {
		t.Fatalf("events:\n%s\nwant:\n%s", s, want)
	}
	in := e.instance(t, ids[0])
	wantBody := fmt.Sprintf(`{"version":"0","id":"%s","detail-type":"EC2 Capacity Reservation Instance Interruption Warning","source":"aws.ec2","account":"%s","time":"%s","region":"ap-northeast-2","resources":["arn:aws:ec2:ap-northeast-2:%s:instance/%s"],"detail":{"instance-id":"%s","instance-action":"terminate","instance-termination-time":"%s","azId":"%s"}}`,
		events[0].ID, e.sim.Scenario().AccountID, in.InterruptionTime.UTC().Format("2006-01-02T15:04:05Z"), e.sim.Scenario().AccountID, ids[0], ids[0],
		in.InterruptionTime.Add(CapacityReservationInterruptionNotice).UTC().Format("2006-01-02T15:04:05Z"), in.ZoneID)
	if events[0].body != wantBody {
		t.Errorf("warning body\n%s\nwant\n%s", events[0].body, wantBody)
	}

	e.sim.Advance(CapacityReservationInterruptionNotice)
	for _, i := range ids {
		if st := e.instance(t, i).State; st != StateShuttingDown && st != StateTerminated {
			t.Errorf("%s is %s after the notice", i, st)
		}
	}
	// Its instances gone, the reclaimed reservation still takes none.
	if again := e.createFleet(t, fleetInput("icr", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("c5.large", zones[0]))); len(launched(again)) != 0 {
		t.Errorf("a reclaimed reservation took a launch")
	}
}
