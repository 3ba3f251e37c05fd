// Package env runs nodewright end to end on this machine: a control plane
// with kube-scheduler, kube-controller-manager and kwok (test/harness), the
// EC2 simulator with the ap-northeast-2 scenario (test/ec2sim), the bridge
// that turns running simulated instances into Nodes, and the nodewright
// operator itself, in process, with its real AWS provider pointed at the
// simulator. The end-to-end tests and `make demo` both start it; the chaos
// suite runs the same operator wiring (Controller) in child processes it can
// kill.
package env

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/nodewright/nodewright/pkg/controllers/disruption"

	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/operator"
	"github.com/nodewright/nodewright/test/ec2sim"
	"github.com/nodewright/nodewright/test/harness"
	"github.com/nodewright/nodewright/test/iam"
)

// ClusterName is the simulated cluster's name; the scenario's security
// group is tagged for it, as the seed EC2NodeClass selects.
const ClusterName = "my-cluster"

// Region is the scenario's region, the seed NodePool's zones'.
const Region = "ap-northeast-2"

// NodeInstanceProfile is the seed EC2NodeClass's instance profile; the
// scenario names its role.
const NodeInstanceProfile = "KarpenterNodeInstanceProfile"

// Options tune the environment.
type Options struct {
	// Logs receives nodewright's JSON logs; default discarded.
	Logs io.Writer
	// BatchIdle and BatchMax are the provisioning batch windows; default
	// 1s and 10s as in production.
	BatchIdle, BatchMax time.Duration
	// InterruptionQueue, when set, is created in the simulator, fed with its
	// EventBridge events and read by nodewright.
	InterruptionQueue string
	// FeatureGates overrides gates ("Name=false"); default the defaults.
	FeatureGates string
	// ExternalController leaves nodewright out of the process: the caller
	// runs Env.Controller itself, e.g. as replicas it can kill.
	ExternalController bool
}

// Controller is nodewright as the environment runs it: the operator's
// options that point it at the simulator and the control plane. It is plain
// data, so a child process can be given it and Build the same operator.
type Controller struct {
	AWSEndpoint       string
	InterruptionQueue string
	FeatureGates      string
	BatchIdle         time.Duration
	BatchMax          time.Duration
	// LeaderElection makes replicas contend for the Lease in
	// LeaderElectionNamespace, as in production; off in process.
	LeaderElection          bool
	LeaderElectionNamespace string
}

// Build builds the operator with its AWS provider and every controller
// registered, logging JSON to logs; the caller runs it.
func (c Controller) Build(ctx context.Context, cfg *rest.Config, logs io.Writer) (*operator.Operator, error) {
	gates, ignored, err := operator.ParseFeatureGates(c.FeatureGates)
	if err != nil {
		return nil, err
	}
	op, err := operator.New(cfg, operator.Options{
		ClusterName: ClusterName, MetricsAddr: "0", HealthProbeAddr: "0",
		LeaderElection: c.LeaderElection, LeaderElectionNamespace: c.LeaderElectionNamespace,
		BatchIdleDuration: c.BatchIdle, BatchMaxDuration: c.BatchMax, LogLevel: "info", LogWriter: logs,
		Region: Region, AWSEndpoint: c.AWSEndpoint,
		VMMemoryOverheadPercent: catalog.DefaultVMMemoryOverheadPercent, ConsolidationMinSavings: disruption.DefaultMinSavings,
		InterruptionQueue: c.InterruptionQueue, FeatureGates: gates, IgnoredFeatureGates: ignored,
	})
	if err != nil {
		return nil, err
	}
	cloud, err := op.AWS(ctx)
	if err != nil {
		return nil, err
	}
	if err := op.RegisterControllers(ctx, cloud); err != nil {
		return nil, err
	}
	return op, nil
}

// Env is a running environment.
type Env struct {
	CP     *harness.ControlPlane
	Sim    *ec2sim.Server
	Bridge *ec2sim.NodeBridge
	// Controller is how nodewright runs here: in process unless
	// Options.ExternalController.
	Controller Controller

	cancel context.CancelFunc
	done   chan error
	queue  string
}

// Start starts the simulator, the bridge and nodewright against cp, which
// must have been started with harness.Options{Cluster: true}.
func Start(ctx context.Context, cp *harness.ControlPlane, opts Options) (*Env, error) {
	sim, err := ec2sim.StartRegion(Region)
	if err != nil {
		return nil, err
	}
	// nodewright builds its clients with the default credential chain.
	if err := ec2sim.UseSimulatorCredentials(); err != nil {
		return nil, errors.Join(err, sim.Close())
	}
	runCtx, cancel := context.WithCancel(context.Background())
	e := &Env{CP: cp, Sim: sim, cancel: cancel, done: make(chan error, 1), queue: opts.InterruptionQueue}
	fail := func(err error) (*Env, error) {
		cancel()
		return nil, errors.Join(err, sim.Close())
	}
	logs := opts.Logs
	if logs == nil {
		logs = io.Discard
	}
	e.Bridge = ec2sim.NewNodeBridge(sim, cp.Client, ec2sim.NodeBridgeOptions{Log: zap.New(zap.WriteTo(logs)).WithName("nodebridge")})
	if err := e.Bridge.Start(runCtx); err != nil {
		return fail(fmt.Errorf("starting the node bridge: %w", err))
	}
	idle, max := opts.BatchIdle, opts.BatchMax
	if idle == 0 {
		idle = time.Second
	}
	if max == 0 {
		max = 10 * time.Second
	}
	if q := opts.InterruptionQueue; q != "" {
		sim.CreateQueue(q)
		sim.RouteEventsTo(q)
	}
	// The cluster as EKS describes it: nodewright is given only its name and
	// finds the endpoint and service CIDR through DescribeCluster, as with
	// the chart's defaults.
	sim.SetCluster(ec2sim.EKSCluster{
		Name: ClusterName, Endpoint: cp.Config.Host, ServiceCIDR: "10.100.0.0/16",
		CertificateAuthority: base64.StdEncoding.EncodeToString(cp.Config.CAData),
	})
	e.Controller = Controller{
		AWSEndpoint: sim.URL, InterruptionQueue: opts.InterruptionQueue,
		FeatureGates: opts.FeatureGates, BatchIdle: idle, BatchMax: max,
	}
	if opts.ExternalController {
		close(e.done)
		return e, nil
	}
	op, err := e.Controller.Build(ctx, cp.Config, logs)
	if err != nil {
		return fail(err)
	}
	go func() { e.done <- op.Run(runCtx) }()
	return e, nil
}

// Stop stops nodewright, the bridge and the simulator.
func (e *Env) Stop() error {
	e.cancel()
	e.Bridge.Stop()
	var errs []error
	select {
	case err := <-e.done: // closed at once when the controller is external
		errs = append(errs, err)
	case <-time.After(30 * time.Second):
		errs = append(errs, fmt.Errorf("nodewright did not stop within 30s"))
	}
	return errors.Join(append(errs, e.Sim.Close())...)
}

// IAMPolicyVars fill the placeholders of the chart's IAM policy for this
// environment's account, cluster, node role and interruption queue.
func (e *Env) IAMPolicyVars() iam.Vars {
	sc := e.Sim.Scenario()
	return iam.Vars{
		"CLUSTER_NAME": ClusterName, "AWS_ACCOUNT_ID": sc.AccountID,
		"NODE_ROLE_NAME": sc.InstanceProfiles[NodeInstanceProfile], "INTERRUPTION_QUEUE": e.queue,
		"AWS_REGION": sc.Region,
	}
}

// CheckIAM evaluates every AWS call nodewright made so far (those signed
// with ec2sim.SimulatorAccessKeyID) against the IAM policy the chart ships,
// with the IAM policy evaluator of test/iam, and returns how many calls it
// evaluated. Each check the policy denies, which on AWS would fail the call
// with UnauthorizedOperation, is in the error with the statement and
// condition it misses. The end-to-end suites call it after their tests.
func (e *Env) CheckIAM(ctx context.Context) (int, error) {
	var calls []ec2sim.Call
	for _, c := range e.Sim.AuditLog() {
		if c.Caller == ec2sim.SimulatorAccessKeyID {
			calls = append(calls, c)
		}
	}
	denials, err := iam.Evaluate(ctx, iam.ChartPolicy(), e.IAMPolicyVars(), calls)
	if err != nil {
		return len(calls), err
	}
	if len(denials) == 0 {
		return len(calls), nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the chart's IAM policy %s denies %d kinds of check among nodewright's %d calls; on AWS each is UnauthorizedOperation:", iam.ChartPolicy(), len(denials), len(calls))
	for _, d := range denials {
		b.WriteString("\n  " + strings.ReplaceAll(d.String(), "\n", "\n  "))
	}
	return len(calls), errors.New(b.String())
}
