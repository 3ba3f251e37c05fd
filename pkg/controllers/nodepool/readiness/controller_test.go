package readiness

import (
	"context"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/fixtures"
	"github.com/nodewright/nodewright/test/harness"
)

var cp *harness.ControlPlane

func TestMain(m *testing.M) { harness.Main(m, harness.Options{}, &cp) }

type recorder struct {
	mu      sync.Mutex
	reasons []string
}

func (r *recorder) Eventf(_ runtime.Object, _ runtime.Object, _, reason, _, _ string, _ ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons = append(r.reasons, reason)
}

func pool(t *testing.T, class string, labels map[string]string) *v1.NodePool {
	t.Helper()
	np := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: harness.Name("pool")}}
	np.Spec.Template.Spec.NodeClassRef = &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: class}
	np.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{}
	np.Spec.Template.Labels = labels
	if err := cp.Client.Create(context.Background(), np); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), np) })
	return np
}

func conditions(t *testing.T, c *Controller, np *v1.NodePool) *v1.NodePool {
	t.Helper()
	ctx := context.Background()
	if _, err := c.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(np)}); err != nil {
		t.Fatal(err)
	}
	got := &v1.NodePool{}
	if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(np), got); err != nil {
		t.Fatal(err)
	}
	return got
}

func status(np *v1.NodePool, t string) string {
	c := meta.FindStatusCondition(np.Status.Conditions, t)
	if c == nil {
		return "missing"
	}
	return string(c.Status) + " " + c.Message
}

// A pool with a template label in a domain Kubernetes reserves (the CRD
// leaves kubernetes.io labels to runtime checks, as Karpenter's does) gets
// ValidationSucceeded False naming the label, an event, and Ready False;
// fixed, it is valid again. Fails without the validate call (tried: the
// condition then stays True).
func TestValidationSucceededNamesTheField(t *testing.T) {
	ctx := context.Background()
	np := pool(t, "default", map[string]string{"team": "data", "node-role.kubernetes.io/control-plane": ""})
	rec := &recorder{}
	c := &Controller{Kube: cp.Client, Recorder: rec, NodeClass: &awsv1.EC2NodeClass{}}
	got := conditions(t, c, np)
	if s := status(got, v1.ConditionTypeValidationSucceeded); !strings.HasPrefix(s, "False") || !strings.Contains(s, `spec.template.metadata.labels["node-role.kubernetes.io/control-plane"]`) {
		t.Fatalf("ValidationSucceeded of a pool with a reserved label: %s", s)
	}
	if s := status(got, v1.ConditionTypeReady); !strings.HasPrefix(s, "False") {
		t.Errorf("Ready of an invalid pool: %s", s)
	}
	if !strings.Contains(strings.Join(rec.reasons, ","), "InvalidNodePool") {
		t.Errorf("events: %v, want InvalidNodePool", rec.reasons)
	}
	n := len(rec.reasons)
	conditions(t, c, np)
	if len(rec.reasons) != n {
		t.Errorf("a second look at the unchanged pool repeated its events: %v", rec.reasons)
	}
	delete(got.Spec.Template.Labels, "node-role.kubernetes.io/control-plane")
	if err := cp.Client.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if s := status(conditions(t, c, got), v1.ConditionTypeValidationSucceeded); !strings.HasPrefix(s, "True") {
		t.Errorf("ValidationSucceeded of the fixed pool: %s", s)
	}
}

// NodeClassReady (and with it Ready, what `kubectl get nodepools` shows)
// follows the node class: missing, then present but not Ready, then Ready
// for its generation; nodeClassObservedGeneration is the generation read.
// Fails when NodeClassReady ignores the class's own Ready (tried: nodeClass
// returning true once the class exists).
func TestReadyFollowsTheNodeClass(t *testing.T) {
	ctx := context.Background()
	name := harness.Name("class")
	np := pool(t, name, nil)
	c := &Controller{Kube: cp.Client, Recorder: &recorder{}, NodeClass: &awsv1.EC2NodeClass{}}
	got := conditions(t, c, np)
	if s := status(got, v1.ConditionTypeNodeClassReady); !strings.HasPrefix(s, "False") || !strings.Contains(s, "not found") {
		t.Errorf("NodeClassReady with no class: %s", s)
	}
	if s := status(got, v1.ConditionTypeReady); !strings.HasPrefix(s, "False") {
		t.Errorf("Ready with no class: %s", s)
	}

	objs, err := fixtures.SeedObjects(fixtures.EC2NodeClassDefault)
	if err != nil {
		t.Fatal(err)
	}
	class := &awsv1.EC2NodeClass{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs[0].Object, class); err != nil {
		t.Fatal(err)
	}
	class.Name = name
	if err := cp.Client.Create(ctx, class); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(ctx, class) })
	if s := status(conditions(t, c, np), v1.ConditionTypeNodeClassReady); !strings.HasPrefix(s, "False") || !strings.Contains(s, "no Ready condition") {
		t.Errorf("NodeClassReady with a class not resolved yet: %s", s)
	}
	class.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Ready", ObservedGeneration: class.Generation, LastTransitionTime: metav1.Now()}}
	if err := cp.Client.Status().Update(ctx, class); err != nil {
		t.Fatal(err)
	}
	got = conditions(t, c, np)
	if s := status(got, v1.ConditionTypeReady); !strings.HasPrefix(s, "True") {
		t.Errorf("Ready with a Ready class: %s (NodeClassReady %s)", s, status(got, v1.ConditionTypeNodeClassReady))
	}
	if got.Status.NodeClassObservedGeneration != class.Generation {
		t.Errorf("nodeClassObservedGeneration %d, want %d", got.Status.NodeClassObservedGeneration, class.Generation)
	}
}
