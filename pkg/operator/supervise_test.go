package operator

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// A runnable that panics is restarted (the process and the other
// controllers live on), one that returns is not, and the wrapper keeps the
// runnable's leader-election answer. Fails when Start lets the panic through
// (tried: once without its recover: the test binary dies) or does not
// restart (tried: returning the panic's error).
func TestSupervisedRestartsAPanickedRunnable(t *testing.T) {
	var runs atomic.Int32
	ran := make(chan struct{})
	s := &supervised{name: "flaky", backoff: time.Millisecond, runnable: manager.RunnableFunc(func(ctx context.Context) error {
		if runs.Add(1) < 3 {
			var m map[string]int
			m["boom"]++ // a nil map write: what a missed nil check does
		}
		close(ran)
		<-ctx.Done()
		return nil
	})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	select {
	case <-ran:
	case <-time.After(30 * time.Second):
		t.Fatalf("the runnable did not run again after panicking (%d runs)", runs.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Start after a clean stop: %v", err)
	}
	if runs.Load() != 3 {
		t.Errorf("%d runs, want 3 (two panics, one clean)", runs.Load())
	}
	if !s.NeedLeaderElection() {
		t.Error("a runnable that does not say must need leader election")
	}
}
