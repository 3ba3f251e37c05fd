package provisioning

import (
	"context"
	"testing"
	"time"
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
