package podevents

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/harness"
)

var cp *harness.ControlPlane

func TestMain(m *testing.M) { harness.Main(m, harness.Options{}, &cp) }

// Which pod changes count as events on their node.
func TestEvent(t *testing.T) {
	pending := &corev1.Pod{}
	bound := &corev1.Pod{Spec: corev1.PodSpec{NodeName: "n"}}
	done := bound.DeepCopy()
	done.Status.Phase = corev1.PodSucceeded
	terminating := bound.DeepCopy()
	terminating.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	running := bound.DeepCopy()
	running.Status.Phase = corev1.PodRunning
	for _, tc := range []struct {
		name         string
		old, updated *corev1.Pod
		want         string
	}{
		{"bound", pending, bound, "n"},
		{"created bound", nil, bound, "n"},
		{"created pending", nil, pending, ""},
		{"started running", bound, running, ""},
		{"succeeded", running, done, "n"},
		{"still succeeded", done, done, ""},
		{"terminating", running, terminating, "n"},
		{"deleted from the node", running, nil, "n"},
		{"deleted pending", pending, nil, ""},
	} {
		if got := Event(tc.old, tc.updated); got != tc.want {
			t.Errorf("%s: Event = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A pod event on a nodewright node stamps its claim, at most once per Dedupe;
// a node without a claim is left alone. Mutation tried: without the dedupe
// check the second stamp moves to the later time and the test fails.
func TestReconcileStampsTheClaim(t *testing.T) {
	ctx := context.Background()
	nc := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: harness.Name("claim"), Labels: map[string]string{v1.NodePoolLabelKey: "pool"}},
		Spec: v1.NodeClaimSpec{
			NodeClassRef: &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"},
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: v1.NodePoolLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{"pool"}}},
		},
	}
	if err := cp.Client.Create(ctx, nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(ctx, nc) })
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: harness.Name("node"), OwnerReferences: []metav1.OwnerReference{{
		APIVersion: v1.SchemeGroupVersion.String(), Kind: "NodeClaim", Name: nc.Name, UID: nc.UID}}}}
	other := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: harness.Name("other")}}
	for _, n := range []*corev1.Node{node, other} {
		if err := cp.Client.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cp.Client.Delete(ctx, n) })
	}
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	c := &Controller{Kube: cp.Client, Now: func() time.Time { return at }}
	stamp := func(name string) time.Time {
		t.Helper()
		if _, err := c.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Name: name}}); err != nil {
			t.Fatal(err)
		}
		got := &v1.NodeClaim{}
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(nc), got); err != nil {
			t.Fatal(err)
		}
		return got.Status.LastPodEventTime.Time
	}
	if got := stamp(other.Name); !got.IsZero() {
		t.Errorf("an event on another node stamped the claim: %v", got)
	}
	if got := stamp(node.Name); !got.Equal(at) {
		t.Fatalf("lastPodEventTime = %v, want %v", got, at)
	}
	first := at
	at = at.Add(Dedupe / 2)
	if got := stamp(node.Name); !got.Equal(first) {
		t.Errorf("a second event within %v wrote %v", Dedupe, got)
	}
	at = first.Add(Dedupe + time.Second)
	if got := stamp(node.Name); !got.Equal(at) {
		t.Errorf("an event after %v: lastPodEventTime = %v, want %v", Dedupe, got, at)
	}
	if got := stamp(harness.Name("gone")); !got.Equal(at) {
		t.Errorf("an event on a node that no longer exists changed the claim: %v", got)
	}
}
