package chaos

import (
	"context"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/ec2sim"
	"github.com/nodewright/nodewright/test/fixtures"
)

// The workload: three Deployments of 100 pods, each with a PDB keeping 90 %
// of them, on one NodePool of spot and on-demand capacity.
const (
	poolName    = "chaos"
	appReplicas = 100
)

var apps = []string{"web", "api", "worker"}

// chaosPool is the seed batch NodePool (spot and on-demand, seven types, two
// zones, consolidation when underutilized) with room for the workload.
func chaosPool() (*v1.NodePool, error) {
	np := &v1.NodePool{}
	if err := fixtures.SeedInto(fixtures.NodePoolBatch, np); err != nil {
		return nil, err
	}
	np.Name = poolName
	np.Spec.Limits = v1.Limits{corev1.ResourceCPU: resource.MustParse("1000"), corev1.ResourceMemory: resource.MustParse("4000Gi")}
	return np, nil
}

// poolsOf lists the EC2 capacity pools np can launch into, sorted.
func poolsOf(np *v1.NodePool) []ec2sim.Pool {
	var types, zones, capacity []string
	for _, r := range np.Spec.Template.Spec.Requirements {
		switch r.Key {
		case corev1.LabelInstanceTypeStable:
			types = r.Values
		case corev1.LabelTopologyZone:
			zones = r.Values
		case v1.CapacityTypeLabelKey:
			capacity = r.Values
		}
	}
	var pools []ec2sim.Pool
	for _, t := range types {
		for _, z := range zones {
			for _, c := range capacity {
				pools = append(pools, ec2sim.Pool{InstanceType: t, Zone: z, CapacityType: c})
			}
		}
	}
	sort.Slice(pools, func(i, j int) bool { return fmt.Sprint(pools[i]) < fmt.Sprint(pools[j]) })
	return pools
}

// emptyHalf leaves every second pool without capacity, so each type keeps
// capacity somewhere and the cheapest choice often fails.
func emptyHalf(sim *ec2sim.Server, pools []ec2sim.Pool) []ec2sim.Pool {
	var emptied []ec2sim.Pool
	for i, p := range pools {
		if i%2 == 0 {
			sim.InsufficientCapacity(p.InstanceType, p.Zone, p.CapacityType)
			emptied = append(emptied, p)
		}
	}
	return emptied
}

func deployment(ns, app string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": app}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{v1.NodePoolLabelKey: poolName},
					Containers: []corev1.Container{{
						Name: app, Image: "registry.example/" + app + ":1",
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1Gi"),
						}},
					}},
				},
			},
		},
	}
}

func pdb(ns, app string) *policyv1.PodDisruptionBudget {
	share := intstr.FromString(fmt.Sprintf("%d%%", int(minAvailable*100)))
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: &share,
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
		},
	}
}

// createWorkload creates the EC2NodeClass, the NodePool, the PDBs and the
// Deployments (PDBs first, so no pod is ever unprotected).
func createWorkload(ctx context.Context, c client.Client, ns string, np *v1.NodePool, w *watcher) error {
	objs, err := fixtures.SeedObjects(fixtures.EC2NodeClassDefault)
	if err != nil {
		return err
	}
	if err := c.Create(ctx, objs[0]); err != nil {
		return fmt.Errorf("creating the EC2NodeClass: %w", err)
	}
	if err := c.Create(ctx, np); err != nil {
		return fmt.Errorf("creating the NodePool: %w", err)
	}
	for _, app := range apps {
		if err := c.Create(ctx, pdb(ns, app)); err != nil {
			return fmt.Errorf("creating the PDB of %s: %w", app, err)
		}
	}
	for _, app := range apps {
		w.setReplicas(app, appReplicas)
		if err := c.Create(ctx, deployment(ns, app, appReplicas)); err != nil {
			return fmt.Errorf("creating the Deployment %s: %w", app, err)
		}
	}
	return nil
}

// scale sets every Deployment's replicas, telling the watcher first.
func scale(ctx context.Context, c client.Client, ns string, w *watcher, replicas int32) error {
	for _, app := range apps {
		w.setReplicas(app, replicas)
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns}}
		patch := client.RawPatch("application/merge-patch+json", fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas))
		if err := c.Patch(ctx, d, patch); err != nil {
			return fmt.Errorf("scaling %s to %d: %w", app, replicas, err)
		}
	}
	return nil
}
