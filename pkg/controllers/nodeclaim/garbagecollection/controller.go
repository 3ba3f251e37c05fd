// Package garbagecollection reconciles the cloud with the cluster: an
// instance tagged as this cluster's that no NodeClaim owns (a crash between
// launch and recording it, a claim force-deleted, a duplicate launch for a
// claim that recorded another instance) is terminated once it is
// older than a grace period, and a launched NodeClaim whose instance is gone
// (terminated outside nodewright, reclaimed spot) is deleted so its pods get
// new room.
package garbagecollection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
)

// Cloud is the part of the cloud provider this controller uses.
type Cloud interface {
	List(ctx context.Context) ([]*v1.NodeClaim, error)
	Get(ctx context.Context, providerID string) (*v1.NodeClaim, error)
	Delete(ctx context.Context, claim *v1.NodeClaim) error
}

// Controller runs a collection pass every Interval while leader.
type Controller struct {
	Kube  client.Client
	Cloud Cloud
	// Interval between passes; default 10s.
	Interval time.Duration
	// Grace is how old an instance without a claim must be before it is
	// terminated (its claim may still be on its way into the cache);
	// default 30s.
	Grace time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time

	// seen records when an orphan was first noticed, for instances whose
	// launch time the provider does not report.
	seen map[string]time.Time
}

// NeedLeaderElection keeps collection on the leader.
func (c *Controller) NeedLeaderElection() bool { return true }

// Start runs passes until ctx ends.
func (c *Controller) Start(ctx context.Context) error {
	interval := c.Interval
	if interval == 0 {
		interval = 10 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := c.Collect(ctx); err != nil {
			log.FromContext(ctx).Error(err, "garbage collection pass failed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Collect runs one pass.
func (c *Controller) Collect(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("garbagecollection")
	if c.seen == nil {
		c.seen = map[string]time.Time{}
	}
	instances, err := c.Cloud.List(ctx)
	if err != nil {
		return fmt.Errorf("listing instances: %w", err)
	}
	var claims v1.NodeClaimList
	if err := c.Kube.List(ctx, &claims); err != nil {
		return fmt.Errorf("listing nodeclaims: %w", err)
	}
	// An instance belongs to a claim by provider ID once the claim has one:
	// a second instance tagged with its name (a retried Create that
	// launched twice) is not its instance and is collected. A claim still
	// launching has no provider ID yet and claims its instance by the tag.
	launching, owned := map[string]bool{}, map[string]bool{}
	for _, nc := range claims.Items {
		if nc.Status.ProviderID == "" {
			launching[nc.Name] = true
		} else {
			owned[nc.Status.ProviderID] = true
		}
	}
	var errs []error
	live := map[string]bool{}
	for _, inst := range instances {
		id := inst.Status.ProviderID
		live[id] = true
		if owned[id] || launching[inst.Name] {
			delete(c.seen, id)
			continue
		}
		born := inst.CreationTimestamp.Time
		if born.IsZero() {
			if _, ok := c.seen[id]; !ok {
				c.seen[id] = c.now()
			}
			born = c.seen[id]
		}
		if c.now().Sub(born) < c.grace() {
			continue
		}
		logger.Info("terminating instance no nodeclaim owns", "providerID", id, "nodeclaimTag", inst.Name)
		if err := c.Cloud.Delete(ctx, inst); err != nil && !cloudprovider.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("terminating orphan %s: %w", id, err))
		}
		delete(c.seen, id)
	}
	for i := range claims.Items {
		nc := &claims.Items[i]
		if nc.Status.ProviderID == "" || live[nc.Status.ProviderID] || !nc.DeletionTimestamp.IsZero() ||
			!meta.IsStatusConditionTrue(nc.Status.Conditions, v1.ConditionTypeLaunched) {
			continue
		}
		// List is eventually consistent; ask for the one instance before
		// deleting its claim.
		if _, err := c.Cloud.Get(ctx, nc.Status.ProviderID); !cloudprovider.IsNotFound(err) {
			if err != nil {
				errs = append(errs, fmt.Errorf("checking instance of nodeclaim %s: %w", nc.Name, err))
			}
			continue
		}
		logger.Info("instance gone, deleting nodeclaim", "nodeclaim", nc.Name, "providerID", nc.Status.ProviderID)
		if err := c.Kube.Delete(ctx, nc); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting nodeclaim %s: %w", nc.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Controller) grace() time.Duration {
	if c.Grace > 0 {
		return c.Grace
	}
	return 30 * time.Second
}
