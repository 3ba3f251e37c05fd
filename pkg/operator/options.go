package operator

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// Options configure the operator. Each has a flag and an environment variable
// (the Helm chart sets the variables); a flag given on the command line wins.
type Options struct {
	// ClusterName names the cluster; instances are tagged with it. Required.
	ClusterName string
	// MetricsAddr is where Prometheus metrics are served. Default ":8080";
	// "0" disables the endpoint.
	MetricsAddr string
	// HealthProbeAddr serves /healthz and /readyz. Default ":8081".
	HealthProbeAddr string
	// LeaderElection makes replicas elect one active leader through a Lease, so
	// two controllers never launch capacity for the same pods. Default true.
	LeaderElection bool
	// LeaderElectionNamespace holds the Lease. Default: the pod's namespace
	// (SYSTEM_NAMESPACE), else "kube-system".
	LeaderElectionNamespace string
	// BatchIdleDuration ends a batch of pending pods once none has arrived for
	// this long. Default 1s.
	BatchIdleDuration time.Duration
	// BatchMaxDuration ends a batch after this long whatever arrives. Default 10s.
	BatchMaxDuration time.Duration
	// LogLevel is debug, info or error. Default info.
	LogLevel string
	// LogWriter receives the JSON logs; default standard error. Not a flag:
	// the demo and tests send the logs to a file.
	LogWriter io.Writer
	// Region is the AWS region instances launch in. Required.
	Region string
	// AWSEndpoint, when set, replaces every AWS service endpoint: a VPC
	// endpoint proxy, or the simulator in tests and the demo.
	AWSEndpoint string
	// ClusterEndpoint is the API server URL new nodes join. Default: EKS
	// DescribeCluster's endpoint for ClusterName.
	ClusterEndpoint string
	// ClusterCIDR is the cluster's service CIDR; nodes derive their DNS
	// address from it. Default: EKS DescribeCluster's.
	ClusterCIDR string
	// VMMemoryOverheadPercent is the share of an instance type's memory the
	// hypervisor keeps, subtracted before allocatable. Default 0.075.
	VMMemoryOverheadPercent float64
	// InterruptionQueue is the SQS queue (name or URL) EventBridge feeds with
	// spot interruption warnings, rebalance recommendations, scheduled
	// changes and instance state changes. Empty: no interruption handling.
	InterruptionQueue string
	// ConsolidationMinSavings is the share of the removed nodes' price a
	// consolidation replace must save in a WhenEmptyOrUnderutilized pool, so
	// nodes do not churn for pennies (deletes and Balanced pools are not
	// bound by it). Default 0.10.
	ConsolidationMinSavings float64
	// FeatureGates switch optional behaviours; see FeatureGates.
	FeatureGates FeatureGates
	// IgnoredFeatureGates are the gate names given that switch nothing
	// here, logged as warnings when the operator starts.
	IgnoredFeatureGates []IgnoredGate
}

// leaderElectionID names the Lease the replicas contend for.
const leaderElectionID = "nodewright-leader-election"

// ParseOptions reads options from args, with env supplying defaults.
func ParseOptions(args []string, env func(string) string) (Options, error) {
	fs := flag.NewFlagSet("nodewright", flag.ContinueOnError)
	// Errors are returned, not printed; `nodewright -h` still prints usage.
	fs.SetOutput(io.Discard)
	var o Options
	envOr := func(key, def string) string {
		if v := env(key); v != "" {
			return v
		}
		return def
	}
	var errs []error
	durationEnv := func(key string, def time.Duration) time.Duration {
		v := env(key)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not a duration such as 1s or 500ms", key, v))
			return def
		}
		return d
	}
	boolEnv := func(key string, def bool) bool {
		v := env(key)
		if v == "" {
			return def
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not true or false", key, v))
			return def
		}
		return b
	}
	namespace := envOr("SYSTEM_NAMESPACE", "kube-system")
	fs.StringVar(&o.ClusterName, "cluster-name", env("CLUSTER_NAME"), "name of the cluster; instances are tagged with it (env CLUSTER_NAME)")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", envOr("METRICS_BIND_ADDRESS", ":8080"), "address of the metrics endpoint, 0 to disable (env METRICS_BIND_ADDRESS)")
	fs.StringVar(&o.HealthProbeAddr, "health-probe-bind-address", envOr("HEALTH_PROBE_BIND_ADDRESS", ":8081"), "address of /healthz and /readyz (env HEALTH_PROBE_BIND_ADDRESS)")
	fs.BoolVar(&o.LeaderElection, "leader-elect", boolEnv("LEADER_ELECT", true), "elect one active replica through a Lease (env LEADER_ELECT)")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", namespace, "namespace of the leader election Lease (env SYSTEM_NAMESPACE)")
	fs.DurationVar(&o.BatchIdleDuration, "batch-idle-duration", durationEnv("BATCH_IDLE_DURATION", time.Second), "end a batch of pending pods after this long without a new one (env BATCH_IDLE_DURATION)")
	fs.DurationVar(&o.BatchMaxDuration, "batch-max-duration", durationEnv("BATCH_MAX_DURATION", 10*time.Second), "end a batch of pending pods after this long (env BATCH_MAX_DURATION)")
	floatEnv := func(key string, def float64) float64 {
		v := env(key)
		if v == "" {
			return def
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not a number", key, v))
			return def
		}
		return f
	}
	fs.StringVar(&o.Region, "region", env("AWS_REGION"), "AWS region instances launch in (env AWS_REGION)")
	fs.StringVar(&o.AWSEndpoint, "aws-endpoint", env("AWS_ENDPOINT_URL"), "replace every AWS service endpoint, e.g. a proxy (env AWS_ENDPOINT_URL)")
	fs.StringVar(&o.ClusterEndpoint, "cluster-endpoint", env("CLUSTER_ENDPOINT"), "API server URL new nodes join; default EKS DescribeCluster's (env CLUSTER_ENDPOINT)")
	fs.StringVar(&o.ClusterCIDR, "cluster-cidr", env("CLUSTER_CIDR"), "the cluster's service CIDR, for node DNS; default EKS DescribeCluster's (env CLUSTER_CIDR)")
	fs.Float64Var(&o.ConsolidationMinSavings, "consolidation-min-savings", floatEnv("CONSOLIDATION_MIN_SAVINGS", 0.10),
		"share of a node's price a consolidation replace must save, in [0, 1); deletes need none (env CONSOLIDATION_MIN_SAVINGS)")
	fs.Float64Var(&o.VMMemoryOverheadPercent, "vm-memory-overhead-percent", floatEnv("VM_MEMORY_OVERHEAD_PERCENT", 0.075), "share of memory the hypervisor keeps (env VM_MEMORY_OVERHEAD_PERCENT)")
	fs.StringVar(&o.InterruptionQueue, "interruption-queue", env("INTERRUPTION_QUEUE"), "SQS queue (name or URL) of EC2 interruption events; empty disables interruption handling (env INTERRUPTION_QUEUE)")
	gates := envOr("FEATURE_GATES", "")
	fs.StringVar(&gates, "feature-gates", gates, "Name=true|false pairs, comma-separated; known: "+DefaultFeatureGates().String()+
		" (defaults shown); Karpenter's other gates are accepted and ignored with a warning (env FEATURE_GATES)")
	awsGates := envOr("AWS_FEATURE_GATES", "")
	fs.StringVar(&awsGates, "aws-feature-gates", awsGates, "Karpenter's AWS provider gates, read as --feature-gates (env AWS_FEATURE_GATES)")
	fs.StringVar(&o.LogLevel, "log-level", envOr("LOG_LEVEL", "info"), "debug, info or error (env LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stderr)
			fmt.Fprintln(os.Stderr, "Usage of nodewright:")
			fs.PrintDefaults()
		}
		return Options{}, err
	}
	g, ignored, err := ParseFeatureGates(gates + "," + awsGates)
	if err != nil {
		errs = append(errs, err)
	}
	o.FeatureGates, o.IgnoredFeatureGates = g, ignored
	if len(errs) > 0 {
		return Options{}, errors.Join(errs...)
	}
	return o, o.Validate()
}

// Validate reports every option that is wrong, naming its flag.
func (o Options) Validate() error {
	var errs []error
	if o.ClusterName == "" {
		errs = append(errs, errors.New("--cluster-name (or CLUSTER_NAME) is required"))
	}
	if o.BatchIdleDuration <= 0 {
		errs = append(errs, fmt.Errorf("--batch-idle-duration must be positive, got %s", o.BatchIdleDuration))
	}
	if o.BatchMaxDuration < o.BatchIdleDuration {
		errs = append(errs, fmt.Errorf("--batch-max-duration (%s) must not be shorter than --batch-idle-duration (%s)", o.BatchMaxDuration, o.BatchIdleDuration))
	}
	if o.Region == "" {
		errs = append(errs, errors.New("--region (or AWS_REGION) is required"))
	}
	if o.ConsolidationMinSavings < 0 || o.ConsolidationMinSavings >= 1 {
		errs = append(errs, fmt.Errorf("--consolidation-min-savings must be a fraction in [0, 1), got %v", o.ConsolidationMinSavings))
	}
	if o.VMMemoryOverheadPercent < 0 || o.VMMemoryOverheadPercent >= 1 {
		errs = append(errs, fmt.Errorf("--vm-memory-overhead-percent must be a fraction in [0, 1), got %v", o.VMMemoryOverheadPercent))
	}
	switch o.LogLevel {
	case "debug", "info", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level must be debug, info or error, got %q", o.LogLevel))
	}
	return errors.Join(errs...)
}

// Getenv is os.Getenv, named for ParseOptions' callers.
var Getenv = os.Getenv
