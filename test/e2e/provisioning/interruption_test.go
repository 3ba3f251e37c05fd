package provisioning

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nodewright/nodewright/pkg/controllers/disruption"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "github.com/nodewright/nodewright/apis/v1"
)

// interruptionQueue is the queue the simulator's EventBridge feeds and
// nodewright reads in this package.
const interruptionQueue = "my-cluster-interruptions"

// metricWith adds up a counter's or gauge's series whose labels include
// want, as Prometheus would scrape them from nodewright's registry.
func metricWith(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			matched := 0
			for _, l := range m.GetLabel() {
				if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
					matched++
				}
			}
			if matched == len(want) {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// A notice from EC2 about a node (through EventBridge and SQS) replaces the
// node before its pods move: the claim is disrupted at once, a replacement
// is launched, and no pod is evicted before the replacement's node is
// initialized; then the pods run on it and the old instance is gone. A
// reclaimed spot offering is not launched again.
func TestInterruptionNoticesReplaceTheNodeFirst(t *testing.T) {
	for _, tc := range []struct {
		name, reason, messageType string
		notify                    func(id string) error
	}{
		{"spot-interruption", "spot_interrupted", "spot_interruption", func(id string) error { return e.Sim.Interrupt(id) }},
		{"scheduled-retirement", "scheduled_change", "scheduled_change", func(id string) error {
			return e.Sim.ScheduleEvent(id, "AWS_EC2_PERSISTENT_INSTANCE_RETIREMENT_SCHEDULED", e.Sim.Now().Add(72*time.Hour))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			ns := cp.Namespace(t)
			np := seedPool(t, "batch-"+tc.name)
			createPool(t, np)
			if err := cp.Client.Create(ctx, deploymentOnPool(ns, "web", np.Name, 2)); err != nil {
				t.Fatal(err)
			}
			first := runningOnOneClaim(t, ns, "web", np.Name, 2)
			id := instanceID(first.Status.ProviderID)
			var pods corev1.PodList
			if err := cp.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app": "web"}); err != nil {
				t.Fatal(err)
			}
			original := map[types.UID]bool{}
			for _, p := range pods.Items {
				original[p.UID] = true
			}
			decisions := metricWith(t, "nodewright_disruption_decisions_total", map[string]string{"nodepool": np.Name, "reason": tc.reason, "decision": "replace"})
			messages := metricWith(t, "nodewright_interruption_messages_total", map[string]string{"message_type": tc.messageType})

			if err := tc.notify(id); err != nil {
				t.Fatal(err)
			}
			var (
				early       []string
				replacement v1.NodeClaim
				reason      string
			)
			cp.Eventually(t, 3*time.Minute, "the web pods moved to a replacement node and the noticed node gone", func(ctx context.Context) (bool, error) {
				var claims v1.NodeClaimList
				if err := cp.Client.List(ctx, &claims, client.MatchingLabels{v1.NodePoolLabelKey: np.Name}); err != nil {
					return false, err
				}
				replacementUp := false
				for _, nc := range claims.Items {
					if nc.Name != first.Name && meta.IsStatusConditionTrue(nc.Status.Conditions, v1.ConditionTypeInitialized) {
						replacementUp, replacement = true, nc
					}
				}
				var pods corev1.PodList
				if err := cp.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app": "web"}); err != nil {
					return false, err
				}
				// kwok's kubelets delete evicted pods at once: a pod that left
				// shows as missing more often than as terminating.
				staying := 0
				for _, p := range pods.Items {
					if original[p.UID] && p.DeletionTimestamp.IsZero() {
						staying++
					}
				}
				if staying < len(original) && !replacementUp && len(early) == 0 {
					early = append(early, fmt.Sprintf("%d of %d pods evicted with no replacement node up (%s)", len(original)-staying, len(original), summary(ctx, np)))
				}
				old := &v1.NodeClaim{}
				if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(&first), old); err == nil {
					if !old.DeletionTimestamp.IsZero() {
						reason = old.Annotations[disruption.DisruptionReasonAnnotation]
					}
					return false, fmt.Errorf("nodeclaim %s still there; %s", first.Name, summary(ctx, np))
				} else if client.IgnoreNotFound(err) != nil {
					return false, err
				}
				if err := instanceGone(id); err != nil {
					return false, err
				}
				return true, running(ctx, ns, map[string]string{"app": "web"}, 2)
			})
			for _, msg := range early {
				t.Error(msg)
			}
			if reason != tc.reason {
				t.Errorf("the noticed claim was deleted with reason %q, want %q", reason, tc.reason)
			}
			if tc.reason == "spot_interrupted" && replacement.Labels[corev1.LabelInstanceTypeStable] == first.Labels[corev1.LabelInstanceTypeStable] &&
				replacement.Labels[corev1.LabelTopologyZone] == first.Labels[corev1.LabelTopologyZone] && replacement.Labels[v1.CapacityTypeLabelKey] == v1.CapacityTypeSpot {
				t.Errorf("the replacement launched into the reclaimed offering %s %s spot", first.Labels[corev1.LabelInstanceTypeStable], first.Labels[corev1.LabelTopologyZone])
			}
			if d := metricWith(t, "nodewright_disruption_decisions_total", map[string]string{"nodepool": np.Name, "reason": tc.reason, "decision": "replace"}) - decisions; d != 1 {
				t.Errorf("disruption decisions (%s, replace) counted %v, want 1", tc.reason, d)
			}
			if d := metricWith(t, "nodewright_interruption_messages_total", map[string]string{"message_type": tc.messageType}) - messages; d < 1 {
				t.Errorf("no %s message counted", tc.messageType)
			}
			cp.Eventually(t, time.Minute, "the notice deleted from the queue", func(context.Context) (bool, error) {
				for _, m := range e.Sim.QueueMessages(interruptionQueue) {
					if strings.Contains(m.Body, id) && !strings.Contains(m.Body, "State-change") {
						return false, fmt.Errorf("still queued: %s", m.Body)
					}
				}
				return true, nil
			})
		})
	}
}
