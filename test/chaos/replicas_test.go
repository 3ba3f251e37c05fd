package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// replicas runs nodewright as a Deployment of two would: each replica a
// child process with leader election, restarted (after restartDelay, as a
// kubelet's first back-off) whenever it exits or is killed.
type replicas struct {
	spec       controllerSpec
	kubeconfig string
	timeline   *timeline
	list       []*replica
	wg         sync.WaitGroup

	// mu orders starting a process against stop: none starts after it.
	mu       sync.Mutex
	stopping chan struct{}
}

// restartDelay is how long a replica stays down before it is started again.
const restartDelay = time.Second

// replica is one of them; its fields change as its process is restarted.
type replica struct {
	name    string
	logPath string

	mu        sync.Mutex
	proc      *os.Process
	started   time.Time
	electedAt time.Time // zero until this process wins the Lease
	exited    chan struct{}
	restarts  int
	// held, while open, keeps the supervisor from restarting the replica.
	held chan struct{}
}

// hold keeps r down once its process ends, until release is called.
func (r *replica) hold() (release func()) {
	held := make(chan struct{})
	r.mu.Lock()
	r.held = held
	r.mu.Unlock()
	return func() { close(held) }
}

func startReplicas(spec controllerSpec, kubeconfig string, tl *timeline, names ...string) (*replicas, error) {
	rs := &replicas{spec: spec, kubeconfig: kubeconfig, timeline: tl, stopping: make(chan struct{})}
	for _, name := range names {
		r := &replica{name: name, logPath: logPath("controller-" + name)}
		if err := os.WriteFile(r.logPath, nil, 0o644); err != nil {
			return nil, err
		}
		started := make(chan error, 1)
		rs.list = append(rs.list, r)
		rs.wg.Add(1)
		go rs.supervise(r, started)
		if err := <-started; err != nil {
			return nil, errors.Join(err, rs.stop())
		}
	}
	return rs, nil
}

// supervise keeps r running until stop; the first start's outcome goes to
// started.
func (rs *replicas) supervise(r *replica, started chan<- error) {
	defer rs.wg.Done()
	var once sync.Once
	for {
		err := rs.run(r, func(err error) { once.Do(func() { started <- err }) })
		if err != nil {
			rs.timeline.add("replica %s failed to start: %v", r.name, err)
		}
		select {
		case <-rs.stopping:
			return
		case <-time.After(restartDelay):
		}
		r.mu.Lock()
		held := r.held
		r.held = nil
		r.restarts++
		r.mu.Unlock()
		if held != nil {
			select {
			case <-rs.stopping:
				return
			case <-held:
			}
		}
	}
}

// run starts r's process, tells started, and waits for the process to end,
// copying its output to its log and watching it for electedMessage.
func (rs *replicas) run(r *replica, started func(error)) (err error) {
	defer func() { started(err) }()
	raw, err := json.Marshal(rs.spec)
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(r.logPath, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), controllerEnv+"="+string(raw), "KUBECONFIG="+rs.kubeconfig)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	// Killed with the suite, whatever way the suite ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	exited := make(chan struct{})
	rs.mu.Lock()
	if closed(rs.stopping) {
		rs.mu.Unlock()
		return nil
	}
	if err := cmd.Start(); err != nil {
		rs.mu.Unlock()
		return fmt.Errorf("starting replica %s: %w", r.name, err)
	}
	r.mu.Lock()
	r.proc, r.started, r.electedAt, r.exited = cmd.Process, time.Now(), time.Time{}, exited
	r.mu.Unlock()
	rs.mu.Unlock()
	started(nil)
	fmt.Fprintf(logFile, "=== chaos: replica %s started, pid %d\n", r.name, cmd.Process.Pid)
	reader := bufio.NewReader(out)
	for {
		line, err := reader.ReadString('\n')
		if strings.Contains(line, electedMessage) {
			r.mu.Lock()
			r.electedAt = time.Now()
			r.mu.Unlock()
			rs.timeline.add("replica %s (pid %d) elected leader", r.name, cmd.Process.Pid)
		}
		_, _ = io.WriteString(logFile, line)
		if err != nil {
			break
		}
	}
	werr := cmd.Wait()
	fmt.Fprintf(logFile, "=== chaos: replica %s pid %d ended: %v\n", r.name, cmd.Process.Pid, werr)
	rs.timeline.add("replica %s (pid %d) ended: %v", r.name, cmd.Process.Pid, exitStatus(werr))
	close(exited)
	return nil
}

func exitStatus(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// leader returns the replica whose live process won the Lease last, or nil.
func (rs *replicas) leader() (*replica, time.Time) {
	var best *replica
	var at time.Time
	for _, r := range rs.list {
		r.mu.Lock()
		alive := r.exited != nil && !closed(r.exited)
		if alive && !r.electedAt.IsZero() && r.electedAt.After(at) {
			best, at = r, r.electedAt
		}
		r.mu.Unlock()
	}
	return best, at
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// waitLeader waits up to timeout for a leader that is not before.
func (rs *replicas) waitLeader(ctx context.Context, timeout time.Duration, before *replica, beforePID int) (*replica, error) {
	var found *replica
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		r, _ := rs.leader()
		if r == nil || (r == before && r.pid() == beforePID) {
			return false, nil
		}
		found = r
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting %s for a new leader: %w", timeout, err)
	}
	return found, nil
}

func (r *replica) pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return 0
	}
	return r.proc.Pid
}

// signal sends sig to r's current process and waits up to 30 s for it to
// end; the supervisor starts it again.
func (r *replica) signal(sig syscall.Signal) error {
	r.mu.Lock()
	proc, exited := r.proc, r.exited
	r.mu.Unlock()
	if proc == nil || closed(exited) {
		return nil
	}
	if err := proc.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signalling replica %s (pid %d): %w", r.name, proc.Pid, err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("replica %s (pid %d) still running 30s after %v", r.name, proc.Pid, sig)
	}
}

// rssBytes reads the resident set of r's current process from /proc.
func (r *replica) rssBytes() (int64, error) {
	pid := r.pid()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the memory of replica %s (pid %d): %w", r.name, pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parsing VmRSS %q of pid %d: %w", rest, pid, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// stop ends every replica with SIGTERM and waits for the supervisors.
func (rs *replicas) stop() error {
	rs.mu.Lock()
	close(rs.stopping)
	rs.mu.Unlock()
	var errs []error
	for _, r := range rs.list {
		if err := r.signal(syscall.SIGTERM); err != nil {
			errs = append(errs, err)
			r.mu.Lock()
			if r.proc != nil {
				_ = r.proc.Kill()
			}
			r.mu.Unlock()
		}
	}
	rs.wg.Wait()
	return errors.Join(errs...)
}
