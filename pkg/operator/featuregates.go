package operator

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// FeatureGates switch behaviours that not every cluster wants. Each has a
// default; --feature-gates Name=true,Other=false overrides them. Karpenter's
// gate names are accepted, so its FEATURE_GATES value carries over: the ones
// nodewright implements switch the same behaviour, the others are ignored
// with a warning (see IgnoredGate).
type FeatureGates struct {
	// DrainOnRebalance replaces a spot node when EC2 recommends rebalancing
	// off it (its pool is at elevated risk of interruption). Default false,
	// as in Karpenter: the recommendation then keeps new launches out of the
	// pool for a while and is an event on the node, and the node stays until
	// an interruption warning, if one comes (many never do). Turn it on to
	// move pods while there are minutes to spare, not the two of a warning,
	// at the cost of churn where recommendations come often.
	DrainOnRebalance bool
	// SpotToSpotConsolidation lets consolidation replace spot nodes with
	// cheaper spot (given 15 cheaper spot types, as Karpenter requires).
	// Off, spot nodes are only deleted or replaced by on-demand. Default
	// true, unlike Karpenter's false: nodewright shipped with it on, and a
	// Karpenter chart passes its value explicitly.
	SpotToSpotConsolidation bool
	// NodeRepair replaces nodes NotReady, or failing their EC2 status
	// checks, for 30 minutes (the disruption Repair method). Default true,
	// unlike Karpenter's false: nodewright shipped with it on.
	NodeRepair bool
}

// featureGates lists the gates nodewright acts on by name, with their
// defaults and where each is stored.
var featureGates = map[string]struct {
	def   bool
	field func(*FeatureGates) *bool
}{
	"DrainOnRebalance":        {false, func(g *FeatureGates) *bool { return &g.DrainOnRebalance }},
	"SpotToSpotConsolidation": {true, func(g *FeatureGates) *bool { return &g.SpotToSpotConsolidation }},
	"NodeRepair":              {true, func(g *FeatureGates) *bool { return &g.NodeRepair }},
}

// ignoredGates are Karpenter's gates (core FEATURE_GATES and the AWS
// provider's AWS_FEATURE_GATES) that switch nothing in nodewright, with why:
// a user moving from Karpenter keeps their settings and reads in the log
// what each does here.
var ignoredGates = map[string]string{
	"StaticCapacity":            "static NodePools (spec.replicas) are always served",
	"ReservedCapacity":          "reserved offerings come only from an EC2NodeClass's capacityReservationSelectorTerms, with no switch",
	"NodeOverlay":               "nodewright has no NodeOverlay resource",
	"CapacityBuffer":            "nodewright has no CapacityBuffer resource",
	"TerminateFirstDrift":       "nodewright drains drifted nodes before terminating them, with no switch",
	"TerminateFirstRepair":      "nodewright drains repaired nodes before terminating them, with no switch",
	"PodDeletionCostManagement": "nodewright does not manage pod deletion costs",
	"NodeClassCEL":              "nodewright's EC2NodeClass validation rules are always on",
	"DRANVIDIAGPU":              "nodewright does not support dynamic resource allocation",
	"DRAEFA":                    "nodewright does not support dynamic resource allocation",
	"RebootForRepair":           "repair replaces the node, never reboots it",
}

// IgnoredGate is a gate name given that switches nothing: a Karpenter gate
// nodewright does not implement, or a name neither knows. It is logged as a
// warning at start, never an error, so a Karpenter setting never keeps the
// controller from starting.
type IgnoredGate struct {
	Name, Value, Reason string
}

// DefaultFeatureGates are the gates with no overrides.
func DefaultFeatureGates() FeatureGates {
	var g FeatureGates
	for _, f := range featureGates {
		*f.field(&g) = f.def
	}
	return g
}

// ParseFeatureGates reads "Name=true,Other=false" over the defaults. A value
// that is not a boolean is an error naming the gate; a name nodewright does
// not act on is returned as ignored.
func ParseFeatureGates(s string) (FeatureGates, []IgnoredGate, error) {
	g := DefaultFeatureGates()
	var ignored []IgnoredGate
	for _, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		name, value, ok := strings.Cut(pair, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		b, err := strconv.ParseBool(value)
		if !ok || err != nil {
			return FeatureGates{}, nil, fmt.Errorf("--feature-gates: %s=%q: want %s=true or %s=false", name, value, name, name)
		}
		f, known := featureGates[name]
		if !known {
			reason, karpenter := ignoredGates[name]
			if !karpenter {
				reason = "unknown gate (known: " + strings.Join(knownGates(), ", ") + ")"
			}
			ignored = append(ignored, IgnoredGate{Name: name, Value: value, Reason: reason})
			continue
		}
		*f.field(&g) = b
	}
	return g, ignored, nil
}

// String is the gates in ParseFeatureGates' form, sorted by name.
func (g FeatureGates) String() string {
	var parts []string
	for _, name := range knownGates() {
		parts = append(parts, name+"="+strconv.FormatBool(*featureGates[name].field(&g)))
	}
	return strings.Join(parts, ",")
}

func knownGates() []string {
	return slices.Sorted(maps.Keys(featureGates))
}
