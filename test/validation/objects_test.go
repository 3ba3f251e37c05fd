package validation

import (
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/nodewright/nodewright/test/harness"
)

// Valid starting points; each case of the table changes one thing.
const (
	validNodePool = `
apiVersion: karpenter.sh/v1
kind: NodePool
spec:
  template:
    metadata:
      labels:
        team: batch
    spec:
      requirements:
      - key: karpenter.sh/capacity-type
        operator: In
        values: [spot, on-demand]
      nodeClassRef:
        group: karpenter.k8s.aws
        kind: EC2NodeClass
        name: default
  limits:
    cpu: "100"
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 30s
`
	validEC2NodeClass = `
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
spec:
  amiSelectorTerms:
  - alias: al2023@latest
  subnetSelectorTerms:
  - tags:
      Tier: private
  securityGroupSelectorTerms:
  - tags:
      kubernetes.io/cluster/my-cluster: owned
  role: KarpenterNodeRole
`
	validNodeClaim = `
apiVersion: karpenter.sh/v1
kind: NodeClaim
spec:
  requirements:
  - key: node.kubernetes.io/instance-type
    operator: In
    values: [m5.xlarge]
  nodeClassRef:
    group: karpenter.k8s.aws
    kind: EC2NodeClass
    name: default
`
)

// object parses a manifest and gives it a name unique to this run.
func object(t *testing.T, manifest string) *unstructured.Unstructured {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(manifest), &obj); err != nil {
		t.Fatalf("parsing manifest: %v", err)
	}
	u := &unstructured.Unstructured{Object: obj}
	u.SetName(harness.Name(strings.ToLower(u.GetKind())))
	return u
}

// set replaces the value at a dotted path (list indexes as numbers) with the
// value parsed from YAML; a nil value deletes the field.
func set(t *testing.T, u *unstructured.Unstructured, path string, value string) {
	t.Helper()
	var v any
	if value != "" {
		if err := yaml.Unmarshal([]byte(value), &v); err != nil {
			t.Fatalf("parsing value %q: %v", value, err)
		}
	}
	parts := strings.Split(path, ".")
	var cur any = u.Object
	for i, part := range parts {
		last := i == len(parts)-1
		switch node := cur.(type) {
		case map[string]any:
			if last {
				if value == "" {
					delete(node, part)
				} else {
					node[part] = v
				}
				return
			}
			next, ok := node[part]
			if !ok {
				next = map[string]any{}
				node[part] = next
			}
			cur = next
		case []any:
			idx, err := strconv.Atoi(part)
			if err != nil || idx >= len(node) {
				t.Fatalf("path %s: %q is not an index of a list of %d", path, part, len(node))
			}
			if last {
				node[idx] = v
				return
			}
			cur = node[idx]
		default:
			t.Fatalf("path %s: %s is not an object or list", path, strings.Join(parts[:i], "."))
		}
	}
}
