package validation

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
)

// TestNodePoolDefaults checks the defaults a minimal NodePool gets, the ones
// Karpenter v1 users rely on without writing them.
func TestNodePoolDefaults(t *testing.T) {
	obj := object(t, validNodePool)
	set(t, obj, "spec.disruption", "")
	if err := cp.Client.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), obj) })
	np := &v1.NodePool{}
	if err := cp.Client.Get(context.Background(), clientKey(obj), np); err != nil {
		t.Fatal(err)
	}
	d := np.Spec.Disruption
	if got := d.ConsolidateAfter.String(); got != "0s" {
		t.Errorf("consolidateAfter = %q, want 0s", got)
	}
	if d.ConsolidationPolicy != v1.ConsolidationPolicyWhenEmptyOrUnderutilized {
		t.Errorf("consolidationPolicy = %q, want WhenEmptyOrUnderutilized", d.ConsolidationPolicy)
	}
	if len(d.Budgets) != 1 || d.Budgets[0].Nodes != "10%" {
		t.Errorf("budgets = %+v, want one of 10%%", d.Budgets)
	}
	if got := np.Spec.Template.Spec.ExpireAfter; got.Duration == nil || *got.Duration != 720*time.Hour {
		t.Errorf("expireAfter = %v, want 720h", got)
	}
}

// TestEC2NodeClassDefaults checks IMDS is locked down unless the user says
// otherwise.
func TestEC2NodeClassDefaults(t *testing.T) {
	obj := object(t, validEC2NodeClass)
	if err := cp.Client.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), obj) })
	nc := &awsv1.EC2NodeClass{}
	if err := cp.Client.Get(context.Background(), clientKey(obj), nc); err != nil {
		t.Fatal(err)
	}
	m := nc.Spec.MetadataOptions
	if m == nil || *m.HTTPTokens != "required" || *m.HTTPPutResponseHopLimit != 1 || *m.HTTPEndpoint != "enabled" || *m.HTTPProtocolIPv6 != "disabled" {
		t.Errorf("metadataOptions = %+v, want IMDSv2 required with hop limit 1", m)
	}
}

// TestValidEdgeCasesAreAccepted guards against a schema stricter than
// Karpenter's: each of these is valid Karpenter v1 and must apply.
func TestValidEdgeCasesAreAccepted(t *testing.T) {
	cases := []struct {
		name  string
		base  string
		edits [][2]string
	}{
		{"static NodePool with a node limit", validNodePool, [][2]string{{"spec.replicas", "3"}, {"spec.limits", "{nodes: '5'}"}}},
		{"Gte and Lte requirements", validNodePool, [][2]string{{"spec.template.spec.requirements", "[{key: karpenter.k8s.aws/instance-cpu, operator: Gte, values: ['4']}, {key: karpenter.k8s.aws/instance-memory, operator: Lte, values: ['65536']}]"}}},
		{"minValues on instance families", validNodePool, [][2]string{{"spec.template.spec.requirements", "[{key: karpenter.k8s.aws/instance-family, operator: In, values: [c5, m5, r5], minValues: 2}]"}}},
		{"well-known and custom labels", validNodePool, [][2]string{{"spec.template.metadata.labels", "{karpenter.sh/capacity-type: spot, node.kubernetes.io/role: batch, example.com/team: a}"}}},
		{"budgets with reasons and a schedule", validNodePool, [][2]string{{"spec.disruption.budgets", "[{nodes: '0', schedule: '0 9 * * mon-fri', duration: 8h, reasons: [Underutilized, Unhealthy]}, {nodes: '20%'}]"}}},
		{"Balanced consolidation and Never", validNodePool, [][2]string{{"spec.disruption", "{consolidationPolicy: Balanced, consolidateAfter: Never}"}}},
		{"startup taints and a grace period", validNodePool, [][2]string{{"spec.template.spec.startupTaints", "[{key: node.cilium.io/agent-not-ready, value: 'true', effect: NoExecute}]"}, {"spec.template.spec.terminationGracePeriod", "48h"}}},
		{"instance profile and custom AMIs", validEC2NodeClass, [][2]string{{"spec.role", ""}, {"spec.instanceProfile", "KarpenterNodeInstanceProfile"}, {"spec.amiFamily", "AL2023"}, {"spec.amiSelectorTerms", "[{tags: {team: batch}}, {name: 'my-ami-*', owner: self}, {ssmParameter: /my/ami}]"}}},
		{"windows 2025 alias", validEC2NodeClass, [][2]string{{"spec.amiSelectorTerms.0.alias", "windows2025@latest"}}},
		{"any upstream kubelet field", validEC2NodeClass, [][2]string{{"spec.kubelet", "{maxPods: 110, systemReserved: {cpu: 100m}, evictionHard: {memory.available: 5%}, serializeImagePulls: false}"}}},
		{"networking and capacity options", validEC2NodeClass, [][2]string{{"spec.capacityReservationSelectorTerms", "[{id: cr-0123456789abcdef0}, {instanceMatchCriteria: open}]"}, {"spec.networkInterfaces", "[{networkCardIndex: 0, deviceIndex: 0, interfaceType: interface}]"}, {"spec.placementGroupSelector", "{name: batch}"}, {"spec.ipPrefixCount", "1"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := object(t, tc.base)
			for _, e := range tc.edits {
				set(t, obj, e[0], e[1])
			}
			if err := cp.Client.Create(context.Background(), obj); err != nil {
				t.Fatalf("valid Karpenter v1 %s rejected: %v", obj.GetKind(), err)
			}
			_ = cp.Client.Delete(context.Background(), obj)
		})
	}
}

// TestImmutableFields checks the transition rules: a NodeClaim's spec, a
// NodePool's nodeClassRef group and kind, and the static/dynamic mode.
func TestImmutableFields(t *testing.T) {
	ctx := context.Background()
	np := object(t, validNodePool)
	if err := cp.Client.Create(ctx, np); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(ctx, np) })
	for _, tc := range []struct{ path, value, msg string }{
		{"spec.template.spec.nodeClassRef.group", "example.com", "nodeClassRef.group is immutable"},
		{"spec.template.spec.nodeClassRef.kind", "OtherNodeClass", "nodeClassRef.kind is immutable"},
		{"spec.replicas", "2", "Cannot transition NodePool between static"},
	} {
		changed := np.DeepCopy()
		set(t, changed, tc.path, tc.value)
		if tc.path == "spec.replicas" {
			set(t, changed, "spec.limits", "")
		}
		err := cp.Client.Update(ctx, changed)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("changing %s: want %q, got %v", tc.path, tc.msg, err)
		}
	}
	renamed := np.DeepCopy()
	set(t, renamed, "spec.template.spec.nodeClassRef.name", "other")
	if err := cp.Client.Update(ctx, renamed); err != nil {
		t.Errorf("nodeClassRef.name must stay mutable: %v", err)
	}

	nc := object(t, validNodeClaim)
	if err := cp.Client.Create(ctx, nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(ctx, nc) })
	set(t, nc, "spec.requirements.0.values", "[m5.2xlarge]")
	if err := cp.Client.Update(ctx, nc); err == nil || !strings.Contains(err.Error(), "spec is immutable") {
		t.Errorf("changing a NodeClaim spec: want 'spec is immutable', got %v", err)
	}
}

// TestTypedUpdateKeepsUserText checks that a controller's read-modify-write
// through the Go types leaves durations as the user wrote them.
func TestTypedUpdateKeepsUserText(t *testing.T) {
	ctx := context.Background()
	obj := object(t, validNodePool)
	set(t, obj, "spec.disruption.consolidateAfter", "1h")
	set(t, obj, "spec.template.spec.expireAfter", "Never")
	if err := cp.Client.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(ctx, obj) })
	np := &v1.NodePool{}
	if err := cp.Client.Get(ctx, clientKey(obj), np); err != nil {
		t.Fatal(err)
	}
	np.Spec.Weight = ptr.To[int32](50)
	np.Spec.Limits["memory"] = resource.MustParse("400Gi")
	if err := cp.Client.Update(ctx, np); err != nil {
		t.Fatalf("typed update: %v", err)
	}
	if err := cp.Client.Get(ctx, clientKey(obj), obj); err != nil {
		t.Fatal(err)
	}
	raw := obj.UnstructuredContent()
	after, _, _ := unstructured.NestedString(raw, "spec", "disruption", "consolidateAfter")
	expire, _, _ := unstructured.NestedString(raw, "spec", "template", "spec", "expireAfter")
	if after != "1h" || expire != "Never" {
		t.Errorf("after a typed update consolidateAfter=%q expireAfter=%q, want 1h and Never", after, expire)
	}
	if !np.Spec.Template.Spec.ExpireAfter.IsNever() {
		t.Errorf("expireAfter Never must decode as never, got %v", np.Spec.Template.Spec.ExpireAfter)
	}
}
