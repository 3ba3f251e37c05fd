// Package chart checks the Helm chart: it lints, renders with default and
// non-default values, and what it renders is accepted (server-side dry run)
// and installed by a real kube-apiserver, with RBAC that grants the
// controllers what they use and nothing else. Helm is built from its Go
// module into bin/ by `make tools`.
package chart

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nodewright/nodewright/pkg/operator"
	"github.com/nodewright/nodewright/test/harness"
)

var cp *harness.ControlPlane

func TestMain(m *testing.M) { harness.Main(m, harness.Options{}, &cp) }

// Only the cluster's name and region: the endpoint and service CIDR come
// from EKS when not given.
var required = []string{"clusterName=my-cluster", "region=ap-northeast-2"}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(harness.BinDir(), "helm"), args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("helm %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out.String(), nil
}

func chartDir() string { return filepath.Join(harness.Root(), "charts", "nodewright") }

func render(t *testing.T, ns string, set ...string) []*unstructured.Unstructured {
	t.Helper()
	args := []string{"template", "nodewright", chartDir(), "--namespace", ns}
	for _, s := range append(append([]string{}, required...), set...) {
		args = append(args, "--set", s)
	}
	out, err := helm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	var objs []*unstructured.Unstructured
	dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatal(err)
		}
		if len(obj) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: obj})
		}
	}
}

func TestLint(t *testing.T) {
	args := []string{"lint", "--strict", chartDir()}
	for _, s := range required {
		args = append(args, "--set", s)
	}
	if _, err := helm(t, args...); err != nil {
		t.Fatal(err)
	}
}

// Values the controller cannot start without are refused at render time,
// naming the value.
func TestRequiredValuesAreNamed(t *testing.T) {
	_, err := helm(t, "template", "nodewright", chartDir(), "--set", "region=us-east-1")
	if err == nil || !strings.Contains(err.Error(), "clusterName is required") {
		t.Fatalf("rendering without clusterName: %v", err)
	}
}

// install applies the rendered objects: first a server-side dry run of all,
// then for real. Cluster-scoped objects are renamed per test.
func install(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	ctx := context.Background()
	for _, dry := range []bool{true, false} {
		for _, o := range objs {
			o := o.DeepCopy()
			var opts []client.CreateOption
			if dry {
				opts = append(opts, client.DryRunAll)
			}
			if err := cp.Client.Create(ctx, o, opts...); err != nil {
				t.Fatalf("creating %s %s (dry run %v): %v", o.GetKind(), o.GetName(), dry, err)
			}
			if !dry && o.GetNamespace() == "" {
				t.Cleanup(func() { _ = cp.Client.Delete(ctx, o) })
			}
		}
	}
}

// clusterScoped gives cluster-scoped objects a per-test name, so tests can
// install side by side.
func clusterScoped(objs []*unstructured.Unstructured, suffix string) {
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole":
			o.SetName(o.GetName() + "-" + suffix)
		case "ClusterRoleBinding":
			o.SetName(o.GetName() + "-" + suffix)
			_ = unstructured.SetNestedField(o.Object, "nodewright-"+suffix, "roleRef", "name")
		}
	}
}

func TestDefaultValuesInstall(t *testing.T) {
	ctx := context.Background()
	ns := cp.Namespace(t)
	objs := render(t, ns)
	clusterScoped(objs, ns)
	kinds := map[string]bool{}
	for _, o := range objs {
		kinds[o.GetKind()] = true
	}
	for _, k := range []string{"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "PodDisruptionBudget", "Service"} {
		if !kinds[k] {
			t.Errorf("no %s rendered", k)
		}
	}
	if kinds["ServiceMonitor"] {
		t.Error("a ServiceMonitor is rendered by default")
	}
	install(t, objs)

	dep := &appsv1.Deployment{}
	if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "nodewright"}, dep); err != nil {
		t.Fatal(err)
	}
	spec := dep.Spec.Template.Spec
	c := spec.Containers[0]
	sc := c.SecurityContext
	if *dep.Spec.Replicas != 2 || spec.PriorityClassName != "system-cluster-critical" || !*spec.SecurityContext.RunAsNonRoot ||
		!*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || len(spec.TopologySpreadConstraints) == 0 ||
		c.LivenessProbe == nil || c.ReadinessProbe == nil || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("deployment lacks replicas, priority, security context, spread, probes or requests: %+v", spec)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	// The binary must read exactly what the chart sets.
	env["SYSTEM_NAMESPACE"] = ns
	opts, err := operator.ParseOptions(nil, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the controller refuses the chart's environment: %v", err)
	}
	// Mutation tried: CLUSTER_CIDR always rendered -> the env has it, empty.
	if _, set := env["CLUSTER_CIDR"]; set {
		t.Errorf("CLUSTER_CIDR rendered without clusterCIDR: %q", env["CLUSTER_CIDR"])
	}
	if opts.ClusterName != "my-cluster" || opts.Region != "ap-northeast-2" || !opts.LeaderElection || opts.ClusterCIDR != "" || opts.ClusterEndpoint != "" ||
		opts.LeaderElectionNamespace != ns || opts.MetricsAddr != ":8080" || opts.HealthProbeAddr != ":8081" ||
		opts.InterruptionQueue != "" || opts.FeatureGates != operator.DefaultFeatureGates() {
		t.Errorf("options from the chart's environment: %+v", opts)
	}

	// RBAC: what the controllers use is allowed; what they do not is not.
	user := "system:serviceaccount:" + ns + ":nodewright"
	for _, tc := range []struct {
		attrs authorizationv1.ResourceAttributes
		want  bool
	}{
		{authorizationv1.ResourceAttributes{Group: "karpenter.sh", Resource: "nodeclaims", Verb: "create"}, true},
		{authorizationv1.ResourceAttributes{Group: "karpenter.sh", Resource: "nodepools", Subresource: "status", Verb: "patch"}, true},
		{authorizationv1.ResourceAttributes{Group: "karpenter.k8s.aws", Resource: "ec2nodeclasses", Subresource: "status", Verb: "update"}, true},
		// The EC2NodeClass reconciler adds and removes its finalizer.
		{authorizationv1.ResourceAttributes{Group: "karpenter.k8s.aws", Resource: "ec2nodeclasses", Verb: "patch"}, true},
		{authorizationv1.ResourceAttributes{Group: "karpenter.k8s.aws", Resource: "ec2nodeclasses", Verb: "delete"}, false},
		{authorizationv1.ResourceAttributes{Resource: "pods", Subresource: "eviction", Verb: "create", Namespace: "default"}, true},
		{authorizationv1.ResourceAttributes{Resource: "nodes", Verb: "patch"}, true},
		{authorizationv1.ResourceAttributes{Group: "policy", Resource: "poddisruptionbudgets", Verb: "list"}, true},
		{authorizationv1.ResourceAttributes{Group: "policy", Resource: "poddisruptionbudgets", Verb: "update", Namespace: "default"}, false},
		{authorizationv1.ResourceAttributes{Group: "coordination.k8s.io", Resource: "leases", Verb: "update", Namespace: ns}, true},
		{authorizationv1.ResourceAttributes{Group: "coordination.k8s.io", Resource: "leases", Verb: "update", Namespace: "default"}, false},
		{authorizationv1.ResourceAttributes{Resource: "secrets", Verb: "get", Namespace: ns}, false},
		{authorizationv1.ResourceAttributes{Group: "karpenter.sh", Resource: "nodepools", Verb: "delete"}, false},
		{authorizationv1.ResourceAttributes{Resource: "pods", Verb: "create", Namespace: "default"}, false},
	} {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: &tc.attrs}}
		if err := cp.Client.Create(ctx, sar); err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed != tc.want {
			t.Errorf("%s %s/%s/%s in %q: allowed %v, want %v", tc.attrs.Verb, tc.attrs.Group, tc.attrs.Resource, tc.attrs.Subresource, tc.attrs.Namespace, sar.Status.Allowed, tc.want)
		}
	}
}

func TestNonDefaultValuesInstall(t *testing.T) {
	ctx := context.Background()
	ns := cp.Namespace(t)
	objs := render(t, ns, "replicas=3", "logLevel=debug", "awsEndpoint=https://vpce.example",
		`serviceAccount.annotations.eks\.amazonaws\.com/role-arn=arn:aws:iam::111122223333:role/nodewright`,
		"image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"metrics.serviceMonitor.enabled=true", "interruptionQueue=my-cluster-interruptions", "featureGates.DrainOnRebalance=true",
		// Karpenter's chart spells gates in lowerCamelCase.
		"featureGates.spotToSpotConsolidation=false", "featureGates.staticCapacity=true", "consolidationMinSavings=0.25",
		"clusterEndpoint=https://ABC.gr7.ap-northeast-2.eks.amazonaws.com", "clusterCIDR=10.100.0.0/16")
	var kept []*unstructured.Unstructured
	sawMonitor := false
	for _, o := range objs {
		// No prometheus-operator CRDs here: check the ServiceMonitor as text.
		if o.GetKind() == "ServiceMonitor" {
			sawMonitor = true
			continue
		}
		kept = append(kept, o)
	}
	if !sawMonitor {
		t.Error("metrics.serviceMonitor.enabled=true rendered no ServiceMonitor")
	}
	clusterScoped(kept, ns)
	install(t, kept)
	dep := &appsv1.Deployment{}
	if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "nodewright"}, dep); err != nil {
		t.Fatal(err)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if *dep.Spec.Replicas != 3 || env["LOG_LEVEL"] != "debug" || env["AWS_ENDPOINT_URL"] != "https://vpce.example" || !strings.Contains(c.Image, "@sha256:") {
		t.Errorf("values not applied: replicas %d env %v image %s", *dep.Spec.Replicas, env, c.Image)
	}
	env["SYSTEM_NAMESPACE"] = ns
	opts, err := operator.ParseOptions(nil, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the controller refuses the chart's environment: %v", err)
	}
	// Mutation tried: the helper without `title` -> spotToSpotConsolidation
	// ignored as unknown, the gate stays on.
	if opts.ClusterEndpoint != "https://ABC.gr7.ap-northeast-2.eks.amazonaws.com" || opts.ClusterCIDR != "10.100.0.0/16" {
		t.Errorf("clusterEndpoint or clusterCIDR not passed on: %q %q", opts.ClusterEndpoint, opts.ClusterCIDR)
	}
	if opts.InterruptionQueue != "my-cluster-interruptions" || !opts.FeatureGates.DrainOnRebalance || opts.FeatureGates.SpotToSpotConsolidation ||
		len(opts.IgnoredFeatureGates) != 1 || opts.IgnoredFeatureGates[0].Name != "StaticCapacity" || opts.ConsolidationMinSavings != 0.25 {
		t.Errorf("interruptionQueue, featureGates or consolidationMinSavings not passed on: queue %q gates %s min savings %v",
			opts.InterruptionQueue, opts.FeatureGates, opts.ConsolidationMinSavings)
	}
	sa := &corev1.ServiceAccount{}
	if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "nodewright"}, sa); err != nil {
		t.Fatal(err)
	}
	if sa.Annotations["eks.amazonaws.com/role-arn"] != "arn:aws:iam::111122223333:role/nodewright" {
		t.Errorf("service account annotations %v", sa.Annotations)
	}
}
