package aws

import (
	"context"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
)

// Gets that arrive together (many claims' terminations checking their
// instances) share one DescribeInstances, and an instance EC2 does not know
// is not found without failing the others'. Fails when each Get describes
// its instance alone (tried: get flushing at once, three calls), and with the
// ids passed as InstanceIds in the batch (tried: the unknown id then fails
// the whole batch).
func TestConcurrentGetsShareOneDescribe(t *testing.T) {
	e := newEnv(t)
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProvider(t, nc)
	ctx := context.Background()
	var ids []string
	for range 2 {
		claim, err := p.Create(ctx, newClaim(nc.Name, req(v1.LabelInstanceTypeStable, "m5.large")))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, claim.Status.ProviderID)
	}
	unknown := "aws:///ap-northeast-2a/i-0123456789abcdef0"
	before := describeCalls(e)
	// The window closes when all three are waiting, not after 50 ms: on a
	// loaded machine the goroutines may start further apart than that.
	p.instances.window = time.Hour
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, id := range append(ids, unknown) {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = p.Get(ctx, id) }()
	}
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		p.instances.mu.Lock()
		defer p.instances.mu.Unlock()
		return len(p.instances.waiting) == 3, nil
	}); err != nil {
		t.Fatalf("three Gets not waiting together: %v", err)
	}
	p.instances.flush()
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Errorf("running instances: %v, %v", errs[0], errs[1])
	}
	if !cloudprovider.IsNotFound(errs[2]) {
		t.Errorf("unknown instance: want NotFound, got %v", errs[2])
	}
	if n := describeCalls(e) - before; n != 1 {
		t.Errorf("3 concurrent Gets made %d DescribeInstances calls, want 1", n)
	}
}

func describeCalls(e *env) int {
	n := 0
	for _, c := range e.sim.AuditLog() {
		if c.Action == "ec2:DescribeInstances" {
			n++
		}
	}
	return n
}
