package chaos

import (
	"context"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/ec2sim"
	"github.com/nodewright/nodewright/test/env"
	"github.com/nodewright/nodewright/test/harness"
)

// Fault settings of the scenario.
const (
	queueName         = "my-cluster-interruptions"
	throttleShare     = 0.3 // of every EC2 call
	duplicateShare    = 0.3 // of the deleted queue messages, delivered again
	interruptedShare  = 0.2 // of the running spot instances, at once
	apiServerDowntime = 5 * time.Second
	settleLimit       = 6 * time.Minute
	// quietPeriod is how long the settled state must hold: nodes lost to a
	// restart or a late consolidation show within it.
	quietPeriod = 15 * time.Second
	// memoryGrowthShare and memoryGrowthFloor bound the leader's resident
	// memory after the memory soak against its value at the settle before:
	// growth beyond a quarter, or 32 MiB if that is more, fails.
	memoryGrowthShare = 0.25
	memoryGrowthFloor = 32 << 20
)

// phase is one row of the results table.
type phase struct {
	name, faults string
	took, settle time.Duration
	leaderRSS    int64
	violations   int
	note         string
}

// scenario is the running chaos scenario.
type scenario struct {
	t      *testing.T
	cp     *harness.ControlPlane
	e      *env.Env
	rs     *replicas
	w      *watcher
	tl     *timeline
	ns     string
	total  int32 // pods the Deployments ask for
	kills  int
	phases []phase
	// captured are interruption-queue bodies about interrupted instances,
	// sent again later as stale, out-of-order duplicates.
	captured []string
}

// TestChaos runs the scenario of designs/reliability.md: five phases, each
// followed by a settle point, under throttling, empty pools and a
// misbehaving queue for the whole run, while the watcher checks the
// invariants every second. The watcher was shown to fail it: termination
// deleting pods instead of evicting them gave "PDB violated: worker: 87
// healthy pods, minAvailable 90 of 100"; the interruption controller
// ignoring spot warnings gave "pods on a reclaimed instance"; termination
// and garbage collection both leaving instances running gave "instance
// without claim" after the scale-down.
func TestChaos(t *testing.T) {
	start := time.Now()
	tl := &timeline{start: start}
	ctx, cancel := context.WithTimeout(context.Background(), 14*time.Minute)
	defer cancel()

	cpCtx, cpCancel := context.WithTimeout(ctx, 3*time.Minute)
	cp, err := harness.Start(cpCtx, harness.Options{Cluster: true})
	cpCancel()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			t.Error(err)
		}
	}()
	bridgeLog, err := os.Create(logPath("bridge"))
	if err != nil {
		t.Fatal(err)
	}
	defer bridgeLog.Close()
	e, err := env.Start(ctx, cp, env.Options{Logs: bridgeLog, InterruptionQueue: queueName, ExternalController: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.Stop(); err != nil {
			t.Error(err)
		}
	}()
	tl.add("control plane, simulator and node bridge up")

	np, err := chaosPool()
	if err != nil {
		t.Fatal(err)
	}
	e.Sim.ThrottleRate(ec2sim.EveryAction, throttleShare)
	pools := poolsOf(np)
	emptied := emptyHalf(e.Sim, pools)
	if err := e.Sim.SetDeliveryFaults(queueName, ec2sim.DeliveryFaults{Duplicate: duplicateShare, Reorder: true}); err != nil {
		t.Fatal(err)
	}
	tl.add("faults on: %.0f%% of EC2 calls throttled, %d of %d pools without capacity, %.0f%% of deleted queue messages redelivered, receives reordered",
		throttleShare*100, len(emptied), len(pools), duplicateShare*100)

	spec := controllerSpec{Controller: e.Controller}
	spec.Controller.LeaderElection, spec.Controller.LeaderElectionNamespace = true, "kube-system"
	rs, err := startReplicas(spec, cp.Kubeconfig, tl, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := rs.stop(); err != nil {
			t.Error(err)
		}
	}()
	if _, err := rs.waitLeader(ctx, 2*time.Minute, nil, 0); err != nil {
		t.Fatal(err)
	}

	ns := cp.Namespace(t)
	w := newWatcher(cp, e.Sim, rs, tl, ns, apps, start)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go w.run(wctx)
	s := &scenario{t: t, cp: cp, e: e, rs: rs, w: w, tl: tl, ns: ns, total: int32(len(apps) * appReplicas)}

	s.phase("scale-up to 300 pods", "SIGKILL the leader mid-launch (kill 1)", func() string {
		fleets := e.Sim.Calls("CreateFleet")
		if err := createWorkload(ctx, cp.Client, ns, np, w); err != nil {
			t.Fatal(err)
		}
		return s.killWhen(ctx, "mid-launch", func(context.Context) (bool, error) { return e.Sim.Calls("CreateFleet") > fleets, nil })
	})
	s.phase("leader handover, API server restart", "SIGTERM the leader; kube-apiserver down 5 s", func() string {
		note := s.handover(ctx)
		tl.add("restarting kube-apiserver")
		w.setAPIDown(true)
		err := cp.RestartAPIServer(ctx, apiServerDowntime)
		w.setAPIDown(false)
		if err != nil {
			t.Fatal(err)
		}
		tl.add("kube-apiserver back")
		return note
	})
	s.phase("20% of spot interrupted, queue chaos", "interrupt at once; duplicate, stale and poison messages; SIGKILL the leader mid-drain (kill 2)", func() string {
		note := s.interrupt(ctx)
		s.poison()
		return note + "; " + s.killWhen(ctx, "mid-drain", s.draining)
	})
	claims := s.claimCount(ctx)
	s.phase("scale-down to 210 pods", "consolidation drains; SIGKILL the leader mid-drain or mid-launch (kill 3)", func() string {
		fleets := e.Sim.Calls("CreateFleet")
		s.total = int32(len(apps) * 70)
		if err := scale(ctx, cp.Client, ns, w, 70); err != nil {
			t.Fatal(err)
		}
		s.resend()
		return s.killWhen(ctx, "mid-drain or mid-launch", func(ctx context.Context) (bool, error) {
			if e.Sim.Calls("CreateFleet") > fleets {
				return true, nil
			}
			return s.draining(ctx)
		})
	}, s.claimsFewerThan(claims))
	first, firstPID, firstRSS := s.leaderMemory()
	s.phase("memory soak: 20% of spot interrupted again", "interrupt at once; poison messages; no kills", func() string {
		note := s.interrupt(ctx)
		s.poison()
		return note
	})
	s.resend()
	last, lastPID, lastRSS := s.leaderMemory()
	switch {
	case first == nil || last != first || lastPID != firstPID:
		tl.add("memory: the leader changed between the last two settles; growth not measured")
	case float64(lastRSS-firstRSS) > math.Max(memoryGrowthShare*float64(firstRSS), memoryGrowthFloor):
		w.violate("memory", invMemory, "leader %s (pid %d) grew from %d MiB to %d MiB over the soak", first.name, firstPID, firstRSS>>20, lastRSS>>20)
	default:
		tl.add("memory: leader %s (pid %d) %d MiB -> %d MiB over the soak", first.name, firstPID, firstRSS>>20, lastRSS>>20)
	}
	wcancel()
	s.report(start)
}

// phase runs one step of the scenario, then waits for the cluster to
// settle (and for done, if given), and adds a row to the results.
func (s *scenario) phase(name, faults string, do func() string, done ...func(context.Context) error) {
	s.tl.add("PHASE %s: %s", name, faults)
	began := time.Now()
	before := len(s.w.violationsCopy())
	note := do()
	settleBegan := time.Now()
	s.settle(name, done...)
	p := phase{name: name, faults: faults, took: time.Since(began), settle: time.Since(settleBegan), note: note,
		violations: len(s.w.violationsCopy()) - before}
	if r, _ := s.rs.leader(); r != nil {
		p.leaderRSS, _ = r.rssBytes()
	}
	s.phases = append(s.phases, p)
	s.tl.add("PHASE %s settled in %s (%s in all)", name, p.settle.Round(time.Second), p.took.Round(time.Second))
}

// settle waits until every pod asked for is healthy, every claim is up and
// none is being deleted; then instances and claims must match within
// consistencyLimit.
func (s *scenario) settle(name string, done ...func(context.Context) error) {
	var why error
	var quietSince time.Time
	unsettled := poll(settleLimit, func(ctx context.Context) (bool, error) {
		why = s.settled(ctx)
		for _, d := range done {
			if why == nil {
				why = d(ctx)
			}
		}
		switch {
		case why != nil:
			quietSince = time.Time{}
			return false, nil
		case quietSince.IsZero():
			quietSince = time.Now()
		}
		return time.Since(quietSince) >= quietPeriod, nil
	})
	if unsettled != nil {
		s.w.violate("settle/"+name, invSettle, "not settled %s after %s: %v\n%v", settleLimit, name, why, s.cp.Healthy())
		s.report(s.tl.start)
		s.t.FailNow()
	}
	var last error
	err := poll(consistencyLimit, func(ctx context.Context) (bool, error) {
		last = consistency(ctx, s.cp.Client, s.e.Sim)
		return last == nil, nil
	})
	if err != nil {
		s.w.violate("settle/"+name, invConsistency, "%s after %s settled: %v", consistencyLimit, name, last)
	}
}

// poll calls condition every second until it is done or timeout has
// passed. Each call gets its own 10 s deadline: cut short by the overall one,
// its last error would be a deadline's, hiding what was still wrong.
func poll(timeout time.Duration, condition func(context.Context) (bool, error)) error {
	return wait.PollUntilContextTimeout(context.Background(), time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return condition(actx)
	})
}

// settled returns nil once a replica leads, every pod asked for is
// healthy, every claim up and none being deleted, and no interrupted
// instance runs; else what is missing.
func (s *scenario) settled(ctx context.Context) error {
	if r, _ := s.rs.leader(); r == nil {
		return fmt.Errorf("no replica leads")
	}
	for _, in := range s.e.Sim.Instances() {
		if !in.InterruptionTime.IsZero() && live(in) {
			return fmt.Errorf("interrupted instance %s (claim %s) still %s", in.ID, in.Tags[awsv1.TagNodeClaim], in.State)
		}
	}
	var pods corev1.PodList
	if err := s.cp.Client.List(ctx, &pods, client.InNamespace(s.ns)); err != nil {
		return err
	}
	healthyPods, unscheduled := int32(0), 0
	for i := range pods.Items {
		if healthy(&pods.Items[i]) {
			healthyPods++
		}
		if pods.Items[i].Spec.NodeName == "" {
			unscheduled++
		}
	}
	var claims v1.NodeClaimList
	if err := s.cp.Client.List(ctx, &claims); err != nil {
		return err
	}
	var busy []string
	for i := range claims.Items {
		nc := &claims.Items[i]
		switch {
		case nc.DeletionTimestamp != nil:
			busy = append(busy, nc.Name+" deleting")
		case !initialized(nc):
			busy = append(busy, nc.Name+" not initialized")
		}
	}
	if healthyPods != s.total || unscheduled > 0 || len(busy) > 0 {
		return fmt.Errorf("%d of %d pods healthy, %d unscheduled, claims busy: %v", healthyPods, s.total, unscheduled, busy)
	}
	return nil
}

// claimsFewerThan is done once consolidation has removed claims.
func (s *scenario) claimsFewerThan(n int) func(context.Context) error {
	return func(ctx context.Context) error {
		var claims v1.NodeClaimList
		if err := s.cp.Client.List(ctx, &claims); err != nil {
			return err
		}
		if len(claims.Items) >= n {
			return fmt.Errorf("%d claims, consolidation has not removed any of the %d yet", len(claims.Items), n)
		}
		return nil
	}
}

// claimCount counts the claims now.
func (s *scenario) claimCount(ctx context.Context) int {
	var claims v1.NodeClaimList
	if err := s.cp.Client.List(ctx, &claims); err != nil {
		s.t.Fatal(err)
	}
	return len(claims.Items)
}

// killWhen waits up to 3 minutes for cond, then SIGKILLs the leader and
// waits for the next one; it returns what it did for the results.
func (s *scenario) killWhen(ctx context.Context, what string, cond func(context.Context) (bool, error)) string {
	seen := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		return ok && err == nil, nil
	}) == nil
	s.kills++
	when := what
	if !seen {
		when = what + " (not seen within 3m; killed anyway)"
	}
	from, to, took := s.replaceLeader(ctx, syscall.SIGKILL, fmt.Sprintf("kill %d %s", s.kills, when), false)
	return fmt.Sprintf("kill %d %s of %s; replica %s leads %s later", s.kills, when, from.name, to.name, took.Round(time.Second))
}

// handover stops the leader gracefully; it releases the Lease and the other
// replica takes over.
func (s *scenario) handover(ctx context.Context) string {
	from, to, took := s.replaceLeader(ctx, syscall.SIGTERM, "handover", true)
	return fmt.Sprintf("handover %s -> %s in %s", from.name, to.name, took.Round(100*time.Millisecond))
}

// replaceLeader signals the leading replica and waits for the next leader.
// Its supervisor restarts the signalled one, which may win the Lease again
// unless toOther holds it back until another replica leads.
func (s *scenario) replaceLeader(ctx context.Context, sig syscall.Signal, why string, toOther bool) (from, to *replica, took time.Duration) {
	from, _ = s.rs.leader()
	if from == nil {
		s.t.Fatalf("%s: no replica leads", why)
	}
	pid := from.pid()
	s.tl.add("%s: %s to replica %s (pid %d)", why, signalNames[sig], from.name, pid)
	if toOther {
		release := from.hold()
		defer release()
	}
	began := time.Now()
	if err := from.signal(sig); err != nil {
		s.t.Fatal(err)
	}
	to, err := s.rs.waitLeader(ctx, 2*time.Minute, from, pid)
	if err != nil {
		s.t.Fatal(err)
	}
	return from, to, time.Since(began)
}

var signalNames = map[syscall.Signal]string{syscall.SIGKILL: "SIGKILL", syscall.SIGTERM: "SIGTERM"}

// draining reports a claim being deleted whose node still has workload pods.
func (s *scenario) draining(ctx context.Context) (bool, error) {
	var claims v1.NodeClaimList
	if err := s.cp.Client.List(ctx, &claims); err != nil {
		return false, err
	}
	deleting := map[string]bool{}
	for _, nc := range claims.Items {
		if nc.DeletionTimestamp != nil && nc.Status.NodeName != "" {
			deleting[nc.Status.NodeName] = true
		}
	}
	if len(deleting) == 0 {
		return false, nil
	}
	var pods corev1.PodList
	if err := s.cp.Client.List(ctx, &pods, client.InNamespace(s.ns)); err != nil {
		return false, err
	}
	for _, p := range pods.Items {
		if deleting[p.Spec.NodeName] && p.DeletionTimestamp == nil {
			return true, nil
		}
	}
	return false, nil
}

// interrupt announces a spot interruption for a share of the running spot
// instances at once, and keeps the queue's messages about them for resend.
func (s *scenario) interrupt(ctx context.Context) string {
	var spot []string
	for _, in := range s.e.Sim.Instances() {
		if in.Tags[v1.NodePoolLabelKey] == poolName && in.State == ec2sim.StateRunning && in.CapacityType == "spot" && in.InterruptionTime.IsZero() {
			spot = append(spot, in.ID)
		}
	}
	sort.Strings(spot)
	n := int(math.Ceil(interruptedShare * float64(len(spot))))
	if n == 0 {
		s.t.Fatalf("no running spot instance to interrupt")
	}
	// Spread over the sorted ids, so the same run picks the same ones.
	var picked []string
	for i := range n {
		picked = append(picked, spot[i*len(spot)/n])
	}
	for _, id := range picked {
		if err := s.e.Sim.Interrupt(id); err != nil {
			s.t.Fatal(err)
		}
	}
	for _, m := range s.e.Sim.QueueMessages(queueName) {
		for _, id := range picked {
			if strings.Contains(m.Body, id) {
				s.captured = append(s.captured, m.Body)
			}
		}
	}
	s.tl.add("interrupted %d of %d running spot instances: %v", n, len(spot), picked)
	return fmt.Sprintf("interrupted %d of %d spot", n, len(spot))
}

// poison sends messages no interruption controller can act on: not JSON,
// JSON of no event, an event of an unknown type, a warning for an instance
// that does not exist, one from another account, and a body at SQS's size
// limit.
func (s *scenario) poison() {
	sc := s.e.Sim.Scenario()
	envelope := func(account, detailType, instance string) string {
		return fmt.Sprintf(`{"version":"0","id":"%s","detail-type":%q,"source":"aws.ec2","account":%q,"time":"%s","region":%q,"resources":["arn:aws:ec2:%s:%s:instance/%s"],"detail":{"instance-id":%q,"instance-action":"terminate"}}`,
			fmt.Sprintf("poison-%d", time.Now().UnixNano()), detailType, account, time.Now().UTC().Format(time.RFC3339), sc.Region, sc.Region, account, instance, instance)
	}
	bodies := []string{
		"{not json",
		"{}",
		`{"version":"0","detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","detail":"not an object"}`,
		envelope(sc.AccountID, "EC2 Instance Launch Surprise", "i-0123456789abcdef0"),
		envelope(sc.AccountID, "EC2 Spot Instance Interruption Warning", "i-00000000000000000"),
		envelope("999988887777", "EC2 Spot Instance Interruption Warning", "i-00000000000000001"),
		`{"padding":"` + strings.Repeat("x", 262144-16) + `"}`,
	}
	for _, b := range bodies {
		if err := s.e.Sim.SendRaw(queueName, b); err != nil {
			s.t.Fatal(err)
		}
	}
	s.tl.add("sent %d poison messages", len(bodies))
}

// resend sends the captured messages about interrupted instances again,
// after the instances are gone: stale duplicates, out of order with the
// state changes that followed them.
func (s *scenario) resend() {
	for _, b := range s.captured {
		if err := s.e.Sim.SendRaw(queueName, b); err != nil {
			s.t.Fatal(err)
		}
	}
	s.tl.add("re-sent %d stale interruption messages", len(s.captured))
	s.captured = nil
}

// leaderMemory reads the leader's resident memory.
func (s *scenario) leaderMemory() (*replica, int, int64) {
	r, _ := s.rs.leader()
	if r == nil {
		return nil, 0, 0
	}
	rss, err := r.rssBytes()
	if err != nil {
		s.t.Error(err)
	}
	return r, r.pid(), rss
}

func (w *watcher) violationsCopy() []violation {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]violation(nil), w.violations...)
}

// report prints the results table, writes it next to the logs and fails
// the test on every violation.
func (s *scenario) report(start time.Time) {
	var b strings.Builder
	fmt.Fprintf(&b, "| phase | faults | took | settled in | leader RSS | violations | what happened |\n|---|---|---|---|---|---|---|\n")
	for _, p := range s.phases {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d MiB | %d | %s |\n", p.name, p.faults, p.took.Round(time.Second), p.settle.Round(time.Second), p.leaderRSS>>20, p.violations, p.note)
	}
	calls, throttled, fleets := 0, 0, 0
	for _, c := range s.e.Sim.AuditLog() {
		if !strings.HasPrefix(c.Action, "ec2:") {
			continue
		}
		calls++
		if c.Error == "RequestLimitExceeded" {
			throttled++
		}
		if c.Action == "ec2:CreateFleet" && c.Error == "" {
			fleets++
		}
	}
	launched := 0
	for _, in := range s.e.Sim.Instances() {
		if in.Tags[v1.NodePoolLabelKey] == poolName {
			launched++
		}
	}
	w := s.w
	w.mu.Lock()
	fmt.Fprintf(&b, "\nRun: %s in all; %d watcher samples; EC2 calls %d, throttled %d; fleets answered %d; instances seen %d; kills %d; restarts a=%d b=%d\n",
		time.Since(start).Round(time.Second), w.samples, calls, throttled, fleets, launched, s.kills, s.rs.list[0].restarts, s.rs.list[1].restarts)
	fmt.Fprintf(&b, "Longest pod wait (counted from nodewright up) %s; longest claim deletion %s; smallest margin of healthy pods above minAvailable per app: %v\n",
		w.maxPending.Round(time.Second), w.maxDeleting.Round(time.Second), w.minMargin)
	violations := append([]violation(nil), w.violations...)
	w.mu.Unlock()
	fmt.Fprintf(&b, "\nTimeline:\n%s\n", s.tl)
	path := logPath("results")
	_ = os.WriteFile(path, []byte(b.String()), 0o644)
	s.t.Logf("results (also in %s; controller logs %s, %s):\n%s", path, logPath("controller-a"), logPath("controller-b"), b.String())
	for _, v := range violations {
		s.t.Errorf("at %s: %s: %s", v.at, v.invariant, v.detail)
	}
}
