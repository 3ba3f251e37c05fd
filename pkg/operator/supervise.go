package operator

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// supervised restarts a runnable whose Start panicked, after a back-off,
// instead of letting the panic end the process. controller-runtime recovers
// the panics of reconcilers (RecoverPanic), not those of a
// manager.Runnable: one object that trips the provisioner would otherwise
// take every controller down with it, and again after each restart. The
// runnable keeps its state across restarts (it is the same value).
type supervised struct {
	name     string
	runnable manager.Runnable
	// backoff is the first wait after a panic, doubling to a minute.
	backoff time.Duration
}

func supervise(name string, r manager.Runnable) *supervised {
	return &supervised{name: name, runnable: r, backoff: time.Second}
}

// Start runs the runnable until it returns without panicking or ctx ends.
func (s *supervised) Start(ctx context.Context) error {
	wait := s.backoff
	for {
		err, stack := s.once(ctx)
		if stack == nil || ctx.Err() != nil {
			return err
		}
		log.FromContext(ctx).Error(err, "runnable panicked; restarting it", "runnable", s.name, "retryIn", wait.String(), "stack", string(stack))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

// once runs Start, turning a panic into an error and its stack.
func (s *supervised) once(ctx context.Context) (err error, stack []byte) {
	defer func() {
		if r := recover(); r != nil {
			err, stack = fmt.Errorf("%s panicked: %v", s.name, r), debug.Stack()
		}
	}()
	return s.runnable.Start(ctx), nil
}

// NeedLeaderElection is the wrapped runnable's answer (true by default, as
// the manager assumes for a runnable that does not say).
func (s *supervised) NeedLeaderElection() bool {
	if le, ok := s.runnable.(manager.LeaderElectionRunnable); ok {
		return le.NeedLeaderElection()
	}
	return true
}
