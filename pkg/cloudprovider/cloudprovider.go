// Package cloudprovider is the contract between the controllers and the cloud
// that runs the machines behind NodeClaims. The controllers never see an SDK;
// pkg/cloudprovider/aws implements it for EC2.
package cloudprovider

import (
	"context"
	"errors"
	"fmt"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
)

// CloudProvider launches, finds and removes instances.
type CloudProvider interface {
	// Create launches one instance that satisfies the claim's requirements
	// (instance types, zones, capacity types), choosing among the offerings
	// they allow the way the cloud's allocation strategy does, and returns a
	// copy of the claim with status.providerID, imageID, capacity and
	// allocatable set and metadata.labels holding the labels the instance
	// resolved (instance type, zone, zone id, capacity type, arch, os,
	// region and the type's karpenter.k8s.aws/instance-* labels). Offerings
	// that fail for capacity are marked unavailable in the catalog; when all
	// of them fail the error is an *InsufficientCapacityError. Create is
	// idempotent per claim (same name and UID: same instance).
	Create(ctx context.Context, claim *v1.NodeClaim) (*v1.NodeClaim, error)
	// Delete terminates the claim's instance (by status.providerID). It
	// returns a *NotFoundError once the instance is gone or terminated.
	Delete(ctx context.Context, claim *v1.NodeClaim) error
	// Get returns the instance behind providerID as a NodeClaim (name from
	// the instance's nodeclaim tag, status and labels as Create fills them),
	// or a *NotFoundError when it is gone or terminated.
	Get(ctx context.Context, providerID string) (*v1.NodeClaim, error)
	// List returns every live instance this cluster's autoscaler launched.
	List(ctx context.Context) ([]*v1.NodeClaim, error)
	// Catalog returns the instance types and offerings a NodePool can launch
	// (after the unavailable-offerings cache) and the node settings of its
	// node class, for the solver. A node class that is missing or not ready
	// gives a *NodeClassNotReadyError.
	Catalog(ctx context.Context, pool *v1.NodePool) (*catalog.Catalog, *catalog.NodeSettings, error)
	// Name is the provider's name in logs and metrics.
	Name() string
}

// InsufficientCapacityError says no offering the claim allows had capacity.
type InsufficientCapacityError struct{ Err error }

func (e *InsufficientCapacityError) Error() string {
	return fmt.Sprintf("insufficient capacity: %v", e.Err)
}
func (e *InsufficientCapacityError) Unwrap() error { return e.Err }

// NotFoundError says the instance does not exist (any more).
type NotFoundError struct{ ProviderID string }

func (e *NotFoundError) Error() string { return fmt.Sprintf("instance %s not found", e.ProviderID) }

// NodeClassNotReadyError says the claim's or pool's node class cannot be
// used yet: missing, or its subnets, security groups or AMIs unresolved.
type NodeClassNotReadyError struct {
	Name   string
	Reason string
}

func (e *NodeClassNotReadyError) Error() string {
	return fmt.Sprintf("node class %s is not ready: %s", e.Name, e.Reason)
}

// IsNotFound reports whether err is or wraps a *NotFoundError.
func IsNotFound(err error) bool {
	var nf *NotFoundError
	return errors.As(err, &nf)
}

// IsInsufficientCapacity reports whether err is or wraps an
// *InsufficientCapacityError.
func IsInsufficientCapacity(err error) bool {
	var ice *InsufficientCapacityError
	return errors.As(err, &ice)
}

// IsNodeClassNotReady reports whether err is or wraps a
// *NodeClassNotReadyError.
func IsNodeClassNotReady(err error) bool {
	var nr *NodeClassNotReadyError
	return errors.As(err, &nr)
}
