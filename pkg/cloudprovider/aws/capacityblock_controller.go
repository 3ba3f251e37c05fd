package aws

import (
	"context"
	"fmt"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/controllers/disruption"
)

// capacityBlockReclaimLead is how long before a block's end EC2 starts
// terminating its instances (the Capacity Block Expiration Warning comes 40
// minutes before the end and says 10 minutes later). Nodes drain by then
// at the latest; between the warning and that, replacements get the first
// ten minutes, as for any cloud-driven loss.
const capacityBlockReclaimLead = 30 * time.Minute

// CapacityBlockReconciler moves nodes out of capacity blocks before EC2
// takes them back: from capacityBlockExpiryWindow before a block's end (the
// time its status turns expiring), each NodeClaim launched into it is
// disrupted with the replacement launched first and its drain started by
// the time EC2 starts terminating. It reads the block's end from the
// EC2NodeClass status, so it makes no EC2 call of its own.
type CapacityBlockReconciler struct {
	Client client.Client
	Clock  clock.PassiveClock
}

// Reconcile disrupts the claims of the node class's blocks that are within
// their expiry window and comes back when the next one enters it.
func (r *CapacityBlockReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	nc := &awsv1.EC2NodeClass{}
	if err := r.Client.Get(ctx, req.NamespacedName, nc); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	now := r.Clock.Now()
	var next time.Duration
	for _, cr := range nc.Status.CapacityReservations {
		if cr.ReservationType != reservationTypeCapacityBlock || cr.EndTime == nil {
			continue
		}
		end := cr.EndTime.Time
		if until := end.Add(-capacityBlockExpiryWindow).Sub(now); until > 0 {
			if next == 0 || until < next {
				next = until
			}
			continue
		}
		if err := r.disruptClaimsIn(ctx, cr.ID, end.Add(-capacityBlockReclaimLead), now); err != nil {
			return reconcile.Result{}, err
		}
		// Claims launched into the block just before the window (a launch
		// in flight) are caught on the next pass.
		if end.After(now) && (next == 0 || time.Minute < next) {
			next = time.Minute
		}
	}
	return reconcile.Result{RequeueAfter: next}, nil
}

func (r *CapacityBlockReconciler) disruptClaimsIn(ctx context.Context, reservationID string, drainBy, now time.Time) error {
	var claims v1.NodeClaimList
	if err := r.Client.List(ctx, &claims, client.MatchingLabels{awsv1.LabelCapacityReservationID: reservationID}); err != nil {
		return fmt.Errorf("listing the NodeClaims in capacity block %s: %w", reservationID, err)
	}
	for i := range claims.Items {
		nc := &claims.Items[i]
		outcome, err := disruption.Disrupt(ctx, r.Client, nc, disruption.CapacityBlockExpiring, drainBy, now)
		if err != nil {
			return err
		}
		if outcome == disruption.Disrupted {
			log.FromContext(ctx).Info("capacity block ending: replacing its node", "nodeclaim", nc.Name,
				"capacityReservation", reservationID, "drainBy", drainBy.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// SetupWithManager registers the reconciler on EC2NodeClasses; their status
// writes (a block's end time found or changed) trigger it too.
func (r *CapacityBlockReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("capacityblock").
		For(&awsv1.EC2NodeClass{}).
		Complete(r)
}
