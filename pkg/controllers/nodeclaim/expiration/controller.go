// Package expiration disrupts NodeClaims older than their expireAfter, so
// nodes pick up new images and patches and none lives forever. As in
// Karpenter v1 it does not wait for disruption budgets: the expiry is the
// cluster operator's promise. Unlike Karpenter it launches the replacement
// first: the node is cordoned at once and its pods evicted once they have
// room elsewhere, or after MaxReplaceWait at the latest.
package expiration

import (
	"context"
	"hash/fnv"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/nodewright/nodewright/pkg/controllers/disruption"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/nodewright/nodewright/apis/v1"
)

// Recorder emits Kubernetes events.
type Recorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// MaxReplaceWait bounds how long an expired node's drain waits for its
// pods to have room elsewhere.
const MaxReplaceWait = 5 * time.Minute

// maxExpiryJitter caps the window expiries are spread over.
const maxExpiryJitter = 10 * time.Minute

// expiryJitter spreads the expiry of claims launched together (a burst of
// batch nodes, a pool rolled at once) over a window after their
// expireAfter, so they are not all replaced in the same minute: up to 5 % of
// expireAfter, at most maxExpiryJitter, placed by the claim's UID (the same
// on every pass and on every replica).
func expiryJitter(uid types.UID, expireAfter time.Duration) time.Duration {
	window := min(expireAfter/20, maxExpiryJitter)
	if window <= 0 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(uid))
	return time.Duration(h.Sum64() % uint64(window))
}

// Controller expires NodeClaims.
type Controller struct {
	Kube     client.Client
	Recorder Recorder
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Reconcile disrupts the claim once expired, or comes back when it will be.
func (c *Controller) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	nc := &v1.NodeClaim{}
	if err := c.Kube.Get(ctx, req.NamespacedName, nc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !nc.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	if err := nc.Spec.ExpireAfter.Err(); err != nil {
		// Stored before the CRD refused it; expiring at an arbitrary time
		// would be worse than not at all.
		c.Recorder.Eventf(nc, nil, corev1.EventTypeWarning, "InvalidExpireAfter", "Disrupt", "Not expiring this NodeClaim: spec.expireAfter: %v", err)
		log.FromContext(ctx).Info("not expiring nodeclaim with an invalid expireAfter", "nodeclaim", nc.Name, "error", err.Error())
		return ctrl.Result{}, nil
	}
	d := nc.Spec.ExpireAfter.Duration
	if d == nil {
		return ctrl.Result{}, nil
	}
	expiry := nc.CreationTimestamp.Add(*d + expiryJitter(nc.UID, *d))
	now := c.now()
	if now.Before(expiry) {
		return ctrl.Result{RequeueAfter: expiry.Sub(now)}, nil
	}
	outcome, err := disruption.Disrupt(ctx, c.Kube, nc, "expired", now.Add(MaxReplaceWait), now)
	if err != nil || outcome != disruption.Disrupted {
		return ctrl.Result{}, err
	}
	c.Recorder.Eventf(nc, nil, corev1.EventTypeNormal, "Expired", "Disrupt",
		"Expired after %s (expireAfter); replacing it, draining within %s", d.String(), MaxReplaceWait)
	log.FromContext(ctx).Info("disrupting nodeclaim", "nodeclaim", nc.Name, "nodepool", nc.Labels[v1.NodePoolLabelKey],
		"reason", "expired", "expireAfter", d.String(), "node", nc.Status.NodeName)
	return ctrl.Result{}, nil
}

// SetupWithManager watches NodeClaims.
func (c *Controller) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("nodeclaim.expiration").For(&v1.NodeClaim{}).Complete(c)
}
