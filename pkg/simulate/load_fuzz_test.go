package simulate

import (
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// located is how every error of a document begins: the file and a line.
var located = regexp.MustCompile(`^f\.yaml:(\d+): `)

// FuzzLoad: whatever a file holds, Load never panics and is deterministic;
// every error names the file and a line inside it (or the missing NodePool);
// the pods it expands stay within MaxPods. Mutation tried: expand without
// its bound (the code before this test) fails the replicas: 100001 seed
// (seed#2) with the pods past MaxPods; replicas: 2000000000 then allocates
// until memory runs out.
func FuzzLoad(f *testing.F) {
	pool := "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {name: p}\nspec:\n  template:\n    spec:\n" +
		"      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}\n      requirements: []\n"
	deploy := func(replicas string) string {
		return "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: " + replicas +
			"\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n" +
			"    spec: {containers: [{name: c, image: i, resources: {requests: {cpu: 100m}}}]}\n"
	}
	for _, seed := range []string{
		pool, pool + "---\n" + deploy("3"), pool + "---\n" + deploy("100001"), pool + "---\n" + deploy("2000000000"), pool + "---\n" + deploy("-2"),
		"---\n---\n", "kind: Pod\n", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, resourcez: {}}]}\n",
		"apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {parallelism: 5, completions: -1, template: {spec: {containers: []}}}\n",
		"a: [\n", "\t- x", pool + "---\napiVersion: v1\nkind: Node\nmetadata: {name: n}\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, file string) {
		files := map[string][]byte{"f.yaml": []byte(file)}
		in, errs := Load(files, []string{"f.yaml"})
		again, errsAgain := Load(files, []string{"f.yaml"})
		if !reflect.DeepEqual(in, again) || !reflect.DeepEqual(errs, errsAgain) {
			t.Fatal("two loads of the same file differ")
		}
		lines := strings.Count(file, "\n") + 1
		for _, err := range errs {
			msg := err.Error()
			if strings.HasPrefix(msg, "no NodePool") {
				continue
			}
			m := located.FindStringSubmatch(msg)
			if m == nil {
				t.Fatalf("error names no file and line: %s", msg)
			}
			if n, _ := strconv.Atoi(m[1]); n < 1 || n > lines+1 {
				t.Fatalf("error at line %d of a %d-line file: %s", n, lines, msg)
			}
		}
		if len(in.Pods) > MaxPods {
			t.Fatalf("%d pods, more than MaxPods", len(in.Pods))
		}
	})
}
