package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Every nodewright metric is registered where the manager serves metrics
// and passes Prometheus' naming lint (units, _total on counters).
func TestMetricsAreRegisteredAndConventional(t *testing.T) {
	NodeClaimsLaunched.WithLabelValues("p", "m5.large", "spot", "z").Inc()
	SchedulingDuration.Observe(0.01)
	PodsPending.WithLabelValues("provisioned").Set(1)
	LaunchFailures.WithLabelValues("p", "insufficient_capacity", "InsufficientInstanceCapacity").Inc()
	DisruptionDecisions.WithLabelValues("p", "spot_interrupted", "replace").Inc()
	InterruptionMessages.WithLabelValues("spot_interruption").Inc()
	InterruptionMessageAge.Observe(0.3)
	PodsDisrupted.WithLabelValues("p", "underutilized").Add(2)
	ConsolidationDuration.Observe(0.2)
	ConsolidationSavings.Add(0.1)
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "nodewright_") {
			ours = append(ours, f.GetName())
		}
	}
	for _, want := range []string{"nodewright_nodeclaims_launched_total", "nodewright_scheduling_duration_seconds", "nodewright_pods_pending",
		"nodewright_launch_failures_total", "nodewright_disruption_decisions_total", "nodewright_interruption_messages_total",
		"nodewright_interruption_message_age_seconds", "nodewright_disruption_pods_disrupted_total", "nodewright_consolidation_evaluation_duration_seconds",
		"nodewright_consolidation_savings_per_hour_total"} {
		found := false
		for _, n := range ours {
			found = found || n == want
		}
		if !found {
			t.Errorf("%s is not served; served: %v", want, ours)
		}
	}
	problems, err := testutil.GatherAndLint(crmetrics.Registry, ours...)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}
