package operator

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/samber/lo"

	"github.com/nodewright/nodewright/pkg/controllers/disruption"
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
		ConsolidationMinSavings: 0.10, FeatureGates: FeatureGates{DrainOnRebalance: false, SpotToSpotConsolidation: true, NodeRepair: true}}
	if !reflect.DeepEqual(o, want) {
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
		{with("--cluster-name=a", "--vm-memory-overhead-percent=1.5"), nil, "--vm-memory-overhead-percent must be a fraction"},
		{with("--cluster-name=a", "--consolidation-min-savings=1"), nil, "--consolidation-min-savings must be a fraction"},
		{with("--cluster-name=a"), map[string]string{"AWS_FEATURE_GATES": "NodeClassCEL=maybe"}, `--feature-gates: NodeClassCEL="maybe": want`},
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
	g, _, err := ParseFeatureGates(" DrainOnRebalance = true ,")
	if err != nil || !g.DrainOnRebalance {
		t.Fatalf("DrainOnRebalance=true not applied: %+v %v", g, err)
	}
	if got := g.String(); got != "DrainOnRebalance=true,NodeRepair=true,SpotToSpotConsolidation=true" {
		t.Errorf("String() = %q", got)
	}
	if back, _, err := ParseFeatureGates(g.String()); err != nil || back != g {
		t.Errorf("String does not parse back: %+v %v", back, err)
	}
	// Rebalance recommendations do not drain by default, as in Karpenter
	// (fails when the gate's default is true, as it was).
	if d, _, _ := ParseFeatureGates(""); d != DefaultFeatureGates() || d.DrainOnRebalance {
		t.Errorf("empty gates are not the defaults: %+v", d)
	}
}

// Karpenter's FEATURE_GATES values start nodewright: the gates it implements
// switch their behaviour, the others and unknown names are returned to be
// logged, never an error; only a value that is not a boolean is.
// Mutations tried: an unknown name an error again (as before) -> the
// Karpenter cases fail; SpotToSpotConsolidation not in featureGates -> its
// case is ignored instead of applied; the ignoredGates reason dropped for a
// known Karpenter gate -> "StaticCapacity" says unknown.
func TestKarpenterFeatureGates(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    FeatureGates
		ignored map[string]string // name -> a part of the reason
	}{
		// Karpenter v1 chart's default value.
		{"NodeRepair=false,ReservedCapacity=true,SpotToSpotConsolidation=false,NodeOverlay=false,StaticCapacity=false",
			FeatureGates{}, map[string]string{"ReservedCapacity": "capacityReservationSelectorTerms", "NodeOverlay": "no NodeOverlay",
				"StaticCapacity": "always served"}},
		{"SpotToSpotConsolidation=true,NodeRepair=true,DrainOnRebalance=true",
			FeatureGates{DrainOnRebalance: true, SpotToSpotConsolidation: true, NodeRepair: true}, nil},
		{"NodeClassCEL=true,DRAEFA=false", DefaultFeatureGates(), map[string]string{"NodeClassCEL": "always on", "DRAEFA": "dynamic resource allocation"}},
		{"DrainOnRebalanse=true", DefaultFeatureGates(), map[string]string{"DrainOnRebalanse": "unknown gate (known: DrainOnRebalance, NodeRepair, SpotToSpotConsolidation)"}},
	} {
		g, ignored, err := ParseFeatureGates(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if g != tc.want {
			t.Errorf("%s: gates %+v, want %+v", tc.in, g, tc.want)
		}
		if len(ignored) != len(tc.ignored) {
			t.Errorf("%s: ignored %+v, want %v", tc.in, ignored, tc.ignored)
		}
		for _, ig := range ignored {
			if want, ok := tc.ignored[ig.Name]; !ok || !strings.Contains(ig.Reason, want) {
				t.Errorf("%s: %s ignored because %q, want %q", tc.in, ig.Name, ig.Reason, want)
			}
		}
	}
	for _, bad := range []string{"NodeOverlay=maybe", "SpotToSpotConsolidation", "Foo=maybe"} {
		if _, _, err := ParseFeatureGates(bad); err == nil {
			t.Errorf("%s: want an error", bad)
		}
	}
}

// AWS_FEATURE_GATES, Karpenter's provider gates, is read with FEATURE_GATES.
// Mutation tried: awsGates not joined to gates -> nothing ignored.
func TestAWSFeatureGatesEnv(t *testing.T) {
	o, err := ParseOptions(with("--cluster-name=a"), env(map[string]string{"AWS_FEATURE_GATES": "RebootForRepair=true", "FEATURE_GATES": "NodeRepair=false"}))
	if err != nil {
		t.Fatal(err)
	}
	if o.FeatureGates.NodeRepair || len(o.IgnoredFeatureGates) != 1 || o.IgnoredFeatureGates[0].Name != "RebootForRepair" {
		t.Errorf("gates %+v, ignored %+v", o.FeatureGates, o.IgnoredFeatureGates)
	}
}

// NodeRepair=false takes Repair out of disruption's methods and keeps the
// others in order. Mutation tried: disruptionMethods returning the defaults
// -> Repair stays.
func TestNodeRepairGate(t *testing.T) {
	names := func(ms []disruption.Method) []string {
		return lo.Map(ms, func(m disruption.Method, _ int) string { return m.Annotation() })
	}
	on, off := DefaultFeatureGates(), DefaultFeatureGates()
	off.NodeRepair = false
	if got, want := names(disruptionMethods(on)), names(disruption.DefaultMethods()); !slices.Equal(got, want) {
		t.Errorf("NodeRepair=true: %v, want %v", got, want)
	}
	if got := names(disruptionMethods(off)); slices.Contains(got, disruption.Repair{}.Annotation()) || len(got) != len(disruption.DefaultMethods())-1 {
		t.Errorf("NodeRepair=false: %v", got)
	}
}
