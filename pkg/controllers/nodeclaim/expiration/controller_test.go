package expiration

import (
	"context"
	"fmt"
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
	jitter := expiryJitter(nc.UID, time.Hour)
	res, got := reconcileAt(t, nc, born.Add(30*time.Minute))
	if !got.DeletionTimestamp.IsZero() || res.RequeueAfter != 30*time.Minute+jitter {
		t.Fatalf("half-way: deleting %v, back in %s (want 30m + its jitter %s)", !got.DeletionTimestamp.IsZero(), res.RequeueAfter, jitter)
	}
	if _, got := reconcileAt(t, nc, born.Add(time.Hour+jitter-time.Second)); !got.DeletionTimestamp.IsZero() {
		t.Fatal("expired before its jitter had passed")
	}
	at := born.Add(time.Hour + jitter)
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

// Claims launched together expire spread over a window after expireAfter
// (5 %, at most 10 min), not in one burst, each at a time fixed by its UID.
// Fails without the jitter (tried: expiryJitter returning 0: every claim
// expires at the same instant).
func TestExpiryIsSpreadOverAWindow(t *testing.T) {
	for _, tc := range []struct{ expireAfter, window time.Duration }{
		{time.Hour, 3 * time.Minute}, {720 * time.Hour, maxExpiryJitter}, {time.Minute, 3 * time.Second},
	} {
		seconds := map[int64]bool{}
		var last time.Duration
		for i := range 200 {
			j := expiryJitter(types.UID(fmt.Sprintf("uid-%d", i)), tc.expireAfter)
			if j < 0 || j >= tc.window {
				t.Fatalf("expireAfter %s: jitter %s outside [0, %s)", tc.expireAfter, j, tc.window)
			}
			if expiryJitter(types.UID(fmt.Sprintf("uid-%d", i)), tc.expireAfter) != j {
				t.Fatal("the same claim got two expiry times")
			}
			seconds[int64(j/time.Second)] = true
			last = max(last, j)
		}
		if want := min(int64(tc.window/time.Second), 100); int64(len(seconds)) < want/2 {
			t.Errorf("expireAfter %s: 200 claims expire in only %d distinct seconds", tc.expireAfter, len(seconds))
		}
		if last < tc.window/2 {
			t.Errorf("expireAfter %s: the latest of 200 expiries is %s into a %s window", tc.expireAfter, last, tc.window)
		}
	}
}
