package disruption

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	v1 "github.com/nodewright/nodewright/apis/v1"
)

// defaultBudget applies when a NodePool lists no budgets (the CRD defaults
// one, but a NodePool decoded elsewhere may lack it).
var defaultBudget = v1.Budget{Nodes: "10%"}

// Allowed is how many more of a pool's nodes may start being disrupted for
// reason now: the most restrictive budget active at now that applies to the
// reason, as a count or a percentage (rounded up) of the pool's nodes, less
// the nodes already being deleted for any reason. With budgets listed but
// none active for the reason, nothing bounds it (math.MaxInt), as in
// Karpenter. An error names the budget that cannot be read; the caller then
// disrupts nothing in the pool.
func Allowed(np *v1.NodePool, reason v1.DisruptionReason, nodes, deleting int, now time.Time) (int, error) {
	budgets := np.Spec.Disruption.Budgets
	if len(budgets) == 0 {
		budgets = []v1.Budget{defaultBudget}
	}
	allowed := math.MaxInt
	for i, b := range budgets {
		if len(b.Reasons) > 0 && !slices.Contains(b.Reasons, reason) {
			continue
		}
		active, err := activeAt(b, now)
		if err != nil {
			return 0, fmt.Errorf("NodePool %s spec.disruption.budgets[%d]: %w", np.Name, i, err)
		}
		if !active {
			continue
		}
		n, err := budgetNodes(b.Nodes, nodes)
		if err != nil {
			return 0, fmt.Errorf("NodePool %s spec.disruption.budgets[%d].nodes: %w", np.Name, i, err)
		}
		allowed = min(allowed, n)
	}
	if allowed == math.MaxInt {
		return allowed, nil
	}
	return max(allowed-deleting, 0), nil
}

// budgetNodes reads "3" or "10%" (of nodes, rounded up, so a small pool
// still moves).
func budgetNodes(s string, nodes int) (int, error) {
	if p, ok := strings.CutSuffix(s, "%"); ok {
		pct, err := strconv.Atoi(p)
		if err != nil || pct < 0 || pct > 100 {
			return 0, fmt.Errorf("%q is not a percentage from 0%% to 100%%", s)
		}
		return (nodes*pct + 99) / 100, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a node count or a percentage", s)
	}
	return n, nil
}

// activeAt reports whether a budget applies at now: always without a
// schedule; with one, from each time the cron schedule (UTC) fires until its
// duration has passed.
func activeAt(b v1.Budget, now time.Time) (bool, error) {
	if b.Schedule == nil {
		return true, nil
	}
	if b.Duration == nil {
		return false, fmt.Errorf("schedule %q has no duration", *b.Schedule)
	}
	if err := b.Duration.Err(); err != nil {
		return false, fmt.Errorf("duration: %w", err)
	}
	sched, err := cron.ParseStandard("TZ=UTC " + *b.Schedule)
	if err != nil {
		return false, fmt.Errorf("schedule %q: %w", *b.Schedule, err)
	}
	// The window is open if the schedule fired in (now-duration, now].
	now = now.UTC()
	next := sched.Next(now.Add(-b.Duration.Duration))
	return !next.After(now), nil
}
