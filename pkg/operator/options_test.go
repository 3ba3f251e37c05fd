package operator

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// required are the flags every test run needs besides the one it checks.
var required = []string{"--region=ap-northeast-2", "--cluster-endpoint=https://api.example", "--cluster-cidr=10.100.0.0/16"}

func with(args ...string) []string { return append(append([]string{}, required...), args...) }

func TestParseOptionsDefaults(t *testing.T) {
	o, err := ParseOptions(with("--cluster-name=prod"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Options{ClusterName: "prod", MetricsAddr: ":8080", HealthProbeAddr: ":8081", LeaderElection: true,
		LeaderElectionNamespace: "kube-system", BatchIdleDuration: time.Second, BatchMaxDuration: 10 * time.Second, LogLevel: "info",
		Region: "ap-northeast-2", ClusterEndpoint: "https://api.example", ClusterCIDR: "10.100.0.0/16", VMMemoryOverheadPercent: 0.075,
		ConsolidationMinSavings: 0.10, FeatureGates: FeatureGates{DrainOnRebalance: false}}
	if o != want {
		t.Errorf("defaults = %+v\nwant       %+v", o, want)
	}
}

func TestParseOptionsEnvAndFlags(t *testing.T) {
	o, err := ParseOptions(with("--batch-max-duration=20s"), env(map[string]string{
		"CLUSTER_NAME": "staging", "SYSTEM_NAMESPACE": "nodewright", "BATCH_IDLE_DURATION": "500ms",
		"BATCH_MAX_DURATION": "5s", "LEADER_ELECT": "false", "LOG_LEVEL": "debug",
		"INTERRUPTION_QUEUE": "my-cluster-interruptions", "FEATURE_GATES": "DrainOnRebalance=true",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if o.ClusterName != "staging" || o.LeaderElectionNamespace != "nodewright" || o.BatchIdleDuration != 500*time.Millisecond ||
		o.LeaderElection || o.LogLevel != "debug" || o.InterruptionQueue != "my-cluster-interruptions" || !o.FeatureGates.DrainOnRebalance {
		t.Errorf("environment not applied: %+v", o)
	}
	if o.BatchMaxDuration != 20*time.Second {
		t.Errorf("the flag must win over the environment: batch max %s", o.BatchMaxDuration)
	}
}

func TestParseOptionsErrorsNameTheSetting(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		msg  string
	}{
		{nil, nil, "--cluster-name (or CLUSTER_NAME) is required"},
		{with("--cluster-name=a", "--batch-idle-duration=0s"), nil, "--batch-idle-duration must be positive"},
		{with("--cluster-name=a", "--batch-idle-duration=5s", "--batch-max-duration=1s"), nil, "--batch-max-duration (1s) must not be shorter"},
		{with("--cluster-name=a", "--log-level=loud"), nil, `--log-level must be debug, info or error, got "loud"`},
		{with("--cluster-name=a"), map[string]string{"BATCH_IDLE_DURATION": "soon"}, `BATCH_IDLE_DURATION="soon": not a duration`},
		{with("--cluster-name=a"), map[string]string{"LEADER_ELECT": "maybe"}, `LEADER_ELECT="maybe": not true or false`},
		{[]string{"--cluster-name=a"}, nil, "--region (or AWS_REGION) is required"},
		{with("--cluster-name=a", "--cluster-cidr="), nil, "--cluster-cidr (or CLUSTER_CIDR) is required"},
		{with("--cluster-name=a", "--vm-memory-overhead-percent=1.5"), nil, "--vm-memory-overhead-percent must be a fraction"},
		{with("--cluster-name=a", "--consolidation-min-savings=1"), nil, "--consolidation-min-savings must be a fraction"},
		{with("--cluster-name=a", "--feature-gates=DrainOnRebalanse=false"), nil, `--feature-gates: unknown gate "DrainOnRebalanse" (known: DrainOnRebalance)`},
		{with("--cluster-name=a"), map[string]string{"FEATURE_GATES": "DrainOnRebalance=nope"}, `--feature-gates: DrainOnRebalance="nope": want DrainOnRebalance=true or DrainOnRebalance=false`},
		{with("--cluster-name=a", "--feature-gates=DrainOnRebalance"), nil, `--feature-gates: DrainOnRebalance="": want`},
		{with("--cluster-name=a"), map[string]string{"VM_MEMORY_OVERHEAD_PERCENT": "lots"}, `VM_MEMORY_OVERHEAD_PERCENT="lots": not a number`},
		{with("--cluster-name=a", "--no-such-flag"), nil, "flag provided but not defined: -no-such-flag"},
	} {
		_, err := ParseOptions(tc.args, env(tc.env))
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%v %v: want error %q, got %v", tc.args, tc.env, tc.msg, err)
		}
	}
}

func TestFeatureGates(t *testing.T) {
	g, err := ParseFeatureGates(" DrainOnRebalance = true ,")
	if err != nil || !g.DrainOnRebalance {
		t.Fatalf("DrainOnRebalance=true not applied: %+v %v", g, err)
	}
	if got := g.String(); got != "DrainOnRebalance=true" {
		t.Errorf("String() = %q", got)
	}
	if back, err := ParseFeatureGates(g.String()); err != nil || back != g {
		t.Errorf("String does not parse back: %+v %v", back, err)
	}
	// Rebalance recommendations do not drain by default, as in Karpenter
	// (fails when the gate's default is true, as it was).
	if d, _ := ParseFeatureGates(""); d != DefaultFeatureGates() || d.DrainOnRebalance {
		t.Errorf("empty gates are not the defaults: %+v", d)
	}
}
