package operator

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// FeatureGates switch behaviours that not every cluster wants. Each has a
// default; --feature-gates Name=true,Other=false overrides them.
type FeatureGates struct {
	// DrainOnRebalance replaces a spot node when EC2 recommends rebalancing
	// off it (its pool is at elevated risk of interruption). Default false,
	// as in Karpenter: the recommendation then keeps new launches out of the
	// pool for a while and is an event on the node, and the node stays until
	// an interruption warning, if one comes (many never do). Turn it on to
	// move pods while there are minutes to spare, not the two of a warning,
	// at the cost of churn where recommendations come often.
	DrainOnRebalance bool
}

// featureGates lists the gates by name, with their defaults and where each
// is stored.
var featureGates = map[string]struct {
	def   bool
	field func(*FeatureGates) *bool
}{
	"DrainOnRebalance": {false, func(g *FeatureGates) *bool { return &g.DrainOnRebalance }},
}

// DefaultFeatureGates are the gates with no overrides.
func DefaultFeatureGates() FeatureGates {
	var g FeatureGates
	for _, f := range featureGates {
		*f.field(&g) = f.def
	}
	return g
}

// ParseFeatureGates reads "Name=true,Other=false" over the defaults. An
// unknown name or a value that is not a boolean is an error naming it.
func ParseFeatureGates(s string) (FeatureGates, error) {
	g := DefaultFeatureGates()
	for _, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		name, value, ok := strings.Cut(pair, "=")
		name = strings.TrimSpace(name)
		f, known := featureGates[name]
		if !known {
			return FeatureGates{}, fmt.Errorf("--feature-gates: unknown gate %q (known: %s)", name, strings.Join(knownGates(), ", "))
		}
		b, err := strconv.ParseBool(strings.TrimSpace(value))
		if !ok || err != nil {
			return FeatureGates{}, fmt.Errorf("--feature-gates: %s=%q: want %s=true or %s=false", name, value, name, name)
		}
		*f.field(&g) = b
	}
	return g, nil
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
	names := make([]string, 0, len(featureGates))
	for n := range featureGates {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
