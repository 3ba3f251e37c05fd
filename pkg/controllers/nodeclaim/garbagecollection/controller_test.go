package garbagecollection

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
	"github.com/nodewright/nodewright/test/harness"
)

var cp *harness.ControlPlane

func TestMain(m *testing.M) { harness.Main(m, harness.Options{}, &cp) }

// instances is the cloud as this controller sees it: each instance by
// provider ID, named by its nodeclaim tag and born at its launch time.
type instances struct {
	mu         sync.Mutex
	live       map[string]*v1.NodeClaim
	terminated []string
}

func (c *instances) add(providerID, tag string, launched time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live == nil {
		c.live = map[string]*v1.NodeClaim{}
	}
	inst := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: tag, CreationTimestamp: metav1.NewTime(launched)}}
	inst.Status.ProviderID = providerID
	c.live[providerID] = inst
}

func (c *instances) List(context.Context) ([]*v1.NodeClaim, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*v1.NodeClaim
	for _, inst := range c.live {
		out = append(out, inst.DeepCopy())
	}
	return out, nil
}

func (c *instances) Get(_ context.Context, providerID string) (*v1.NodeClaim, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if inst, ok := c.live[providerID]; ok {
		return inst.DeepCopy(), nil
	}
	return nil, &cloudprovider.NotFoundError{ProviderID: providerID}
}

func (c *instances) Delete(_ context.Context, claim *v1.NodeClaim) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.live[claim.Status.ProviderID]; !ok {
		return &cloudprovider.NotFoundError{ProviderID: claim.Status.ProviderID}
	}
	delete(c.live, claim.Status.ProviderID)
	c.terminated = append(c.terminated, claim.Status.ProviderID)
	return nil
}

// claim creates a NodeClaim, with providerID recorded when it is not "".
func claim(t *testing.T, providerID string) *v1.NodeClaim {
	t.Helper()
	ctx := context.Background()
	nc := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: harness.Name("claim")},
		Spec: v1.NodeClaimSpec{NodeClassRef: &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"},
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: v1.NodePoolLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{"pool"}}}}}
	if err := cp.Client.Create(ctx, nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(ctx, nc) })
	if providerID != "" {
		nc.Status.ProviderID = providerID
		if err := cp.Client.Status().Update(ctx, nc); err != nil {
			t.Fatal(err)
		}
	}
	return nc
}

// TestDuplicateInstanceIsCollected: once a claim records its instance, a
// second instance tagged with its name (a retried Create that launched
// twice) is terminated after the grace period, and the recorded one is
// kept; a claim still launching (no provider ID) keeps the instance its tag
// names, and a duplicate younger than the grace is left for now.
// Mutation tried: matching by the nodeclaim tag for every claim again
// (`owned[id] || known[inst.Name]` with every claim's name in known): the
// old duplicate was kept alive as long as its claim.
func TestDuplicateInstanceIsCollected(t *testing.T) {
	now := time.Now()
	old := now.Add(-time.Minute)
	recorded := claim(t, "aws:///ap-northeast-2a/i-0000000000000000a")
	launching := claim(t, "")
	cloud := &instances{}
	cloud.add("aws:///ap-northeast-2a/i-0000000000000000a", recorded.Name, old)
	cloud.add("aws:///ap-northeast-2a/i-0000000000000000b", recorded.Name, old)        // the duplicate
	cloud.add("aws:///ap-northeast-2c/i-0000000000000000c", recorded.Name, now)        // a duplicate within the grace
	cloud.add("aws:///ap-northeast-2a/i-0000000000000000d", launching.Name, old)       // launching's instance
	cloud.add("aws:///ap-northeast-2a/i-0000000000000000e", harness.Name("gone"), old) // a claim force-deleted
	c := &Controller{Kube: cp.Client, Cloud: cloud, Grace: 30 * time.Second, Now: func() time.Time { return now }}
	if err := c.Collect(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"aws:///ap-northeast-2a/i-0000000000000000b", "aws:///ap-northeast-2a/i-0000000000000000e"}
	slices.Sort(cloud.terminated)
	if !slices.Equal(cloud.terminated, want) {
		t.Errorf("terminated %v, want the old duplicate and the orphan %v", cloud.terminated, want)
	}
}
