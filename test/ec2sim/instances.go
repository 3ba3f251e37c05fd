package ec2sim

import (
	"encoding/xml"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// InstanceState is an EC2 instance state name.
type InstanceState string

// The states an instance of the simulator goes through; EC2's stopping and
// stopped never happen, nothing here stops instances.
const (
	StatePending      InstanceState = "pending"
	StateRunning      InstanceState = "running"
	StateShuttingDown InstanceState = "shutting-down"
	StateTerminated   InstanceState = "terminated"
)

// Code is EC2's numeric code of the state, as in instanceState.code.
func (st InstanceState) Code() int32 {
	switch st {
	case StateRunning:
		return 16
	case StateShuttingDown:
		return 32
	case StateTerminated:
		return 48
	}
	return 0
}

// EC2's stateReason codes for the two ways an instance ends here.
const (
	reasonUserShutdown    = "Client.UserInitiatedShutdown"
	reasonSpotTermination = "Server.SpotInstanceTermination"
)

var reasonMessages = map[string]string{
	reasonUserShutdown:    "Client.UserInitiatedShutdown: User initiated shutdown",
	reasonSpotTermination: "Server.SpotInstanceTermination: Spot instance termination",
}

// Instance is an instance as the simulator knows it: what DescribeInstances
// reports plus what a test or the NodeBridge needs (its launch template's user
// data, the fleet that made it).
type Instance struct {
	ID           string
	InstanceType string
	ImageID      string
	// Architecture is EC2's name for it: x86_64 or arm64.
	Architecture string
	Zone         string
	ZoneID       string
	SubnetID     string
	PrivateIP    string
	// PrivateDNSName is ip-A-B-C-D.<region>.compute.internal, the name an EKS
	// node registers under.
	PrivateDNSName string
	// CapacityType is spot or on-demand, as in karpenter.sh/capacity-type.
	CapacityType          string
	SpotInstanceRequestID string
	State                 InstanceState
	// StateReason is EC2's stateReason code once the instance is ending:
	// Client.UserInitiatedShutdown or Server.SpotInstanceTermination.
	StateReason string
	LaunchTime  time.Time
	// InterruptionTime is when EC2 announced the spot interruption; zero if
	// none was.
	InterruptionTime time.Time
	Tags             map[string]string
	FleetID          string
	LaunchTemplateID string
	// CapacityReservationID is the reservation the instance was launched
	// into, from its launch template's target; empty for none.
	CapacityReservationID string
	LaunchTemplateVersion string
	// PlacementGroupID and PlacementGroupName are the placement group the
	// instance was launched into, from its launch template; empty for none.
	PlacementGroupID, PlacementGroupName string
	// PartitionNumber is its partition in a partition group, 0 otherwise.
	PartitionNumber int

	// RebalanceRecommendationTime is when Rebalance last recommended
	// replacing the spot instance; zero if never.
	RebalanceRecommendationTime time.Time

	// UserData is the launch template's user data, base64-encoded as EC2 keeps
	// it, so a bridge can read what the kubelet was asked to register with.
	UserData         string
	SecurityGroupIDs []string
	// EFAInterfaces is how many EFA interfaces (efa, efa-only) the instance
	// launched with: its node advertises as many vpc.amazonaws.com/efa.
	EFAInterfaces      int32
	IAMInstanceProfile string
	MetadataOptions    MetadataOptions
}

// instance is an Instance with the simulator's bookkeeping.
type instance struct {
	Instance
	seq           uint64
	reservationID string
	// When the instance starts running, its interruption notice runs out, it
	// finishes shutting down and it disappears from DescribeInstances.
	runAt, shutdownAt, terminateAt, goneAt time.Time
	// status is its instance status check ("" is ok); see SetInstanceStatus.
	status string
}

// snapshot copies the instance so callers cannot change the simulator's.
func (in *instance) snapshot() Instance {
	out := in.Instance
	out.Tags = maps.Clone(in.Tags)
	out.SecurityGroupIDs = slices.Clone(in.SecurityGroupIDs)
	return out
}

// Instances returns a copy of every instance DescribeInstances would show
// (terminated ones included until their retention ends), in launch order.
func (s *Server) Instances() []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	out := make([]Instance, 0, len(s.instances))
	for _, in := range s.sortedInstancesLocked() {
		out = append(out, in.snapshot())
	}
	return out
}

// Instance returns a copy of one instance, false once it is gone.
func (s *Server) Instance(id string) (Instance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	in, ok := s.instances[id]
	if !ok {
		return Instance{}, false
	}
	return in.snapshot(), true
}

// Interrupt announces a spot interruption of a running spot instance, as EC2
// does when it needs the capacity back: an EventInterrupted now (the hook for
// an interruption queue), then after SpotInterruptionNotice of simulated time
// the instance shuts down with reason Server.SpotInstanceTermination.
// Interrupting an instance already interrupted changes nothing.
func (s *Server) Interrupt(instanceID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	in, ok := s.instances[instanceID]
	switch {
	case !ok:
		return fmt.Errorf("interrupting %s: no such instance", instanceID)
	case in.CapacityType != capacitySpot:
		return fmt.Errorf("interrupting %s: only spot instances are interrupted, it is %s", instanceID, in.CapacityType)
	case in.State != StateRunning:
		return fmt.Errorf("interrupting %s: it is %s, not running", instanceID, in.State)
	case !in.InterruptionTime.IsZero():
		return nil
	}
	now := s.clock.now()
	in.InterruptionTime, in.shutdownAt = now, now.Add(SpotInterruptionNotice)
	s.emitLocked(EventInterrupted, in, now)
	s.advanceLocked()
	return nil
}

func (s *Server) sortedInstancesLocked() []*instance {
	out := make([]*instance, 0, len(s.instances))
	for _, in := range s.instances {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

// newID names a resource the way EC2 does: prefix, a dash and hex digits.
func (s *Server) newID(prefix string, digits int) string {
	s.seq++
	mask := uint64(1)<<(4*min(digits, 16)) - 1
	return fmt.Sprintf("%s-%0*x", prefix, digits, (s.idBase+s.seq)&mask)
}

// givenOrNewID is the id a test gave a resource it adds (checked to have
// EC2's form: the prefix and 17 hex digits, as pattern says), or a new one.
func (s *Server) givenOrNewID(given, prefix, what string, pattern *regexp.Regexp) (string, error) {
	if given == "" {
		return s.newID(prefix, 17), nil
	}
	if !pattern.MatchString(given) {
		return "", fmt.Errorf("%s: id %q is not %s- and 17 hex digits", what, given, prefix)
	}
	return given, nil
}

// subnetIPs hands out a subnet's addresses.
type subnetIPs struct {
	prefix netip.Prefix
	next   uint64
	used   map[netip.Addr]bool
}

// allocateIPLocked takes a free address in the subnet, "" when it has none
// left of the AvailableIPs the scenario gives it.
func (s *Server) allocateIPLocked(sn Subnet) string {
	pool, ok := s.ips[sn.ID]
	if !ok {
		prefix, err := netip.ParsePrefix(sn.CIDR)
		if err != nil || !prefix.Addr().Is4() {
			return ""
		}
		// Each simulator starts elsewhere in the subnet, so two sharing a
		// cluster are unlikely to register Nodes of the same name.
		pool = &subnetIPs{prefix: prefix.Masked(), used: map[netip.Addr]bool{}, next: s.idBase % 1024}
		s.ips[sn.ID] = pool
	}
	if len(pool.used)+int(s.held[sn.ID]) >= int(sn.AvailableIPs) {
		return ""
	}
	size := uint64(1) << (32 - pool.prefix.Bits())
	if size < 8 {
		return ""
	}
	base := pool.prefix.Addr().As4()
	start := uint64(base[0])<<24 | uint64(base[1])<<16 | uint64(base[2])<<8 | uint64(base[3])
	// AWS keeps the first four addresses and the last one of every subnet.
	hosts := size - 5
	for range hosts {
		host := 4 + pool.next%hosts
		pool.next++
		v := start + host
		addr := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		if !pool.used[addr] {
			pool.used[addr] = true
			return addr.String()
		}
	}
	return ""
}

func (s *Server) releaseIPLocked(in *instance) {
	if pool, ok := s.ips[in.SubnetID]; ok {
		if addr, err := netip.ParseAddr(in.PrivateIP); err == nil {
			delete(pool.used, addr)
		}
	}
}

// SetSubnetFreeAddresses leaves n addresses of the subnet free for
// instances from now on, as when other network interfaces of the account
// (load balancers, Lambda, pods' ENIs) take or return addresses: its
// AvailableIpAddressCount reads n, each instance launched into it takes one,
// each terminated one gives its address back, and a fleet override for it
// fails with InsufficientFreeAddressesInSubnet at 0. The account's state,
// not a fault: Heal keeps it.
func (s *Server) SetSubnetFreeAddresses(subnetID string, n int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sn := range s.scenario.Subnets {
		if sn.ID == subnetID {
			free := sn.AvailableIPs - int32(s.ipsInUseLocked(sn.ID))
			s.held[sn.ID] = min(max(free-n, 0), free)
		}
	}
}

// ipsInUseLocked is how many addresses of a subnet instances hold.
func (s *Server) ipsInUseLocked(subnetID string) int {
	if pool, ok := s.ips[subnetID]; ok {
		return len(pool.used)
	}
	return 0
}

// privateDNSName is EC2's private host name for an address in the region.
func privateDNSName(ip, region string) string {
	domain := region + ".compute.internal"
	if region == "us-east-1" {
		domain = "ec2.internal"
	}
	return "ip-" + strings.ReplaceAll(ip, ".", "-") + "." + domain
}

var instanceIDPattern = regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`)

// lookupInstancesLocked resolves ids given explicitly, failing like EC2 on any
// malformed or unknown one.
func (s *Server) lookupInstancesLocked(ids []string) ([]*instance, *APIError) {
	var missing []string
	var out []*instance
	for _, id := range ids {
		if !instanceIDPattern.MatchString(id) {
			return nil, &APIError{Code: "InvalidInstanceID.Malformed", Status: 400, Message: fmt.Sprintf("Invalid id: %q", id)}
		}
		in, ok := s.instances[id]
		if !ok {
			missing = append(missing, id)
			continue
		}
		out = append(out, in)
	}
	switch len(missing) {
	case 0:
		return out, nil
	case 1:
		return nil, &APIError{Code: "InvalidInstanceID.NotFound", Status: 400, Message: fmt.Sprintf("The instance ID '%s' does not exist", missing[0])}
	default:
		return nil, &APIError{Code: "InvalidInstanceID.NotFound", Status: 400, Message: fmt.Sprintf("The instance IDs '%s' do not exist", strings.Join(missing, ", "))}
	}
}

type stateXML struct {
	Code int32  `xml:"code"`
	Name string `xml:"name"`
}

func stateOf(st InstanceState) stateXML { return stateXML{st.Code(), string(st)} }

type instanceXML struct {
	InstanceID     string   `xml:"instanceId"`
	ImageID        string   `xml:"imageId"`
	State          stateXML `xml:"instanceState"`
	PrivateDNSName string   `xml:"privateDnsName"`
	DNSName        string   `xml:"dnsName"`
	Reason         string   `xml:"reason"`
	AMILaunchIndex int      `xml:"amiLaunchIndex"`
	InstanceType   string   `xml:"instanceType"`
	LaunchTime     string   `xml:"launchTime"`
	Placement      struct {
		AvailabilityZone   string `xml:"availabilityZone"`
		AvailabilityZoneID string `xml:"availabilityZoneId"`
		Tenancy            string `xml:"tenancy"`
		GroupName          string `xml:"groupName,omitempty"`
		GroupID            string `xml:"groupId,omitempty"`
		PartitionNumber    int    `xml:"partitionNumber,omitempty"`
	} `xml:"placement"`
	Monitoring struct {
		State string `xml:"state"`
	} `xml:"monitoring"`
	SubnetID         string           `xml:"subnetId"`
	VPCID            string           `xml:"vpcId"`
	PrivateIPAddress string           `xml:"privateIpAddress"`
	Groups           *items[groupXML] `xml:"groupSet,omitempty"`
	StateReason      *struct {
		Code    string `xml:"code"`
		Message string `xml:"message"`
	} `xml:"stateReason,omitempty"`
	Architecture          string `xml:"architecture"`
	RootDeviceType        string `xml:"rootDeviceType"`
	RootDeviceName        string `xml:"rootDeviceName"`
	VirtualizationType    string `xml:"virtualizationType"`
	Hypervisor            string `xml:"hypervisor"`
	InstanceLifecycle     string `xml:"instanceLifecycle,omitempty"`
	SpotInstanceRequestID string `xml:"spotInstanceRequestId,omitempty"`
	CapacityReservationID string `xml:"capacityReservationId,omitempty"`
	IAMInstanceProfile    *struct {
		ARN string `xml:"arn"`
		ID  string `xml:"id"`
	} `xml:"iamInstanceProfile,omitempty"`
	Tags            *items[tagXML] `xml:"tagSet,omitempty"`
	MetadataOptions *struct {
		State        string `xml:"state"`
		HTTPTokens   string `xml:"httpTokens,omitempty"`
		HopLimit     int32  `xml:"httpPutResponseHopLimit,omitempty"`
		HTTPEndpoint string `xml:"httpEndpoint,omitempty"`
	} `xml:"metadataOptions,omitempty"`
}

type groupXML struct {
	GroupID   string `xml:"groupId"`
	GroupName string `xml:"groupName"`
}

// ec2Time is EC2's timestamp format.
func ec2Time(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func (s *Server) instanceInfo(in *instance) instanceXML {
	var x instanceXML
	x.InstanceID, x.ImageID, x.State, x.PrivateDNSName = in.ID, in.ImageID, stateOf(in.State), in.PrivateDNSName
	x.InstanceType, x.LaunchTime = in.InstanceType, ec2Time(in.LaunchTime)
	x.Placement.AvailabilityZone, x.Placement.AvailabilityZoneID, x.Placement.Tenancy = in.Zone, in.ZoneID, "default"
	x.Placement.GroupName, x.Placement.GroupID, x.Placement.PartitionNumber = in.PlacementGroupName, in.PlacementGroupID, in.PartitionNumber
	x.Monitoring.State = "disabled"
	x.SubnetID, x.VPCID, x.PrivateIPAddress = in.SubnetID, s.scenario.VPCID, in.PrivateIP
	if in.State == StateTerminated {
		// EC2 forgets a terminated instance's network placement.
		x.PrivateDNSName, x.SubnetID, x.VPCID, x.PrivateIPAddress = "", "", "", ""
	}
	if len(in.SecurityGroupIDs) > 0 && in.State != StateTerminated {
		x.Groups = &items[groupXML]{}
		for _, id := range in.SecurityGroupIDs {
			name := ""
			for _, g := range s.scenario.SecurityGroups {
				if g.ID == id {
					name = g.Name
				}
			}
			x.Groups.Item = append(x.Groups.Item, groupXML{id, name})
		}
	}
	if in.StateReason != "" {
		x.StateReason = &struct {
			Code    string `xml:"code"`
			Message string `xml:"message"`
		}{in.StateReason, reasonMessages[in.StateReason]}
	}
	x.Architecture, x.RootDeviceType, x.RootDeviceName, x.VirtualizationType, x.Hypervisor = in.Architecture, "ebs", "/dev/xvda", "hvm", "xen"
	if in.CapacityType == capacitySpot {
		x.InstanceLifecycle, x.SpotInstanceRequestID = "spot", in.SpotInstanceRequestID
	}
	if in.CapacityType == capacityBlock {
		x.InstanceLifecycle = capacityBlock
	}
	x.CapacityReservationID = in.CapacityReservationID
	if in.IAMInstanceProfile != "" {
		arn := in.IAMInstanceProfile
		if !strings.HasPrefix(arn, "arn:") {
			arn = fmt.Sprintf("arn:aws:iam::%s:instance-profile/%s", s.scenario.AccountID, in.IAMInstanceProfile)
		}
		x.IAMInstanceProfile = &struct {
			ARN string `xml:"arn"`
			ID  string `xml:"id"`
		}{arn, "AIPA" + strings.ToUpper(strings.TrimPrefix(in.ID, "i-"))}
	}
	x.Tags = tagSet(in.Tags)
	if m := in.MetadataOptions; m != (MetadataOptions{}) {
		x.MetadataOptions = &struct {
			State        string `xml:"state"`
			HTTPTokens   string `xml:"httpTokens,omitempty"`
			HopLimit     int32  `xml:"httpPutResponseHopLimit,omitempty"`
			HTTPEndpoint string `xml:"httpEndpoint,omitempty"`
		}{"applied", m.HTTPTokens, m.HTTPPutResponseHopLimit, m.HTTPEndpoint}
	}
	return x
}

type reservationXML struct {
	ReservationID string             `xml:"reservationId"`
	OwnerID       string             `xml:"ownerId"`
	Instances     items[instanceXML] `xml:"instancesSet"`
}

// requestedInstancesLocked are the instances a Describe call names by
// InstanceId (unknown ids are an error, as EC2's), else every instance, in
// launch order. Ids and MaxResults do not go together.
func (s *Server) requestedInstancesLocked(p params) ([]*instance, *APIError) {
	ids := p.list("InstanceId")
	if len(ids) > 0 && p.get("MaxResults") != "" {
		return nil, &APIError{Code: "InvalidParameterCombination", Status: 400, Message: "The parameter instancesSet cannot be used with the parameter maxResults"}
	}
	if len(ids) == 0 {
		return s.sortedInstancesLocked(), nil
	}
	found, apiErr := s.lookupInstancesLocked(ids)
	if apiErr != nil {
		return nil, apiErr
	}
	sort.Slice(found, func(i, j int) bool { return found[i].seq < found[j].seq })
	return slices.CompactFunc(found, func(a, b *instance) bool { return a == b }), nil
}

func (s *Server) describeInstances(p params) (any, *APIError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	candidates, apiErr := s.requestedInstancesLocked(p)
	if apiErr != nil {
		return nil, apiErr
	}
	filters := p.filters()
	var matched []*instance
	for _, in := range candidates {
		attrs := map[string]string{
			"instance-id": in.ID, "instance-type": in.InstanceType, "image-id": in.ImageID,
			"instance-state-name": string(in.State), "instance-state-code": fmt.Sprint(in.State.Code()),
			"availability-zone": in.Zone, "subnet-id": in.SubnetID, "vpc-id": s.scenario.VPCID,
			"private-dns-name": in.PrivateDNSName, "private-ip-address": in.PrivateIP,
			"reservation-id": in.reservationID, "architecture": in.Architecture,
			"placement-group-name": in.PlacementGroupName, "placement-partition-number": fmt.Sprint(in.PartitionNumber),
		}
		if in.CapacityType == capacitySpot {
			attrs["instance-lifecycle"], attrs["spot-instance-request-id"] = "spot", in.SpotInstanceRequestID
		}
		if matchFilters(filters, attrs, in.Tags) {
			matched = append(matched, in)
		}
	}
	pg, next, apiErr := page(p, matched, 1000)
	if apiErr != nil {
		return nil, apiErr
	}
	// Instances launched together share a reservation, as EC2 reports them.
	var reservations []reservationXML
	for _, in := range pg {
		if n := len(reservations); n == 0 || reservations[n-1].ReservationID != in.reservationID {
			reservations = append(reservations, reservationXML{ReservationID: in.reservationID, OwnerID: s.scenario.AccountID})
		}
		r := &reservations[len(reservations)-1]
		r.Instances.Item = append(r.Instances.Item, s.instanceInfo(in))
	}
	return struct {
		XMLName      xml.Name              `xml:"r"`
		Reservations items[reservationXML] `xml:"reservationSet"`
		NextToken    string                `xml:"nextToken,omitempty"`
	}{Reservations: items[reservationXML]{Item: reservations}, NextToken: next}, nil
}

func (s *Server) terminateInstances(p params) (any, *APIError) {
	type changeXML struct {
		InstanceID    string   `xml:"instanceId"`
		CurrentState  stateXML `xml:"currentState"`
		PreviousState stateXML `xml:"previousState"`
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	ids := p.list("InstanceId")
	if len(ids) == 0 {
		return nil, &APIError{Code: "MissingParameter", Status: 400, Message: "The request must contain the parameter InstanceId"}
	}
	found, apiErr := s.lookupInstancesLocked(ids)
	if apiErr != nil {
		return nil, apiErr
	}
	now := s.clock.now()
	var changes []changeXML
	for _, in := range found {
		previous := in.State
		if previous == StatePending || previous == StateRunning {
			in.State, in.StateReason = StateShuttingDown, reasonUserShutdown
			in.terminateAt = now.Add(s.settings.shutdownDelay)
			s.emitLocked(EventTerminating, in, now)
		}
		changes = append(changes, changeXML{in.ID, stateOf(in.State), stateOf(previous)})
	}
	s.advanceLocked()
	return struct {
		XMLName xml.Name         `xml:"r"`
		Changes items[changeXML] `xml:"instancesSet"`
	}{Changes: items[changeXML]{Item: changes}}, nil
}
