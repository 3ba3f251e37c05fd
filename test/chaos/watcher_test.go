package chaos

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/ec2sim"
	"github.com/nodewright/nodewright/test/harness"
)

// The invariants' limits.
const (
	// pendingLimit is how long a pod may stay unscheduled while a leader
	// runs and the API server is up.
	pendingLimit = 60 * time.Second
	// deletingLimit is how long a claim may take to go once deleted: a
	// drain within its PDB and the instance's termination.
	deletingLimit = 5 * time.Minute
	// consistencyLimit is how long after the workload settles instances and
	// claims must match one to one.
	consistencyLimit = 60 * time.Second
	// minAvailable is every PDB's minAvailable share.
	minAvailable = 0.9
)

// Invariants the watcher checks; each violation names one.
const (
	invPDB         = "PDB violated"
	invPending     = "pod pending too long"
	invDeleting    = "claim stuck deleting"
	invDuplicate   = "duplicate launch"
	invNotice      = "pods on a reclaimed instance"
	invConsistency = "instance without claim or claim without instance"
	invMemory      = "controller memory growth"
	invSettle      = "never settled"
)

// violation is one broken invariant, with what showed it.
type violation struct {
	at        time.Duration // since the scenario started
	invariant string
	detail    string
}

// watcher samples the cluster and the simulator every second for the whole
// scenario and records every invariant broken.
type watcher struct {
	cp    *harness.ControlPlane
	sim   *ec2sim.Server
	rs    *replicas
	tl    *timeline
	ns    string
	apps  []string
	start time.Time

	mu          sync.Mutex
	replicas    map[string]int32 // each Deployment's replicas, as the scenario set them
	armed       map[string]bool  // the PDB has been satisfied since its Deployment last grew
	violating   map[string]bool  // the PDB is in a violation already recorded
	apiDown     bool             // the API server is being restarted
	apiBack     time.Time
	seen        map[string]bool // violations recorded, by invariant and object
	violations  []violation
	samples     int
	pdbSamples  int
	minMargin   map[string]int32 // the fewest healthy pods above minAvailable seen per app while armed
	maxPending  time.Duration    // the longest a pod waited, counted as pendingLimit counts
	maxDeleting time.Duration
}

func newWatcher(cp *harness.ControlPlane, sim *ec2sim.Server, rs *replicas, tl *timeline, ns string, apps []string, start time.Time) *watcher {
	return &watcher{
		cp: cp, sim: sim, rs: rs, tl: tl, ns: ns, apps: apps, start: start,
		replicas: map[string]int32{}, armed: map[string]bool{}, violating: map[string]bool{}, seen: map[string]bool{},
		minMargin: map[string]int32{},
	}
}

// setReplicas records a Deployment's new size before the scenario scales it:
// a smaller one lowers its PDB's bar at once, a larger one disarms the PDB
// until the new pods are up (minAvailable is a share of them).
func (w *watcher) setReplicas(app string, n int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n > w.replicas[app] {
		w.armed[app] = false
	}
	w.replicas[app] = n
}

func (w *watcher) setAPIDown(down bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.apiDown = down
	if !down {
		w.apiBack = time.Now()
	}
}

// run samples until ctx ends.
func (w *watcher) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		w.mu.Lock()
		down := w.apiDown
		w.mu.Unlock()
		if down {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		w.sample(sctx)
		cancel()
	}
}

// violate records a violation once per key.
func (w *watcher) violate(key, invariant, format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen[invariant+"/"+key] {
		return
	}
	w.seen[invariant+"/"+key] = true
	v := violation{at: time.Since(w.start).Round(time.Second), invariant: invariant, detail: fmt.Sprintf(format, args...)}
	w.violations = append(w.violations, v)
	w.tl.add("VIOLATION %s: %s", invariant, v.detail)
}

// sample checks every invariant on one look at the cluster and the
// simulator; a look the API server did not answer is skipped.
func (w *watcher) sample(ctx context.Context) {
	var pods corev1.PodList
	var claims v1.NodeClaimList
	var nodes corev1.NodeList
	if w.cp.Client.List(ctx, &pods, client.InNamespace(w.ns)) != nil ||
		w.cp.Client.List(ctx, &claims) != nil || w.cp.Client.List(ctx, &nodes) != nil {
		return
	}
	instances := w.sim.Instances()
	now := time.Now()
	w.mu.Lock()
	w.samples++
	w.mu.Unlock()
	w.checkPDBs(pods.Items)
	w.checkPending(pods.Items, now)
	w.checkClaims(claims.Items, now)
	w.checkInstances(instances, nodes.Items, pods.Items)
}

// healthy is a pod the disruption controller counts toward minAvailable:
// Ready and not being deleted.
func healthy(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// checkPDBs counts each app's healthy pods against minAvailable of the
// replicas the scenario asked for. Evictions go through the PDB, so only a
// pod lost without one (a deleted Node, a terminated instance) takes the
// count below the bar once it has been reached.
func (w *watcher) checkPDBs(pods []corev1.Pod) {
	count := map[string]int32{}
	for i := range pods {
		if healthy(&pods[i]) {
			count[pods[i].Labels["app"]]++
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pdbSamples++
	for _, app := range w.apps {
		want := int32(math.Ceil(minAvailable * float64(w.replicas[app])))
		got := count[app]
		if got >= want {
			w.armed[app], w.violating[app] = true, false
		}
		if !w.armed[app] {
			continue
		}
		if m, ok := w.minMargin[app]; !ok || got-want < m {
			w.minMargin[app] = got - want
		}
		if got < want && !w.violating[app] {
			w.violating[app] = true
			v := violation{at: time.Since(w.start).Round(time.Second), invariant: invPDB,
				detail: fmt.Sprintf("%s: %d healthy pods, minAvailable %d of %d", app, got, want, w.replicas[app])}
			w.violations = append(w.violations, v)
			w.tl.add("VIOLATION %s: %s", invPDB, v.detail)
		}
	}
}

// upSince is when nodewright last became able to act: its leader's
// election or the API server's return, whichever is later; zero when no
// replica leads.
func (w *watcher) upSince() time.Time {
	_, elected := w.rs.leader()
	if elected.IsZero() {
		return time.Time{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.apiBack.After(elected) {
		return w.apiBack
	}
	return elected
}

// checkPending fails a pod unscheduled for more than pendingLimit of the
// time nodewright could act; half the pools always have capacity.
func (w *watcher) checkPending(pods []corev1.Pod, now time.Time) {
	up := w.upSince()
	if up.IsZero() {
		return
	}
	for i := range pods {
		p := &pods[i]
		if p.Spec.NodeName != "" || p.DeletionTimestamp != nil {
			continue
		}
		since := p.CreationTimestamp.Time
		if up.After(since) {
			since = up
		}
		waited := now.Sub(since)
		w.mu.Lock()
		w.maxPending = max(w.maxPending, waited)
		w.mu.Unlock()
		if waited > pendingLimit {
			w.violate(string(p.UID), invPending, "%s/%s unscheduled for %s (created %s ago, nodewright up for %s)",
				p.Namespace, p.Name, waited.Round(time.Second), now.Sub(p.CreationTimestamp.Time).Round(time.Second), now.Sub(up).Round(time.Second))
		}
	}
}

func (w *watcher) checkClaims(claims []v1.NodeClaim, now time.Time) {
	for _, nc := range claims {
		if nc.DeletionTimestamp == nil {
			continue
		}
		took := now.Sub(nc.DeletionTimestamp.Time)
		w.mu.Lock()
		w.maxDeleting = max(w.maxDeleting, took)
		w.mu.Unlock()
		if took > deletingLimit {
			w.violate(nc.Name, invDeleting, "%s deleting for %s, finalizers %v, node %s", nc.Name, took.Round(time.Second), nc.Finalizers, nc.Status.NodeName)
		}
	}
}

// checkInstances fails two live instances of one claim, and pods still
// bound to a spot instance EC2 has started to reclaim: the interruption
// notice was missed.
func (w *watcher) checkInstances(instances []ec2sim.Instance, nodes []corev1.Node, pods []corev1.Pod) {
	byClaim := map[string][]string{}
	for _, in := range instances {
		if name := in.Tags[awsv1.TagNodeClaim]; name != "" && live(in) {
			byClaim[name] = append(byClaim[name], in.ID+" "+string(in.State))
		}
	}
	for name, ids := range byClaim {
		if len(ids) > 1 {
			sort.Strings(ids)
			w.violate(name, invDuplicate, "claim %s has %d live instances: %s", name, len(ids), strings.Join(ids, ", "))
		}
	}
	nodeOf := map[string]string{} // instance id -> Node name
	for _, n := range nodes {
		nodeOf[instanceID(n.Spec.ProviderID)] = n.Name
	}
	podsOn := map[string]int{}
	for _, p := range pods {
		if p.Spec.NodeName != "" && p.DeletionTimestamp == nil {
			podsOn[p.Spec.NodeName]++
		}
	}
	for _, in := range instances {
		if in.InterruptionTime.IsZero() || live(in) {
			continue
		}
		if node := nodeOf[in.ID]; node != "" && podsOn[node] > 0 {
			w.violate(in.ID, invNotice, "%s (%s) is %s with %d workload pods still bound to its node %s", in.ID, in.Tags[awsv1.TagNodeClaim], in.State, podsOn[node], node)
		}
	}
}

// live is an instance EC2 still runs (or is starting).
func live(in ec2sim.Instance) bool {
	return in.State == ec2sim.StatePending || in.State == ec2sim.StateRunning
}

// instanceID is the instance id at the end of a provider ID, "" for none.
func instanceID(providerID string) string {
	if providerID == "" {
		return ""
	}
	return providerID[strings.LastIndex(providerID, "/")+1:]
}

// consistency compares live instances of the cluster with the claims: every
// live instance must belong to a claim whose provider ID names it, and every
// claim (launched, not being deleted) must name a live instance.
func consistency(ctx context.Context, c client.Client, sim *ec2sim.Server) error {
	var claims v1.NodeClaimList
	if err := c.List(ctx, &claims); err != nil {
		return err
	}
	claimed := map[string]string{}
	var problems []string
	for _, nc := range claims.Items {
		id := instanceID(nc.Status.ProviderID)
		if id == "" {
			problems = append(problems, "claim "+nc.Name+" not launched")
			continue
		}
		claimed[id] = nc.Name
	}
	liveIDs := map[string]bool{}
	for _, in := range sim.Instances() {
		if in.Tags[v1.NodePoolLabelKey] == "" || !live(in) {
			continue
		}
		liveIDs[in.ID] = true
		if _, ok := claimed[in.ID]; !ok {
			problems = append(problems, fmt.Sprintf("instance %s (%s, tagged for claim %q) has no claim", in.ID, in.State, in.Tags[awsv1.TagNodeClaim]))
		}
	}
	for id, name := range claimed {
		if !liveIDs[id] {
			problems = append(problems, fmt.Sprintf("claim %s names %s, which is not running", name, id))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return fmt.Errorf("%d mismatches: %s", len(problems), strings.Join(problems, "; "))
	}
	return nil
}

// initialized reports whether a claim's node is up.
func initialized(nc *v1.NodeClaim) bool {
	return meta.IsStatusConditionTrue(nc.Status.Conditions, v1.ConditionTypeInitialized)
}

// timeline records what happened when, for the report and the log.
type timeline struct {
	start time.Time
	mu    sync.Mutex
	lines []string
}

func (tl *timeline) add(format string, args ...any) {
	line := fmt.Sprintf("%7s  %s", time.Since(tl.start).Round(100*time.Millisecond), fmt.Sprintf(format, args...))
	tl.mu.Lock()
	tl.lines = append(tl.lines, line)
	tl.mu.Unlock()
	fmt.Println(line)
}

func (tl *timeline) String() string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return strings.Join(tl.lines, "\n")
}

// logPath is where a log of the run goes: outside the control plane's dir,
// which is removed, because it explains a failure.
func logPath(name string) string {
	return filepath.Join(os.TempDir(), "nodewright-chaos-"+name+".log")
}
