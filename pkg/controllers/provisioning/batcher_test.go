package provisioning

import (
	"context"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	v1 "github.com/nodewright/nodewright/apis/v1"
)

// A steady trickle of triggers keeps a round open until the max window; a
// pause as long as the idle window ends it. Durations are measured, not
// asserted against the wall clock beyond what the windows guarantee.
func TestBatcherWindows(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	b := NewBatcher(50*time.Millisecond, 300*time.Millisecond)
	b.Trigger()
	start := time.Now()
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				b.Trigger()
			}
		}
	}()
	if !b.Wait(ctx) {
		t.Fatal("Wait returned false before the context ended")
	}
	close(stop)
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("a round with triggers every 10ms ended after %v, before the 300ms max window", took)
	}

	b = NewBatcher(50*time.Millisecond, time.Hour)
	b.Trigger()
	if !b.Wait(ctx) {
		t.Fatal("Wait returned false before the context ended")
	}

	cancelled, c := context.WithCancel(ctx)
	c()
	if NewBatcher(time.Millisecond, time.Millisecond).Wait(cancelled) {
		t.Error("Wait on an ended context returned true")
	}
}

// A NodePool or node class created or changed (a class that becomes Ready
// after a round skipped its pool) starts a round at once instead of at the
// pending pods' next recheck a minute later. Fails without the trigger
// (tried: poolChanged's UpdateFunc doing nothing: Wait ran to its deadline).
func TestPoolChangeTriggersARound(t *testing.T) {
	b := NewBatcher(10*time.Millisecond, 100*time.Millisecond)
	r := &PodTrigger{Batcher: b}
	r.poolChanged().Update(context.Background(), event.TypedUpdateEvent[client.Object]{ObjectOld: &v1.NodePool{}, ObjectNew: &v1.NodePool{}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !b.Wait(ctx) || ctx.Err() != nil {
		t.Error("a node class or pool update did not start a round")
	}
}
