package aws

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
)

// nodeClassCatalogs derives, from the region's catalog, the catalog one node
// class can launch from: offerings only in zones where it has a subnet, and
// only types one of its AMIs runs on (no GPU type without a GPU image), and
// a reserved offering for each of its active capacity reservations. The
// solver must not plan what the launch cannot place. Derived catalogs are
// cached per (region catalog, zones, AMI requirements, reservations), since node classes
// rarely change and the region catalog changes every few minutes at most.
type nodeClassCatalogs struct {
	mu      sync.Mutex
	entries map[string]derivedCatalog
}

type derivedCatalog struct {
	base, derived *catalog.Catalog
}

func newNodeClassCatalogs() *nodeClassCatalogs {
	return &nodeClassCatalogs{entries: map[string]derivedCatalog{}}
}

// get returns nc's catalog from base. It shares base's unavailable
// offerings, so what the launch marks out is out for the solver too.
func (n *nodeClassCatalogs) get(base *catalog.Catalog, nc *awsv1.EC2NodeClass) (*catalog.Catalog, error) {
	zoneIDs := nodeClassZoneIDs(base, nc)
	amiReqs, err := json.Marshal(amiRequirementSets(nc.Status.AMIs))
	if err != nil {
		return nil, fmt.Errorf("EC2NodeClass %s: %w", nc.Name, err)
	}
	needs := typeNeedsOf(nc)
	reservations := catalogReservations(nc)
	reserved, err := json.Marshal(reservations)
	if err != nil {
		return nil, fmt.Errorf("EC2NodeClass %s: %w", nc.Name, err)
	}
	key := strings.Join(zoneIDs, ",") + "|" + string(amiReqs) + "|" + fmt.Sprintf("%+v", needs) + "|" + string(reserved)
	n.mu.Lock()
	defer n.mu.Unlock()
	if e, ok := n.entries[key]; ok && e.base == base {
		return e.derived, nil
	}
	derived, err := restrictCatalog(base, zoneIDs, nc.Status.AMIs, needs, reservations)
	if err != nil {
		return nil, fmt.Errorf("EC2NodeClass %s: %w", nc.Name, err)
	}
	for k, e := range n.entries {
		if e.base != base {
			delete(n.entries, k) // built from an older region catalog
		}
	}
	n.entries[key] = derivedCatalog{base, derived}
	return derived, nil
}

// nodeClassZoneIDs are the zone ids of nc's subnets, sorted. A subnet
// without one (a status written before zone ids were) is placed by its
// zone's name.
func nodeClassZoneIDs(base *catalog.Catalog, nc *awsv1.EC2NodeClass) []string {
	var byName map[string]string
	var ids []string
	for _, s := range nc.Status.Subnets {
		id := s.ZoneID
		if id == "" {
			if byName == nil {
				byName = zoneIDsByName(base)
			}
			id = byName[s.Zone]
		}
		if id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func zoneIDsByName(c *catalog.Catalog) map[string]string {
	out := map[string]string{}
	for _, it := range c.Types {
		for _, o := range it.Offerings {
			out[o.Zone] = o.ZoneID
		}
	}
	return out
}

// amiRequirementSets are the AMIs' requirements without their ids: a new
// AMI release does not change which types a node class can launch.
func amiRequirementSets(amis []awsv1.AMI) []any {
	out := make([]any, len(amis))
	for i, a := range amis {
		out[i] = a.Requirements
	}
	return out
}

// typeNeeds are what a node class asks of an instance type beyond its zones
// and AMIs, which EC2 refuses to launch on a type without.
type typeNeeds struct {
	// ipv4Prefixes (spec.ipPrefixCount) are assigned only on Nitro types,
	// and each takes one of the primary interface's address slots besides
	// its primary address.
	ipv4Prefixes int32
	// nestedVirtualization (spec.cpuOptions.nestedVirtualization enabled)
	// runs only on types EC2 lists the feature for.
	nestedVirtualization bool
	// cards, devices and efas are what spec.networkInterfaces places: EC2
	// launches it only on types with that many network cards (highest card
	// index + 1), interfaces a card (highest device index + 1) and EFA
	// interfaces (efa-only ones).
	cards, devices, efas int32
	// windowsBuild is the Windows build of a Windows family's nodes: their
	// types are labelled os=windows and this build instead of linux.
	windowsBuild string
}

func typeNeedsOf(nc *awsv1.EC2NodeClass) typeNeeds {
	needs := typeNeeds{ipv4Prefixes: ptr.Deref(nc.Spec.IPPrefixCount, 0), windowsBuild: windowsBuild(nc)}
	if co := nc.Spec.CPUOptions; co != nil {
		needs.nestedVirtualization = ptr.Deref(co.NestedVirtualization, "") == "enabled"
	}
	for _, n := range nc.Spec.NetworkInterfaces {
		needs.cards, needs.devices = max(needs.cards, n.NetworkCardIndex+1), max(needs.devices, n.DeviceIndex+1)
		if n.InterfaceType == awsv1.InterfaceTypeEFAOnly {
			needs.efas++
		}
	}
	return needs
}

// allow reports whether EC2 launches t with these needs.
func (n typeNeeds) allow(t catalog.SnapshotType) bool {
	nitro := t.Hypervisor == "nitro" || t.BareMetal
	prefixes := n.ipv4Prefixes == 0 || (nitro && n.ipv4Prefixes <= t.IPv4PerENI-1)
	interfaces := n.cards <= t.Cards() && n.devices <= t.InterfacesPerCard() && n.efas <= t.EFAInterfaces
	return prefixes && (!n.nestedVirtualization || t.NestedVirtualization) && interfaces
}

// restrictCatalog rebuilds base with only the given zones and the types one
// of amis runs on and needs allow, with the reservations' reserved offerings.
// A Windows class's types are labelled windows and its build (the region
// catalog's are linux) before its AMIs' requirements are matched, so its
// Windows images match and pods selecting Linux find none of its types.
func restrictCatalog(base *catalog.Catalog, zoneIDs []string, amis []awsv1.AMI, needs typeNeeds, reservations []catalog.Reservation) (*catalog.Catalog, error) {
	amiReqs := make([]requirements.Requirements, len(amis))
	for i, a := range amis {
		amiReqs[i] = amiRequirements(a)
	}
	runs := func(labels map[string]string) bool {
		for _, r := range amiReqs {
			if r.Matches(labels) {
				return true
			}
		}
		return false
	}
	names := catalog.ZoneNames{}
	snap := &catalog.Snapshot{Reservations: reservations}
	for _, it := range base.Types {
		for _, o := range it.Offerings {
			names[o.ZoneID] = o.Zone
		}
		r, ok := it.Spec.Regions[base.Region]
		spec, labels := it.Spec, it.Labels
		if needs.windowsBuild != "" {
			spec.OS, spec.WindowsBuild = string(corev1.Windows), needs.windowsBuild
			labels = maps.Clone(it.Labels)
			labels[v1.LabelOSStable], labels[v1.LabelWindowsBuild] = spec.OS, spec.WindowsBuild
		}
		if !ok || !runs(labels) || !needs.allow(it.Spec) {
			continue
		}
		kept := catalog.SnapshotRegion{OnDemand: r.OnDemand, Interruption: r.Interruption}
		hasSpot := false
		for i, id := range r.ZoneIDs {
			if !slices.Contains(zoneIDs, id) {
				continue
			}
			kept.ZoneIDs = append(kept.ZoneIDs, id)
			spot := 0.0
			if i < len(r.Spot) {
				spot = r.Spot[i]
			}
			kept.Spot = append(kept.Spot, spot)
			hasSpot = hasSpot || spot > 0
		}
		if !hasSpot {
			kept.Spot = nil
		}
		if len(kept.ZoneIDs) == 0 {
			continue
		}
		spec.Regions = map[string]catalog.SnapshotRegion{base.Region: kept}
		spec.EFADevices = needs.efas
		snap.Types = append(snap.Types, spec)
	}
	if len(snap.Types) == 0 {
		return nil, fmt.Errorf("no instance type of %s is offered in its subnets' zones %v, runs one of its %d AMIs and takes its settings %+v", base.Region, zoneIDs, len(amis), needs)
	}
	return catalog.New(snap, base.Region, names, base.Unavailable)
}
