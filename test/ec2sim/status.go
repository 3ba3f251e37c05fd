package ec2sim

import (
	"encoding/xml"
	"fmt"
)

// Status check results, as EC2 reports them.
const (
	StatusOK       = "ok"
	StatusImpaired = "impaired"
)

// SetInstanceStatus sets a running instance's instance status check
// (StatusOK or StatusImpaired), as a failed kernel or an exhausted disk
// would; DescribeInstanceStatus reports it from then on.
func (s *Server) SetInstanceStatus(instanceID, status string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[instanceID]
	if !ok {
		return fmt.Errorf("no instance %s", instanceID)
	}
	in.status = status
	return nil
}

type statusDetailXML struct {
	Name   string `xml:"name"`
	Status string `xml:"status"`
}

type statusSummaryXML struct {
	Status  string                 `xml:"status"`
	Details items[statusDetailXML] `xml:"details"`
}

type instanceStatusXML struct {
	InstanceID       string           `xml:"instanceId"`
	AvailabilityZone string           `xml:"availabilityZone"`
	InstanceState    stateXML         `xml:"instanceState"`
	InstanceStatus   statusSummaryXML `xml:"instanceStatus"`
	SystemStatus     statusSummaryXML `xml:"systemStatus"`
}

// describeInstanceStatus answers DescribeInstanceStatus: running instances
// only unless IncludeAllInstances, by id or filter (instance-status.status,
// system-status.status, instance-state-name, availability-zone), paged.
func (s *Server) describeInstanceStatus(p params) (any, *APIError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	candidates, apiErr := s.requestedInstancesLocked(p)
	if apiErr != nil {
		return nil, apiErr
	}
	all := p.get("IncludeAllInstances") == "true"
	filters := p.filters()
	var matched []instanceStatusXML
	for _, in := range candidates {
		if in.State != StateRunning && !all {
			continue
		}
		status := in.status
		if status == "" {
			status = StatusOK
		}
		if in.State != StateRunning {
			status = "not-applicable"
		}
		attrs := map[string]string{"instance-status.status": status, "system-status.status": StatusOK,
			"instance-state-name": string(in.State), "availability-zone": in.Zone}
		if !matchFilters(filters, attrs, nil) {
			continue
		}
		reachability := "passed"
		if status == StatusImpaired {
			reachability = "failed"
		}
		matched = append(matched, instanceStatusXML{InstanceID: in.ID, AvailabilityZone: in.Zone, InstanceState: stateOf(in.State),
			InstanceStatus: statusSummaryXML{Status: status, Details: items[statusDetailXML]{Item: []statusDetailXML{{Name: "reachability", Status: reachability}}}},
			SystemStatus:   statusSummaryXML{Status: StatusOK, Details: items[statusDetailXML]{Item: []statusDetailXML{{Name: "reachability", Status: "passed"}}}}})
	}
	pg, next, apiErr := page(p, matched, 1000)
	if apiErr != nil {
		return nil, apiErr
	}
	return struct {
		XMLName   xml.Name                 `xml:"r"`
		Statuses  items[instanceStatusXML] `xml:"instanceStatusSet"`
		NextToken string                   `xml:"nextToken,omitempty"`
	}{Statuses: items[instanceStatusXML]{Item: pg}, NextToken: next}, nil
}
