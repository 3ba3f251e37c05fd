package ec2sim

import (
	"context"
	"time"
)

// Simulated time runs with the wall clock, shifted by Advance, so a test can
// jump over a launch delay or the two minutes of a spot interruption without
// sleeping, and a demo still sees instances boot on their own.
type simClock struct{ offset time.Duration }

func (c simClock) now() time.Time { return time.Now().Add(c.offset).UTC() }

// Defaults of the lifecycle settings.
const (
	// DefaultTerminatedRetention is how long a terminated instance stays
	// visible to DescribeInstances. EC2 keeps them about an hour; a minute is
	// enough to exercise code that must tell "terminated" from "gone".
	DefaultTerminatedRetention = time.Minute
	// SpotInterruptionNotice is the warning EC2 gives before it reclaims a spot
	// instance.
	SpotInterruptionNotice = 2 * time.Minute
	// CapacityReservationInterruptionNotice is the warning EC2 gives before
	// it terminates an instance of a reclaimed interruptible reservation.
	CapacityReservationInterruptionNotice = 2 * time.Minute
)

// lifecycleSettings are the durations of an instance's transitions.
type lifecycleSettings struct {
	launchDelay, shutdownDelay, retention time.Duration
}

func defaultLifecycleSettings() lifecycleSettings {
	return lifecycleSettings{retention: DefaultTerminatedRetention}
}

// Now is the simulator's current time: the wall clock plus every Advance.
// Launch times and state changes are stamped with it.
func (s *Server) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clock.now()
}

// Advance moves simulated time forward by d and applies every transition that
// falls due (pending instances start running, interrupted ones shut down,
// terminated ones disappear), emitting their events before it returns, so
// tests cover delays without sleeping.
func (s *Server) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock.offset += d
	s.advanceLocked()
	// In-flight SQS messages may have become visible.
	s.wakeReceiversLocked()
}

// SetLaunchDelay sets how long new instances stay pending before they run
// (default 0: running as soon as the fleet returns). Instances already
// launched keep their delay.
func (s *Server) SetLaunchDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settings.launchDelay = max(d, 0)
}

// SetShutdownDelay sets how long a terminating instance stays shutting-down
// before it is terminated (default 0, so the next look at it finds it
// terminated).
func (s *Server) SetShutdownDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settings.shutdownDelay = max(d, 0)
}

// SetTerminatedRetention sets how long terminated instances stay visible
// before DescribeInstances stops returning them (default
// DefaultTerminatedRetention). Instances already terminated keep theirs.
func (s *Server) SetTerminatedRetention(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settings.retention = max(d, 0)
}

// advanceLocked applies the transitions due by now in the order they fell due,
// then arms the timer for the next one. Every handler calls it first, so an
// answer never shows a state that should already have changed.
func (s *Server) advanceLocked() {
	now := s.clock.now()
	for {
		var next *instance
		var at time.Time
		for _, in := range s.instances {
			due, ok := in.nextTransition()
			if !ok || due.After(now) {
				continue
			}
			if next == nil || due.Before(at) || (due.Equal(at) && in.seq < next.seq) {
				next, at = in, due
			}
		}
		if next == nil {
			break
		}
		s.transitionLocked(next, at)
	}
	s.scheduleLocked(now)
}

// transitionLocked moves an instance one step along its lifecycle at time at.
func (s *Server) transitionLocked(in *instance, at time.Time) {
	switch in.State {
	case StatePending:
		in.State = StateRunning
		s.emitLocked(EventRunning, in, at)
	case StateRunning:
		// An interruption's notice ran out. EC2 documents no stateReason
		// for a reclaimed reservation's instance, so it gets none here.
		in.State = StateShuttingDown
		if in.CapacityType == capacitySpot {
			in.StateReason = reasonSpotTermination
		}
		in.terminateAt = at.Add(s.settings.shutdownDelay)
		s.emitLocked(EventTerminating, in, at)
	case StateShuttingDown:
		in.State = StateTerminated
		in.goneAt = at.Add(s.settings.retention)
		s.releaseIPLocked(in)
		s.emitLocked(EventTerminated, in, at)
	case StateTerminated:
		delete(s.instances, in.ID)
	}
}

// nextTransition is when the instance changes state next, if it will.
func (in *instance) nextTransition() (time.Time, bool) {
	switch in.State {
	case StatePending:
		return in.runAt, true
	case StateRunning:
		// Only running instances are interrupted (see Interrupt); a pending
		// one of a reclaimed reservation runs first, then shuts down.
		return in.shutdownAt, !in.shutdownAt.IsZero()
	case StateShuttingDown:
		return in.terminateAt, true
	case StateTerminated:
		return in.goneAt, true
	}
	return time.Time{}, false
}

// scheduleLocked arms the wall-clock timer for the next transition, so
// instances change state on their own when nobody calls the API.
func (s *Server) scheduleLocked(now time.Time) {
	select {
	case <-s.closed:
		return
	default:
	}
	var next time.Time
	for _, in := range s.instances {
		if due, ok := in.nextTransition(); ok && (next.IsZero() || due.Before(next)) {
			next = due
		}
	}
	if next.IsZero() {
		if s.timer != nil {
			s.timer.Stop()
		}
		return
	}
	wait := max(next.Sub(now), 0)
	if s.timer == nil {
		s.timer = time.AfterFunc(wait, s.tick)
		return
	}
	s.timer.Reset(wait)
}

func (s *Server) tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closed:
		return
	default:
	}
	s.advanceLocked()
}

// EventKind names a change in an instance's life.
type EventKind string

// The events Watch reports, in the order an instance goes through them.
const (
	// EventLaunched: CreateFleet started the instance; it is pending.
	EventLaunched EventKind = "launched"
	// EventRunning: the instance finished booting; a kubelet would register now.
	EventRunning EventKind = "running"
	// EventInterrupted: EC2 announced it will reclaim the spot instance after
	// SpotInterruptionNotice, or the instance of a reclaimed interruptible
	// reservation after CapacityReservationInterruptionNotice; this is where
	// an interruption queue is fed.
	EventInterrupted EventKind = "interrupted"
	// EventTerminating: the instance is shutting down.
	EventTerminating EventKind = "terminating"
	// EventTerminated: the instance is gone for good (it stays visible to
	// DescribeInstances for the terminated retention).
	EventTerminated EventKind = "terminated"
)

// InstanceEvent is one change of an instance, with the instance as it was
// right after the change.
type InstanceEvent struct {
	Kind     EventKind
	Instance Instance
	// Time is the simulated time the change happened.
	Time time.Time
}

// watcher buffers one subscriber's events without bound, so a slow reader
// never blocks the simulator.
type watcher struct {
	queue  []InstanceEvent
	signal chan struct{}
}

// Watch reports every instance event from now on, in order, until ctx ends or
// the server closes; then the channel is closed. Events are buffered without
// bound, so the simulator never waits for the reader. To see every instance
// exactly once, call Watch first, then Instances.
func (s *Server) Watch(ctx context.Context) <-chan InstanceEvent {
	w := &watcher{signal: make(chan struct{}, 1)}
	out := make(chan InstanceEvent)
	s.mu.Lock()
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			s.mu.Lock()
			delete(s.watchers, w)
			s.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.closed:
				return
			case <-w.signal:
			}
			s.mu.Lock()
			batch := w.queue
			w.queue = nil
			s.mu.Unlock()
			for _, ev := range batch {
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				case <-s.closed:
					return
				}
			}
		}
	}()
	return out
}

// emitLocked queues an event for every watcher and sends its EventBridge
// counterpart to the routed queue; it never blocks.
func (s *Server) emitLocked(kind EventKind, in *instance, at time.Time) {
	s.publishStateLocked(kind, in, at)
	if len(s.watchers) == 0 {
		return
	}
	ev := InstanceEvent{Kind: kind, Instance: in.snapshot(), Time: at}
	for w := range s.watchers {
		w.queue = append(w.queue, ev)
		select {
		case w.signal <- struct{}{}:
		default:
		}
	}
}
