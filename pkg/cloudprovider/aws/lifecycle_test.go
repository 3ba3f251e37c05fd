package aws

import (
	"context"
	"slices"
	"testing"
	"time"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
)

// TestDeleteThenGet: Delete terminates the instance; from then on Get and
// Delete say it is not found, and List no longer shows it.
func TestDeleteThenGet(t *testing.T) {
	e := newEnv(t)
	e.sim.SetShutdownDelay(time.Hour) // keep it shutting-down: gone for nodewright all the same
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProvider(t, nc)
	ctx := context.Background()
	claim, err := p.Create(ctx, newClaim(nc.Name, req(v1.LabelInstanceTypeStable, "m5.xlarge")))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p.Get(ctx, claim.Status.ProviderID); err != nil || got.Name != claim.Name {
		t.Fatalf("Get before Delete = %v, %v; want the claim", got, err)
	}
	if err := p.Delete(ctx, claim); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if inst := simInstance(t, e.sim, claim.Status.ProviderID); inst.State != "shutting-down" {
		t.Errorf("instance is %s after Delete, want shutting-down", inst.State)
	}
	if _, err := p.Get(ctx, claim.Status.ProviderID); !cloudprovider.IsNotFound(err) {
		t.Errorf("Get after Delete: want NotFound, got %v", err)
	}
	if err := p.Delete(ctx, claim); !cloudprovider.IsNotFound(err) {
		t.Errorf("Delete again: want NotFound, got %v", err)
	}
	if listed, err := p.List(ctx); err != nil || len(listed) != 0 {
		t.Errorf("List after Delete = %v, %v; want nothing", listed, err)
	}

	gone := claim.DeepCopy()
	gone.Status.ProviderID = "aws:///ap-northeast-2a/i-0123456789abcdef0"
	if err := p.Delete(ctx, gone); !cloudprovider.IsNotFound(err) {
		t.Errorf("Delete of an unknown instance: want NotFound, got %v", err)
	}
	if _, err := p.Get(ctx, gone.Status.ProviderID); !cloudprovider.IsNotFound(err) {
		t.Errorf("Get of an unknown instance: want NotFound, got %v", err)
	}
	if _, err := p.Get(ctx, "kwok://node-1"); err == nil || cloudprovider.IsNotFound(err) {
		t.Errorf("Get of a malformed providerID: want a parse error, got %v", err)
	}
}

// TestListFindsLaunchedInstances: List returns a claim per live instance
// nodewright launched for this cluster, named by its tag and described as
// Create described it.
func TestListFindsLaunchedInstances(t *testing.T) {
	e := newEnv(t)
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProvider(t, nc)
	ctx := context.Background()
	created := map[string]*v1.NodeClaim{}
	for _, types := range [][]string{{"m5.xlarge"}, {"c6g.large"}, {"c5.2xlarge"}} {
		c, err := p.Create(ctx, newClaim(nc.Name, req(v1.LabelInstanceTypeStable, types...)))
		if err != nil {
			t.Fatal(err)
		}
		created[c.Name] = c
	}
	listed, err := p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != len(created) {
		t.Fatalf("List found %d claims, want %d", len(listed), len(created))
	}
	for _, got := range listed {
		want, ok := created[got.Name]
		if !ok {
			t.Errorf("List returned %q, not a claim that was created", got.Name)
			continue
		}
		if got.Status.ProviderID != want.Status.ProviderID || got.Status.ImageID != want.Status.ImageID {
			t.Errorf("%s: providerID %s image %s, want %s %s", got.Name, got.Status.ProviderID, got.Status.ImageID, want.Status.ProviderID, want.Status.ImageID)
		}
		for k, v := range got.Labels {
			if want.Labels[k] != v {
				t.Errorf("%s: label %s = %q, Create said %q", got.Name, k, v, want.Labels[k])
			}
		}
		if !equalLists(got.Status.Allocatable, want.Status.Allocatable) {
			t.Errorf("%s: allocatable %v, Create said %v", got.Name, got.Status.Allocatable, want.Status.Allocatable)
		}
		if got.Spec.NodeClassRef == nil || got.Spec.NodeClassRef.Name != nc.Name || got.CreationTimestamp.IsZero() {
			t.Errorf("%s: nodeClassRef %v, created %v", got.Name, got.Spec.NodeClassRef, got.CreationTimestamp)
		}
	}
	arm := slices.IndexFunc(listed, func(c *v1.NodeClaim) bool { return c.Labels[v1.LabelInstanceTypeStable] == "c6g.large" })
	if arm < 0 || listed[arm].Status.ImageID != "ami-0a2023000000000b1" || listed[arm].Labels[v1.LabelArchStable] != "arm64" {
		t.Errorf("the arm64 instance did not launch with the arm64 image: %+v", listed)
	}

	other := e.cloudProvider(t, nc)
	other.opts.ClusterName = "other-cluster"
	if theirs, err := other.List(ctx); err != nil || len(theirs) != 0 {
		t.Errorf("another cluster's List = %d claims, %v; want none", len(theirs), err)
	}
}
