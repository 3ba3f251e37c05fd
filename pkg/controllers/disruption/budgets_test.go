package disruption

import (
	"math"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	v1 "github.com/nodewright/nodewright/apis/v1"
)

func pool(budgets ...v1.Budget) *v1.NodePool {
	np := &v1.NodePool{}
	np.Name = "pool"
	np.Spec.Disruption.Budgets = budgets
	return np
}

func window(nodes, schedule string, d time.Duration, reasons ...v1.DisruptionReason) v1.Budget {
	return v1.Budget{Nodes: nodes, Schedule: ptr.To(schedule), Duration: v1.NewDuration(d), Reasons: reasons}
}

// Budgets: counts and percentages (rounded up), reasons, cron windows in
// UTC, the most restrictive active one, deleting nodes counted against it.
func TestAllowed(t *testing.T) {
	// Monday 2026-11-30 10:30 UTC.
	now := time.Date(2026, 11, 30, 10, 30, 0, 0, time.UTC)
	business := "0 9 * * 1-5" // weekdays 09:00 UTC, for 8h
	for _, tc := range []struct {
		name            string
		np              *v1.NodePool
		reason          v1.DisruptionReason
		nodes, deleting int
		want            int
	}{
		{"default 10% of 25 rounds up", pool(), v1.DisruptionReasonEmpty, 25, 0, 3},
		{"default 10% of 3 is 1", pool(), v1.DisruptionReasonEmpty, 3, 0, 1},
		{"count", pool(v1.Budget{Nodes: "2"}), v1.DisruptionReasonEmpty, 50, 0, 2},
		{"deleting counts against it", pool(v1.Budget{Nodes: "2"}), v1.DisruptionReasonEmpty, 50, 1, 1},
		{"never below zero", pool(v1.Budget{Nodes: "2"}), v1.DisruptionReasonEmpty, 50, 5, 0},
		{"most restrictive wins", pool(v1.Budget{Nodes: "50%"}, v1.Budget{Nodes: "3"}), v1.DisruptionReasonEmpty, 20, 0, 3},
		{"a budget for other reasons does not apply", pool(v1.Budget{Nodes: "0", Reasons: []v1.DisruptionReason{v1.DisruptionReasonDrifted}}, v1.Budget{Nodes: "4"}),
			v1.DisruptionReasonEmpty, 20, 0, 4},
		{"a budget for this reason applies", pool(v1.Budget{Nodes: "0", Reasons: []v1.DisruptionReason{v1.DisruptionReasonEmpty}}, v1.Budget{Nodes: "4"}),
			v1.DisruptionReasonEmpty, 20, 0, 0},
		{"inside the window", pool(window("0", business, 8*time.Hour), v1.Budget{Nodes: "5"}), v1.DisruptionReasonEmpty, 20, 0, 0},
		{"before the window", pool(window("0", "0 11 * * 1-5", 8*time.Hour), v1.Budget{Nodes: "5"}), v1.DisruptionReasonEmpty, 20, 0, 5},
		{"after the window", pool(window("0", business, time.Hour), v1.Budget{Nodes: "5"}), v1.DisruptionReasonEmpty, 20, 0, 5},
		{"only inactive budgets: unbounded", pool(window("0", "0 11 * * 1-5", time.Hour)), v1.DisruptionReasonEmpty, 20, 3, math.MaxInt},
		{"a window from last night still open", pool(window("1", "@daily", 11*time.Hour)), v1.DisruptionReasonEmpty, 20, 0, 1},
	} {
		got, err := Allowed(tc.np, tc.reason, tc.nodes, tc.deleting, now)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: Allowed = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// A budget that cannot be read stops the pool's disruption and says which.
func TestAllowedNamesABadBudget(t *testing.T) {
	now := time.Date(2026, 11, 30, 10, 30, 0, 0, time.UTC)
	for _, b := range []v1.Budget{
		{Nodes: "lots"},
		window("1", "every day", time.Hour),
		{Nodes: "1", Schedule: ptr.To("@daily")},
	} {
		_, err := Allowed(pool(v1.Budget{Nodes: "1"}, b), v1.DisruptionReasonEmpty, 10, 0, now)
		if err == nil || !strings.Contains(err.Error(), "spec.disruption.budgets[1]") {
			t.Errorf("budget %+v: error %v does not name budgets[1]", b, err)
		}
	}
}
