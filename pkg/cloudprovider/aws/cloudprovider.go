package aws

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
)

// NodeClassReader reads EC2NodeClasses. The manager's cached client (any
// controller-runtime client.Reader) satisfies it.
type NodeClassReader interface {
	Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error
}

// catalogSource is the region's live catalog (the InstanceTypeProvider).
type catalogSource interface {
	Catalog() *catalog.Catalog
}

// CloudProvider is the EC2 implementation of cloudprovider.CloudProvider. It
// launches through EC2 Fleet (type instant) from launch templates it manages,
// reads the node class's resolved status (see NodeClassReconciler) instead of
// querying selectors, and finds its instances by the tags it puts on them.
type CloudProvider struct {
	opts            Options
	ec2             instanceEC2API
	launchTemplates *launchTemplates
	instanceTypes   catalogSource
	nodeClasses     NodeClassReader
	catalogs        *nodeClassCatalogs
	health          healthCache
	instances       *instanceBatcher
	fleetAttempts   *fleetAttempts
	subnets         *subnetAddresses
}

var _ cloudprovider.CloudProvider = (*CloudProvider)(nil)

// NewCloudProvider builds the provider. instanceTypes supplies the region's
// catalog and the unavailable-offerings cache launches mark; nodeClasses
// reads EC2NodeClasses (whose status a NodeClassReconciler keeps). It makes
// no AWS call.
func NewCloudProvider(opts Options, clients *Clients, instanceTypes *InstanceTypeProvider, nodeClasses NodeClassReader) (*CloudProvider, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if clients == nil || instanceTypes == nil || nodeClasses == nil {
		return nil, fmt.Errorf("aws provider: clients, an instance type provider and a node class reader are required")
	}
	p := &CloudProvider{
		opts:            opts,
		ec2:             clients.EC2,
		launchTemplates: newLaunchTemplates(clients.EC2, opts),
		instanceTypes:   instanceTypes,
		nodeClasses:     nodeClasses,
		catalogs:        newNodeClassCatalogs(),
		fleetAttempts:   newFleetAttempts(opts.Clock),
		subnets:         newSubnetAddresses(clients.EC2, opts.Clock),
	}
	p.instances = &instanceBatcher{describe: p.describeInstances, window: instanceBatchWindow}
	return p, nil
}

// Name is "aws".
func (p *CloudProvider) Name() string { return "aws" }

// Catalog returns what pool can launch: the region's catalog narrowed to the
// zones of its node class's subnets and the types its AMIs run on, and the
// node class's node settings.
func (p *CloudProvider) Catalog(ctx context.Context, pool *v1.NodePool) (*catalog.Catalog, *catalog.NodeSettings, error) {
	nc, err := p.readyNodeClass(ctx, pool.Spec.Template.Spec.NodeClassRef)
	if err != nil {
		return nil, nil, fmt.Errorf("NodePool %s: %w", pool.Name, err)
	}
	settings, err := NodeSettings(nc, p.opts.VMMemoryOverheadPercent)
	if err != nil {
		return nil, nil, &cloudprovider.NodeClassNotReadyError{Name: nc.Name, Reason: err.Error()}
	}
	c, err := p.catalogs.get(p.instanceTypes.Catalog(), nc)
	if err != nil {
		return nil, nil, &cloudprovider.NodeClassNotReadyError{Name: nc.Name, Reason: err.Error()}
	}
	return c, &settings, nil
}

// readyNodeClass reads the EC2NodeClass ref names and checks its status is
// Ready for its current spec.
func (p *CloudProvider) readyNodeClass(ctx context.Context, ref *v1.NodeClassReference) (*awsv1.EC2NodeClass, error) {
	if ref == nil {
		return nil, &cloudprovider.NodeClassNotReadyError{Reason: "no nodeClassRef"}
	}
	if ref.Group != awsv1.Group || ref.Kind != "EC2NodeClass" {
		return nil, &cloudprovider.NodeClassNotReadyError{Name: ref.Name, Reason: fmt.Sprintf("nodeClassRef names a %s %s, not a %s EC2NodeClass", ref.Group, ref.Kind, awsv1.Group)}
	}
	nc := &awsv1.EC2NodeClass{}
	if err := p.nodeClasses.Get(ctx, client.ObjectKey{Name: ref.Name}, nc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &cloudprovider.NodeClassNotReadyError{Name: ref.Name, Reason: "EC2NodeClass not found"}
		}
		return nil, fmt.Errorf("getting EC2NodeClass %s: %w", ref.Name, err)
	}
	ready := meta.FindStatusCondition(nc.Status.Conditions, ConditionTypeReady)
	switch {
	case !nc.DeletionTimestamp.IsZero():
		// Its launch templates are about to be deleted (NodeClassReconciler).
		return nil, &cloudprovider.NodeClassNotReadyError{Name: nc.Name, Reason: "EC2NodeClass is being deleted"}
	case ready == nil:
		return nil, &cloudprovider.NodeClassNotReadyError{Name: nc.Name, Reason: "its status has not been resolved yet"}
	case ready.Status != metav1.ConditionTrue:
		return nil, &cloudprovider.NodeClassNotReadyError{Name: nc.Name, Reason: ready.Message}
	case ready.ObservedGeneration != nc.Generation:
		return nil, &cloudprovider.NodeClassNotReadyError{Name: nc.Name, Reason: fmt.Sprintf("its status was resolved for generation %d, the spec is at %d", ready.ObservedGeneration, nc.Generation)}
	}
	return nc, nil
}
