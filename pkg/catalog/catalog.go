package catalog

import (
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"strconv"
	"strings"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
)

// Catalog is the set of instance types of one region, indexed by label value so
// that filtering by requirements costs a few word operations per requirement.
// It is immutable once built; availability changes live in Unavailable.
type Catalog struct {
	Region string
	Types  []*InstanceType
	// Unavailable holds offerings that recently failed to launch.
	Unavailable *UnavailableOfferings

	byName map[string]int
	// index[key][value] is the set of types with that label value (for the
	// zone, zone-id and capacity-type keys: with an offering of that value).
	index map[string]map[string]bitset
	// has[key] is the set of types carrying the key at all.
	has map[string]bitset
	// values[key] lists index[key]'s values, sorted, for open requirements.
	values map[string][]string
	all    bitset
	// zones and capacityTypes are the distinct offering values, by index.
	zones, capacityTypes []string
}

// offeringKeys are the labels that vary by offering rather than by type.
var offeringKeys = map[string]bool{
	v1.LabelTopologyZone:      true,
	awsv1.LabelTopologyZoneID: true,
	v1.CapacityTypeLabelKey:   true,
	// Only reserved offerings carry the reservation keys; they are matched
	// per offering, never per type (a type's spot offering has no id).
	awsv1.LabelCapacityReservationID:            true,
	awsv1.LabelCapacityReservationType:          true,
	awsv1.LabelCapacityReservationInterruptible: true,
}

// reservationKeys are the offering keys only reserved offerings have.
var reservationKeys = map[string]bool{
	awsv1.LabelCapacityReservationID: true, awsv1.LabelCapacityReservationType: true, awsv1.LabelCapacityReservationInterruptible: true,
}

// ReservedPriceFactor scales a type's on-demand price into its reserved
// offerings' price: near zero, as the reservation is paid for whether used
// or not, so the solver fills reservations first, and still ordered by size.
const ReservedPriceFactor = 1e-6

// CatalogKeys are the label keys the catalog answers for. A requirement on any
// other key (a custom NodePool label) does not narrow instance types: the node
// is simply labeled with it.
var CatalogKeys = func() map[string]bool {
	keys := map[string]bool{
		v1.LabelInstanceTypeStable: true, v1.LabelArchStable: true, v1.LabelOSStable: true, v1.LabelTopologyRegion: true,
		awsv1.LabelInstanceCategory: true, awsv1.LabelInstanceFamily: true, awsv1.LabelInstanceGeneration: true,
		awsv1.LabelInstanceSize: true, awsv1.LabelInstanceCPU: true, awsv1.LabelInstanceMemory: true,
		awsv1.LabelInstanceHypervisor: true, awsv1.LabelInstanceLocalNVME: true, awsv1.LabelInstanceEBSBandwidth: true,
		awsv1.LabelInstanceCPUManufacturer: true, awsv1.LabelInstanceCPUSustainedClockSpeedMhz: true,
		awsv1.LabelInstanceNetworkBandwidth: true, awsv1.LabelInstanceGPUName: true, awsv1.LabelInstanceGPUManufacturer: true,
		awsv1.LabelInstanceGPUCount: true, awsv1.LabelInstanceGPUMemory: true, awsv1.LabelInstanceAcceleratorName: true,
		awsv1.LabelInstanceAcceleratorManufacturer: true, awsv1.LabelInstanceAcceleratorCount: true,
		awsv1.LabelInstanceTenancy: true, awsv1.LabelInstanceCapabilityFlex: true,
		awsv1.LabelInstanceEncryptionInTransitSupported: true,
		// Only a Windows node class's catalog has types with a Windows build;
		// elsewhere a requirement on one matches nothing instead of labelling
		// a Linux node.
		v1.LabelWindowsBuild: true,
		// Where EC2 put an instance, known only after its launch (the
		// provider labels nodes in a placement group from the instance):
		// no type carries them, so a requirement to be in a group or
		// partition matches nothing rather than labelling a node outside it.
		awsv1.LabelPlacementGroupID: true, awsv1.LabelPlacementGroupPartition: true,
	}
	for k := range offeringKeys {
		keys[k] = true
	}
	return keys
}()

// ZoneNames maps availability zone ids to the account's zone names (from
// DescribeAvailabilityZones). DefaultZoneNames guesses them.
type ZoneNames map[string]string

// DefaultZoneNames names zone ids of region the way most accounts see them:
// az1 is the region's "a" zone, az2 "b", and so on.
func DefaultZoneNames(region string, zoneIDs []string) ZoneNames {
	names := ZoneNames{}
	for _, id := range zoneIDs {
		i := strings.LastIndex(id, "-az")
		if i < 0 {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(id[i+3:], "%d", &n); err != nil || n < 1 || n > 26 {
			continue
		}
		names[id] = region + string(rune('a'+n-1))
	}
	return names
}

// New builds the catalog of region from a snapshot. Zones missing from zones are
// named by DefaultZoneNames; types with no offering in the region are left out.
func New(snap *Snapshot, region string, zones ZoneNames, unavailable *UnavailableOfferings) (*Catalog, error) {
	c := &Catalog{Region: region, Unavailable: unavailable, byName: map[string]int{}}
	if c.Unavailable == nil {
		c.Unavailable = NewUnavailableOfferings(UnavailableOptions{})
	}
	for _, spec := range snap.Types {
		r, ok := spec.Regions[region]
		if !ok {
			continue
		}
		names := zones
		if names == nil {
			names = DefaultZoneNames(region, r.ZoneIDs)
		}
		it := &InstanceType{Name: spec.Name, Labels: spec.labels(region), Spec: spec}
		it.Capacity, it.Allocatable = spec.Resources(NodeSettings{})
		for i, id := range r.ZoneIDs {
			zone, ok := names[id]
			if !ok {
				zone = DefaultZoneNames(region, []string{id})[id]
			}
			if zone == "" {
				continue
			}
			if r.OnDemand > 0 {
				it.Offerings = append(it.Offerings, Offering{Zone: zone, ZoneID: id, CapacityType: v1.CapacityTypeOnDemand, Price: r.OnDemand})
			}
			if len(r.Spot) > i && r.Spot[i] > 0 {
				it.Offerings = append(it.Offerings, Offering{Zone: zone, ZoneID: id, CapacityType: v1.CapacityTypeSpot, Price: r.Spot[i], Interruption: r.Interruption})
			}
			for _, res := range snap.Reservations {
				// One reservation per (type, zone): CreateFleet takes no two
				// templates for the same pool, and unavailability is per pool.
				if res.InstanceType == spec.Name && res.ZoneID == id && !slices.ContainsFunc(it.Offerings, func(o Offering) bool {
					return o.ZoneID == id && o.CapacityType == v1.CapacityTypeReserved
				}) {
					it.Offerings = append(it.Offerings, Offering{Zone: zone, ZoneID: id, CapacityType: v1.CapacityTypeReserved,
						Price: r.OnDemand * ReservedPriceFactor, ReservationID: res.ID, ReservationType: res.Type, ReservationInterruptible: res.Interruptible})
				}
			}
		}
		if len(it.Offerings) == 0 {
			continue
		}
		c.byName[it.Name] = len(c.Types)
		c.Types = append(c.Types, it)
	}
	if len(c.Types) == 0 {
		return nil, fmt.Errorf("catalog: no instance types offered in region %q", region)
	}
	c.indexOfferings()
	c.buildIndex()
	return c, nil
}

// indexOfferings sorts each type's offerings by price (Filter keeps that order)
// and numbers their zones and capacity types.
func (c *Catalog) indexOfferings() {
	zoneIdx, capIdx := map[string]uint8{}, map[string]uint8{}
	number := func(m map[string]uint8, list *[]string, v string) uint8 {
		i, ok := m[v]
		if !ok {
			i = uint8(len(*list))
			m[v] = i
			*list = append(*list, v)
		}
		return i
	}
	for _, it := range c.Types {
		sort.SliceStable(it.Offerings, func(a, b int) bool { return it.Offerings[a].Price < it.Offerings[b].Price })
		if len(it.Offerings) > maxOfferings {
			it.Offerings = it.Offerings[:maxOfferings]
		}
		for i := range it.Offerings {
			o := &it.Offerings[i]
			o.zoneIdx = number(zoneIdx, &c.zones, o.Zone)
			o.capacityIdx = number(capIdx, &c.capacityTypes, o.CapacityType)
		}
	}
}

// mask returns the bits of the values in list that r allows (all when r is nil).
func mask(r *requirements.Requirement, list []string) uint64 {
	var m uint64
	for i, v := range list {
		if r == nil || r.Has(v) {
			m |= 1 << i
		}
	}
	return m
}

func (c *Catalog) buildIndex() {
	n := len(c.Types)
	c.index, c.has, c.values = map[string]map[string]bitset{}, map[string]bitset{}, map[string][]string{}
	c.all = newBitset(n)
	for key := range CatalogKeys {
		c.index[key], c.has[key] = map[string]bitset{}, newBitset(n)
	}
	mark := func(key, value string, i int) {
		b, ok := c.index[key][value]
		if !ok {
			b = newBitset(n)
			c.index[key][value] = b
		}
		b.set(i)
		c.has[key].set(i)
	}
	for i, it := range c.Types {
		c.all.set(i)
		for key, value := range it.Labels {
			if CatalogKeys[key] {
				mark(key, value, i)
			}
		}
		for _, o := range it.Offerings {
			mark(v1.LabelTopologyZone, o.Zone, i)
			mark(awsv1.LabelTopologyZoneID, o.ZoneID, i)
			mark(v1.CapacityTypeLabelKey, o.CapacityType, i)
		}
	}
	for key, byValue := range c.index {
		vals := make([]string, 0, len(byValue))
		for v := range byValue {
			vals = append(vals, v)
		}
		sort.Strings(vals)
		c.values[key] = vals
	}
}

// Get returns the named type, or nil.
func (c *Catalog) Get(name string) *InstanceType {
	if i, ok := c.byName[name]; ok {
		return c.Types[i]
	}
	return nil
}

// Price is the hourly price of an instance type bought one way in one zone
// (by name), and whether the catalog offers it so.
func (c *Catalog) Price(instanceType, zone, capacityType string) (float64, bool) {
	it := c.Get(instanceType)
	if it == nil {
		return 0, false
	}
	for _, o := range it.Offerings {
		if o.Zone == zone && o.CapacityType == capacityType {
			return o.Price, true
		}
	}
	return 0, false
}

// Candidate is an instance type that satisfies a set of requirements, with the
// offerings that do (and are not marked unavailable) as a bit mask over the
// type's offerings, which are sorted cheapest first. A mask rather than a copy
// keeps Filter free of per-offering allocation on the solver's hot path.
type Candidate struct {
	Type *InstanceType
	Mask uint64
}

// Offerings returns the candidate's offerings, cheapest first.
func (c Candidate) Offerings() []Offering {
	out := make([]Offering, 0, bits.OnesCount64(c.Mask))
	for i, o := range c.Type.Offerings {
		if c.Mask&(1<<i) != 0 {
			out = append(out, o)
		}
	}
	return out
}

// Cheapest returns the candidate's cheapest offering.
func (c Candidate) Cheapest() Offering {
	return c.Type.Offerings[bits.TrailingZeros64(c.Mask)]
}

// maxOfferings bounds offerings per type so a Candidate's mask can hold them:
// even the largest region has 6 zones x 2 capacity types.
const maxOfferings = 64

// UnsatisfiableError says why no instance type, or too few, fit.
type UnsatisfiableError struct{ Reason string }

func (e *UnsatisfiableError) Error() string { return e.Reason }

// Filter returns the types and offerings that satisfy reqs, in catalog order,
// and checks the requirements' minValues against what is left. Requirements on
// keys the catalog does not know are ignored (they become node labels).
func (c *Catalog) Filter(reqs requirements.Requirements) ([]Candidate, error) {
	match := c.all.clone()
	for key, r := range reqs {
		byValue, ok := c.index[key]
		if !ok || reservationKeys[key] {
			continue
		}
		allowed := newBitset(len(c.Types))
		if r.Len() <= len(byValue) {
			for _, v := range r.Values() {
				if b, ok := byValue[v]; ok {
					allowed.or(b)
				}
			}
		} else {
			for _, v := range c.values[key] {
				if r.Has(v) {
					allowed.or(byValue[v])
				}
			}
		}
		if r.AllowsAbsent() {
			allowed.orNot(c.has[key])
		}
		match.and(allowed)
	}
	zones := mask(reqs[v1.LabelTopologyZone], c.zones)
	capacityTypes := mask(reqs[v1.CapacityTypeLabelKey], c.capacityTypes)
	zoneID := reqs[awsv1.LabelTopologyZoneID]
	unavailable := c.Unavailable.current()
	out := make([]Candidate, 0, match.count())
	for i := range match.each() {
		it := c.Types[i]
		var m uint64
		for j, o := range it.Offerings {
			if zones&(1<<o.zoneIdx) == 0 || capacityTypes&(1<<o.capacityIdx) == 0 ||
				(zoneID != nil && !zoneID.Has(o.ZoneID)) || !allowsReservation(reqs, o) {
				continue
			}
			if _, out := unavailable[offeringKey{it.Name, o.Zone, o.CapacityType}]; out {
				continue
			}
			m |= 1 << j
		}
		if m != 0 {
			out = append(out, Candidate{Type: it, Mask: m})
		}
	}
	if len(out) == 0 {
		return nil, &UnsatisfiableError{Reason: fmt.Sprintf("no instance type in %s satisfies %s", c.Region, describe(reqs))}
	}
	for _, key := range reqs.Keys() {
		r := reqs[key]
		if r.MinValues == nil {
			continue
		}
		seen := map[string]bool{}
		for _, cand := range out {
			if offeringKeys[key] {
				for _, o := range cand.Offerings() {
					seen[offeringValue(o, key)] = true
				}
			} else if v, ok := cand.Type.Labels[key]; ok {
				seen[v] = true
			}
		}
		if len(seen) < *r.MinValues {
			return out, &UnsatisfiableError{Reason: fmt.Sprintf("minValues %d for %s: only %d distinct values among the %d instance types that fit", *r.MinValues, key, len(seen), len(out))}
		}
	}
	return out, nil
}

// allowsReservation reports whether reqs accept the offering's reservation
// keys: its values if reserved, their absence if not.
func allowsReservation(reqs requirements.Requirements, o Offering) bool {
	for key := range reservationKeys {
		r, ok := reqs[key]
		if !ok {
			continue
		}
		if v := offeringValue(o, key); v == "" && !r.AllowsAbsent() || v != "" && !r.Has(v) {
			return false
		}
	}
	return true
}

func offeringValue(o Offering, key string) string {
	switch key {
	case awsv1.LabelCapacityReservationID:
		return o.ReservationID
	case awsv1.LabelCapacityReservationType:
		return o.ReservationType
	case awsv1.LabelCapacityReservationInterruptible:
		if o.ReservationID == "" {
			return ""
		}
		return strconv.FormatBool(o.ReservationInterruptible)
	case v1.LabelTopologyZone:
		return o.Zone
	case awsv1.LabelTopologyZoneID:
		return o.ZoneID
	default:
		return o.CapacityType
	}
}

func describe(reqs requirements.Requirements) string {
	var parts []string
	for _, k := range reqs.Keys() {
		if CatalogKeys[k] {
			parts = append(parts, reqs[k].String())
		}
	}
	if len(parts) == 0 {
		return "the requirements"
	}
	return strings.Join(parts, ", ")
}

// bitset is a fixed-size set of type indexes.
type bitset []uint64

func newBitset(n int) bitset   { return make(bitset, (n+63)/64) }
func (b bitset) set(i int)     { b[i/64] |= 1 << (i % 64) }
func (b bitset) clone() bitset { return append(bitset(nil), b...) }
func (b bitset) and(o bitset) {
	for i := range b {
		b[i] &= o[i]
	}
}
func (b bitset) or(o bitset) {
	for i := range b {
		b[i] |= o[i]
	}
}
func (b bitset) count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}
func (b bitset) orNot(o bitset) {
	for i := range b {
		b[i] |= ^o[i]
	}
}

// each yields the set members in increasing order.
func (b bitset) each() func(func(int) bool) {
	return func(yield func(int) bool) {
		for w, word := range b {
			for word != 0 {
				i := bits.TrailingZeros64(word)
				if !yield(w*64 + i) {
					return
				}
				word &= word - 1
			}
		}
	}
}
