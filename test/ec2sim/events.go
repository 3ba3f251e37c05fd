package ec2sim

import (
	"fmt"
	"net/http"
	"time"
)

// The simulator stands in for the EventBridge rules an interruption queue is
// fed by: EC2 spot interruption warnings, capacity reservation interruption
// warnings, rebalance recommendations, instance
// state changes and AWS Health scheduled changes, delivered to one SQS queue
// as message bodies in EventBridge's JSON, which is the contract an
// interruption controller parses.

// Sources and detail types of the events, as EventBridge names them.
const (
	sourceEC2    = "aws.ec2"
	sourceHealth = "aws.health"

	detailSpotInterruption        = "EC2 Spot Instance Interruption Warning"
	detailReservationInterruption = "EC2 Capacity Reservation Instance Interruption Warning"
	detailRebalance               = "EC2 Instance Rebalance Recommendation"
	detailStateChange             = "EC2 Instance State-change Notification"
	detailHealth                  = "AWS Health Event"
)

// ScheduledEventWindow is how long a scheduled event's window lasts here:
// its endTime is its startTime plus this.
const ScheduledEventWindow = 2 * time.Hour

// eventBridgeEvent is the envelope EventBridge wraps every event in, field
// for field in the order it writes them.
type eventBridgeEvent struct {
	Version    string   `json:"version"`
	ID         string   `json:"id"`
	DetailType string   `json:"detail-type"`
	Source     string   `json:"source"`
	Account    string   `json:"account"`
	Time       string   `json:"time"`
	Region     string   `json:"region"`
	Resources  []string `json:"resources"`
	Detail     any      `json:"detail"`
}

type spotInterruptionDetail struct {
	InstanceID     string `json:"instance-id"`
	InstanceAction string `json:"instance-action"`
}

// reservationInterruptionDetail is the detail of the warning EC2 sends for
// each instance of an interruptible reservation being reclaimed.
type reservationInterruptionDetail struct {
	InstanceID      string `json:"instance-id"`
	InstanceAction  string `json:"instance-action"`
	TerminationTime string `json:"instance-termination-time"`
	ZoneID          string `json:"azId"`
}

type rebalanceDetail struct {
	InstanceID string `json:"instance-id"`
}

type stateChangeDetail struct {
	InstanceID string `json:"instance-id"`
	State      string `json:"state"`
}

type healthDetail struct {
	EventARN          string         `json:"eventArn"`
	Service           string         `json:"service"`
	EventTypeCode     string         `json:"eventTypeCode"`
	EventTypeCategory string         `json:"eventTypeCategory"`
	EventRegion       string         `json:"eventRegion"`
	StartTime         string         `json:"startTime"`
	EndTime           string         `json:"endTime"`
	EventDescription  []healthText   `json:"eventDescription"`
	AffectedEntities  []healthEntity `json:"affectedEntities"`
}

type healthText struct {
	Language          string `json:"language"`
	LatestDescription string `json:"latestDescription"`
}

type healthEntity struct {
	EntityValue string `json:"entityValue"`
}

// RouteEventsTo delivers the simulated EventBridge events to the named queue
// from now on, creating it if needed, as the rules of an interruption queue
// would; events before the call, or after RouteEventsTo(""), are dropped.
func (s *Server) RouteEventsTo(queueName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.eventQueue = queueName
	if queueName != "" {
		s.ensureQueueLocked(queueName, nil)
	}
}

// Rebalance sends an EC2 Instance Rebalance Recommendation for a running spot
// instance, as EC2 does when the instance is at elevated risk of
// interruption, and records its time on the instance
// (RebalanceRecommendationTime). Nothing else changes: the instance runs on
// unless Interrupt follows.
func (s *Server) Rebalance(instanceID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	in, ok := s.instances[instanceID]
	switch {
	case !ok:
		return fmt.Errorf("recommending rebalance of %s: no such instance", instanceID)
	case in.CapacityType != capacitySpot:
		return fmt.Errorf("recommending rebalance of %s: only spot instances get rebalance recommendations, it is %s", instanceID, in.CapacityType)
	case in.State != StateRunning:
		return fmt.Errorf("recommending rebalance of %s: it is %s, not running", instanceID, in.State)
	}
	now := s.clock.now()
	in.RebalanceRecommendationTime = now
	s.publishLocked(sourceEC2, detailRebalance, []string{s.instanceARN(in.ID)}, rebalanceDetail{in.ID}, now)
	return nil
}

// ScheduleEvent sends the AWS Health event for a scheduled change of a
// running instance (eventTypeCode such as
// AWS_EC2_PERSISTENT_INSTANCE_RETIREMENT_SCHEDULED or
// AWS_EC2_INSTANCE_REBOOT_MAINTENANCE_SCHEDULED) whose window opens at start
// and lasts ScheduledEventWindow. The simulator does not carry the change
// out: the instance runs on, for the controller to replace it in time.
func (s *Server) ScheduleEvent(instanceID, eventTypeCode string, start time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	in, ok := s.instances[instanceID]
	switch {
	case eventTypeCode == "":
		return fmt.Errorf("scheduling an event for %s: the event type code is empty", instanceID)
	case !ok:
		return fmt.Errorf("scheduling %s for %s: no such instance", eventTypeCode, instanceID)
	case in.State != StateRunning:
		return fmt.Errorf("scheduling %s for %s: it is %s, not running", eventTypeCode, instanceID, in.State)
	}
	region := s.scenario.Region
	detail := healthDetail{
		EventARN:          fmt.Sprintf("arn:aws:health:%s::event/EC2/%s/%s_%d", region, eventTypeCode, eventTypeCode, s.nextRandomLocked()%1e17),
		Service:           "EC2",
		EventTypeCode:     eventTypeCode,
		EventTypeCategory: "scheduledChange",
		EventRegion:       region,
		StartTime:         healthTime(start),
		EndTime:           healthTime(start.Add(ScheduledEventWindow)),
		EventDescription:  []healthText{{"en_US", fmt.Sprintf("%s is scheduled for %s from %s.", eventTypeCode, in.ID, healthTime(start))}},
		AffectedEntities:  []healthEntity{{in.ID}},
	}
	// AWS Health lists the affected instances by id, not by ARN.
	s.publishLocked(sourceHealth, detailHealth, []string{in.ID}, detail, s.clock.now())
	return nil
}

// publishStateLocked turns an instance event into what EventBridge would
// deliver for it: the spot interruption warning, or a state-change
// notification for each state the instance enters.
func (s *Server) publishStateLocked(kind EventKind, in *instance, at time.Time) {
	resources := []string{s.instanceARN(in.ID)}
	switch kind {
	case EventInterrupted:
		if in.CapacityType != capacitySpot {
			// Only a reclaimed interruptible reservation interrupts others.
			detail := reservationInterruptionDetail{in.ID, "terminate", in.shutdownAt.UTC().Format("2006-01-02T15:04:05Z"), in.ZoneID}
			s.publishLocked(sourceEC2, detailReservationInterruption, resources, detail, at)
			return
		}
		s.publishLocked(sourceEC2, detailSpotInterruption, resources, spotInterruptionDetail{in.ID, "terminate"}, at)
	case EventLaunched, EventRunning, EventTerminating, EventTerminated:
		s.publishLocked(sourceEC2, detailStateChange, resources, stateChangeDetail{in.ID, string(in.State)}, at)
	}
}

// publishLocked sends one event to the routed queue, if there is one.
func (s *Server) publishLocked(source, detailType string, resources []string, detail any, at time.Time) {
	q, ok := s.queues[s.eventQueue]
	if !ok {
		return
	}
	body, err := compactJSON(eventBridgeEvent{
		Version: "0", ID: s.newUUIDLocked(), DetailType: detailType, Source: source,
		Account: s.scenario.AccountID, Time: at.UTC().Format("2006-01-02T15:04:05Z"), Region: s.scenario.Region,
		Resources: resources, Detail: detail,
	})
	if err != nil {
		return
	}
	_, _ = s.enqueueLocked(q, string(body), -1)
}

func (s *Server) instanceARN(id string) string {
	return fmt.Sprintf("arn:aws:ec2:%s:%s:instance/%s", s.scenario.Region, s.scenario.AccountID, id)
}

// healthTime is AWS Health's time format in events, e.g.
// "Sat, 05 Jun 2021 19:00:00 GMT".
func healthTime(t time.Time) string { return t.UTC().Format(http.TimeFormat) }
