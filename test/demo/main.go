// Command demo runs nodewright's demo on this machine: a local control plane
// (etcd, kube-apiserver, kube-scheduler, kube-controller-manager, kwok), the seed
// manifests users bring, and what nodewright does with them, printed as it
// happens. Run it with `make demo`; --keep leaves the cluster up for kubectl.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nodewright/nodewright/test/fixtures"
	"github.com/nodewright/nodewright/test/harness"
)

func main() {
	keep := flag.Bool("keep", false, "leave the cluster running until interrupted, for kubectl")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *keep); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, keep bool) error {
	step("Starting a local control plane: etcd, kube-apiserver, kube-scheduler, kube-controller-manager, kwok")
	start := time.Now()
	cp, err := harness.Start(ctx, harness.Options{Cluster: true})
	if err != nil {
		return err
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	fmt.Printf("  up in %.1fs; nodewright's CRDs installed (karpenter.sh/v1, karpenter.k8s.aws/v1)\n", time.Since(start).Seconds())

	step("Applying the seed manifests unchanged: EC2NodeClass default, NodePool batch-processing")
	for _, name := range []string{fixtures.EC2NodeClassDefault, fixtures.NodePoolBatch} {
		if err := apply(ctx, cp, name, ""); err != nil {
			return err
		}
	}
	if err := printTable(ctx, cp, schema.GroupVersionResource{Group: "karpenter.k8s.aws", Version: "v1", Resource: "ec2nodeclasses"}, ""); err != nil {
		return err
	}
	if err := printTable(ctx, cp, schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodepools"}, ""); err != nil {
		return err
	}

	step("A NodePool with mistakes is refused, and the apiserver says which fields are wrong")
	bad := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": map[string]any{"name": "typo"},
		"spec": map[string]any{
			"weight": int64(0),
			"template": map[string]any{"spec": map[string]any{
				"nodeClassRef": map[string]any{"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
				"requirements": []any{map[string]any{"key": "karpenter.sh/capacity-type", "operator": "In", "values": []any{}}},
			}},
			"disruption": map[string]any{"consolidateAfter": "soon", "budgets": []any{map[string]any{"nodes": "150%"}}},
		},
	}}
	if err := cp.Client.Create(ctx, bad); err == nil {
		return fmt.Errorf("the apiserver accepted an invalid NodePool")
	} else {
		for _, line := range strings.Split(strings.ReplaceAll(err.Error(), ", spec.", "\nspec."), "\n") {
			fmt.Println("  " + line)
		}
	}

	step("Submitting the seed batch Job (parallelism 10, 2 CPU / 4Gi each, spot only)")
	ns := "demo"
	if err := cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: objectMeta(ns)}); err != nil {
		return fmt.Errorf("creating namespace: %w", err)
	}
	if err := apply(ctx, cp, fixtures.BatchJob, ns); err != nil {
		return err
	}
	pending, reason, err := waitPending(ctx, cp, ns, 10)
	if err != nil {
		return err
	}
	fmt.Printf("  %d pods Pending; kube-scheduler says: %s\n", pending, reason)
	fmt.Println("  nodewright's provisioning (pending pods -> NodeClaims -> EC2 fleet -> Ready nodes) is the next")
	fmt.Println("  milestone; this demo grows with it. Today it shows the APIs, validation and the local cluster.")

	if keep {
		step("Cluster left running. In another terminal:")
		fmt.Printf("  export KUBECONFIG=%s\n  kubectl get nodepools,ec2nodeclasses,pods -A\n  (Ctrl-C here stops it)\n", cp.Kubeconfig)
		<-ctx.Done()
	}
	step("Done")
	return nil
}

func step(msg string) { fmt.Printf("\n==> %s\n", msg) }

func objectMeta(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name} }

// apply creates every object of a seed fixture, in namespace if given.
func apply(ctx context.Context, cp *harness.ControlPlane, name, namespace string) error {
	objects, err := fixtures.SeedObjects(name)
	if err != nil {
		return err
	}
	for _, obj := range objects {
		if namespace != "" {
			obj.SetNamespace(namespace)
		}
		if err := cp.Client.Create(ctx, obj); err != nil {
			return fmt.Errorf("applying %s: %w", name, err)
		}
		fmt.Printf("  %s/%s created\n", strings.ToLower(obj.GetKind()), obj.GetName())
	}
	return nil
}

// printTable prints what `kubectl get` would.
func printTable(ctx context.Context, cp *harness.ControlPlane, gvr schema.GroupVersionResource, namespace string) error {
	table, err := cp.GetTable(ctx, gvr, namespace, false)
	if err != nil {
		return err
	}
	fmt.Printf("  $ kubectl get %s\n", gvr.Resource)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
	fmt.Fprintln(w, "  "+strings.ToUpper(strings.Join(table.Columns, "\t")))
	for _, row := range table.Rows {
		fmt.Fprintln(w, "  "+strings.Join(row, "\t"))
	}
	return w.Flush()
}

// waitPending waits until want pods of the namespace are Pending and the
// scheduler has said why, and returns that reason.
func waitPending(ctx context.Context, cp *harness.ControlPlane, ns string, want int) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		pods := &corev1.PodList{}
		if err := cp.Client.List(ctx, pods, client.InNamespace(ns)); err != nil {
			return 0, "", err
		}
		pending, reason := 0, ""
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodPending {
				continue
			}
			pending++
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Message != "" {
					reason = c.Message
				}
			}
		}
		if pending >= want && reason != "" {
			return pending, reason, nil
		}
		select {
		case <-ctx.Done():
			return pending, reason, fmt.Errorf("waiting for %d unschedulable pods (have %d): %w", want, pending, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
