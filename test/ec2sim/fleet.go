package ec2sim

import (
	"encoding/xml"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/samber/lo"

	"github.com/nodewright/nodewright/pkg/catalog"
)

// EC2's limits on a CreateFleet request.
const (
	maxLaunchTemplateConfigs = 50
	maxOverrides             = 300
	// maxTargetCapacity bounds one instant fleet; EC2's quota is per account,
	// this one keeps a typo from launching a million simulated instances.
	maxTargetCapacity = 10000
)

// Allocation strategies the simulator models, with EC2's spelling.
const (
	strategyLowestPrice                  = "lowest-price"
	strategyPrioritized                  = "prioritized"
	strategyPriceCapacityOptimized       = "price-capacity-optimized"
	strategyCapacityOptimized            = "capacity-optimized"
	strategyCapacityOptimizedPrioritized = "capacity-optimized-prioritized"
)

// fleetRequest is a parsed instant CreateFleet request.
type fleetRequest struct {
	configs []fleetConfig
	// target is the number of instances wanted per capacity type.
	target   map[string]int
	strategy map[string]string
	// tags by resource type; the fleet's own are accepted and dropped, as
	// the simulator keeps no fleets (DescribeFleets is not simulated).
	tags map[string]map[string]string
}

type fleetConfig struct {
	lt        *LaunchTemplate
	spec      ltSpecXML
	overrides []overrideRequest
}

// overrideRequest is one FleetLaunchTemplateOverridesRequest; echo is how the
// answer repeats it.
type overrideRequest struct {
	instanceType, subnetID, zone, imageID, maxPrice string
	priority                                        *float64
	echo                                            overridesXML
}

type ltSpecXML struct {
	ID      string `xml:"launchTemplateId,omitempty"`
	Name    string `xml:"launchTemplateName,omitempty"`
	Version string `xml:"version,omitempty"`
}

type overridesXML struct {
	InstanceType     string   `xml:"instanceType,omitempty"`
	MaxPrice         string   `xml:"maxPrice,omitempty"`
	SubnetID         string   `xml:"subnetId,omitempty"`
	AvailabilityZone string   `xml:"availabilityZone,omitempty"`
	Priority         *float64 `xml:"priority,omitempty"`
	ImageID          string   `xml:"imageId,omitempty"`
}

type ltAndOverridesXML struct {
	Spec      ltSpecXML    `xml:"launchTemplateSpecification"`
	Overrides overridesXML `xml:"overrides"`
}

type fleetErrorXML struct {
	LaunchTemplateAndOverrides ltAndOverridesXML `xml:"launchTemplateAndOverrides"`
	Lifecycle                  string            `xml:"lifecycle"`
	Code                       string            `xml:"errorCode"`
	Message                    string            `xml:"errorMessage"`
}

type fleetInstanceXML struct {
	LaunchTemplateAndOverrides ltAndOverridesXML `xml:"launchTemplateAndOverrides"`
	Lifecycle                  string            `xml:"lifecycle"`
	InstanceIDs                items[string]     `xml:"instanceIds"`
	InstanceType               string            `xml:"instanceType"`
}

type createFleetXML struct {
	XMLName   xml.Name                 `xml:"r"`
	FleetID   string                   `xml:"fleetId"`
	Errors    *items[fleetErrorXML]    `xml:"errorSet,omitempty"`
	Instances *items[fleetInstanceXML] `xml:"fleetInstanceSet,omitempty"`
}

// createFleet launches an instant fleet: for each capacity type it tries the
// overrides' pools in the order the allocation strategy ranks them, launching
// where a pool has capacity and recording an error for each pool that fails,
// and answers with the instances and errors together, as EC2 does.
func (s *Server) createFleet(p params) (any, *APIError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	if answer, ok, apiErr := s.replayLocked("CreateFleet", p); ok || apiErr != nil {
		return answer, apiErr
	}
	req, apiErr := s.readFleetRequestLocked(p)
	if apiErr != nil {
		return nil, apiErr
	}
	l := &launch{fleetID: s.newFleetID(), budget: s.takeFleetBudgetLocked(), groups: map[*candidate]*fleetInstanceXML{}, reservations: map[*candidate]string{}}
	for _, capacityType := range []string{capacityOnDemand, capacityBlock, capacitySpot} {
		if need := req.target[capacityType]; need > 0 {
			s.fillLocked(req, capacityType, need, l)
		}
	}
	answer := createFleetXML{FleetID: l.fleetID}
	if len(l.errors) > 0 {
		answer.Errors = &items[fleetErrorXML]{Item: l.errors}
	}
	if len(l.order) > 0 {
		answer.Instances = &items[fleetInstanceXML]{}
		for _, c := range l.order {
			answer.Instances.Item = append(answer.Instances.Item, *l.groups[c])
		}
	}
	s.rememberLocked("CreateFleet", p, answer)
	s.advanceLocked()
	return answer, nil
}

func (s *Server) newFleetID() string {
	s.seq++
	v := s.idBase + s.seq
	return fmt.Sprintf("fleet-%08x-%04x-4%03x-8%03x-%012x", uint32(v>>16), uint16(v), uint16(v>>4)&0xfff, uint16(v>>8)&0xfff, v&0xffffffffffff)
}

func (s *Server) readFleetRequestLocked(p params) (*fleetRequest, *APIError) {
	if t := p.get("Type"); t != "instant" {
		return nil, invalidParameter("the simulator launches only fleets of Type instant, not %q", t)
	}
	req := &fleetRequest{target: map[string]int{}, strategy: map[string]string{
		capacitySpot:     orDefault(p.get("SpotOptions.AllocationStrategy"), strategyLowestPrice),
		capacityOnDemand: orDefault(p.get("OnDemandOptions.AllocationStrategy"), strategyLowestPrice),
	}}
	switch req.strategy[capacitySpot] {
	case strategyLowestPrice, strategyPriceCapacityOptimized, strategyCapacityOptimized, strategyCapacityOptimizedPrioritized:
	default:
		return nil, invalidParameter("the simulator does not model the spot allocation strategy %q", req.strategy[capacitySpot])
	}
	switch req.strategy[capacityOnDemand] {
	case strategyLowestPrice, strategyPrioritized:
	default:
		return nil, invalidParameter("the simulator does not model the on-demand allocation strategy %q", req.strategy[capacityOnDemand])
	}
	for _, unsupported := range []string{
		"SpotOptions.MinTargetCapacity", "OnDemandOptions.MinTargetCapacity", "SpotOptions.MaxTotalPrice",
		"OnDemandOptions.MaxTotalPrice", "TargetCapacitySpecification.TargetCapacityUnitType",
	} {
		if p.get(unsupported) != "" {
			return nil, invalidParameter("the simulator does not model %s", unsupported)
		}
	}
	for _, unsupported := range []string{"SingleInstanceType", "SingleAvailabilityZone"} {
		if p.get("SpotOptions."+unsupported) == "true" || p.get("OnDemandOptions."+unsupported) == "true" {
			return nil, invalidParameter("the simulator does not model %s", unsupported)
		}
	}

	total := atoi(p.get("TargetCapacitySpecification.TotalTargetCapacity"))
	if total < 1 || total > maxTargetCapacity {
		return nil, invalidParameter("TotalTargetCapacity must be between 1 and %d, got %q", maxTargetCapacity, p.get("TargetCapacitySpecification.TotalTargetCapacity"))
	}
	defaultType := p.get("TargetCapacitySpecification.DefaultTargetCapacityType")
	if defaultType != capacitySpot && defaultType != capacityOnDemand && defaultType != capacityBlock {
		return nil, invalidParameter("DefaultTargetCapacityType must be spot, on-demand or capacity-block, got %q", defaultType)
	}
	onDemand, spot := atoi(p.get("TargetCapacitySpecification.OnDemandTargetCapacity")), atoi(p.get("TargetCapacitySpecification.SpotTargetCapacity"))
	if onDemand < 0 || spot < 0 || onDemand+spot > total {
		return nil, invalidParameter("OnDemandTargetCapacity and SpotTargetCapacity must add up to at most TotalTargetCapacity")
	}
	req.target[capacityOnDemand], req.target[capacitySpot] = onDemand, spot
	req.target[defaultType] += total - onDemand - spot

	tags, apiErr := readTagSpecifications(p, "instance", "volume", "network-interface", "fleet", "spot-instances-request")
	if apiErr != nil {
		return nil, apiErr
	}
	req.tags = tags

	groups := p.groups("LaunchTemplateConfigs")
	if len(groups) == 0 {
		return nil, &APIError{Code: "MissingParameter", Status: 400, Message: "The request must contain the parameter LaunchTemplateConfigs"}
	}
	if len(groups) > maxLaunchTemplateConfigs {
		return nil, invalidParameter("Your request contains more than the maximum allowed number of launch template configurations (%d)", maxLaunchTemplateConfigs)
	}
	overrides := 0
	for _, g := range groups {
		c := p.sub(g)
		spec := ltSpecXML{ID: c.get("LaunchTemplateSpecification.LaunchTemplateId"), Name: c.get("LaunchTemplateSpecification.LaunchTemplateName"), Version: c.get("LaunchTemplateSpecification.Version")}
		lt, apiErr := s.templateLocked(spec.ID, spec.Name)
		if apiErr != nil {
			return nil, apiErr
		}
		if apiErr := resolveVersion(lt, spec.Version); apiErr != nil {
			return nil, apiErr
		}
		config := fleetConfig{lt: lt, spec: spec}
		for _, og := range c.groups("Overrides") {
			o := c.sub(og)
			ov := overrideRequest{
				instanceType: o.get("InstanceType"), subnetID: o.get("SubnetId"), zone: o.get("AvailabilityZone"),
				imageID: o.get("ImageId"), maxPrice: o.get("MaxPrice"),
			}
			if v := o.get("Priority"); v != "" {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return nil, invalidParameter("Priority %q is not a number", v)
				}
				ov.priority = &f
			}
			ov.echo = overridesXML{ov.instanceType, ov.maxPrice, ov.subnetID, ov.zone, ov.priority, ov.imageID}
			config.overrides = append(config.overrides, ov)
		}
		if len(config.overrides) == 0 {
			config.overrides = []overrideRequest{{}}
		}
		overrides += len(config.overrides)
		req.configs = append(req.configs, config)
	}
	if overrides > maxOverrides {
		return nil, invalidParameter("Your request contains more than the maximum allowed number of launch template overrides (%d)", maxOverrides)
	}
	return req, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// candidate is one capacity pool an override asks for, with what launching
// there needs.
type candidate struct {
	order        int
	config       *fleetConfig
	override     *overrideRequest
	instanceType string
	spec         catalog.SnapshotType
	subnet       Subnet
	zoneID       string
	image        Image
	price        float64
	priority     float64 // +Inf when the override gives none
	risk         int     // spot interruption rank, 0 (safest) to 4
}

func (c *candidate) pool(capacityType string) Pool {
	return Pool{c.instanceType, c.subnet.Zone, capacityType}
}

// launch accumulates one CreateFleet call's outcome.
type launch struct {
	fleetID string
	budget  int // instances this call may still launch; -1 unlimited
	errors  []fleetErrorXML
	groups  map[*candidate]*fleetInstanceXML
	order   []*candidate
	// reservations groups a call's instances from one pool, as EC2 reports them.
	reservations map[*candidate]string
}

func fleetError(config *fleetConfig, ov *overrideRequest, capacityType, code, message string) fleetErrorXML {
	return fleetErrorXML{ltAndOverridesXML{config.spec, ov.echo}, capacityType, code, message}
}

// candidatesLocked turns every override into the pools it names for one
// capacity type, and into fleet errors where it names none that can launch:
// the checks EC2 makes before it looks for capacity.
func (s *Server) candidatesLocked(req *fleetRequest, capacityType string) ([]*candidate, []fleetErrorXML) {
	var out []*candidate
	var errs []fleetErrorXML
	for ci := range req.configs {
		config := &req.configs[ci]
		for oi := range config.overrides {
			ov := &config.overrides[oi]
			fail := func(code, format string, args ...any) {
				errs = append(errs, fleetError(config, ov, capacityType, code, fmt.Sprintf(format, args...)))
			}
			instanceType := orDefault(ov.instanceType, config.lt.Data.InstanceType)
			imageID := orDefault(ov.imageID, config.lt.Data.ImageID)
			subnets, problem := s.overrideSubnets(ov)
			if problem != "" {
				code, message, _ := strings.Cut(problem, "|")
				fail(code, "%s", message)
				continue
			}
			image, ok := s.image(imageID)
			if imageID == "" {
				fail("MissingParameter", "The request must contain the parameter ImageId")
				continue
			}
			if !ok {
				fail("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", imageID)
				continue
			}
			if sg := s.unknownSecurityGroup(templateSecurityGroups(config.lt.Data)); sg != "" {
				fail("InvalidGroup.NotFound", "The security group '%s' does not exist in VPC '%s'", sg, s.scenario.VPCID)
				continue
			}
			for _, sn := range subnets {
				spec, known := s.types[instanceType]
				spotPrice, offered := s.spotPriceLocked(instanceType, sn.Zone)
				if instanceType == "" || !known || !offered {
					name := instanceType
					if name == "" {
						name = "null"
					}
					fail("InvalidFleetConfiguration", "Your requested instance type (%s) is not supported in your requested Availability Zone (%s).%s",
						name, sn.Zone, elsewhere(" Please retry your request by not specifying an Availability Zone or choosing %s.", s.offeredIn(instanceType, capacityOnDemand)))
					continue
				}
				if arch := ec2Arch(spec.Arch); arch != image.Arch {
					fail("InvalidParameterValue", "The architecture '%s' of the specified instance type does not match the architecture '%s' of the specified AMI. Specify an instance type and an AMI that have matching architectures, and try again.", arch, image.Arch)
					continue
				}
				if config.lt.Data.NestedVirtualization == "enabled" && !spec.NestedVirtualization {
					fail("Unsupported", "Nested virtualization is not supported for instance type '%s'.", instanceType)
					continue
				}
				if code, message := interfaceProblem(config.lt.Data.NetworkInterfaces, instanceType, spec); code != "" {
					fail(code, "%s", message)
					continue
				}
				if d := config.lt.Data; d.PlacementGroupID != "" || d.PlacementGroupName != "" {
					if _, problem := s.placementGroupLocked(d.PlacementGroupID, d.PlacementGroupName); problem != "" {
						code, message, _ := strings.Cut(problem, "|")
						fail(code, "%s", message)
						continue
					}
				}
				if id := config.lt.Data.CapacityReservationID; id != "" && capacityType == capacitySpot {
					fail("InvalidParameterCombination", "A Spot Instance cannot be launched into a capacity reservation (%s)", id)
					continue
				} else if id == "" && capacityType == capacityBlock {
					fail("InvalidParameterCombination", "The capacity-block target capacity type needs a launch template that targets a capacity block")
					continue
				}
				price := spec.Regions[s.scenario.Region].OnDemand
				if capacityType == capacitySpot {
					price = spotPrice
				}
				if price <= 0 {
					fail("Unsupported", "The requested configuration is currently not supported. Please check the documentation for supported configurations.")
					continue
				}
				if capacityType == capacitySpot && ov.maxPrice != "" {
					if limit, err := strconv.ParseFloat(ov.maxPrice, 64); err == nil && limit < price {
						fail("SpotMaxPriceTooLow", "Your Spot request price of %s is lower than the minimum required Spot request fulfillment price of %.4f.", ov.maxPrice, price)
						continue
					}
				}
				c := &candidate{
					order: len(out), config: config, override: ov, instanceType: instanceType, spec: spec,
					subnet: sn, zoneID: s.scenario.ZoneID(sn.Zone), image: image, price: price, priority: math.Inf(1),
					risk: catalog.Offering{CapacityType: capacityType, Interruption: spec.Regions[s.scenario.Region].Interruption}.InterruptionRank(),
				}
				if ov.priority != nil {
					c.priority = *ov.priority
				}
				out = append(out, c)
			}
		}
	}
	return out, errs
}

// templateSecurityGroups are the groups an instance launched from d gets:
// its primary interface's when it names interfaces, else its own.
func templateSecurityGroups(d LaunchTemplateData) []string {
	for _, n := range d.NetworkInterfaces {
		if n.DeviceIndex == 0 && n.NetworkCardIndex == 0 {
			return slices.Clone(n.SecurityGroupIDs)
		}
	}
	return slices.Clone(d.SecurityGroupIDs)
}

// interfaceProblem is the error EC2 gives launching instanceType with the
// template's interfaces, "" when it launches: connection tracking timeouts
// within EC2's ranges, and IPv4 prefixes only on Nitro types, at most one
// per address the interface may hold besides its primary one.
func interfaceProblem(interfaces []NetworkInterface, instanceType string, spec catalog.SnapshotType) (code, message string) {
	if code, message := interfaceLayoutProblem(interfaces, instanceType, spec); code != "" {
		return code, message
	}
	for _, n := range interfaces {
		ct := n.ConnectionTracking
		for _, r := range []struct {
			name         string
			v, low, high int32
		}{
			{"TcpEstablishedTimeout", ct.TCPEstablishedTimeout, 60, 432000},
			{"UdpStreamTimeout", ct.UDPStreamTimeout, 60, 180},
			{"UdpTimeout", ct.UDPTimeout, 30, 60},
		} {
			if r.v != 0 && (r.v < r.low || r.v > r.high) {
				return "InvalidParameterValue", fmt.Sprintf("Invalid value '%d' for %s. It must be between %d and %d seconds.", r.v, r.name, r.low, r.high)
			}
		}
		if n.IPv4PrefixCount == 0 {
			continue
		}
		if spec.Hypervisor != "nitro" && !spec.BareMetal {
			return "InvalidParameterCombination", fmt.Sprintf("Prefix delegation is not supported for instance type %s: prefixes can be assigned only on Nitro-based instances.", instanceType)
		}
		if n.IPv4PrefixCount > spec.IPv4PerENI-1 {
			return "PrivateIpAddressLimitExceeded", fmt.Sprintf("Number of private addresses will exceed limit: %s allows %d per network interface.", instanceType, spec.IPv4PerENI)
		}
	}
	return "", ""
}

// interfaceLayoutProblem is the error EC2 gives launching instanceType with
// the template's interfaces placed as they are, "" when it launches: a
// primary interface (card 0, device 0) that is not EFA-only, each (card,
// device) once, cards and devices within the type's, EFA interfaces ("efa"
// or "efa-only") only on types that support EFA, at most one a card and at
// most the type's maximum (none on a type without EFA), and a public
// address only with one interface.
// The public-address message is EC2's (Karpenter quotes it); the device
// index message is EC2's as quoted in aws/aws-k8s-tester#531; the other
// messages, and the codes except the public address's, are not documented:
// they are our best reading of EC2's (InvalidParameterValue for an index,
// InvalidParameterCombination for a type that does not take the interface).
func interfaceLayoutProblem(interfaces []NetworkInterface, instanceType string, spec catalog.SnapshotType) (code, message string) {
	if len(interfaces) == 0 {
		return "", ""
	}
	type slot struct{ card, device int32 }
	seen := map[slot]bool{}
	efaOnCard := map[int32]bool{}
	efas := int32(0)
	primary := false
	for _, n := range interfaces {
		at := slot{n.NetworkCardIndex, n.DeviceIndex}
		efa := n.InterfaceType == "efa" || n.InterfaceType == "efa-only"
		switch {
		case n.InterfaceType != "" && n.InterfaceType != "interface" && !efa:
			return "InvalidParameterValue", fmt.Sprintf("Invalid interface type '%s'. Valid values are interface, efa and efa-only.", n.InterfaceType)
		case seen[at]:
			return "InvalidParameterValue", fmt.Sprintf("Each network interface requires a unique device index on its network card: device index %d on network card %d is given twice.", n.DeviceIndex, n.NetworkCardIndex)
		case n.NetworkCardIndex >= spec.Cards():
			return "InvalidParameterValue", fmt.Sprintf("The specified network card index %d exceeds the network cards of %s. Specify a number from 0 to %d, and try again.", n.NetworkCardIndex, instanceType, spec.Cards()-1)
		case n.DeviceIndex >= spec.InterfacesPerCard():
			return "InvalidParameterValue", fmt.Sprintf("The specified number '%d' for the device index exceeds the maximum number of network interfaces supported by the network card at network card index %d. The maximum devices for this network card is %d. Specify a number from 0 to %d, and try again.",
				n.DeviceIndex, n.NetworkCardIndex, spec.InterfacesPerCard(), spec.InterfacesPerCard()-1)
		case efa && efaOnCard[n.NetworkCardIndex]:
			return "InvalidParameterCombination", fmt.Sprintf("Only one Elastic Fabric Adapter can be attached to network card %d.", n.NetworkCardIndex)
		case at == slot{} && n.InterfaceType == "efa-only":
			return "InvalidParameterCombination", "An EFA-only network interface cannot be the primary network interface (network card index 0, device index 0)."
		}
		seen[at], primary = true, primary || at == slot{}
		if efa {
			efaOnCard[n.NetworkCardIndex] = true
			efas++
		}
		if n.AssociatePublicIPAddress == "true" && len(interfaces) > 1 {
			return "InvalidParameterCombination", "The associatePublicIPAddress parameter cannot be specified when launching with multiple network interfaces."
		}
	}
	if !primary {
		return "InvalidParameterValue", "The primary network interface (network card index 0, device index 0) must be specified."
	}
	if efas > spec.EFAInterfaces {
		return "InvalidParameterCombination", fmt.Sprintf("%s supports at most %d Elastic Fabric Adapters, %d were requested.", instanceType, spec.EFAInterfaces, efas)
	}
	return "", ""
}

// overrideSubnets is where an override may launch: its subnet, else the
// first subnet of its zone, else the first subnet of every zone (EC2 picks the
// zone). A problem is "code|message".
func (s *Server) overrideSubnets(ov *overrideRequest) ([]Subnet, string) {
	if ov.subnetID != "" {
		for _, sn := range s.scenario.Subnets {
			if sn.ID == ov.subnetID {
				if ov.zone != "" && ov.zone != sn.Zone {
					return nil, fmt.Sprintf("InvalidParameterCombination|The subnet %s is in %s, not in the requested Availability Zone %s", sn.ID, sn.Zone, ov.zone)
				}
				return []Subnet{sn}, ""
			}
		}
		return nil, fmt.Sprintf("InvalidSubnetID.NotFound|The subnet ID '%s' does not exist", ov.subnetID)
	}
	var out []Subnet
	seen := map[string]bool{}
	for _, sn := range s.scenario.Subnets {
		if (ov.zone == "" || sn.Zone == ov.zone) && !seen[sn.Zone] {
			seen[sn.Zone] = true
			out = append(out, sn)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Sprintf("InvalidParameterValue|Invalid availability zone: [%s]", ov.zone)
	}
	return out, ""
}

func (s *Server) image(id string) (Image, bool) {
	for _, img := range s.scenario.Images {
		if img.ID == id {
			return img, true
		}
	}
	return Image{}, false
}

func (s *Server) unknownSecurityGroup(ids []string) string {
	for _, id := range ids {
		if !slices.ContainsFunc(s.scenario.SecurityGroups, func(g SecurityGroup) bool { return g.ID == id }) {
			return id
		}
	}
	return ""
}

// elsewhere is EC2's hint at other zones, empty when there are none.
func elsewhere(format string, zones []string) string {
	if len(zones) == 0 {
		return ""
	}
	return fmt.Sprintf(format, strings.Join(zones, ", "))
}

// ec2Arch is EC2's name for a catalog architecture.
func ec2Arch(arch string) string {
	if arch == "amd64" {
		return "x86_64"
	}
	return arch
}

// fillLocked launches need instances of one capacity type, trying pools in
// the strategy's order, staying with a pool while it launches and moving on
// when it fails.
func (s *Server) fillLocked(req *fleetRequest, capacityType string, need int, l *launch) {
	candidates, errs := s.candidatesLocked(req, capacityType)
	l.errors = append(l.errors, errs...)
	failed := map[*candidate]bool{}
	// EC2 fills a request from the pool it chose while that pool lasts.
	var c *candidate
	for launched := 0; launched < need; {
		if c == nil || failed[c] {
			if c = s.chooseLocked(candidates, failed, req.strategy[capacityType], capacityType, need-launched); c == nil {
				return
			}
		}
		if l.budget == 0 {
			l.errors = append(l.errors, fleetError(c.config, c.override, capacityType, "UnfulfillableCapacity",
				"Unable to fulfill capacity due to your request configuration. Please adjust your request and try again."))
			return
		}
		ip, code, message := s.claimLocked(c, capacityType)
		if code != "" {
			l.errors = append(l.errors, fleetError(c.config, c.override, capacityType, code, message))
			failed[c] = true
			continue
		}
		s.launchLocked(req, c, capacityType, ip, l)
		launched++
		if l.budget > 0 {
			l.budget--
		}
	}
}

// remainingLocked is how many more instances a pool can launch (MaxInt when
// unlimited).
func (s *Server) remainingLocked(p Pool) int {
	if n, ok := s.capacity[p]; ok {
		return n
	}
	return math.MaxInt
}

// chooseLocked picks the next pool to try, by allocation strategy:
//   - lowest-price: the cheapest pool.
//   - prioritized: the highest priority (lowest number), then the cheapest.
//   - price-capacity-optimized: among the pools deep enough for the rest of
//     the request, those in the best availability class (spot interruption
//     frequency under 10%, 10-15%, above), then the cheapest of them.
//   - capacity-optimized: the deep pools with the lowest interruption
//     frequency, then the most capacity; -prioritized uses priority instead.
//
// Ties go to the earlier override.
func (s *Server) chooseLocked(candidates []*candidate, failed map[*candidate]bool, strategy, capacityType string, remaining int) *candidate {
	var open []*candidate
	for _, c := range candidates {
		if !failed[c] {
			open = append(open, c)
		}
	}
	if len(open) == 0 {
		return nil
	}
	depth := func(c *candidate) int { return s.remainingLocked(c.pool(capacityType)) }
	if strategy == strategyPriceCapacityOptimized || strategy == strategyCapacityOptimized || strategy == strategyCapacityOptimizedPrioritized {
		var deep []*candidate
		for _, c := range open {
			if depth(c) >= remaining {
				deep = append(deep, c)
			}
		}
		if len(deep) > 0 {
			open = deep
		} else {
			// No pool holds the rest: the deepest ones are the best bet.
			deepest := 0
			for _, c := range open {
				deepest = max(deepest, depth(c))
			}
			open = slices.DeleteFunc(open, func(c *candidate) bool { return depth(c) < deepest })
		}
	}
	class := func(c *candidate) int {
		switch {
		case c.risk <= 1:
			return 0
		case c.risk == 2:
			return 1
		}
		return 2
	}
	less := func(a, b *candidate) bool {
		keys := func(c *candidate) []float64 {
			switch strategy {
			case strategyPrioritized:
				return []float64{c.priority, c.price}
			case strategyPriceCapacityOptimized:
				return []float64{float64(class(c)), c.price}
			case strategyCapacityOptimized:
				return []float64{float64(c.risk), -float64(min(depth(c), 1<<30))}
			case strategyCapacityOptimizedPrioritized:
				return []float64{float64(c.risk), c.priority}
			}
			return []float64{c.price}
		}
		ka, kb := keys(a), keys(b)
		for i := range ka {
			if ka[i] != kb[i] {
				return ka[i] < kb[i]
			}
		}
		return a.order < b.order
	}
	sort.SliceStable(open, func(i, j int) bool { return less(open[i], open[j]) })
	return open[0]
}

// claimLocked checks a pool can launch one more instance and takes an address
// for it, or returns the fleet error code and message EC2 gives.
func (s *Server) claimLocked(c *candidate, capacityType string) (ip, code, message string) {
	pool := c.pool(capacityType)
	if id := c.config.lt.Data.CapacityReservationID; id != "" {
		// Reserved capacity is held for the account: the pool's own
		// capacity does not apply, the reservation's does.
		if refusal := s.reservationRefusalLocked(id, c.instanceType, c.subnet.Zone, capacityType); refusal != "" {
			code, message, _ := strings.Cut(refusal, "|")
			return "", code, message
		}
	} else if s.remainingLocked(pool) == 0 {
		if capacityType == capacitySpot {
			return "", "InsufficientInstanceCapacity", "There is no Spot capacity available that matches your request."
		}
		others := slices.DeleteFunc(s.offeredIn(c.instanceType, capacityType), func(z string) bool { return z == pool.Zone })
		return "", "InsufficientInstanceCapacity", fmt.Sprintf("We currently do not have sufficient %s capacity in the Availability Zone you requested (%s). Our system will be working on provisioning additional capacity.%s",
			c.instanceType, pool.Zone, elsewhere(" You can currently get "+c.instanceType+" capacity by not specifying an Availability Zone in your request or choosing %s.", others))
	}
	if d := c.config.lt.Data; d.PlacementGroupID != "" || d.PlacementGroupName != "" {
		g, _ := s.placementGroupLocked(d.PlacementGroupID, d.PlacementGroupName)
		if refusal := s.placementRefusalLocked(g, pool.Zone); refusal != "" {
			code, message, _ := strings.Cut(refusal, "|")
			return "", code, message
		}
	}
	if capacityType == capacitySpot && s.spotLimit >= 0 && s.activeSpotLocked() >= s.spotLimit {
		return "", "MaxSpotInstanceCountExceeded", "Max spot instance count exceeded"
	}
	if ip = s.allocateIPLocked(c.subnet); ip == "" {
		return "", "InsufficientFreeAddressesInSubnet", fmt.Sprintf("There are not enough free addresses in subnet '%s' to satisfy the requested number of instances.", c.subnet.ID)
	}
	return ip, "", ""
}

func (s *Server) activeSpotLocked() int {
	n := 0
	for _, in := range s.instances {
		if in.CapacityType == capacitySpot && (in.State == StatePending || in.State == StateRunning) {
			n++
		}
	}
	return n
}

// launchLocked starts one instance in the candidate's pool.
func (s *Server) launchLocked(req *fleetRequest, c *candidate, capacityType, ip string, l *launch) {
	pool := c.pool(capacityType)
	if n, ok := s.capacity[pool]; ok && c.config.lt.Data.CapacityReservationID == "" {
		s.capacity[pool] = n - 1
	}
	if _, ok := l.reservations[c]; !ok {
		l.reservations[c] = s.newID("r", 17)
	}
	lt := c.config.lt
	// Launch template tags first, the fleet's over them, EC2's own last.
	tags := maps.Clone(lt.Data.TagSpecifications["instance"])
	if tags == nil {
		tags = map[string]string{}
	}
	maps.Copy(tags, req.tags["instance"])
	tags["aws:ec2:fleet-id"] = l.fleetID
	tags["aws:ec2launchtemplate:id"] = lt.ID
	tags["aws:ec2launchtemplate:version"] = "1"
	profile := orDefault(lt.Data.IAMInstanceProfile.ARN, lt.Data.IAMInstanceProfile.Name)
	now := s.clock.now()
	in := &instance{
		Instance: Instance{
			ID: s.newID("i", 17), InstanceType: c.instanceType, ImageID: c.image.ID, Architecture: c.image.Arch,
			Zone: c.subnet.Zone, ZoneID: c.zoneID, SubnetID: c.subnet.ID, PrivateIP: ip,
			PrivateDNSName: privateDNSName(ip, s.scenario.Region), CapacityType: capacityType, State: StatePending,
			LaunchTime: now, Tags: tags, FleetID: l.fleetID, LaunchTemplateID: lt.ID, LaunchTemplateVersion: "1",
			UserData: lt.Data.UserData, SecurityGroupIDs: templateSecurityGroups(lt.Data),
			IAMInstanceProfile: profile, MetadataOptions: lt.Data.MetadataOptions,
			CapacityReservationID: lt.Data.CapacityReservationID,
			EFAInterfaces: int32(lo.CountBy(lt.Data.NetworkInterfaces, func(n NetworkInterface) bool {
				return n.InterfaceType == "efa" || n.InterfaceType == "efa-only"
			})),
		},
		reservationID: l.reservations[c], runAt: now.Add(s.settings.launchDelay),
	}
	in.seq = s.seq
	if d := lt.Data; d.PlacementGroupID != "" || d.PlacementGroupName != "" {
		g, _ := s.placementGroupLocked(d.PlacementGroupID, d.PlacementGroupName)
		in.PlacementGroupID, in.PlacementGroupName, in.PartitionNumber = g.ID, g.Name, s.partitionForLocked(g, in.Zone)
	}
	if capacityType == capacitySpot {
		in.SpotInstanceRequestID = s.newID("sir", 8)
	}
	s.instances[in.ID] = in
	group, ok := l.groups[c]
	if !ok {
		group = &fleetInstanceXML{
			LaunchTemplateAndOverrides: ltAndOverridesXML{c.config.spec, c.override.echo},
			Lifecycle:                  capacityType, InstanceType: c.instanceType,
		}
		l.groups[c] = group
		l.order = append(l.order, c)
	}
	group.InstanceIDs.Item = append(group.InstanceIDs.Item, in.ID)
	s.emitLocked(EventLaunched, in, now)
}
