package drift

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
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

type discard struct{}

func (discard) Eventf(runtime.Object, runtime.Object, string, string, string, string, ...any) {}

// cloud answers a fixed drift reason and re-stamps nothing.
type cloud struct{ reason string }

func (c cloud) IsDrifted(context.Context, *v1.NodeClaim) (string, error) { return c.reason, nil }
func (cloud) RestampNodeClassHash(context.Context, *v1.NodeClaim) (map[string]string, error) {
	return nil, nil
}

func pool(t *testing.T) *v1.NodePool {
	t.Helper()
	np := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: harness.Name("pool")}}
	np.Spec.Template.Labels = map[string]string{"team": "a"}
	np.Spec.Template.Spec.NodeClassRef = &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"}
	np.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{
		{Key: corev1.LabelInstanceTypeStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"m5.large", "m5.xlarge"}}}
	if err := cp.Client.Create(context.Background(), np); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), np) })
	return np
}

// launched creates a launched claim of np as the provisioner stamps it,
// with annotations overriding the stamps.
func launched(t *testing.T, np *v1.NodePool, annotations map[string]string) *v1.NodeClaim {
	t.Helper()
	ctx := context.Background()
	nc := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: harness.Name("claim"),
			Labels:      map[string]string{v1.NodePoolLabelKey: np.Name, "team": "a", corev1.LabelInstanceTypeStable: "m5.large"},
			Annotations: map[string]string{v1.NodePoolHashAnnotationKey: np.Hash(), v1.NodePoolHashVersionAnnotationKey: v1.NodePoolHashVersion}},
		Spec: v1.NodeClaimSpec{NodeClassRef: np.Spec.Template.Spec.NodeClassRef,
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: v1.NodePoolLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{np.Name}}}},
	}
	for k, v := range annotations {
		nc.Annotations[k] = v
	}
	if err := cp.Client.Create(ctx, nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(ctx, nc) })
	nc.Status.ProviderID = "aws:///us-east-1a/i-" + nc.Name
	if err := cp.Client.Status().Update(ctx, nc); err != nil {
		t.Fatal(err)
	}
	return nc
}

// judge reconciles nc and returns its Drifted condition's reason ("" when
// it has none) and its annotations.
func judge(t *testing.T, c *Controller, nc *v1.NodeClaim) (string, map[string]string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(nc)}); err != nil {
		t.Fatal(err)
	}
	fresh := &v1.NodeClaim{}
	if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(nc), fresh); err != nil {
		t.Fatal(err)
	}
	cond := meta.FindStatusCondition(fresh.Status.Conditions, v1.ConditionTypeDrifted)
	if cond == nil {
		return "", fresh.Annotations
	}
	return cond.Reason, fresh.Annotations
}

// A claim matching its pool is not drifted; a changed template label, a
// narrowed requirement or the cloud's word drift it, and a claim stamped
// under an older hash version is re-stamped and not drifted.
// Mutations tried: no re-stamp and hashes compared across versions (the
// old-version claim drifted), skipping the requirements check (the
// narrowed pool's claim stayed).
func TestDrift(t *testing.T) {
	ctx := context.Background()
	c := &Controller{Kube: cp.Client, Cloud: cloud{}, Recorder: discard{}}
	np := pool(t)
	same := launched(t, np, nil)
	old := launched(t, np, map[string]string{v1.NodePoolHashAnnotationKey: "123", v1.NodePoolHashVersionAnnotationKey: "v0"})
	if reason, _ := judge(t, c, same); reason != "" {
		t.Errorf("a claim matching its pool drifted: %s", reason)
	}
	reason, annotations := judge(t, c, old)
	if reason != "" || annotations[v1.NodePoolHashAnnotationKey] != np.Hash() || annotations[v1.NodePoolHashVersionAnnotationKey] != v1.NodePoolHashVersion {
		t.Errorf("a claim of an older hash version: drift %q, annotations %v; want re-stamped with %s and not drifted", reason, annotations, np.Hash())
	}

	// The template's labels change: every claim of the pool drifts.
	np.Spec.Template.Labels["team"] = "b"
	if err := cp.Client.Update(ctx, np); err != nil {
		t.Fatal(err)
	}
	if reason, _ := judge(t, c, same); reason != NodePoolDrifted {
		t.Errorf("after a template change: drift %q, want %s", reason, NodePoolDrifted)
	}

	// A pool whose requirements no longer allow the claim's type.
	narrowed := pool(t)
	claim := launched(t, narrowed, nil)
	narrowed.Spec.Template.Spec.Requirements[0].Values = []string{"m5.xlarge"}
	if err := cp.Client.Update(ctx, narrowed); err != nil {
		t.Fatal(err)
	}
	if reason, _ := judge(t, c, claim); reason != RequirementsDrifted {
		t.Errorf("after narrowing the requirements: drift %q, want %s", reason, RequirementsDrifted)
	}
	// Widening them back: the claim matches again, the condition goes.
	narrowed.Spec.Template.Spec.Requirements[0].Values = []string{"m5.large", "m5.xlarge"}
	if err := cp.Client.Update(ctx, narrowed); err != nil {
		t.Fatal(err)
	}
	if reason, _ := judge(t, c, claim); reason != "" {
		t.Errorf("after widening back: drift %q, want none", reason)
	}

	// The cloud's reason is taken as it is.
	c.Cloud = cloud{reason: "AMIDrift"}
	if reason, _ := judge(t, c, claim); reason != "AMIDrift" {
		t.Errorf("cloud drift: %q", reason)
	}
}
