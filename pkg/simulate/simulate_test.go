package simulate

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/fixtures"
)

func seedFiles(t *testing.T) []string {
	t.Helper()
	var paths []string
	for _, n := range []string{fixtures.NodePoolBatch, fixtures.EC2NodeClassDefault, fixtures.BatchJob} {
		paths = append(paths, filepath.Join(fixtures.SeedDir(), n))
	}
	return paths
}

// The seed files: the Job's 10 parallel pods get spot nodes of the pool's
// types in its zones, in ap-northeast-2 read from those zones.
func TestSeedFixturesPlan(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{}
	for _, p := range seedFiles(t) {
		args = append(args, "-f", p)
	}
	if code := Main(args, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"Plan for 10 pods in ap-northeast-2", "Pods that fit nowhere: 0", "the same nodes on demand"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	contents := map[string][]byte{}
	for _, p := range seedFiles(t) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		contents[p] = data
	}
	in, errs := Load(contents, seedFiles(t))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	rep, err := Run(in, "", 0.1)
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"c5.xlarge": true, "c5a.xlarge": true, "c5.2xlarge": true, "c6i.xlarge": true, "c6i.2xlarge": true, "m5.xlarge": true, "m5a.xlarge": true}
	placed := 0
	for _, c := range rep.Plan.NodeClaims {
		placed += len(c.Pods)
		if c.Offering.CapacityType != v1.CapacityTypeSpot || !allowed[c.InstanceTypes[0].Type.Name] ||
			(c.Offering.Zone != "ap-northeast-2a" && c.Offering.Zone != "ap-northeast-2c") {
			t.Errorf("planned %s %s in %s, outside the pool and the job's spot selector", c.Offering.CapacityType, c.InstanceTypes[0].Type.Name, c.Offering.Zone)
		}
	}
	if placed != 10 || rep.OnDemand <= rep.Plan.Cost() {
		t.Errorf("placed %d of 10; cost %.4f vs on demand %.4f", placed, rep.Plan.Cost(), rep.OnDemand)
	}
}

// Workloads expand to the pods they would run; a pod too big for any type
// is reported with the solver's reason.
func TestWorkloadsExpandAndMisfitsAreExplained(t *testing.T) {
	pool, err := os.ReadFile(filepath.Join(fixtures.SeedDir(), fixtures.NodePoolBatch))
	if err != nil {
		t.Fatal(err)
	}
	workloads := `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: web, resources: {requests: {cpu: 500m, memory: 1Gi}}}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: burst}
spec:
  parallelism: 50
  completions: 4
  template:
    spec:
      restartPolicy: Never
      containers: [{name: b, image: b, resources: {requests: {cpu: "1"}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: huge}
spec:
  containers: [{name: h, image: h, resources: {requests: {cpu: "64"}}}]
`
	in, errs := Load(map[string][]byte{"pool.yaml": pool, "w.yaml": []byte(workloads)}, []string{"pool.yaml", "w.yaml"})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(in.Pods) != 3+4+1 {
		t.Fatalf("%d pods, want 3 replicas + 4 (completions cap parallelism) + 1", len(in.Pods))
	}
	rep, err := Run(in, "", 0.1)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Plan.Unschedulable) != 1 || rep.Plan.Unschedulable[0].Pod.Name != "huge" {
		t.Fatalf("unschedulable %v, want only huge", rep.Plan.Unschedulable)
	}
	if reason := rep.Plan.Unschedulable[0].Reason; !strings.Contains(reason, "batch-processing") {
		t.Errorf("the reason does not name the pool: %s", reason)
	}
	var buf bytes.Buffer
	if err := rep.Print(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "default/huge: ") || !strings.Contains(buf.String(), "3 x web") {
		t.Errorf("report:\n%s", buf.String())
	}
	if rep.Plan.Placed() != 7 || len(in.Pods[0].Spec.Containers) != 1 || in.Pods[0].Spec.Containers[0].Resources.Requests.Cpu().MilliValue() != 500 {
		t.Errorf("placed %d of 7", rep.Plan.Placed())
	}
}

// Bad input names the file and the line, every bad document is reported,
// and the exit code is 2.
func TestBadYAMLNamesFileAndLine(t *testing.T) {
	bad := `apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: ok}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements: []
---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - name: c
    image: i
    resourcez: {}
---
apiVersion: v1
kind: Pod
metadata:
  name: broken
   indent: wrong
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
---
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: overflow}
spec:
  template:
    spec:
      expireAfter: 9999999h
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements: []
`
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"-f", path}, nil, &stdout, &stderr); code != 2 {
		t.Fatalf("exit %d, want 2; stderr: %s", code, stderr.String())
	}
	msg := stderr.String()
	for _, want := range []string{
		path + ":17: Pod: ", `unknown field "resourcez"`,
		path + ":23: ",
		path + ":25: v1 ConfigMap: not a NodePool",
		// The apiserver refuses it (CEL); decoding alone no longer does.
		path + `:29: NodePool overflow: spec.template.spec.expireAfter: "9999999h" is not a duration`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("errors lack %q:\n%s", want, msg)
		}
	}
	if code := Main([]string{}, nil, &stdout, &stderr); code != 2 {
		t.Errorf("no -f: exit %d, want 2", code)
	}
	if code := Main([]string{"-f", filepath.Join(dir, "missing.yaml")}, nil, &stdout, &stderr); code != 1 {
		t.Errorf("missing file: exit %d, want 1", code)
	}
}

// Nodes and the pods bound to them: the preview moves the three web pods
// onto as few, cheap nodes as hold them, keeps the node of the
// do-not-disrupt pod and says why, and prices before and after.
// Mutation tried: the preview ignoring do-not-disrupt (held consolidated).
func TestConsolidationPreview(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"-f", filepath.Join(fixtures.SeedDir(), fixtures.NodePoolBatch), "-f", filepath.Join(fixtures.SeedDir(), fixtures.EC2NodeClassDefault),
		"-f", filepath.Join("testdata", "cluster.yaml")}
	if code := Main(args, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"Consolidation preview: 4 nodes", "kept held: a pod on it is annotated karpenter.sh/do-not-disrupt", "After: "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	contents := map[string][]byte{}
	for _, p := range everyOther(args) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		contents[p] = data
	}
	in, errs := Load(contents, everyOther(args))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	rep, err := Run(in, "", 0.1)
	if err != nil {
		t.Fatal(err)
	}
	pv := rep.Preview
	if pv == nil || len(pv.Moves) == 0 || pv.After >= pv.Before || pv.NodesAfter >= pv.NodesBefore {
		t.Fatalf("preview %+v: want moves that lower the price and the node count", pv)
	}
	for _, m := range pv.Moves {
		if slices.Contains(m.Replaces, "held") {
			t.Errorf("the do-not-disrupt node was moved: %s", m.What)
		}
	}
}

// everyOther are the values of "-f value" pairs.
func everyOther(args []string) []string {
	var out []string
	for i := 1; i < len(args); i += 2 {
		out = append(out, args[i])
	}
	return out
}
