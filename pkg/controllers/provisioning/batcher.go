package provisioning

import (
	"context"
	"time"
)

// Batcher gathers pending pods into one provisioning round: a Job that
// creates hundreds of pods over a few seconds gets one plan for all of them,
// not a node per pod. A round starts at the first trigger and ends when no
// trigger came for the idle duration, or at the max duration regardless.
type Batcher struct {
	trigger   chan struct{}
	idle, max time.Duration
}

// NewBatcher returns a batcher with the given windows.
func NewBatcher(idle, max time.Duration) *Batcher {
	return &Batcher{trigger: make(chan struct{}, 1), idle: idle, max: max}
}

// Trigger says a pod is waiting. It never blocks.
func (b *Batcher) Trigger() {
	select {
	case b.trigger <- struct{}{}:
	default:
	}
}

// Wait blocks until a round has been gathered; false when ctx ended.
func (b *Batcher) Wait(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-b.trigger:
	}
	deadline := time.NewTimer(b.max)
	defer deadline.Stop()
	idle := time.NewTimer(b.idle)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-b.trigger:
			if !idle.Stop() {
				<-idle.C
			}
			idle.Reset(b.idle)
		case <-idle.C:
			return true
		case <-deadline.C:
			return true
		}
	}
}
