// Package docs keeps the guides honest: every YAML block in
// charts/nodewright/docs is applied to a real kube-apiserver (server-side dry
// run), and every Helm values block renders the chart.
package docs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nodewright/nodewright/test/harness"
)

var cp *harness.ControlPlane

func TestMain(m *testing.M) { harness.Main(m, harness.Options{}, &cp) }

// block is one fenced code block.
type block struct {
	info string // what follows ``` on the opening line
	line int
	text string
}

func blocks(t *testing.T, path string) []block {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []block
	var cur *block
	var b strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &block{info: strings.TrimSpace(strings.TrimPrefix(line, "```")), line: n}
			b.Reset()
		case cur != nil && strings.HasPrefix(line, "```"):
			cur.text = b.String()
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			b.WriteString(line + "\n")
		}
	}
	return out
}

func TestGuidesYAMLApplies(t *testing.T) {
	ctx := context.Background()
	guides, err := filepath.Glob(filepath.Join(harness.Root(), "charts", "nodewright", "docs", "*.md"))
	if err != nil || len(guides) < 3 {
		t.Fatalf("want the three guides, found %v (%v)", guides, err)
	}
	for _, guide := range guides {
		t.Run(filepath.Base(guide), func(t *testing.T) {
			ns := cp.Namespace(t)
			checked := 0
			for _, bl := range blocks(t, guide) {
				switch bl.info {
				case "yaml":
					dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(bl.text), 4096)
					for {
						var obj map[string]any
						if err := dec.Decode(&obj); err != nil {
							if errors.Is(err, io.EOF) {
								break
							}
							t.Fatalf("%s:%d: %v", guide, bl.line, err)
						}
						if len(obj) == 0 {
							continue
						}
						u := &unstructured.Unstructured{Object: obj}
						if u.GetNamespace() == "" && u.GetKind() != "NodePool" && u.GetKind() != "EC2NodeClass" {
							u.SetNamespace(ns)
						}
						if err := cp.Client.Create(ctx, u, client.DryRunAll); err != nil {
							t.Errorf("%s:%d: %s %s is refused: %v", guide, bl.line, u.GetKind(), u.GetName(), err)
						}
						checked++
					}
				case "yaml values":
					values := filepath.Join(t.TempDir(), "values.yaml")
					if err := os.WriteFile(values, []byte(bl.text), 0o600); err != nil {
						t.Fatal(err)
					}
					cmd := exec.Command(filepath.Join(harness.BinDir(), "helm"), "template", "nodewright",
						filepath.Join(harness.Root(), "charts", "nodewright"), "-f", values)
					if out, err := cmd.CombinedOutput(); err != nil {
						t.Errorf("%s:%d: the values do not render: %v\n%s", guide, bl.line, err, out)
					}
					checked++
				default:
					if strings.HasPrefix(bl.info, "yaml") {
						t.Errorf("%s:%d: unknown block kind %q", guide, bl.line, bl.info)
					}
				}
			}
			if checked == 0 {
				t.Errorf("%s has no YAML this test checks", guide)
			}
		})
	}
}
