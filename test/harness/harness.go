package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	nwscheme "github.com/nodewright/nodewright/pkg/scheme"
)

// Options choose what the control plane runs besides etcd and kube-apiserver.
type Options struct {
	// Cluster also starts kube-scheduler, kube-controller-manager and kwok (with
	// the stages in test/kwok), making a cluster whose pods schedule and run on
	// kwok Nodes. Without it only the API is served: enough for validation and
	// controller tests, and faster to start.
	Cluster bool
}

// ControlPlane is a running control plane.
type ControlPlane struct {
	// Config reaches the apiserver as a cluster admin.
	Config *rest.Config
	// Client is a controller-runtime client with nodewright's types registered.
	Client client.Client
	// Kube is a typed client-go clientset.
	Kube kubernetes.Interface
	// Scheme holds the Kubernetes and nodewright types.
	Scheme *k8sruntime.Scheme
	// Kubeconfig is the path of an admin kubeconfig file, for the components and
	// for a person who wants to look with kubectl.
	Kubeconfig string
	// Dir holds the components' logs and configuration.
	Dir string

	env       *envtest.Environment
	mu        sync.Mutex
	processes []*process
}

// process is one component binary the harness started.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// Root returns the repository root, found from this file's location so tests in
// any package agree on it.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BinDir is where `make tools` puts the control-plane binaries.
func BinDir() string { return filepath.Join(Root(), "bin") }

// CRDDir holds the generated CRDs, the ones the Helm chart installs.
func CRDDir() string { return filepath.Join(Root(), "charts", "nodewright", "crds") }

// Start starts a control plane and waits until its API serves nodewright's CRDs.
func Start(ctx context.Context, opts Options) (*ControlPlane, error) {
	required := []string{"etcd", "kube-apiserver"}
	if opts.Cluster {
		required = append(required, "kube-scheduler", "kube-controller-manager", "kwok")
	}
	for _, name := range required {
		if _, err := os.Stat(filepath.Join(BinDir(), name)); err != nil {
			return nil, fmt.Errorf("control-plane binary %s missing in %s: run `make tools`: %w", name, BinDir(), err)
		}
	}
	dir, err := os.MkdirTemp("", "nodewright-cp-")
	if err != nil {
		return nil, fmt.Errorf("creating control-plane dir: %w", err)
	}
	scheme := nwscheme.New()
	env := &envtest.Environment{
		BinaryAssetsDirectory: BinDir(),
		DownloadBinaryAssets:  false,
		CRDDirectoryPaths:     []string{CRDDir()},
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
	}
	// On loopback the apiserver cannot publish a reachable endpoint for the
	// kubernetes Service; without this it keeps trying and logs errors.
	apiserver := env.ControlPlane.GetAPIServer()
	apiserver.Configure().Set("endpoint-reconciler-type", "none")
	// A certificate directory of our own, which envtest does not remove when
	// the apiserver stops, so RestartAPIServer serves the same certificates
	// and service-account keys to the clients that hold them.
	apiserver.CertDir = filepath.Join(dir, "apiserver")
	if err := os.MkdirAll(apiserver.CertDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the apiserver's certificate dir: %w", err)
	}
	apiserverLog, err := os.Create(filepath.Join(dir, "kube-apiserver.log"))
	if err != nil {
		return nil, fmt.Errorf("creating the apiserver's log: %w", err)
	}
	apiserver.Out, apiserver.Err = apiserverLog, apiserverLog
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	// Tests poll; the default client rate limit (QPS 5) turns polls into
	// rate-limiter waits that hide the reason a test is waiting.
	cfg.QPS, cfg.Burst = 200, 400
	cp := &ControlPlane{Config: cfg, Scheme: scheme, Dir: dir, env: env}
	if cp.Client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return nil, errors.Join(fmt.Errorf("creating client: %w", err), cp.Stop())
	}
	if cp.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, errors.Join(fmt.Errorf("creating clientset: %w", err), cp.Stop())
	}
	if err := cp.writeKubeconfig(); err != nil {
		return nil, errors.Join(err, cp.Stop())
	}
	if opts.Cluster {
		if err := cp.startCluster(ctx); err != nil {
			return nil, errors.Join(err, cp.Stop())
		}
	}
	return cp, nil
}

// writeKubeconfig writes an admin kubeconfig for the components and for people.
func (c *ControlPlane) writeKubeconfig() error {
	user, err := c.env.ControlPlane.AddUser(envtest.User{Name: "nodewright-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("creating admin user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("rendering admin kubeconfig: %w", err)
	}
	c.Kubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kubeconfig, 0o600); err != nil {
		return fmt.Errorf("writing admin kubeconfig: %w", err)
	}
	return nil
}

// startCluster starts the scheduler, the controller manager and kwok.
func (c *ControlPlane) startCluster(ctx context.Context) error {
	apiserver := c.env.ControlPlane.APIServer
	caFile := filepath.Join(c.Dir, "ca.crt")
	if err := os.WriteFile(caFile, apiserver.SecureServing.CA, 0o600); err != nil {
		return fmt.Errorf("writing apiserver CA: %w", err)
	}
	components := []struct {
		name string
		args []string
	}{
		{"kube-scheduler", []string{
			"--kubeconfig=" + c.Kubeconfig,
			"--authentication-kubeconfig=" + c.Kubeconfig,
			"--authorization-kubeconfig=" + c.Kubeconfig,
			"--leader-elect=false",
			"--secure-port=0",
		}},
		{"kube-controller-manager", []string{
			"--kubeconfig=" + c.Kubeconfig,
			"--authentication-kubeconfig=" + c.Kubeconfig,
			"--authorization-kubeconfig=" + c.Kubeconfig,
			"--leader-elect=false",
			"--secure-port=0",
			// Service-account tokens and the root CA ConfigMap, which pods of a
			// real cluster expect, need the apiserver's signing key and CA.
			"--service-account-private-key-file=" + filepath.Join(apiserver.CertDir, "sa-signer.key"),
			"--root-ca-file=" + caFile,
			"--use-service-account-credentials=false",
			// Node IPAM would need a cluster CIDR; kwok assigns pod IPs itself.
			"--controllers=*,-nodeipam",
		}},
		{"kwok", []string{
			"--kubeconfig=" + c.Kubeconfig,
			"--manage-all-nodes=true",
			"--config=" + filepath.Join(Root(), "test", "kwok", "stages.yaml"),
			"--node-lease-duration-seconds=40",
		}},
	}
	for _, comp := range components {
		if err := c.startProcess(ctx, comp.name, comp.args); err != nil {
			return err
		}
	}
	return nil
}

// startProcess runs one component with its output in Dir/NAME.log.
func (c *ControlPlane) startProcess(_ context.Context, name string, args []string) error {
	logPath := filepath.Join(c.Dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("creating %s log: %w", name, err)
	}
	cmd := exec.Command(filepath.Join(BinDir(), name), args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so Stop ends it and anything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	c.mu.Lock()
	c.processes = append(c.processes, p)
	c.mu.Unlock()
	return nil
}

// apiserverGrace is how long RestartAPIServer lets kube-apiserver drain
// after SIGTERM before it kills it, as a kubelet ends a static pod. Under the
// chaos suite's load it did not exit within envtest's 20 s stop timeout
// (unloaded: about 1 s), and a longer outage lets kwok's node leases expire.
const apiserverGrace = 10 * time.Second

// RestartAPIServer stops kube-apiserver (SIGTERM, then SIGKILL after
// apiserverGrace), keeps it down for downtime, and starts it again on the
// same port, certificates and etcd, waiting until it serves /healthz.
// Clients and components reconnect on their own, as they must on a real
// cluster.
func (c *ControlPlane) RestartAPIServer(ctx context.Context, downtime time.Duration) error {
	pid, err := childPID("kube-apiserver")
	if err != nil {
		return err
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	gone := func(context.Context) (bool, error) {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return os.IsNotExist(err), nil
	}
	if wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, apiserverGrace, true, gone) != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, gone); err != nil {
			return fmt.Errorf("kube-apiserver (pid %d) still there after SIGKILL: %w", pid, err)
		}
	}
	// envtest sees it has exited and only cleans up.
	apiserver := c.env.ControlPlane.GetAPIServer()
	if err := apiserver.Stop(); err != nil {
		return fmt.Errorf("stopping kube-apiserver: %w", err)
	}
	select {
	case <-time.After(downtime):
	case <-ctx.Done():
	}
	if err := apiserver.Start(); err != nil {
		return fmt.Errorf("starting kube-apiserver again: %w", err)
	}
	return nil
}

// childPID finds this process's child running the named binary.
func childPID(name string) (int, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return 0, err
	}
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // ended since the glob
		}
		// pid (comm) state ppid ...; comm may hold spaces, not ")".
		s := string(data)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if s[open+1:end] != name || len(fields) < 2 || fields[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		return strconv.Atoi(strings.TrimSpace(s[:open]))
	}
	return 0, fmt.Errorf("no %s process started by pid %d", name, os.Getpid())
}

// Healthy returns an error naming any component that has exited, with the end
// of its log, so a test that times out says why.
func (c *ControlPlane) Healthy() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, p := range c.processes {
		select {
		case <-p.done:
			errs = append(errs, fmt.Errorf("%s exited (%v); log %s ends:\n%s", p.name, p.err, p.log, tail(p.log, 20)))
		default:
		}
	}
	return errors.Join(errs...)
}

// Stop ends the components, then the apiserver and etcd, and removes Dir unless
// NODEWRIGHT_KEEP_CONTROL_PLANE is set (to read the logs after a failure).
func (c *ControlPlane) Stop() error {
	c.mu.Lock()
	processes := c.processes
	c.processes = nil
	c.mu.Unlock()
	for _, p := range processes {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	}
	for _, p := range processes {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	err := c.env.Stop()
	if os.Getenv("NODEWRIGHT_KEEP_CONTROL_PLANE") == "" {
		_ = os.RemoveAll(c.Dir)
	}
	if err != nil {
		return fmt.Errorf("stopping control plane: %w", err)
	}
	return nil
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ") + "\n"
}
