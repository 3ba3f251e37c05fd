// Command demo runs nodewright's demo on this machine: a local control plane
// (etcd, kube-apiserver, kube-scheduler, kube-controller-manager, kwok), the
// EC2 simulator, nodewright itself with its AWS provider pointed at the
// simulator, the seed manifests users bring, and what nodewright does with
// them, printed as it happens. Run it with `make demo`; --keep leaves the
// cluster up for kubectl.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nodewright/nodewright/pkg/controllers/disruption"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/test/env"
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

	step("Starting the EC2 simulator (" + env.Region + ") and nodewright, its AWS provider pointed at the simulator")
	logPath := filepath.Join(os.TempDir(), "nodewright-demo.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	e, err := env.Start(ctx, cp, env.Options{Logs: logFile, InterruptionQueue: "my-cluster-interruptions"})
	if err != nil {
		return err
	}
	defer func() {
		if err := e.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	fmt.Printf("  simulator at %s; nodewright's JSON logs in %s\n", e.Sim.URL, logPath)

	step("Applying the seed manifests unchanged: EC2NodeClass default, NodePool batch-processing")
	for _, name := range []string{fixtures.EC2NodeClassDefault, fixtures.NodePoolBatch} {
		if err := apply(ctx, cp, name, ""); err != nil {
			return err
		}
	}
	if err := waitNodeClassReady(ctx, cp); err != nil {
		return err
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

	step("Submitting the seed batch Job: 100 completions, 10 at a time, 2 CPU / 4Gi each, spot only;\n    a third of the way in, EC2 reclaims one spot node (a 2-minute warning through EventBridge and SQS)")
	ns := "demo"
	if err := cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: objectMeta(ns)}); err != nil {
		return fmt.Errorf("creating namespace: %w", err)
	}
	if err := apply(ctx, cp, fixtures.BatchJob, ns); err != nil {
		return err
	}
	if err := follow(ctx, cp, ns, "data-processing-job", e.Sim.Interrupt); err != nil {
		return err
	}
	if err := printTable(ctx, cp, schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodeclaims"}, ""); err != nil {
		return err
	}
	fmt.Println("  The interrupted node is gone and its replacement runs in another spot pool (the decision is in nodewright's log:\n  grep disrupting).")

	step("The Job is done and its nodes are empty: after the pool's consolidateAfter (30s) nodewright removes them,\n    as many at a time as the pool's disruption budget allows (the default, 10% of its nodes)")
	if err := drainAway(ctx, cp); err != nil {
		return err
	}

	if keep {
		step("Cluster left running. In another terminal:")
		fmt.Printf("  export KUBECONFIG=%s\n  kubectl get nodepools,nodeclaims,nodes,pods -A\n  (Ctrl-C here stops it)\n", cp.Kubeconfig)
		<-ctx.Done()
	}
	step("Done")
	return nil
}

// drainAway follows the pool's NodeClaims until none is left, and says
// what the idle nodes were billed meanwhile against what they would have
// cost left to their expireAfter.
func drainAway(ctx context.Context, cp *harness.ControlPlane) error {
	snap, err := catalog.EmbeddedSnapshot()
	if err != nil {
		return err
	}
	cat, err := catalog.New(snap, env.Region, nil, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	start, last := time.Now(), -1
	billed, idlePerHour, tick := 0.0, -1.0, time.Now()
	for {
		var claims v1.NodeClaimList
		if err := cp.Client.List(ctx, &claims); err != nil {
			return err
		}
		perHour := 0.0
		for _, nc := range claims.Items {
			p, _ := cat.Price(nc.Labels[corev1.LabelInstanceTypeStable], nc.Labels[corev1.LabelTopologyZone], nc.Labels[v1.CapacityTypeLabelKey])
			perHour += p
		}
		if idlePerHour < 0 {
			idlePerHour = perHour
		}
		billed += perHour * time.Since(tick).Hours()
		tick = time.Now()
		if n := len(claims.Items); n != last {
			fmt.Printf("  %5.1fs  nodeclaims %d\n", time.Since(start).Seconds(), n)
			last = n
		}
		if len(claims.Items) == 0 {
			fmt.Println("  Every node the Job caused is gone; the cluster is back to where it started.")
			fmt.Printf("  The idle nodes were billed $%.5f until they went; left to their expireAfter (720h) they would have cost $%.2f.\n",
				billed, idlePerHour*720)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the empty nodes were not removed: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// waitNodeClassReady waits for nodewright to resolve the seed EC2NodeClass.
func waitNodeClassReady(ctx context.Context, cp *harness.ControlPlane) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		nc := &awsv1.EC2NodeClass{}
		if err := cp.Client.Get(ctx, client.ObjectKey{Name: "default"}, nc); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(nc.Status.Conditions, "Ready"); c != nil && c.Status == metav1.ConditionTrue {
			fmt.Printf("  ec2nodeclass/default Ready: %d subnets, %d security groups, %d AMIs resolved from the simulator\n",
				len(nc.Status.Subnets), len(nc.Status.SecurityGroups), len(nc.Status.AMIs))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ec2nodeclass/default did not become Ready: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// follow prints the Job's progress and what nodewright does for it until
// the Job completes, then the cost. A third of the way in it has EC2
// interrupt one spot node (interrupt takes an instance id).
func follow(ctx context.Context, cp *harness.ControlPlane, ns, name string, interrupt func(string) error) error {
	snap, err := catalog.EmbeddedSnapshot()
	if err != nil {
		return err
	}
	cat, err := catalog.New(snap, env.Region, nil, nil)
	if err != nil {
		return err
	}
	price := func(nc *v1.NodeClaim) float64 {
		p, _ := cat.Price(nc.Labels[corev1.LabelInstanceTypeStable], nc.Labels[corev1.LabelTopologyZone], nc.Labels[v1.CapacityTypeLabelKey])
		return p
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	start := time.Now()
	seen, disrupted := map[string]bool{}, map[string]bool{}
	interrupted := false
	nodeHours, lastTick := 0.0, time.Now()
	last := ""
	for {
		var (
			job    batchv1.Job
			pods   corev1.PodList
			claims v1.NodeClaimList
		)
		if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &job); err != nil {
			return err
		}
		if err := cp.Client.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			return err
		}
		if err := cp.Client.List(ctx, &claims); err != nil {
			return err
		}
		pending, running := 0, 0
		for _, p := range pods.Items {
			switch p.Status.Phase {
			case corev1.PodPending:
				pending++
			case corev1.PodRunning:
				running++
			}
		}
		launched, ready, perHour := 0, 0, 0.0
		for i := range claims.Items {
			nc := &claims.Items[i]
			if meta.IsStatusConditionTrue(nc.Status.Conditions, v1.ConditionTypeLaunched) {
				launched++
				perHour += price(nc)
				if !seen[nc.Name] {
					seen[nc.Name] = true
					fmt.Printf("  %5.1fs  nodeclaim/%s launched: %s %s in %s, $%.4f/h\n", time.Since(start).Seconds(), nc.Name,
						nc.Labels[v1.CapacityTypeLabelKey], nc.Labels[corev1.LabelInstanceTypeStable], nc.Labels[corev1.LabelTopologyZone], price(nc))
				}
			}
			if meta.IsStatusConditionTrue(nc.Status.Conditions, v1.ConditionTypeReady) {
				ready++
			}
			if reason := nc.Annotations[disruption.DisruptionReasonAnnotation]; reason != "" && !disrupted[nc.Name] {
				disrupted[nc.Name] = true
				fmt.Printf("  %5.1fs  nodeclaim/%s disrupted (%s): node cordoned, replacement launching, pods move once it is up\n",
					time.Since(start).Seconds(), nc.Name, reason)
			}
		}
		if !interrupted && job.Status.Succeeded*3 >= *job.Spec.Completions {
			for i := range claims.Items {
				nc := &claims.Items[i]
				if nc.Labels[v1.CapacityTypeLabelKey] == v1.CapacityTypeSpot && meta.IsStatusConditionTrue(nc.Status.Conditions, v1.ConditionTypeReady) {
					id := nc.Status.ProviderID[strings.LastIndex(nc.Status.ProviderID, "/")+1:]
					if err := interrupt(id); err != nil {
						return err
					}
					interrupted = true
					fmt.Printf("  %5.1fs  EC2: spot interruption warning for %s (nodeclaim/%s), reclaimed in 2 minutes\n", time.Since(start).Seconds(), id, nc.Name)
					break
				}
			}
		}
		nodeHours += perHour * time.Since(lastTick).Hours()
		lastTick = time.Now()
		line := fmt.Sprintf("pods pending %d, running %d | nodeclaims %d, launched %d, nodes ready %d | job %d/%d succeeded",
			pending, running, len(claims.Items), launched, ready, job.Status.Succeeded, *job.Spec.Completions)
		if line != last {
			fmt.Printf("  %5.1fs  %s\n", time.Since(start).Seconds(), line)
			last = line
		}
		if job.Status.Succeeded >= *job.Spec.Completions {
			fmt.Printf("\n  Job complete in %.0fs on %d spot nodes costing $%.4f/h together; this run used $%.5f of compute.\n",
				time.Since(start).Seconds(), launched, perHour, nodeHours)
			fmt.Printf("  The same nodes on demand would cost $%.4f/h.\n", onDemand(cat, claims.Items))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the job did not complete: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// onDemand is what the claims' instance types cost on demand in their zones.
func onDemand(cat *catalog.Catalog, claims []v1.NodeClaim) float64 {
	total := 0.0
	for _, nc := range claims {
		price, _ := cat.Price(nc.Labels[corev1.LabelInstanceTypeStable], nc.Labels[corev1.LabelTopologyZone], v1.CapacityTypeOnDemand)
		total += price
	}
	return total
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
