// Package smoke proves the end-to-end harness: a Node created through the API
// becomes Ready under kwok, the real kube-scheduler binds a Deployment's pods to
// it, the real controller-manager made those pods, and kwok runs them.
package smoke

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nodewright/nodewright/test/harness"
)

var cp *harness.ControlPlane

func TestMain(m *testing.M) { harness.Main(m, harness.Options{Cluster: true}, &cp) }

func TestDeploymentRunsOnKwokNode(t *testing.T) {
	ctx := context.Background()
	ns := cp.Namespace(t)

	nodeName := harness.Name("smoke")
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods:   resource.MustParse("58"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{
			corev1.LabelHostname: nodeName, corev1.LabelArchStable: "amd64", corev1.LabelOSStable: "linux",
		}},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
	if err := cp.Client.Create(ctx, node); err != nil {
		t.Fatalf("creating node: %v", err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), node) })

	cp.Eventually(t, 30*time.Second, "node Ready", func(ctx context.Context) (bool, error) {
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(node), node); err != nil {
			return false, err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue, nil
			}
		}
		return false, fmt.Errorf("no Ready condition yet")
	})
	if got := node.Status.Allocatable.Cpu().String(); got != "4" {
		t.Errorf("kwok replaced the node's allocatable cpu with %s; it must keep the instance type's", got)
	}

	labels := map[string]string{"app": "smoke"}
	deployment := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{corev1.LabelHostname: nodeName},
					Containers: []corev1.Container{{
						Name:  "app",
						Image: "registry.example/app:1",
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi"),
						}},
					}},
				},
			},
		},
	}
	if err := cp.Client.Create(ctx, deployment); err != nil {
		t.Fatalf("creating deployment: %v", err)
	}

	cp.Eventually(t, 60*time.Second, "3 pods Running on the kwok node", func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := cp.Client.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
			return false, err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Spec.NodeName == nodeName && p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		if running != 3 {
			return false, fmt.Errorf("%d of %d pods running", running, len(pods.Items))
		}
		return true, nil
	})
}
