// Package metrics defines nodewright's Prometheus metrics, registered on
// controller-runtime's registry and so served on the manager's metrics
// endpoint. Names follow Prometheus conventions: the nodewright_ prefix,
// _total for counters, _seconds for durations. designs/metrics.md lists
// each with its labels.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Label names.
const (
	NodePool     = "nodepool"
	InstanceType = "instance_type"
	CapacityType = "capacity_type"
	Zone         = "zone"
	Reason       = "reason"
	Resource     = "resource"
	Decision     = "decision"
	MessageType  = "message_type"
	Code         = "code"
)

var (
	// PodsPending counts the pods the last provisioning round saw waiting,
	// by why: provisioned (room planned on a new or in-flight node) or
	// fits_nowhere (no NodePool can run them).
	PodsPending = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "nodewright_pods_pending", Help: "Pods kube-scheduler could not place, as of the last provisioning round, by reason.",
	}, []string{Reason})
	// SchedulingDuration is how long the solver took per round.
	SchedulingDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "nodewright_scheduling_duration_seconds", Help: "Time the solver took to plan one provisioning round.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	// NodeClaimsCreated counts NodeClaims the provisioner created.
	NodeClaimsCreated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nodewright_nodeclaims_created_total", Help: "NodeClaims created by provisioning.",
	}, []string{NodePool})
	// NodeClaimsLaunched counts instances launched, by what they are.
	NodeClaimsLaunched = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nodewright_nodeclaims_launched_total", Help: "NodeClaims whose instance was launched.",
	}, []string{NodePool, InstanceType, CapacityType, Zone})
	// NodeClaimsRegistered counts NodeClaims whose Node joined.
	NodeClaimsRegistered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nodewright_nodeclaims_registered_total", Help: "NodeClaims whose Node registered.",
	}, []string{NodePool})
	// NodeClaimsInitialized counts NodeClaims whose Node became usable.
	NodeClaimsInitialized = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nodewright_nodeclaims_initialized_total", Help: "NodeClaims whose Node became Ready with startup taints gone.",
	}, []string{NodePool})
	// NodeClaimsTerminated counts NodeClaims whose instance was terminated
	// and finalizer removed.
	NodeClaimsTerminated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nodewright_nodeclaims_terminated_total", Help: "NodeClaims terminated (drained, instance gone, finalizer removed).",
	}, []string{NodePool})
	// LaunchFailures counts failed launches by reason (insufficient_capacity,
	// nodeclass_not_ready, error) and the cloud's error code
	// (InsufficientInstanceCapacity, UnauthorizedOperation, ...; NodeClassNotReady,
	// NoOfferingAvailable when nodewright refused before asking; unknown).
	LaunchFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nodewright_launch_failures_total", Help: "Failed launches, by reason and cloud error code.",
	}, []string{NodePool, Reason, Code})
	// NodePoolUsage is what a NodePool's NodeClaims hold, per resource.
	NodePoolUsage = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "nodewright_nodepool_usage", Help: "Capacity of a NodePool's NodeClaims, per resource (nodes counts them).",
	}, []string{NodePool, Resource})
	// Cost is what a NodePool's launched nodes cost per hour at the
	// catalog's prices, by capacity type; summed, the cluster's cost.
	Cost = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "nodewright_cost_per_hour", Help: "Hourly price in USD of a NodePool's launched nodes, by capacity type.",
	}, []string{NodePool, CapacityType})
	// DisruptionDecisions counts NodeClaims nodewright decided to take away,
	// by why (spot_interrupted, capacity_reservation_interrupted,
	// rebalance_recommended, scheduled_change,
	// instance_<state>, expired) and how: replace (the drain waits for the
	// pods to have room elsewhere) or delete (the drain starts at once).
	DisruptionDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nodewright_disruption_decisions_total", Help: "NodeClaims nodewright decided to disrupt, by reason and decision.",
	}, []string{NodePool, Reason, Decision})
	PodsDisrupted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nodewright_disruption_pods_disrupted_total", Help: "Workload pods on the nodes the disruption controller disrupted, by nodepool and reason.",
	}, []string{NodePool, "reason"})
	ConsolidationDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "nodewright_consolidation_evaluation_duration_seconds", Help: "Time one consolidation search over the cluster took.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
	})
	ConsolidationSavings = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nodewright_consolidation_savings_per_hour_total", Help: "Hourly price in USD that consolidation moves removed (the nodes' price less their replacements'), summed over moves.",
	})
	// InterruptionMessages counts messages read from the interruption queue,
	// by kind (spot_interruption, rebalance_recommendation, scheduled_change,
	// state_change; unknown for unreadable or unused messages and foreign for
	// another account's or region's, both deleted without acting).
	InterruptionMessages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nodewright_interruption_messages_total", Help: "Messages received from the interruption queue, by type.",
	}, []string{MessageType})
	// InterruptionMessageAge is how old a message was when handled: a
	// growing age means the queue is backing up and the two minutes of a
	// spot notice are being spent waiting.
	InterruptionMessageAge = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "nodewright_interruption_message_age_seconds", Help: "Time from the cloud sending an interruption message to nodewright handling it.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
	})
	// NodePoolLimit is a NodePool's limit per resource.
	NodePoolLimit = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "nodewright_nodepool_limit", Help: "A NodePool's limit, per resource.",
	}, []string{NodePool, Resource})
)

func init() {
	crmetrics.Registry.MustRegister(PodsPending, SchedulingDuration, NodeClaimsCreated, NodeClaimsLaunched,
		NodeClaimsRegistered, NodeClaimsInitialized, NodeClaimsTerminated, LaunchFailures, NodePoolUsage, NodePoolLimit, Cost,
		DisruptionDecisions, PodsDisrupted, ConsolidationDuration, ConsolidationSavings, InterruptionMessages, InterruptionMessageAge)
}
