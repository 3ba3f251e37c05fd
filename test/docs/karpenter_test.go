package docs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/cloudprovider/aws"
	"github.com/nodewright/nodewright/pkg/controllers/provisioning"
	"github.com/nodewright/nodewright/pkg/scheduling"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
	"github.com/nodewright/nodewright/test/ec2sim"
	"github.com/nodewright/nodewright/test/harness"
	"github.com/nodewright/nodewright/test/simcloud"
)

// The files under karpenter/ re-type, one per file, the example NodePools and
// EC2NodeClasses of Karpenter's v1 website docs (each names its page and
// section), with the docs' placeholders and account-specific ids replaced by
// the simulator's. The README promises that Karpenter YAML applies unchanged
// and that no field is accepted and ignored, so each example must either
// work end to end (admitted, its class Ready, one node launched in the
// simulator from its NodePool as the provisioner would) or be refused with a
// message naming a field the example sets. The outcome is not written down
// per example: a feature landing later turns a refusal into a launch without
// editing this test. Mutations tried: the not-yet-supported message without
// its field path (placement-group and network-interfaces-efa fail: refused
// naming nothing); hasTags comparing wildcard values exactly
// (subnets-wildcard-value fails: no subnet). "Works" means a node launched;
// that each field reaches EC2 as asked is the field table's to show.

// docsEnv is the AWS provider over a simulator, with the seed EC2NodeClass
// "default" Ready for the examples whose NodePool names no class of their
// own.
type docsEnv struct {
	sim      *ec2sim.Server
	resolver *aws.NodeClassResolver
	cloud    *aws.CloudProvider
}

func newDocsEnv(t *testing.T) *docsEnv {
	t.Helper()
	env := simcloud.Start(t, cp)
	// The account holds the reservations the capacity reservation examples
	// select, one by tag and one by id, so that reserved launches are tried.
	for _, r := range []ec2sim.CapacityReservation{
		{InstanceType: "m5.large", Zone: "ap-northeast-2a", Total: 2, Tags: map[string]string{"application": "foobar"}},
		{ID: "cr-56fac701cc1951b03", InstanceType: "c5.large", Zone: "ap-northeast-2c", Total: 1},
	} {
		if _, err := env.Sim.AddCapacityReservation(r); err != nil {
			t.Fatal(err)
		}
	}
	// And the placement group the placement group example names.
	if _, err := env.Sim.AddPlacementGroup(ec2sim.PlacementGroup{Name: "my-training-group", Strategy: ec2sim.StrategyCluster}); err != nil {
		t.Fatal(err)
	}
	seed := env.SeedNodeClass(t, cp)
	if !meta.IsStatusConditionTrue(seed.Status.Conditions, aws.ConditionTypeReady) {
		t.Fatalf("the seed EC2NodeClass is not ready: %+v", seed.Status.Conditions)
	}
	return &docsEnv{sim: env.Sim, resolver: env.Resolver, cloud: env.Cloud}
}

// resolve writes nc's status as the NodeClassReconciler would and says
// whether it is Ready, else the messages of the conditions that are not True.
func (e *docsEnv) resolve(t *testing.T, nc *awsv1.EC2NodeClass) (bool, []string) {
	t.Helper()
	status, err := e.resolver.Resolve(context.Background(), nc)
	if err != nil {
		t.Fatalf("resolving EC2NodeClass %s: %v", nc.Name, err)
	}
	nc.Status = status
	if err := cp.Client.Status().Update(context.Background(), nc); err != nil {
		t.Fatal(err)
	}
	if meta.IsStatusConditionTrue(status.Conditions, aws.ConditionTypeReady) {
		return true, nil
	}
	var msgs []string
	for _, c := range status.Conditions {
		if c.Type != aws.ConditionTypeReady && c.Status != metav1.ConditionTrue {
			msgs = append(msgs, fmt.Sprintf("%s=%s: %s", c.Type, c.Status, c.Message))
		}
	}
	return false, msgs
}

func TestKarpenterDocsExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(harness.Root(), "test", "docs", "karpenter", "*.yaml"))
	if err != nil || len(files) < 20 {
		t.Fatalf("want the Karpenter docs examples, found %d (%v)", len(files), err)
	}
	e := newDocsEnv(t)
	var summary []string
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			outcome := e.check(t, file)
			summary = append(summary, fmt.Sprintf("%-40s %s", name, outcome))
		})
	}
	t.Logf("Karpenter docs examples:\n%s", strings.Join(summary, "\n"))
}

// check applies one example file and returns its outcome, failing the test
// when an object is neither working nor refused naming a field it sets.
func (e *docsEnv) check(t *testing.T, file string) string {
	t.Helper()
	ctx := context.Background()
	objs := decode(t, file)
	// Classes first: the NodePool of the file names one of them.
	slices.SortStableFunc(objs, func(a, b map[string]any) int {
		return strings.Compare(kindOf(a), kindOf(b)) // EC2NodeClass before NodePool
	})
	var outcomes []string
	classes := map[string]string{} // name -> why not Ready ("" when Ready)
	for _, obj := range objs {
		u := &unstructured.Unstructured{Object: obj}
		what := u.GetKind() + " " + u.GetName()
		if err := cp.Client.Create(ctx, u); err != nil {
			outcomes = append(outcomes, e.refused(t, what+" refused at admission", err.Error(), obj))
			if u.GetKind() == "EC2NodeClass" {
				classes[u.GetName()] = "refused at admission"
			}
			continue
		}
		switch u.GetKind() {
		case "EC2NodeClass":
			nc := &awsv1.EC2NodeClass{}
			if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(u), nc); err != nil {
				t.Fatal(err)
			}
			if ready, msgs := e.resolve(t, nc); ready {
				classes[nc.Name] = ""
				outcomes = append(outcomes, what+" Ready")
			} else {
				classes[nc.Name] = strings.Join(msgs, "; ")
				outcomes = append(outcomes, e.refused(t, what+" not Ready", classes[nc.Name], obj))
			}
		case "NodePool":
			np := &v1.NodePool{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, np); err != nil {
				t.Fatal(err)
			}
			outcomes = append(outcomes, e.launch(t, np, obj, classes))
		default:
			t.Fatalf("%s: %s is neither a NodePool nor an EC2NodeClass", file, what)
		}
	}
	return strings.Join(outcomes, "; ")
}

// launch makes one NodeClaim from np as the static NodePool controller does
// (the plan the provisioner would make for a pod the template allows) and
// creates it through the AWS provider, checking the instance exists.
func (e *docsEnv) launch(t *testing.T, np *v1.NodePool, obj map[string]any, classes map[string]string) string {
	t.Helper()
	ctx := context.Background()
	what := "NodePool " + np.Name
	if err := np.RuntimeValidate(); err != nil {
		return e.refused(t, what+" refused by RuntimeValidate", err.Error(), obj)
	}
	if ref := np.Spec.Template.Spec.NodeClassRef; ref != nil {
		if why, ok := classes[ref.Name]; ok && why != "" {
			return what + " not launched: its EC2NodeClass is refused"
		}
	}
	cat, settings, err := e.cloud.Catalog(ctx, np)
	if err != nil {
		t.Fatalf("%s: catalog of a NodePool whose class is Ready: %v", what, err)
	}
	reqs, err := requirements.FromNodePool(np.Spec.Template.Spec.Requirements)
	if err != nil {
		return e.refused(t, what+" refused", "spec.template.spec.requirements: "+err.Error(), obj)
	}
	pool := scheduling.NodePool{Name: np.Name, Requirements: reqs, Labels: np.Spec.Template.Labels,
		Taints: np.Spec.Template.Spec.Taints, Catalog: cat, Settings: settings}
	plans, err := scheduling.PlanNodes(pool, nil, nil, 1, scheduling.Options{SpotRiskWeight: -1})
	if err != nil || len(plans) != 1 {
		// The static NodePool controller's CannotLaunch event says this.
		key, ok := namesRequirement(fmt.Sprint(err), np)
		if !ok {
			t.Errorf("%s: no node planned, with a message naming none of its requirements: %v", what, err)
		}
		return fmt.Sprintf("%s not launched (names requirement %s): %v", what, key, err)
	}
	claim := provisioning.NewNodeClaim(plans[0], np)
	if err := cp.Client.Create(ctx, claim); err != nil {
		t.Fatalf("%s: its NodeClaim is refused: %v", what, err)
	}
	launched, err := e.cloud.Create(ctx, claim)
	if err != nil {
		t.Fatalf("%s: launching NodeClaim %s: %v", what, claim.Name, err)
	}
	_, id, err := aws.ParseProviderID(launched.Status.ProviderID)
	if err != nil {
		t.Fatal(err)
	}
	inst, ok := e.sim.Instance(id)
	if !ok {
		t.Fatalf("%s: instance %s of NodeClaim %s is not in the simulator", what, id, claim.Name)
	}
	if !slices.ContainsFunc(plans[0].InstanceTypes, func(c catalog.Candidate) bool { return c.Type.Name == inst.InstanceType }) {
		t.Errorf("%s: launched %s, which the plan did not allow", what, inst.InstanceType)
	}
	capacity := launched.Labels[v1.CapacityTypeLabelKey]
	if inst.CapacityReservationID != "" {
		capacity += " in " + inst.CapacityReservationID
	}
	return fmt.Sprintf("%s launched %s %s in %s", what, inst.InstanceType, capacity, inst.Zone)
}

// refused returns the outcome of a refusal, failing the test when msg names
// no field the example sets: a user must learn from it what to change.
func (e *docsEnv) refused(t *testing.T, what, msg string, obj map[string]any) string {
	t.Helper()
	field, ok := namesSetField(msg, obj)
	if !ok {
		t.Errorf("%s with a message naming no field it sets: %s", what, msg)
		return what + ": " + msg
	}
	return fmt.Sprintf("%s (names %s): %s", what, field, msg)
}

// fieldPath matches a field path in a message: fields and indexes, as in
// spec.amiSelectorTerms[0].alias,
// spec.template.metadata.labels["kubernetes.io/arch"], or relative to spec
// with an index (amiSelectorTerms[0], as the node class conditions write
// them). Quoted names a message lists ("must specify exactly one of
// ['role', 'instanceProfile']", reported at spec) are fields under the path
// the apiserver reports, and a required field missing from a block the
// example sets ("spec.disruption.consolidateAfter: Required value") names
// what to add.
var (
	fieldPath = regexp.MustCompile(`\bspec(?:\.[A-Za-z][A-Za-z0-9-]*|\[[^\]]*\])*|\b[a-z][A-Za-z0-9]*\[[^\]]*\](?:\.[A-Za-z][A-Za-z0-9-]*|\[[^\]]*\])*`)
	quoted    = regexp.MustCompile(`'([A-Za-z][A-Za-z0-9]*)'`)
	index     = regexp.MustCompile(`\[[^\]]*\]`)
)

// namesSetField returns the first field below spec that msg names and obj
// sets.
func namesSetField(msg string, obj map[string]any) (string, bool) {
	set := map[string]bool{}
	paths("", obj, set)
	for _, loc := range fieldPath.FindAllStringIndex(msg, -1) {
		if loc[1] < len(msg) && isWordChar(msg[loc[1]]) {
			continue // a word that starts like a path: "specify"
		}
		m := msg[loc[0]:loc[1]]
		p := index.ReplaceAllString(m, "")
		if !strings.HasPrefix(p, "spec") {
			p = "spec." + p
		}
		if p != "spec" && set[p] {
			return m, true
		}
		if parent := p[:max(strings.LastIndex(p, "."), 0)]; parent != "spec" && set[parent] && strings.Contains(msg, m+": Required value") {
			return m, true
		}
		for _, q := range quoted.FindAllStringSubmatch(msg, -1) {
			if set[p+"."+q[1]] {
				return m + "." + q[1], true
			}
		}
	}
	return "", false
}

func isWordChar(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// namesRequirement returns the key of one of np's requirements that msg
// names: a pool no instance type satisfies is refused for that requirement.
func namesRequirement(msg string, np *v1.NodePool) (string, bool) {
	for _, r := range np.Spec.Template.Spec.Requirements {
		if strings.Contains(msg, r.Key+" ") {
			return r.Key, true
		}
	}
	return "", false
}

// paths adds the dotted path of every field set in v under prefix; lists
// add their elements' fields under the list's path.
func paths(prefix string, v any, set map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, sub := range v {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			set[p] = true
			paths(p, sub, set)
		}
	case []any:
		for _, sub := range v {
			paths(prefix, sub, set)
		}
	}
}

func decode(t *testing.T, file string) []map[string]any {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	var out []map[string]any
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatalf("%s: %v", file, err)
		}
		if len(obj) > 0 {
			out = append(out, obj)
		}
	}
}

func kindOf(obj map[string]any) string {
	k, _ := obj["kind"].(string)
	return k
}
