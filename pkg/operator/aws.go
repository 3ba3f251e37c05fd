package operator

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/cloudprovider/aws"
	"github.com/nodewright/nodewright/pkg/controllers/interruption"
)

// AWS builds the EC2 cloud provider and adds what it runs to the manager:
// the catalog refresher, the EC2NodeClass reconciler and the sweeper of
// unused launch templates. The cluster's CA
// and Kubernetes version, which nodes need to join, come from the API
// server nodewright itself talks to.
func (o *Operator) AWS(ctx context.Context) (*aws.CloudProvider, error) {
	cfg := o.GetConfig()
	clients, err := aws.NewClients(ctx, aws.ClientOptions{Region: o.Options.Region, Endpoint: o.Options.AWSEndpoint})
	if err != nil {
		return nil, err
	}
	snap, err := catalog.EmbeddedSnapshot()
	if err != nil {
		return nil, err
	}
	unavailable := catalog.NewUnavailableOfferings(catalog.UnavailableOptions{})
	types, err := aws.NewInstanceTypeProvider(clients.EC2, clients.Pricing, aws.InstanceTypeOptions{
		Region: o.Options.Region, Snapshot: snap, Unavailable: unavailable,
		Log: o.GetLogger().WithName("instancetypes"),
	})
	if err != nil {
		return nil, fmt.Errorf("building the instance type provider: %w", err)
	}
	if err := o.Add(supervise("catalog refresher", manager.RunnableFunc(func(ctx context.Context) error {
		types.Run(ctx)
		return nil
	}))); err != nil {
		return nil, fmt.Errorf("adding the catalog refresher: %w", err)
	}
	ca := cfg.CAData
	if len(ca) == 0 && cfg.CAFile != "" {
		if ca, err = os.ReadFile(cfg.CAFile); err != nil {
			return nil, fmt.Errorf("reading the cluster CA: %w", err)
		}
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building a discovery client: %w", err)
	}
	versions := &serverVersion{read: dc.ServerVersion, ttl: versionTTL, now: time.Now}
	version, err := versions.first(ctx, startupBackoff)
	if err != nil {
		return nil, fmt.Errorf("reading the Kubernetes version: %w", err)
	}
	opts := aws.Options{
		ClusterName: o.Options.ClusterName, ClusterEndpoint: o.Options.ClusterEndpoint,
		ClusterCABundle: base64.StdEncoding.EncodeToString(ca), ClusterCIDR: o.Options.ClusterCIDR,
		KubernetesVersion: version, Version: versions, Region: o.Options.Region,
		VMMemoryOverheadPercent: o.Options.VMMemoryOverheadPercent,
	}
	resolver, err := aws.NewNodeClassResolver(clients, opts)
	if err != nil {
		return nil, err
	}
	cloud, err := aws.NewCloudProvider(opts, clients, types, o.GetClient())
	if err != nil {
		return nil, err
	}
	if err := (&aws.NodeClassReconciler{Client: o.GetClient(), Resolver: resolver, LaunchTemplates: cloud}).SetupWithManager(o.Manager); err != nil {
		return nil, fmt.Errorf("setting up the EC2NodeClass controller: %w", err)
	}
	if err := o.Add(supervise("launch template sweeper", &aws.LaunchTemplateSweeper{Provider: cloud})); err != nil {
		return nil, fmt.Errorf("adding the launch template sweeper: %w", err)
	}
	if q := o.Options.InterruptionQueue; q != "" {
		if err := o.Add(supervise("interruption", &interruption.Controller{
			Kube: o.GetClient(), Queue: aws.NewInterruptionQueue(clients, o.Options.Region, q), Recorder: o.GetEventRecorder("nodewright"),
			Offerings: unavailable, DrainOnRebalance: o.Options.FeatureGates.DrainOnRebalance,
		})); err != nil {
			return nil, fmt.Errorf("adding the interruption controller: %w", err)
		}
	}
	return cloud, nil
}
