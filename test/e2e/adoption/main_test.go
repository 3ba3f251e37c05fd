// Package adoption proves the move from Karpenter the install guide
// promises: a cluster whose NodeClaims, Nodes and instances Karpenter made
// is handed to nodewright, which adopts them: nothing is relaunched or
// collected by mistake, and expiry, interruption, consolidation and deletion
// apply to the adopted nodes as to its own.
package adoption

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/env"
	"github.com/nodewright/nodewright/test/harness"
)

// interruptionQueue is the queue the simulator's EventBridge feeds and
// nodewright reads.
const interruptionQueue = "my-cluster-interruptions"

// workloads is the namespace of the pods that ran on Karpenter's nodes.
const workloads = "workloads"

var (
	cp  *harness.ControlPlane
	e   *env.Env
	log string

	// Karpenter's nodes, by what the tests do with them. stay are two nodes
	// running a pod each that nothing should touch; empty runs nothing in
	// the WhenEmpty pool; deleted is deleted by a test; expiring expires;
	// spot is interrupted. lost is an instance Karpenter launched and never
	// recorded in a claim: garbage collection terminates it, which shows a
	// collection pass ran over every adopted instance. midLaunch is a claim
	// whose instance Karpenter launched and never recorded (it was scaled
	// down in between): its Node registered with the unregistered taint.
	stay                           []*adopted
	empty, deleted, expiring, spot *adopted
	lost, midLaunch                *adopted
	// expiringWatch and spotWatch follow the replacement of expiring and
	// spot from before nodewright starts.
	expiringWatch, spotWatch *watch
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("adoption: -short: not running end-to-end tests")
		os.Exit(0)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var err error
	if cp, err = harness.Start(ctx, harness.Options{Cluster: true}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	// Outside cp.Dir, which Stop removes: the log is what explains a failure.
	log = filepath.Join(os.TempDir(), "nodewright-e2e-adoption.log")
	f, err := os.Create(log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer f.Close()
	// The simulator and the kubelets run; nodewright does not yet.
	if e, err = env.Start(ctx, cp, env.Options{Logs: f, InterruptionQueue: interruptionQueue, ExternalController: true}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	defer func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		case <-time.After(30 * time.Second):
			fmt.Fprintln(os.Stderr, "nodewright did not stop within 30s")
		}
		if err := e.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	if err := karpenterWasHere(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "making Karpenter's cluster: %v\nlog: %s\n", err, log)
		close(done)
		return 1
	}
	for _, w := range []struct {
		into **watch
		a    *adopted
	}{{&expiringWatch, expiring}, {&spotWatch, spot}} {
		if *w.into, err = watchReplacement(runCtx, w.a); err != nil {
			fmt.Fprintln(os.Stderr, err)
			close(done)
			return 1
		}
	}
	op, err := e.Controller.Build(ctx, cp.Config, f)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		close(done)
		return 1
	}
	go func() { done <- op.Run(runCtx) }()
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "nodewright's log: %s\n", log)
	}
	return code
}

// karpenterWasHere makes the cluster Karpenter leaves: its class, pools,
// instances, claims, Nodes, and the pods running on them.
func karpenterWasHere(ctx context.Context) error {
	k, err := newKarpenter()
	if err != nil {
		return err
	}
	if err := k.install(ctx); err != nil {
		return err
	}
	node := func(pool, capacityType, instanceType, zone, claim string) *adopted {
		return &adopted{pool: pool, capacityType: capacityType, instanceType: instanceType, zone: zone, claim: claim}
	}
	stay = []*adopted{
		node(poolMain, v1.CapacityTypeOnDemand, "c5.xlarge", "ap-northeast-2a", "karpenter-7xk2p"),
		node(poolMain, v1.CapacityTypeSpot, "m5.xlarge", "ap-northeast-2c", "karpenter-q9d4w"),
	}
	empty = node(poolMain, v1.CapacityTypeOnDemand, "c5.xlarge", "ap-northeast-2c", "karpenter-m3hv8")
	deleted = node(poolMain, v1.CapacityTypeOnDemand, "c6i.xlarge", "ap-northeast-2a", "karpenter-z5r7c")
	expiring = node(poolExpiring, v1.CapacityTypeOnDemand, "c5.xlarge", "ap-northeast-2a", "karpenter-expiring-b8n2t")
	spot = node(poolSpot, v1.CapacityTypeSpot, "c5.xlarge", "ap-northeast-2a", "karpenter-spot-k4w6j")
	lost = node(poolMain, v1.CapacityTypeOnDemand, "c5.xlarge", "ap-northeast-2c", "karpenter-l0st1")
	midLaunch = node(poolMain, v1.CapacityTypeOnDemand, "c5.xlarge", "ap-northeast-2a", "karpenter-h6v9s")
	claimed := append([]*adopted{empty, deleted, expiring, spot}, stay...)
	for _, a := range append(claimed, midLaunch) {
		if err := k.claim(ctx, a); err != nil {
			return err
		}
	}
	for _, a := range append(claimed, lost, midLaunch) {
		if err := k.launch(ctx, a); err != nil {
			return err
		}
	}
	for _, a := range claimed {
		if err := k.registered(ctx, a); err != nil {
			return err
		}
	}
	// The pods: one bound to each node that keeps a pod, and a Deployment
	// of one on each of the expiring and spot pools, which needs a new
	// home when its node goes.
	if err := cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: workloads}}); err != nil {
		return err
	}
	for _, a := range append([]*adopted{deleted}, stay...) {
		if err := cp.Client.Create(ctx, boundPod(a)); err != nil {
			return err
		}
	}
	for _, pool := range []string{poolExpiring, poolSpot} {
		if err := cp.Client.Create(ctx, deployment(pool)); err != nil {
			return err
		}
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := cp.Client.List(ctx, &pods, client.InNamespace(workloads)); err != nil {
			return false, nil
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == 5, nil
	})
}

// requests are what each workload pod asks for.
var requests = map[string]any{"cpu": "1", "memory": "1Gi"}

// boundPod is a pod the scheduler bound to a's node.
func boundPod(a *adopted) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: a.claim, Namespace: workloads},
		Spec: corev1.PodSpec{NodeName: a.node, Containers: []corev1.Container{{Name: "c", Image: "registry.example/c:1",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")}}}}},
	}
}

// deployment is one pod labelled app=pool that only the pool's nodes run.
func deployment(pool string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": pool, "namespace": workloads},
		"spec": map[string]any{
			"replicas": int64(1), "selector": map[string]any{"matchLabels": map[string]any{"app": pool}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{"app": pool}},
				"spec": map[string]any{
					"nodeSelector": map[string]any{v1.NodePoolLabelKey: pool},
					"containers":   []any{map[string]any{"name": "c", "image": "registry.example/c:1", "resources": map[string]any{"requests": requests}}},
				},
			},
		},
	}}
}
