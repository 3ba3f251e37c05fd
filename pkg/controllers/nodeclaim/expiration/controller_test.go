package expiration

import (
	"context"
	"testing"
	"time"

	"github.com/nodewright/nodewright/pkg/controllers/disruption"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/harness"
)

var cp *harness.ControlPlane

func TestMain(m *testing.M) { harness.Main(m, harness.Options{}, &cp) }

type discard struct{}

func (discard) Eventf(runtime.Object, runtime.Object, string, string, string, string, ...any) {}

func claim(t *testing.T, expireAfter string) *v1.NodeClaim {
	t.Helper()
	ctx := context.Background()
	nc := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: harness.Name("claim"), Labels: map[string]string{v1.NodePoolLabelKey: "pool"}, Finalizers: []string{v1.TerminationFinalizer}},
		Spec: v1.NodeClaimSpec{
			NodeClassRef: &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"},
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: v1.NodePoolLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{"pool"}}},
			ExpireAfter:  v1.MustParseNillableDuration(expireAfter),
		},
	}
	if err := cp.Client.Create(ctx, nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cp.Client.Patch(ctx, &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: nc.Name}}, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))
		_ = cp.Client.Delete(ctx, &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: nc.Name}})
	})
	return nc
}

func reconcileAt(t *testing.T, nc *v1.NodeClaim, at time.Time) (ctrl.Result, *v1.NodeClaim) {
	t.Helper()
	c := &Controller{Kube: cp.Client, Recorder: discard{}, Now: func() time.Time { return at }}
	res, err := c.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(nc)})
	if err != nil {
		t.Fatal(err)
	}
	got := &v1.NodeClaim{}
	if err := cp.Client.Get(context.Background(), client.ObjectKeyFromObject(nc), got); err != nil {
		t.Fatal(err)
	}
	return res, got
}

// A claim is left until its expireAfter has passed (the controller comes
// back then), and then disrupted replacement-first; Never never expires.
func TestExpiry(t *testing.T) {
	nc := claim(t, "1h")
	born := nc.CreationTimestamp.Time
	res, got := reconcileAt(t, nc, born.Add(30*time.Minute))
	if !got.DeletionTimestamp.IsZero() || res.RequeueAfter != 30*time.Minute {
		t.Fatalf("half-way: deleting %v, back in %s (want 30m)", !got.DeletionTimestamp.IsZero(), res.RequeueAfter)
	}
	at := born.Add(61 * time.Minute)
	_, got = reconcileAt(t, nc, at)
	if got.DeletionTimestamp.IsZero() || got.Annotations[disruption.DisruptionReasonAnnotation] != "expired" {
		t.Fatalf("expired claim: deleting %v, annotations %v", !got.DeletionTimestamp.IsZero(), got.Annotations)
	}
	if by, ok := disruption.DrainBy(got); !ok || !by.Equal(at.Add(MaxReplaceWait).Truncate(time.Second)) {
		t.Errorf("drain by %v, want %v", by, at.Add(MaxReplaceWait))
	}

	never := claim(t, "Never")
	if res, got := reconcileAt(t, never, born.Add(100*365*24*time.Hour)); !got.DeletionTimestamp.IsZero() || res.RequeueAfter != 0 {
		t.Errorf("expireAfter Never: deleting %v, requeue %s", !got.DeletionTimestamp.IsZero(), res.RequeueAfter)
	}
}
