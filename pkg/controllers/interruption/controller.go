// Package interruption acts on the cloud's notices about instances before
// the cloud acts on them: a spot instance about to be reclaimed, scheduled
// maintenance, an instance stopping or shutting down. The NodeClaim is
// disrupted with its replacement launched first: termination cordons the
// node at once and evicts its pods as soon as they have room elsewhere, or
// when the notice's time runs short, whichever is first. A reclaimed spot
// offering is kept out of new launches for a while, so the replacement lands
// elsewhere. A rebalance recommendation (the spot pool is at risk) keeps new
// launches out of the pool the same way and, only with DrainOnRebalance,
// disrupts the node too.
package interruption

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nodewright/nodewright/pkg/controllers/disruption"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
	"github.com/nodewright/nodewright/pkg/controllers"
	"github.com/nodewright/nodewright/pkg/metrics"
)

// Queue is the cloud's interruption queue.
type Queue interface {
	// Receive waits (long polls) for the next messages.
	Receive(ctx context.Context) ([]cloudprovider.Interruption, error)
	// Delete removes a handled message.
	Delete(ctx context.Context, m cloudprovider.Interruption) error
}

// Offerings takes an offering out of new launches for a while.
type Offerings interface {
	MarkUnavailable(instanceType, zone, capacityType string)
}

// Recorder emits Kubernetes events.
type Recorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Controller reads the queue and disrupts the NodeClaims it names.
type Controller struct {
	Kube     client.Client
	Queue    Queue
	Recorder Recorder
	// Offerings, when set, is told of reclaimed and at-risk spot offerings.
	Offerings Offerings
	// DrainOnRebalance disrupts a spot node on a rebalance recommendation;
	// off (the default, as in Karpenter), the recommendation only keeps new
	// launches out of the node's pool and is an event on the node.
	DrainOnRebalance bool
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// DrainAllowance is the time kept at the end of a notice for the drain
// itself: the replacement-first wait ends this long before the instance
// goes, so pods with a 30 s grace period still stop cleanly on a spot node.
const DrainAllowance = 60 * time.Second

// MaxReplaceWait bounds the replacement-first wait for notices far ahead
// (maintenance days away) or without a time (rebalance recommendations).
const MaxReplaceWait = 5 * time.Minute

// NeedLeaderElection keeps one replica reading the queue.
func (c *Controller) NeedLeaderElection() bool { return true }

// Start receives and handles messages until ctx ends. Receive errors back off
// from 1 s to 1 minute; a message whose handling failed is not deleted, so
// the queue delivers it again after its visibility timeout.
func (c *Controller) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("interruption")
	ctx = log.IntoContext(ctx, logger)
	backoff := time.Second
	for ctx.Err() == nil {
		msgs, err := c.Queue.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			logger.Error(err, "receiving interruption messages", "retryIn", backoff.String())
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
		for _, m := range msgs {
			if err := c.Handle(ctx, m); err != nil {
				logger.Error(err, "handling interruption message", "message", m.ID, "kind", m.Kind)
				continue
			}
			if err := c.Queue.Delete(ctx, m); err != nil {
				logger.Error(err, "deleting handled interruption message", "message", m.ID)
			}
		}
	}
	return nil
}

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Handle acts on one message. Messages about instances nodewright does not
// manage are handled by doing nothing; so are unreadable messages and
// messages from another account or region (counted by kind, logged, and
// deleted by Start, never retried). Handling is idempotent: SQS delivers at
// least once and in no particular order, and a claim already deleting is
// never disrupted twice nor its drain moved later.
func (c *Controller) Handle(ctx context.Context, m cloudprovider.Interruption) error {
	logger := log.FromContext(ctx).WithValues("message", m.ID, "kind", m.Kind)
	metrics.InterruptionMessages.WithLabelValues(string(m.Kind)).Inc()
	now := c.now()
	if !m.SentAt.IsZero() {
		metrics.InterruptionMessageAge.Observe(max(now.Sub(m.SentAt), 0).Seconds())
	}
	switch m.Kind {
	case cloudprovider.UnknownInterruption:
		logger.Info("ignoring an interruption message nodewright cannot use", "detail", m.Detail)
		return nil
	case cloudprovider.ForeignInterruption:
		logger.Info("ignoring an interruption message from another account or region", "detail", m.Detail)
		return nil
	}
	for _, id := range m.InstanceIDs {
		var claims v1.NodeClaimList
		if err := c.Kube.List(ctx, &claims, client.MatchingFields{controllers.NodeClaimInstanceID: id}); err != nil {
			return fmt.Errorf("finding the nodeclaim of instance %s: %w", id, err)
		}
		for i := range claims.Items {
			if err := c.act(ctx, m, &claims.Items[i], now); err != nil {
				return err
			}
		}
	}
	return nil
}

// act disrupts one claim as the message asks.
func (c *Controller) act(ctx context.Context, m cloudprovider.Interruption, nc *v1.NodeClaim, now time.Time) error {
	logger := log.FromContext(ctx).WithValues("message", m.ID, "kind", m.Kind, "nodeclaim", nc.Name,
		"node", nc.Status.NodeName, "providerID", nc.Status.ProviderID)
	var (
		reason, eventReason string
		drainBy             time.Time
	)
	switch m.Kind {
	case cloudprovider.SpotInterruption:
		reason, eventReason = "spot_interrupted", "SpotInterrupted"
		c.avoidPool(nc, v1.CapacityTypeSpot)
		drainBy = deadline(now, m.TerminatesAt)
	case cloudprovider.CapacityReservationInterruption:
		// The reservation's capacity is going back to its owner: its
		// replacement is launched elsewhere.
		reason, eventReason = disruption.CapacityReservationInterrupted, "CapacityReservationInterrupted"
		c.avoidPool(nc, v1.CapacityTypeReserved)
		drainBy = deadline(now, m.TerminatesAt)
	case cloudprovider.ScheduledChange:
		reason, eventReason = "scheduled_change", "ScheduledChange"
		drainBy = deadline(now, m.TerminatesAt)
	case cloudprovider.RebalanceRecommendation:
		// The pool is at risk whatever is done with this node: new launches,
		// the replacement of this node among them, go elsewhere for a while.
		pool := c.avoidPool(nc, v1.CapacityTypeSpot)
		if !c.DrainOnRebalance {
			c.event(nc, corev1.EventTypeNormal, "RebalanceRecommendation", fmt.Sprintf("EC2 recommends moving off this spot instance; "+
				"new launches avoid its pool (%s) for a while, and the node stays (feature gate DrainOnRebalance is off)", pool))
			logger.Info("rebalance recommended: avoiding the pool, not draining (DrainOnRebalance off)", "pool", pool)
			return nil
		}
		reason, eventReason = "rebalance_recommended", "RebalanceRecommendation"
		drainBy = now.Add(MaxReplaceWait)
	case cloudprovider.StateChange:
		switch m.State {
		case "stopping", "stopped", "shutting-down", "terminated":
		default:
			return nil
		}
		// The instance is going now: nothing to wait for.
		// Metric label values keep to [a-z_]: shutting-down is shutting_down.
		reason, eventReason = "instance_"+strings.ReplaceAll(m.State, "-", "_"), "InstanceStateChange"
	default:
		return nil
	}
	outcome, err := disruption.Disrupt(ctx, c.Kube, nc, reason, drainBy, now)
	if err != nil {
		return err
	}
	switch outcome {
	case disruption.Unchanged:
		logger.V(1).Info("nodeclaim already being deleted, draining no later than asked")
		return nil
	case disruption.Hastened:
		by, _ := disruption.DrainBy(nc)
		c.event(nc, corev1.EventTypeWarning, eventReason, fmt.Sprintf("%s (%s) while already being deleted; draining by %s at the latest",
			reason, m.Detail, by.UTC().Format(time.RFC3339)))
		logger.Info("moved the drain of a deleting nodeclaim earlier", "reason", reason, "drainBy", by)
		return nil
	}
	note := fmt.Sprintf("Disrupting: %s (%s)", reason, m.Detail)
	if !drainBy.IsZero() {
		note += fmt.Sprintf("; replacement first, draining by %s at the latest", drainBy.UTC().Format(time.RFC3339))
	}
	c.event(nc, corev1.EventTypeWarning, eventReason, note)
	logger.Info("disrupting nodeclaim", "nodepool", nc.Labels[v1.NodePoolLabelKey], "reason", reason, "detail", m.Detail,
		"terminatesAt", m.TerminatesAt, "drainBy", drainBy)
	return nil
}

// avoidPool takes the claim's offering of capacityType (type, zone,
// capacity type: spot, or reserved for a reclaimed reservation) out of new
// launches for the catalog's unavailability period, as a launch refused for
// insufficient capacity does, so a replacement does not land in the pool EC2
// is reclaiming or warned about. It returns the pool for messages, "" when the
// claim does not say its type and zone.
func (c *Controller) avoidPool(nc *v1.NodeClaim, capacityType string) string {
	it, zone := nc.Labels[corev1.LabelInstanceTypeStable], nc.Labels[corev1.LabelTopologyZone]
	if c.Offerings == nil || it == "" || zone == "" {
		return ""
	}
	c.Offerings.MarkUnavailable(it, zone, capacityType)
	return it + " " + capacityType + " in " + zone
}

// deadline is when the replacement-first wait ends for a notice whose
// instance goes at terminatesAt: DrainAllowance before it, but no later than
// MaxReplaceWait from now, and never in the past.
func deadline(now, terminatesAt time.Time) time.Time {
	by := now.Add(MaxReplaceWait)
	if !terminatesAt.IsZero() && terminatesAt.Add(-DrainAllowance).Before(by) {
		by = terminatesAt.Add(-DrainAllowance)
	}
	if by.Before(now) {
		return now
	}
	return by
}

// event reports on the claim and, when it has one, its node, where people
// look first.
func (c *Controller) event(nc *v1.NodeClaim, typ, reason, note string) {
	c.Recorder.Eventf(nc, nil, typ, reason, "Interruption", "%s", note)
	if nc.Status.NodeName != "" {
		// Kubernetes refers to nodes in events by name as UID, as the kubelet does.
		node := &corev1.Node{}
		node.Name, node.UID = nc.Status.NodeName, types.UID(nc.Status.NodeName)
		c.Recorder.Eventf(node, nil, typ, reason, "Interruption", "%s", note)
	}
}
