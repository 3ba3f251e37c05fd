package validation

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

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/harness"
)

var cp *harness.ControlPlane

func TestMain(m *testing.M) { harness.Main(m, harness.Options{}, &cp) }

type recorder struct {
	mu    sync.Mutex
	notes []string
}

func (r *recorder) Eventf(_ runtime.Object, _ runtime.Object, _, reason, _, note string, _ ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, reason)
}

// A pool with a template label in a domain Kubernetes reserves (the CRD
// leaves kubernetes.io labels to runtime checks, as Karpenter's does) gets
// ValidationSucceeded False naming the label, and an event; fixed, it is
// True again. Fails
// without the controller's RuntimeValidate call (tried: the condition then
// stays True).
func TestValidationSucceededNamesTheField(t *testing.T) {
	ctx := context.Background()
	np := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: harness.Name("pool")}}
	np.Spec.Template.Spec.NodeClassRef = &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"}
	np.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{}
	np.Spec.Template.Labels = map[string]string{"team": "data", "node-role.kubernetes.io/control-plane": ""}
	if err := cp.Client.Create(ctx, np); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(ctx, np) })
	rec := &recorder{}
	c := &Controller{Kube: cp.Client, Recorder: rec}
	condition := func() *metav1.Condition {
		t.Helper()
		got := &v1.NodePool{}
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(np), got); err != nil {
			t.Fatal(err)
		}
		return meta.FindStatusCondition(got.Status.Conditions, v1.ConditionTypeValidationSucceeded)
	}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(np)}
	if _, err := c.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if c := condition(); c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, `spec.template.metadata.labels["node-role.kubernetes.io/control-plane"]`) {
		t.Fatalf("ValidationSucceeded of a pool with a reserved label: %+v", c)
	}
	if len(rec.notes) != 1 || rec.notes[0] != "InvalidNodePool" {
		t.Errorf("events: %v, want one InvalidNodePool", rec.notes)
	}
	if _, err := c.Reconcile(ctx, req); err != nil || len(rec.notes) != 1 {
		t.Errorf("a second look at the unchanged pool: %v, events %v", err, rec.notes)
	}
	if err := cp.Client.Get(ctx, req.NamespacedName, np); err != nil {
		t.Fatal(err)
	}
	delete(np.Spec.Template.Labels, "node-role.kubernetes.io/control-plane")
	if err := cp.Client.Update(ctx, np); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if c := condition(); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("ValidationSucceeded of the fixed pool: %+v", c)
	}
}
