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
// unused launch templates. The cluster's CA and Kubernetes version, which
// nodes need to join, come from the API server nodewright itself talks to;
// the endpoint and service CIDR, when not given, from EKS (discoverCluster).
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
	given := aws.Cluster{
		Endpoint: o.Options.ClusterEndpoint, CABundle: base64.StdEncoding.EncodeToString(ca), ServiceCIDR: o.Options.ClusterCIDR,
	}
	cluster, err := discoverCluster(ctx, clients.EKS, o.Options.ClusterName, given)
	if err != nil {
		return nil, err
	}
	if cluster != given {
		o.GetLogger().Info("cluster discovered through EKS DescribeCluster", "cluster", o.Options.ClusterName,
			"endpoint", cluster.Endpoint, "serviceCIDR", cluster.ServiceCIDR)
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
		ClusterName: o.Options.ClusterName, ClusterEndpoint: cluster.Endpoint,
		ClusterCABundle: cluster.CABundle, ClusterCIDR: cluster.ServiceCIDR,
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
	if err := (&aws.CapacityBlockReconciler{Client: o.GetClient()}).SetupWithManager(o.Manager); err != nil {
		return nil, fmt.Errorf("setting up the capacity block controller: %w", err)
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

// discoverCluster fills what given lacks from EKS DescribeCluster, as
// Karpenter does, so the chart needs only the cluster's name; it asks only
// when something is missing (a cluster not on EKS gives all three).
func discoverCluster(ctx context.Context, api aws.EKSAPI, name string, given aws.Cluster) (aws.Cluster, error) {
	if given.Endpoint != "" && given.CABundle != "" && given.ServiceCIDR != "" {
		return given, nil
	}
	found, err := aws.DescribeCluster(ctx, api, name)
	if err != nil {
		return aws.Cluster{}, fmt.Errorf("discovering what --cluster-endpoint and --cluster-cidr do not give (give both, or allow eks:DescribeCluster): %w", err)
	}
	for _, f := range []struct {
		what        string
		have, found *string
	}{
		{"endpoint", &given.Endpoint, &found.Endpoint}, {"CA bundle", &given.CABundle, &found.CABundle},
		{"service CIDR", &given.ServiceCIDR, &found.ServiceCIDR},
	} {
		if *f.have != "" {
			continue
		}
		if *f.found == "" {
			return aws.Cluster{}, fmt.Errorf("EKS cluster %q has no %s", name, f.what)
		}
		*f.have = *f.found
	}
	return given, nil
}
