// Package simcloud starts nodewright's AWS provider against a fresh EC2
// simulator of the seed region (ap-northeast-2, cluster my-cluster), for the
// tests that launch through the real provider (controllers, the Karpenter
// docs examples) without each repeating its wiring.
package simcloud

import (
	"context"
	"testing"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/cloudprovider/aws"
	"github.com/nodewright/nodewright/test/ec2sim"
	"github.com/nodewright/nodewright/test/fixtures"
	"github.com/nodewright/nodewright/test/harness"
)

// Env is one simulated region and the provider over it.
type Env struct {
	Sim      *ec2sim.Server
	Clients  *aws.Clients
	Options  aws.Options
	Types    *aws.InstanceTypeProvider
	Resolver *aws.NodeClassResolver
	Cloud    *aws.CloudProvider
}

// Start starts a simulator (closed when tb ends) and builds the provider
// over it, reading EC2NodeClasses through cp's client with cp's apiserver as
// the cluster endpoint. It makes no EC2 call: a test that needs the catalog
// filled calls Types.Refresh.
func Start(tb testing.TB, cp *harness.ControlPlane) *Env {
	tb.Helper()
	ctx := context.Background()
	if err := ec2sim.UseSimulatorCredentials(); err != nil {
		tb.Fatal(err)
	}
	sim, err := ec2sim.StartRegion("ap-northeast-2")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sim.Close() })
	snap, err := catalog.EmbeddedSnapshot()
	if err != nil {
		tb.Fatal(err)
	}
	e := &Env{Sim: sim, Options: aws.Options{ClusterName: "my-cluster", ClusterEndpoint: cp.Config.Host, ClusterCABundle: "Cg==",
		ClusterCIDR: "10.100.0.0/16", KubernetesVersion: "1.37", Region: "ap-northeast-2"}}
	if e.Clients, err = aws.NewClients(ctx, aws.ClientOptions{Region: "ap-northeast-2", Endpoint: sim.URL}); err != nil {
		tb.Fatal(err)
	}
	if e.Types, err = aws.NewInstanceTypeProvider(e.Clients.EC2, e.Clients.Pricing, aws.InstanceTypeOptions{
		Region: "ap-northeast-2", Snapshot: snap, Unavailable: catalog.NewUnavailableOfferings(catalog.UnavailableOptions{})}); err != nil {
		tb.Fatal(err)
	}
	if e.Resolver, err = aws.NewNodeClassResolver(e.Clients, e.Options); err != nil {
		tb.Fatal(err)
	}
	if e.Cloud, err = aws.NewCloudProvider(e.Options, e.Clients, e.Types, cp.Client); err != nil {
		tb.Fatal(err)
	}
	return e
}

// SeedNodeClass creates the seed EC2NodeClass ("default") in cp with the
// status the resolver gives it, as the NodeClassReconciler would write it.
// Once per control plane: a package calls it under a sync.Once.
func (e *Env) SeedNodeClass(tb testing.TB, cp *harness.ControlPlane) *awsv1.EC2NodeClass {
	tb.Helper()
	ctx := context.Background()
	nc := &awsv1.EC2NodeClass{}
	if err := fixtures.SeedInto(fixtures.EC2NodeClassDefault, nc); err != nil {
		tb.Fatal(err)
	}
	if err := cp.Client.Create(ctx, nc); err != nil {
		tb.Fatal(err)
	}
	status, err := e.Resolver.Resolve(ctx, nc)
	if err != nil {
		tb.Fatal(err)
	}
	nc.Status = status
	if err := cp.Client.Status().Update(ctx, nc); err != nil {
		tb.Fatal(err)
	}
	return nc
}
