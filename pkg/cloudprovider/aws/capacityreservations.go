package aws

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/samber/lo"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
)

// Capacity reservation types and states as the status spells them.
const (
	reservationTypeDefault       = "default"
	reservationTypeCapacityBlock = "capacity-block"
	reservationStateActive       = "active"
	reservationStateExpiring     = "expiring"
)

// capacityBlockExpiryWindow is how long before a capacity block's end it is
// "expiring": EC2 starts reclaiming a block's instances 30 minutes before
// its end, so from 40 minutes before nodewright launches no new node into it.
const capacityBlockExpiryWindow = 40 * time.Minute

// reservationExceededCode is EC2's fleet error for a launch its targeted
// reservation cannot take (full, or no longer compatible).
const reservationExceededCode = "ReservationCapacityExceeded"

// capacityReservations resolves capacityReservationSelectorTerms (ORed) into
// the active reservations they select, by id. A term's fields are ANDed:
// tags, owner and match criteria as EC2 filters; an id as the id list, where
// an id EC2 does not know matches nothing instead of failing the class.
func (r *NodeClassResolver) capacityReservations(ctx context.Context, nc *awsv1.EC2NodeClass) ([]awsv1.CapacityReservation, []string, error) {
	byID := map[string]awsv1.CapacityReservation{}
	var unmatched []string
	now := r.opts.Clock.Now()
	for i, term := range nc.Spec.CapacityReservationSelectorTerms {
		desc := describeTerm("capacityReservationSelectorTerms", i, term)
		if term.ID == "" && len(term.Tags) == 0 && term.InstanceMatchCriteria == "" {
			unmatched = append(unmatched, desc)
			continue // would select every reservation of the account
		}
		in := &ec2.DescribeCapacityReservationsInput{Filters: append(tagFilters(term.Tags), filter("state", reservationStateActive))}
		if term.ID != "" {
			in.CapacityReservationIds = []string{term.ID}
		}
		if term.OwnerID != "" {
			in.Filters = append(in.Filters, filter("owner-id", term.OwnerID))
		}
		if term.InstanceMatchCriteria != "" {
			in.Filters = append(in.Filters, filter("instance-match-criteria", term.InstanceMatchCriteria))
		}
		matched := 0
		pages := ec2.NewDescribeCapacityReservationsPaginator(r.ec2, in)
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if isReservationNotFound(err) {
				break
			}
			if err != nil {
				return nil, nil, fmt.Errorf("describing capacity reservations for %s: %w", desc, err)
			}
			for _, cr := range page.CapacityReservations {
				if !hasTags(cr.Tags, term.Tags) {
					continue
				}
				matched++
				s := reservationStatus(cr, now)
				byID[s.ID] = s
			}
		}
		if matched == 0 {
			unmatched = append(unmatched, desc)
		}
	}
	out := make([]awsv1.CapacityReservation, 0, len(byID))
	for _, id := range sortedKeys(byID) {
		out = append(out, byID[id])
	}
	return out, unmatched, nil
}

// reservationStatus is a reservation as the class's status shows it; a
// capacity block near its end is expiring.
func reservationStatus(cr ec2types.CapacityReservation, now time.Time) awsv1.CapacityReservation {
	s := awsv1.CapacityReservation{
		ID: aws.ToString(cr.CapacityReservationId), InstanceType: aws.ToString(cr.InstanceType),
		AvailabilityZone: aws.ToString(cr.AvailabilityZone), OwnerID: aws.ToString(cr.OwnerId),
		InstanceMatchCriteria: string(cr.InstanceMatchCriteria), ReservationType: cmp.Or(string(cr.ReservationType), reservationTypeDefault),
		Interruptible: aws.ToBool(cr.Interruptible), State: reservationStateActive,
	}
	if cr.EndDate != nil {
		s.EndTime = &metav1.Time{Time: *cr.EndDate}
		if s.ReservationType == reservationTypeCapacityBlock && !now.Before(cr.EndDate.Add(-capacityBlockExpiryWindow)) {
			s.State = reservationStateExpiring
		}
	}
	return s
}

// reservedBy reports whether nc's status lists the reservation.
func reservedBy(nc *awsv1.EC2NodeClass, id string) bool {
	_, ok := statusReservation(nc, id)
	return ok
}

// statusReservation is the reservation id as nc's status lists it.
func statusReservation(nc *awsv1.EC2NodeClass, id string) (awsv1.CapacityReservation, bool) {
	if nc == nil {
		return awsv1.CapacityReservation{}, false
	}
	return lo.Find(nc.Status.CapacityReservations, func(cr awsv1.CapacityReservation) bool { return cr.ID == id })
}

func isReservationNotFound(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "InvalidCapacityReservationId.NotFound"
}

// catalogReservations are the class's reservations the catalog offers as
// reserved capacity: the active ones (an expiring capacity block takes no
// new node), in zones the class has a subnet in, by zone id.
func catalogReservations(nc *awsv1.EC2NodeClass) []catalog.Reservation {
	zoneIDs := map[string]string{}
	for _, s := range nc.Status.Subnets {
		if s.ZoneID != "" {
			zoneIDs[s.Zone] = s.ZoneID
		}
	}
	var out []catalog.Reservation
	for _, cr := range nc.Status.CapacityReservations {
		id, ok := zoneIDs[cr.AvailabilityZone]
		if cmp.Or(cr.State, reservationStateActive) != reservationStateActive || !ok {
			continue
		}
		out = append(out, catalog.Reservation{ID: cr.ID, InstanceType: cr.InstanceType, ZoneID: id, Type: cmp.Or(cr.ReservationType, reservationTypeDefault),
			Interruptible: cr.Interruptible})
	}
	slices.SortFunc(out, func(a, b catalog.Reservation) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
