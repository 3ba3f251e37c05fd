package ec2sim

import (
	"encoding/xml"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"time"
)

// Capacity reservation types and match criteria, with EC2's spelling.
const (
	ReservationTypeDefault       = "default"
	ReservationTypeCapacityBlock = "capacity-block"
	MatchOpen                    = "open"
	MatchTargeted                = "targeted"
	capacityBlock                = "capacity-block" // a fleet's and an instance's capacity type for capacity blocks
)

// reservationExceeded is EC2's fleet error for a launch its targeted
// reservation cannot take: full, expired, or of another type or zone.
const reservationExceeded = "ReservationCapacityExceeded"

// CapacityReservation is an On-Demand Capacity Reservation or a Capacity
// Block for ML: Total instances of one type in one zone, held for the
// account. Instances launched from a template that targets it count
// against it while pending or running.
type CapacityReservation struct {
	ID           string
	InstanceType string
	Zone         string
	// OwnerID defaults to the scenario's account.
	OwnerID string
	Total   int
	// MatchCriteria is open or targeted (default).
	MatchCriteria string
	// ReservationType is default (the default) or capacity-block.
	ReservationType string
	// EndDate is when the reservation expires; zero means never. A capacity
	// block must have one.
	EndDate time.Time
	// Interruptible marks an interruptible reservation: capacity its owner
	// lent out and may take back (ReclaimCapacityReservation), giving its
	// instances two minutes' notice.
	Interruptible bool
	Tags          map[string]string
}

var capacityReservationIDPattern = regexp.MustCompile(`^cr-[0-9a-f]{17}$`)

// AddCapacityReservation creates a reservation, as a purchase in the console
// would, and returns its id (given or made).
func (s *Server) AddCapacityReservation(r CapacityReservation) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.types[r.InstanceType]; !ok {
		return "", fmt.Errorf("capacity reservation: unknown instance type %q", r.InstanceType)
	}
	if !slices.ContainsFunc(s.scenario.Zones, func(z Zone) bool { return z.Name == r.Zone }) {
		return "", fmt.Errorf("capacity reservation: unknown zone %q", r.Zone)
	}
	if r.Total < 1 {
		return "", fmt.Errorf("capacity reservation: total %d must be at least 1", r.Total)
	}
	r.ReservationType = orDefault(r.ReservationType, ReservationTypeDefault)
	r.MatchCriteria = orDefault(r.MatchCriteria, MatchTargeted)
	r.OwnerID = orDefault(r.OwnerID, s.scenario.AccountID)
	if r.ReservationType == ReservationTypeCapacityBlock && r.EndDate.IsZero() {
		return "", fmt.Errorf("capacity reservation: a capacity block needs an end date")
	}
	var err error
	if r.ID, err = s.givenOrNewID(r.ID, "cr", "capacity reservation", capacityReservationIDPattern); err != nil {
		return "", err
	}
	r.Tags = maps.Clone(r.Tags)
	if s.reservations == nil {
		s.reservations = map[string]*CapacityReservation{}
	}
	s.reservations[r.ID] = &r
	return r.ID, nil
}

// ReclaimCapacityReservation takes an interruptible reservation's capacity
// back, as its owner does when they need it: it holds no instance from now
// on, and each of its pending or running instances gets an EC2 Capacity
// Reservation Instance Interruption Warning (EventInterrupted) now and shuts
// down after CapacityReservationInterruptionNotice of simulated time.
// Instances already interrupted keep their notice.
func (s *Server) ReclaimCapacityReservation(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	r, ok := s.reservations[id]
	switch {
	case !ok:
		return fmt.Errorf("reclaiming capacity reservation %s: no such reservation", id)
	case !r.Interruptible:
		return fmt.Errorf("reclaiming capacity reservation %s: only an interruptible reservation is reclaimed", id)
	}
	r.Total = 0
	now := s.clock.now()
	for _, in := range s.sortedInstancesLocked() {
		if in.CapacityReservationID != id || (in.State != StatePending && in.State != StateRunning) || !in.InterruptionTime.IsZero() {
			continue
		}
		in.InterruptionTime, in.shutdownAt = now, now.Add(CapacityReservationInterruptionNotice)
		s.emitLocked(EventInterrupted, in, now)
	}
	s.advanceLocked()
	return nil
}

// reservationStateLocked is active until the end date, then expired.
func (s *Server) reservationStateLocked(r *CapacityReservation) string {
	if !r.EndDate.IsZero() && !s.clock.now().Before(r.EndDate) {
		return "expired"
	}
	return "active"
}

// reservationUsedLocked counts the reservation's pending and running
// instances: a stopped or terminated one gives its slot back.
func (s *Server) reservationUsedLocked(id string) int {
	n := 0
	for _, in := range s.instances {
		if in.CapacityReservationID == id && (in.State == StatePending || in.State == StateRunning) {
			n++
		}
	}
	return n
}

// reservationRefusalLocked is why the reservation id cannot take one more
// instance of instanceType in zone with capacityType, or "" when it can. EC2
// answers all of these with ReservationCapacityExceeded ("not sufficient
// compatible and available capacity").
func (s *Server) reservationRefusalLocked(id, instanceType, zone, capacityType string) string {
	r, ok := s.reservations[id]
	switch {
	case !ok:
		return "InvalidCapacityReservationId.NotFound|The capacity reservation '" + id + "' does not exist"
	case s.reservationStateLocked(r) != "active":
		return reservationExceeded + "|The requested reservation is not active"
	case r.InstanceType != instanceType || r.Zone != zone:
		return reservationExceeded + "|The requested reservation does not have sufficient compatible and available capacity for this request."
	case (r.ReservationType == ReservationTypeCapacityBlock) != (capacityType == capacityBlock):
		return "InvalidParameterCombination|A capacity block is launched into with the capacity-block target capacity type, and only a capacity block"
	case s.reservationUsedLocked(id) >= r.Total:
		return reservationExceeded + "|The requested reservation does not have sufficient compatible and available capacity for this request."
	}
	return ""
}

type capacityReservationXML struct {
	ID                    string         `xml:"capacityReservationId"`
	OwnerID               string         `xml:"ownerId"`
	ARN                   string         `xml:"capacityReservationArn"`
	Zone                  string         `xml:"availabilityZone"`
	ZoneID                string         `xml:"availabilityZoneId"`
	InstanceType          string         `xml:"instanceType"`
	Platform              string         `xml:"instancePlatform"`
	Tenancy               string         `xml:"tenancy"`
	Total                 int            `xml:"totalInstanceCount"`
	Available             int            `xml:"availableInstanceCount"`
	State                 string         `xml:"state"`
	EndDate               string         `xml:"endDate,omitempty"`
	EndDateType           string         `xml:"endDateType"`
	InstanceMatchCriteria string         `xml:"instanceMatchCriteria"`
	ReservationType       string         `xml:"reservationType"`
	Interruptible         bool           `xml:"interruptible"`
	Tags                  *items[tagXML] `xml:"tagSet,omitempty"`
}

// describeCapacityReservations answers by id (an unknown one fails the call)
// and by EC2's filters: instance-type, availability-zone, owner-id, state,
// instance-match-criteria, end-date-type, tag:KEY and tag-key.
func (s *Server) describeCapacityReservations(p params) (any, *APIError) {
	ids := p.list("CapacityReservationId")
	filters := p.filters()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	for _, id := range ids {
		if !capacityReservationIDPattern.MatchString(id) {
			return nil, &APIError{Code: "InvalidCapacityReservationId.Malformed", Status: 400, Message: fmt.Sprintf("Invalid id: \"%s\"", id)}
		}
		if _, ok := s.reservations[id]; !ok {
			return nil, &APIError{Code: "InvalidCapacityReservationId.NotFound", Status: 400, Message: fmt.Sprintf("The capacity reservation ID '%s' does not exist", id)}
		}
	}
	var out []capacityReservationXML
	for _, id := range slices.Sorted(maps.Keys(s.reservations)) {
		r := s.reservations[id]
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		x := capacityReservationXML{
			ID: id, OwnerID: r.OwnerID, ARN: fmt.Sprintf("arn:aws:ec2:%s:%s:capacity-reservation/%s", s.scenario.Region, r.OwnerID, id),
			Zone: r.Zone, ZoneID: s.scenario.ZoneID(r.Zone), InstanceType: r.InstanceType, Platform: "Linux/UNIX", Tenancy: "default",
			Total: r.Total, Available: max(0, r.Total-s.reservationUsedLocked(id)), State: s.reservationStateLocked(r),
			EndDateType: "unlimited", InstanceMatchCriteria: r.MatchCriteria, ReservationType: r.ReservationType, Interruptible: r.Interruptible, Tags: tagSet(r.Tags),
		}
		if !r.EndDate.IsZero() {
			x.EndDate, x.EndDateType = ec2Time(r.EndDate), "limited"
		}
		attrs := map[string]string{
			"instance-type": r.InstanceType, "availability-zone": r.Zone, "owner-id": r.OwnerID, "state": x.State,
			"instance-match-criteria": r.MatchCriteria, "end-date-type": x.EndDateType, "tenancy": "default",
			"instance-platform": x.Platform,
		}
		if !matchFilters(filters, attrs, r.Tags) {
			continue
		}
		out = append(out, x)
	}
	pg, next, apiErr := page(p, out, 1000)
	if apiErr != nil {
		return nil, apiErr
	}
	return struct {
		XMLName      xml.Name                      `xml:"r"`
		Reservations items[capacityReservationXML] `xml:"capacityReservationSet"`
		NextToken    string                        `xml:"nextToken,omitempty"`
	}{Reservations: items[capacityReservationXML]{Item: pg}, NextToken: next}, nil
}
