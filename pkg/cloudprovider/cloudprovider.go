// Package cloudprovider is the contract between the controllers and the cloud
// that runs the machines behind NodeClaims. The controllers never see an SDK;
// pkg/cloudprovider/aws implements it for EC2.
package cloudprovider

import (
	"context"
	"errors"
	"fmt"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

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
	// IsDrifted says why the claim's instance no longer matches its node
	// class (its hash changed, its image is no longer selected, ...), or ""
	// when it does or cannot be judged now.
	IsDrifted(ctx context.Context, claim *v1.NodeClaim) (string, error)
	// RestampNodeClassHash returns the node class annotations a claim
	// stamped under another hash version should carry now (nil when it is
	// current): such a claim is re-stamped instead of drifted, so upgrading
	// nodewright replaces no node.
	RestampNodeClassHash(ctx context.Context, claim *v1.NodeClaim) (map[string]string, error)
	// ImpairedInstances returns the running instances failing the cloud's
	// status checks, by provider ID, with which check fails (for repair).
	ImpairedInstances(ctx context.Context) (map[string]string, error)
	// NodeClass is an empty object of the provider's node class kind, for
	// controllers that watch node classes (drift).
	NodeClass() client.Object
	// Name is the provider's name in logs and metrics.
	Name() string
}

// InsufficientCapacityError says no offering the claim allows had capacity.
type InsufficientCapacityError struct {
	// Code is the cloud's error code of the last refusal (EC2's
	// InsufficientInstanceCapacity, say), or NoOfferingAvailable when every
	// allowed offering was already known to be out.
	Code string
	Err  error
}

func (e *InsufficientCapacityError) Error() string {
	return fmt.Sprintf("insufficient capacity: %v", e.Err)
}
func (e *InsufficientCapacityError) Unwrap() error     { return e.Err }
func (e *InsufficientCapacityError) ErrorCode() string { return e.Code }

// NoOfferingAvailable is the code of an InsufficientCapacityError raised
// before asking the cloud: every offering the claim allows is out.
const NoOfferingAvailable = "NoOfferingAvailable"

// LaunchError is a launch the cloud refused for a reason other than
// capacity, with the cloud's error code (EC2's InvalidParameterValue,
// UnauthorizedOperation, ...).
type LaunchError struct {
	Code string
	Err  error
}

func (e *LaunchError) Error() string     { return e.Err.Error() }
func (e *LaunchError) Unwrap() error     { return e.Err }
func (e *LaunchError) ErrorCode() string { return e.Code }

// ErrorCode is the cloud error code err carries: from the errors above, or
// from any error in its chain with an ErrorCode method (the AWS SDK's API
// errors have one). "" when there is none.
func ErrorCode(err error) string {
	var coded interface{ ErrorCode() string }
	if errors.As(err, &coded) {
		return coded.ErrorCode()
	}
	return ""
}

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

// InterruptionKind says what a cloud's notice about an instance announces.
type InterruptionKind string

// The notices an interruption queue carries.
const (
	// SpotInterruption: the cloud reclaims the spot instance at TerminatesAt
	// (two minutes after the notice on EC2).
	SpotInterruption InterruptionKind = "spot_interruption"
	// CapacityReservationInterruption: the owner of the interruptible
	// capacity reservation the instance runs in reclaims it; the instance is
	// terminated at TerminatesAt (two minutes after the notice on EC2).
	CapacityReservationInterruption InterruptionKind = "capacity_reservation_interruption"
	// RebalanceRecommendation: the spot instance's capacity pool is at
	// elevated risk of interruption; no deadline is given.
	RebalanceRecommendation InterruptionKind = "rebalance_recommendation"
	// ScheduledChange: maintenance (retirement, reboot) is scheduled to begin
	// at TerminatesAt.
	ScheduledChange InterruptionKind = "scheduled_change"
	// StateChange: the instance changed state (State says to what), e.g. it is
	// stopping or shutting down now.
	StateChange InterruptionKind = "state_change"
	// UnknownInterruption: a message that names no kind nodewright acts on, or
	// that could not be read at all.
	UnknownInterruption InterruptionKind = "unknown"
	// ForeignInterruption: a notice from another account or region than the
	// one nodewright runs in. It names no instance and is never acted on: an
	// event bus forwarding other accounts' events to the queue, or anyone
	// else able to send to it, must not drain this cluster's nodes.
	ForeignInterruption InterruptionKind = "foreign"
)

// Interruption is one notice from the cloud's interruption queue.
type Interruption struct {
	// ID is the message's id in the queue, for logs.
	ID   string
	Kind InterruptionKind
	// InstanceIDs are the instances concerned: the last path element of their
	// nodes' provider IDs.
	InstanceIDs []string
	// State is the new instance state of a StateChange (e.g. "stopping").
	State string
	// SentAt is when the cloud emitted the notice.
	SentAt time.Time
	// TerminatesAt is when the instance goes away or maintenance begins;
	// zero when the notice gives no time.
	TerminatesAt time.Time
	// Detail describes the notice for events and logs (the health event code,
	// the raw message when it could not be read).
	Detail string
	// Handle identifies the message to delete once handled.
	Handle string
}

// ErrorCode is NodeClassNotReady: nodewright did not ask the cloud.
func (e *NodeClassNotReadyError) ErrorCode() string { return "NodeClassNotReady" }
