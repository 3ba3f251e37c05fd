package catalog

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
)

// Reserved offerings: one per reservation's (type, zone), priced near zero,
// matched per offering by the reservation keys. Fails when New ignores
// Reservations (tried dropping the loop), when the reservation keys are
// matched per type (tried removing the reservationKeys skip in Filter: a
// DoesNotExist requirement then drops c5.large's spot offerings too) and
// when allowsReservation always answers true. The interruptible key too:
// fails when offeringValue answers "" for it (tried: In true found nothing).
func TestReservedOfferings(t *testing.T) {
	snap := *snapshot(t)
	snap.Reservations = []Reservation{
		{ID: "cr-0a", InstanceType: "c5.large", ZoneID: "apne2-az1", Type: "default"},
		{ID: "cr-0b", InstanceType: "c5.large", ZoneID: "apne2-az1", Type: "default"}, // same pool: left out
		{ID: "cr-0c", InstanceType: "m5.large", ZoneID: "apne2-az2", Type: "capacity-block"},
		{ID: "cr-0d", InstanceType: "m5.large", ZoneID: "apne2-az1", Type: "default", Interruptible: true},
	}
	c, err := New(&snap, "ap-northeast-2", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := func(key string, op corev1.NodeSelectorOperator, values ...string) requirements.Requirements {
		reqs := requirements.Requirements{}
		reqs.Add(requirements.MustNew(v1.LabelInstanceTypeStable, corev1.NodeSelectorOpIn, "c5.large", "m5.large"))
		reqs.Add(requirements.MustNew(key, op, values...))
		return reqs
	}
	offerings := func(reqs requirements.Requirements) map[string][]Offering {
		t.Helper()
		got, err := c.Filter(reqs)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]Offering{}
		for _, cand := range got {
			out[cand.Type.Name] = cand.Offerings()
		}
		return out
	}
	reserved := offerings(req(v1.CapacityTypeLabelKey, corev1.NodeSelectorOpIn, v1.CapacityTypeReserved))
	if len(reserved["c5.large"]) != 1 || reserved["c5.large"][0].ReservationID != "cr-0a" || reserved["c5.large"][0].Zone != "ap-northeast-2a" {
		t.Errorf("c5.large reserved offerings %+v", reserved["c5.large"])
	}
	onDemand, _ := c.Price("c5.large", "ap-northeast-2a", v1.CapacityTypeOnDemand)
	if p := reserved["c5.large"][0].Price; p <= 0 || p >= onDemand/1000 {
		t.Errorf("reserved price %v is not near zero (on-demand %v)", p, onDemand)
	}
	byType := offerings(req(awsv1.LabelCapacityReservationType, corev1.NodeSelectorOpIn, "capacity-block"))
	if len(byType) != 1 || len(byType["m5.large"]) != 1 || byType["m5.large"][0].ReservationID != "cr-0c" {
		t.Errorf("capacity-block offerings %+v", byType)
	}
	interruptible := offerings(req(awsv1.LabelCapacityReservationInterruptible, corev1.NodeSelectorOpIn, "true"))
	if len(interruptible) != 1 || len(interruptible["m5.large"]) != 1 || interruptible["m5.large"][0].ReservationID != "cr-0d" {
		t.Errorf("interruptible offerings %+v", interruptible)
	}
	for name, offs := range offerings(req(awsv1.LabelCapacityReservationInterruptible, corev1.NodeSelectorOpNotIn, "true")) {
		if slices.ContainsFunc(offs, func(o Offering) bool { return o.ReservationID == "cr-0d" }) {
			t.Errorf("%s: the interruptible reservation with NotIn true", name)
		}
		if !slices.ContainsFunc(offs, func(o Offering) bool { return o.CapacityType == v1.CapacityTypeOnDemand }) {
			t.Errorf("%s: NotIn true dropped the on-demand offerings: %+v", name, offs)
		}
	}
	none := offerings(req(awsv1.LabelCapacityReservationID, corev1.NodeSelectorOpDoesNotExist))
	for name, offs := range none {
		for _, o := range offs {
			if o.CapacityType == v1.CapacityTypeReserved {
				t.Errorf("%s: reserved offering %+v with DoesNotExist", name, o)
			}
		}
	}
	if len(none["c5.large"]) == 0 {
		t.Errorf("DoesNotExist on the reservation id dropped c5.large's other offerings")
	}
}
