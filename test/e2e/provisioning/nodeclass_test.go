package provisioning

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/samber/lo"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	"github.com/nodewright/nodewright/test/ec2sim"
	"github.com/nodewright/nodewright/test/fixtures"
	"github.com/nodewright/nodewright/test/harness"
)

// Deleting an EC2NodeClass that a NodePool still launches from waits for its
// NodeClaims, then deletes the launch templates made for it and lets it go;
// the DeleteLaunchTemplate calls go through the suite's IAM check (TestMain)
// like every other call. Mutation tried: without the finalizer (the class is
// deleted at once) the templates stay in the simulator and the last wait
// fails naming them.
func TestDeletingANodeClassDeletesItsLaunchTemplates(t *testing.T) {
	ctx := context.Background()
	ns := cp.Namespace(t)
	class := &awsv1.EC2NodeClass{}
	if err := fixtures.SeedInto(fixtures.EC2NodeClassDefault, class); err != nil {
		t.Fatal(err)
	}
	class.Name = harness.Name("class")
	if err := cp.Client.Create(ctx, class); err != nil {
		t.Fatal(err)
	}
	np := seedPool(t, harness.Name("classpool"))
	np.Spec.Template.Spec.NodeClassRef.Name = class.Name
	// Not createPool: this test deletes the pool itself, and the class's
	// going proves its claims (and so their instances) are gone.
	if err := cp.Client.Create(ctx, np); err != nil {
		t.Fatal(err)
	}
	if err := cp.Client.Create(ctx, podOnPool(ns, "on-class", np.Name)); err != nil {
		t.Fatal(err)
	}
	cp.Eventually(t, 2*time.Minute, "the pod running on a node of the new class", func(ctx context.Context) (bool, error) {
		pod := &corev1.Pod{}
		if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "on-class"}, pod); err != nil {
			return false, err
		}
		if pod.Status.Phase != corev1.PodRunning {
			return false, fmt.Errorf("pod is %s", pod.Status.Phase)
		}
		return true, nil
	})
	if n := len(templatesOf(class.Name)); n == 0 {
		t.Fatal("no launch template tagged with the class after a launch")
	}

	if err := cp.Client.Delete(ctx, class); err != nil {
		t.Fatal(err)
	}
	// Still used: held by the finalizer.
	if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(class), class); err != nil {
		t.Fatalf("the class went while a NodeClaim still used it: %v", err)
	}
	if err := cp.Client.Delete(ctx, np); err != nil {
		t.Fatal(err)
	}
	cp.Eventually(t, 3*time.Minute, "the class gone with its launch templates", func(ctx context.Context) (bool, error) {
		err := cp.Client.Get(ctx, client.ObjectKeyFromObject(class), &awsv1.EC2NodeClass{})
		if !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("class still there (%v)", err)
		}
		if left := templatesOf(class.Name); len(left) > 0 {
			return false, fmt.Errorf("launch templates left: %v", left)
		}
		return true, nil
	})
}

// templatesOf names the simulator's launch templates tagged for a class.
func templatesOf(class string) []string {
	return lo.FilterMap(e.Sim.LaunchTemplates(), func(lt ec2sim.LaunchTemplate, _ int) (string, bool) {
		return lt.Name, lt.Tags[awsv1.TagEC2NodeClass] == class
	})
}
