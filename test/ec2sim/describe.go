package ec2sim

import (
	"encoding/xml"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/nodewright/nodewright/pkg/catalog"
)

// handler answers one EC2 action with a value marshalled as <r>...</r>.
type handler func(*Server, params) (any, *APIError)

var ec2Handlers = map[string]handler{
	"DescribeInstanceTypes":         (*Server).describeInstanceTypes,
	"DescribeInstanceTypeOfferings": (*Server).describeInstanceTypeOfferings,
	"DescribeSpotPriceHistory":      (*Server).describeSpotPriceHistory,
	"DescribeAvailabilityZones":     (*Server).describeAvailabilityZones,
	"DescribeSubnets":               (*Server).describeSubnets,
	"DescribeSecurityGroups":        (*Server).describeSecurityGroups,
	"DescribeImages":                (*Server).describeImages,
	"DescribeInstances":             (*Server).describeInstances,
	"DescribeInstanceStatus":        (*Server).describeInstanceStatus,
	"CreateLaunchTemplate":          (*Server).createLaunchTemplate,
	"DescribeLaunchTemplates":       (*Server).describeLaunchTemplates,
	"DeleteLaunchTemplate":          (*Server).deleteLaunchTemplate,
	"CreateFleet":                   (*Server).createFleet,
	"TerminateInstances":            (*Server).terminateInstances,
	"CreateTags":                    (*Server).createTags,
	"DescribeCapacityReservations":  (*Server).describeCapacityReservations,
	"DescribePlacementGroups":       (*Server).describePlacementGroups,
}

// items is the EC2 Query encoding of a list: <name><item>...</item></name>.
type items[T any] struct {
	Item []T `xml:"item"`
}

type tagXML struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func tagSet(tags map[string]string) *items[tagXML] {
	if len(tags) == 0 {
		return nil
	}
	out := &items[tagXML]{}
	for _, k := range sortedKeys(tags) {
		out.Item = append(out.Item, tagXML{k, tags[k]})
	}
	return out
}

// regionTypes returns the snapshot's types offered in the scenario's region.
func (s *Server) regionTypes() []catalog.SnapshotType {
	var out []catalog.SnapshotType
	for _, t := range s.snapshot.Types {
		if _, ok := t.Regions[s.scenario.Region]; ok {
			out = append(out, t)
		}
	}
	return out
}

// zoneNames maps the snapshot's zone ids to the scenario's zone names.
func (s *Server) zoneNames() map[string]string {
	out := map[string]string{}
	for _, z := range s.scenario.Zones {
		out[z.ID] = z.Name
	}
	return out
}

type instanceTypeXML struct {
	InstanceType          string        `xml:"instanceType"`
	CurrentGeneration     bool          `xml:"currentGeneration"`
	BareMetal             bool          `xml:"bareMetal"`
	Hypervisor            string        `xml:"hypervisor,omitempty"`
	SupportedUsageClasses items[string] `xml:"supportedUsageClasses"`
	ProcessorInfo         struct {
		SupportedArchitectures items[string] `xml:"supportedArchitectures"`
		SustainedClockSpeed    float64       `xml:"sustainedClockSpeedInGhz,omitempty"`
		Manufacturer           string        `xml:"manufacturer,omitempty"`
		SupportedFeatures      items[string] `xml:"supportedFeatures"`
	} `xml:"processorInfo"`
	VCPUInfo struct {
		DefaultVCPUs int32 `xml:"defaultVCpus"`
	} `xml:"vCpuInfo"`
	MemoryInfo struct {
		SizeInMiB int64 `xml:"sizeInMiB"`
	} `xml:"memoryInfo"`
	InstanceStorageSupported bool `xml:"instanceStorageSupported"`
	InstanceStorageInfo      *struct {
		TotalSizeInGB int64  `xml:"totalSizeInGB"`
		NVMeSupport   string `xml:"nvmeSupport"`
	} `xml:"instanceStorageInfo,omitempty"`
	NetworkInfo struct {
		NetworkPerformance        string                `xml:"networkPerformance,omitempty"`
		MaximumNetworkInterfaces  int32                 `xml:"maximumNetworkInterfaces"`
		IPv4AddressesPerInterface int32                 `xml:"ipv4AddressesPerInterface"`
		EncryptionInTransit       bool                  `xml:"encryptionInTransitSupported"`
		MaximumNetworkCards       int32                 `xml:"maximumNetworkCards"`
		NetworkCards              items[networkCardXML] `xml:"networkCards"`
		EFASupported              bool                  `xml:"efaSupported"`
		EFAInfo                   *struct {
			MaximumEFAInterfaces int32 `xml:"maximumEfaInterfaces"`
		} `xml:"efaInfo,omitempty"`
	} `xml:"networkInfo"`
	GPUInfo    *acceleratorsXML `xml:"gpuInfo>gpus,omitempty"`
	NeuronInfo *acceleratorsXML `xml:"neuronInfo>neuronDevices,omitempty"`
	EBSInfo    struct {
		MaximumBandwidthInMbps int64 `xml:"ebsOptimizedInfo>maximumBandwidthInMbps,omitempty"`
	} `xml:"ebsInfo"`
}

type networkCardXML struct {
	NetworkCardIndex         int32   `xml:"networkCardIndex"`
	MaximumNetworkInterfaces int32   `xml:"maximumNetworkInterfaces"`
	PeakBandwidthInGbps      float64 `xml:"peakBandwidthInGbps,omitempty"`
}

type acceleratorsXML struct {
	Item []acceleratorXML `xml:"item"`
}

type acceleratorXML struct {
	Name         string `xml:"name"`
	Manufacturer string `xml:"manufacturer,omitempty"`
	Count        int32  `xml:"count"`
	MemoryMiB    int64  `xml:"memoryInfo>sizeInMiB,omitempty"`
}

func instanceTypeInfo(t catalog.SnapshotType, r catalog.SnapshotRegion) instanceTypeXML {
	var x instanceTypeXML
	x.InstanceType, x.CurrentGeneration, x.BareMetal, x.Hypervisor = t.Name, true, t.BareMetal, t.Hypervisor
	if r.OnDemand > 0 {
		x.SupportedUsageClasses.Item = append(x.SupportedUsageClasses.Item, "on-demand")
	}
	if len(r.Spot) > 0 {
		x.SupportedUsageClasses.Item = append(x.SupportedUsageClasses.Item, "spot")
	}
	arch := map[string]string{"amd64": "x86_64", "arm64": "arm64"}[t.Arch]
	x.ProcessorInfo.SupportedArchitectures.Item = []string{arch}
	x.ProcessorInfo.SustainedClockSpeed = float64(t.ClockMHz) / 1000
	x.ProcessorInfo.Manufacturer = map[string]string{"intel": "Intel", "amd": "AMD", "aws": "AWS", "apple": "Apple"}[t.CPUManufacturer]
	if t.NestedVirtualization {
		x.ProcessorInfo.SupportedFeatures.Item = []string{"nested-virtualization"}
	}
	x.VCPUInfo.DefaultVCPUs = t.VCPU
	x.MemoryInfo.SizeInMiB = t.MemoryMiB
	if t.LocalNVMeGB > 0 {
		x.InstanceStorageSupported = true
		x.InstanceStorageInfo = &struct {
			TotalSizeInGB int64  `xml:"totalSizeInGB"`
			NVMeSupport   string `xml:"nvmeSupport"`
		}{t.LocalNVMeGB, "required"}
	}
	x.NetworkInfo.MaximumNetworkInterfaces, x.NetworkInfo.IPv4AddressesPerInterface = t.MaxENIs, t.IPv4PerENI
	x.NetworkInfo.EncryptionInTransit = t.EncryptionInTransit != nil && *t.EncryptionInTransit
	if t.NetworkMbps > 0 {
		x.NetworkInfo.NetworkPerformance = fmt.Sprintf("%g Gigabit", float64(t.NetworkMbps)/1000)
	}
	// The type's interfaces and bandwidth, split evenly between its cards.
	cards := t.Cards()
	x.NetworkInfo.MaximumNetworkCards = cards
	for i := range cards {
		x.NetworkInfo.NetworkCards.Item = append(x.NetworkInfo.NetworkCards.Item,
			networkCardXML{i, t.InterfacesPerCard(), float64(t.NetworkMbps) / 1000 / float64(cards)})
	}
	if t.EFAInterfaces > 0 {
		x.NetworkInfo.EFASupported = true
		x.NetworkInfo.EFAInfo = &struct {
			MaximumEFAInterfaces int32 `xml:"maximumEfaInterfaces"`
		}{t.EFAInterfaces}
	}
	if g := t.GPU; g != nil {
		x.GPUInfo = &acceleratorsXML{Item: []acceleratorXML{{Name: g.Name, Manufacturer: g.Manufacturer, Count: g.Count, MemoryMiB: g.MemoryMiB}}}
	}
	if a := t.Accelerator; a != nil {
		x.NeuronInfo = &acceleratorsXML{Item: []acceleratorXML{{Name: a.Name, Count: a.Count, MemoryMiB: a.MemoryMiB}}}
	}
	x.EBSInfo.MaximumBandwidthInMbps = t.EBSMbps
	return x
}

func (s *Server) describeInstanceTypes(p params) (any, *APIError) {
	wanted := toSet(p.list("InstanceType"))
	var all []instanceTypeXML
	for _, t := range s.regionTypes() {
		if len(wanted) > 0 && !wanted[t.Name] {
			continue
		}
		all = append(all, instanceTypeInfo(t, t.Regions[s.scenario.Region]))
	}
	pg, next, err := page(p, all, 100)
	if err != nil {
		return nil, err
	}
	return struct {
		XMLName   xml.Name               `xml:"r"`
		Types     items[instanceTypeXML] `xml:"instanceTypeSet"`
		NextToken string                 `xml:"nextToken,omitempty"`
	}{Types: items[instanceTypeXML]{Item: pg}, NextToken: next}, nil
}

type offeringXML struct {
	InstanceType string `xml:"instanceType"`
	LocationType string `xml:"locationType"`
	Location     string `xml:"location"`
}

func (s *Server) describeInstanceTypeOfferings(p params) (any, *APIError) {
	locationType := p.get("LocationType")
	if locationType == "" {
		locationType = "region"
	}
	if locationType != "availability-zone" && locationType != "availability-zone-id" && locationType != "region" {
		return nil, invalidParameter("LocationType %q is not supported", locationType)
	}
	filters := p.filters()
	names := s.zoneNames()
	var all []offeringXML
	for _, t := range s.regionTypes() {
		r := t.Regions[s.scenario.Region]
		locations := []string{s.scenario.Region}
		if locationType != "region" {
			locations = nil
			for _, id := range r.ZoneIDs {
				if name, ok := names[id]; ok {
					if locationType == "availability-zone" {
						locations = append(locations, name)
					} else {
						locations = append(locations, id)
					}
				}
			}
		}
		for _, loc := range locations {
			if !matchValues(filters["instance-type"], t.Name) || !matchValues(filters["location"], loc) {
				continue
			}
			all = append(all, offeringXML{t.Name, locationType, loc})
		}
	}
	pg, next, err := page(p, all, 1000)
	if err != nil {
		return nil, err
	}
	return struct {
		XMLName   xml.Name           `xml:"r"`
		Offerings items[offeringXML] `xml:"instanceTypeOfferingSet"`
		NextToken string             `xml:"nextToken,omitempty"`
	}{Offerings: items[offeringXML]{Item: pg}, NextToken: next}, nil
}

type spotPriceXML struct {
	AvailabilityZone   string `xml:"availabilityZone"`
	AvailabilityZoneID string `xml:"availabilityZoneId"`
	InstanceType       string `xml:"instanceType"`
	ProductDescription string `xml:"productDescription"`
	SpotPrice          string `xml:"spotPrice"`
	Timestamp          string `xml:"timestamp"`
}

func (s *Server) describeSpotPriceHistory(p params) (any, *APIError) {
	filters := p.filters()
	types := toSet(p.list("InstanceType"))
	products := append(p.list("ProductDescription"), filters["product-description"]...)
	if len(products) > 0 && !matchValues(products, "Linux/UNIX") && !matchValues(products, "Linux/UNIX (Amazon VPC)") {
		return struct {
			XMLName xml.Name `xml:"r"`
		}{}, nil
	}
	zoneFilter := filters["availability-zone"]
	if z := p.get("AvailabilityZone"); z != "" {
		zoneFilter = append(zoneFilter, z)
	}
	names := s.zoneNames()
	now := time.Now().UTC().Format(time.RFC3339)
	s.mu.Lock()
	overrides := make(map[spotKey]float64, len(s.spot))
	for k, v := range s.spot {
		overrides[k] = v
	}
	s.mu.Unlock()
	var all []spotPriceXML
	for _, t := range s.regionTypes() {
		if len(types) > 0 && !types[t.Name] {
			continue
		}
		r := t.Regions[s.scenario.Region]
		for i, id := range r.ZoneIDs {
			zone, ok := names[id]
			if !ok || i >= len(r.Spot) || !matchValues(zoneFilter, zone) || !matchValues(filters["instance-type"], t.Name) {
				continue
			}
			price := r.Spot[i]
			if v, ok := overrides[spotKey{t.Name, zone}]; ok {
				price = v
			}
			all = append(all, spotPriceXML{zone, id, t.Name, "Linux/UNIX", fmt.Sprintf("%.6f", price), now})
		}
	}
	pg, next, err := page(p, all, 1000)
	if err != nil {
		return nil, err
	}
	return struct {
		XMLName   xml.Name            `xml:"r"`
		Prices    items[spotPriceXML] `xml:"spotPriceHistorySet"`
		NextToken string              `xml:"nextToken,omitempty"`
	}{Prices: items[spotPriceXML]{Item: pg}, NextToken: next}, nil
}

func (s *Server) describeAvailabilityZones(params) (any, *APIError) {
	type zoneXML struct {
		ZoneName    string `xml:"zoneName"`
		ZoneID      string `xml:"zoneId"`
		RegionName  string `xml:"regionName"`
		ZoneState   string `xml:"zoneState"`
		ZoneType    string `xml:"zoneType"`
		OptIn       string `xml:"optInStatus"`
		GroupName   string `xml:"groupName"`
		BorderGroup string `xml:"networkBorderGroup"`
	}
	var zones []zoneXML
	for _, z := range s.scenario.Zones {
		zones = append(zones, zoneXML{z.Name, z.ID, s.scenario.Region, "available", "availability-zone", "opt-in-not-required", s.scenario.Region, s.scenario.Region})
	}
	return struct {
		XMLName xml.Name       `xml:"r"`
		Zones   items[zoneXML] `xml:"availabilityZoneInfo"`
	}{Zones: items[zoneXML]{Item: zones}}, nil
}

func (s *Server) describeSubnets(p params) (any, *APIError) {
	type subnetXML struct {
		SubnetID     string         `xml:"subnetId"`
		VPCID        string         `xml:"vpcId"`
		State        string         `xml:"state"`
		Zone         string         `xml:"availabilityZone"`
		ZoneID       string         `xml:"availabilityZoneId"`
		CIDR         string         `xml:"cidrBlock"`
		AvailableIPs int32          `xml:"availableIpAddressCount"`
		Tags         *items[tagXML] `xml:"tagSet,omitempty"`
	}
	ids, filters := toSet(p.list("SubnetId")), p.filters()
	// Instances and other interfaces hold addresses; EC2 counts them out of
	// the free ones.
	s.mu.Lock()
	inUse := map[string]int32{}
	for _, sn := range s.scenario.Subnets {
		inUse[sn.ID] = int32(s.ipsInUseLocked(sn.ID)) + s.held[sn.ID]
	}
	s.mu.Unlock()
	var out []subnetXML
	for _, sn := range s.scenario.Subnets {
		if len(ids) > 0 && !ids[sn.ID] {
			continue
		}
		attrs := map[string]string{"subnet-id": sn.ID, "vpc-id": s.scenario.VPCID, "availability-zone": sn.Zone, "state": "available"}
		if !matchFilters(filters, attrs, sn.Tags) {
			continue
		}
		out = append(out, subnetXML{sn.ID, s.scenario.VPCID, "available", sn.Zone, s.scenario.ZoneID(sn.Zone), sn.CIDR, sn.AvailableIPs - inUse[sn.ID], tagSet(sn.Tags)})
	}
	pg, next, err := page(p, out, 1000)
	if err != nil {
		return nil, err
	}
	return struct {
		XMLName   xml.Name         `xml:"r"`
		Subnets   items[subnetXML] `xml:"subnetSet"`
		NextToken string           `xml:"nextToken,omitempty"`
	}{Subnets: items[subnetXML]{Item: pg}, NextToken: next}, nil
}

func (s *Server) describeSecurityGroups(p params) (any, *APIError) {
	type groupXML struct {
		OwnerID     string         `xml:"ownerId"`
		GroupID     string         `xml:"groupId"`
		GroupName   string         `xml:"groupName"`
		Description string         `xml:"groupDescription"`
		VPCID       string         `xml:"vpcId"`
		Tags        *items[tagXML] `xml:"tagSet,omitempty"`
	}
	ids, names, filters := toSet(p.list("GroupId")), toSet(p.list("GroupName")), p.filters()
	var out []groupXML
	for _, g := range s.scenario.SecurityGroups {
		if (len(ids) > 0 && !ids[g.ID]) || (len(names) > 0 && !names[g.Name]) {
			continue
		}
		attrs := map[string]string{"group-id": g.ID, "group-name": g.Name, "vpc-id": s.scenario.VPCID}
		if !matchFilters(filters, attrs, g.Tags) {
			continue
		}
		out = append(out, groupXML{s.scenario.AccountID, g.ID, g.Name, g.Name, s.scenario.VPCID, tagSet(g.Tags)})
	}
	pg, next, err := page(p, out, 1000)
	if err != nil {
		return nil, err
	}
	return struct {
		XMLName   xml.Name        `xml:"r"`
		Groups    items[groupXML] `xml:"securityGroupInfo"`
		NextToken string          `xml:"nextToken,omitempty"`
	}{Groups: items[groupXML]{Item: pg}, NextToken: next}, nil
}

func (s *Server) describeImages(p params) (any, *APIError) {
	type imageXML struct {
		ImageID      string         `xml:"imageId"`
		Name         string         `xml:"name"`
		Architecture string         `xml:"architecture"`
		CreationDate string         `xml:"creationDate"`
		OwnerID      string         `xml:"imageOwnerId"`
		OwnerAlias   string         `xml:"imageOwnerAlias,omitempty"`
		State        string         `xml:"imageState"`
		ImageType    string         `xml:"imageType"`
		RootDevice   string         `xml:"rootDeviceType"`
		Platform     string         `xml:"platform,omitempty"`
		Details      string         `xml:"platformDetails"`
		Tags         *items[tagXML] `xml:"tagSet,omitempty"`
	}
	ids, owners, filters := toSet(p.list("ImageId")), p.list("Owner"), p.filters()
	var out []imageXML
	for _, img := range s.scenario.Images {
		if len(ids) > 0 && !ids[img.ID] {
			continue
		}
		ownerID := s.scenario.AccountID
		if img.Owner == "amazon" {
			ownerID = "602401143452"
		}
		if len(owners) > 0 && !matchValues(owners, img.Owner) && !matchValues(owners, ownerID) &&
			!(img.Owner != "amazon" && matchValues(owners, "self")) {
			continue
		}
		details := "Linux/UNIX"
		if img.Platform == "windows" {
			details = "Windows"
		}
		attrs := map[string]string{"image-id": img.ID, "name": img.Name, "architecture": img.Arch, "state": "available", "owner-id": ownerID,
			"platform": img.Platform, "platform-details": details}
		if !matchFilters(filters, attrs, img.Tags) {
			continue
		}
		alias := ""
		if img.Owner == "amazon" {
			alias = "amazon"
		}
		out = append(out, imageXML{img.ID, img.Name, img.Arch, img.Created, ownerID, alias, "available", "machine", "ebs", img.Platform, details, tagSet(img.Tags)})
	}
	pg, next, err := page(p, out, 1000)
	if err != nil {
		return nil, err
	}
	return struct {
		XMLName   xml.Name        `xml:"r"`
		Images    items[imageXML] `xml:"imagesSet"`
		NextToken string          `xml:"nextToken,omitempty"`
	}{Images: items[imageXML]{Item: pg}, NextToken: next}, nil
}

// matchFilters applies EC2 filters: attribute names, "tag:KEY" and "tag-key";
// values may hold * and ? wildcards. Unknown filter names match nothing, as a
// typo in a real request would return nothing useful either.
func matchFilters(filters map[string][]string, attrs, tags map[string]string) bool {
	for name, values := range filters {
		switch {
		case strings.HasPrefix(name, "tag:"):
			v, ok := tags[strings.TrimPrefix(name, "tag:")]
			if !ok || !matchValues(values, v) {
				return false
			}
		case name == "tag-key":
			found := false
			for k := range tags {
				found = found || matchValues(values, k)
			}
			if !found {
				return false
			}
		default:
			v, ok := attrs[name]
			if !ok || !matchValues(values, v) {
				return false
			}
		}
	}
	return true
}

// matchValues reports whether v matches any pattern; no patterns match all.
func matchValues(patterns []string, v string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, v); ok {
			return true
		}
	}
	return false
}

func toSet(list []string) map[string]bool {
	out := make(map[string]bool, len(list))
	for _, v := range list {
		out[v] = true
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
