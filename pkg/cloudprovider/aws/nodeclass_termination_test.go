package aws

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
)

// TestNodeClassDeletionWaitsForClaims: the reconciler holds a new
// EC2NodeClass with its finalizer. Deleted while a NodeClaim uses it, the
// node class stays, not Ready with a message naming the claim, and keeps its
// launch templates; the provider launches nothing more from it. Once the
// claim is gone, its templates (and no other node class's) are deleted and
// it goes. Fails if the finalizer is not added, the deletion does not wait
// for NodeClaims, a NodeClaim's deletion does not bring the node class back
// to the reconciler (the interval here is an hour), or the wrong templates
// are deleted.
func TestNodeClassDeletionWaitsForClaims(t *testing.T) {
	cp := needControlPlane(t)
	e := newEnv(t)
	ctx := context.Background()
	types := e.provider(t)
	types.Refresh(ctx)
	cloud, err := NewCloudProvider(testOptions, e.clients, types, cp.Client)
	if err != nil {
		t.Fatal(err)
	}
	runReconciler(t, cp, &NodeClassReconciler{Resolver: e.resolver(t), LaunchTemplates: cloud, Interval: time.Hour})

	nc := createNodeClass(t, cp)
	key := client.ObjectKeyFromObject(nc)
	cp.Eventually(t, 30*time.Second, "the EC2NodeClass to be Ready and held by the finalizer", func(ctx context.Context) (bool, error) {
		if err := cp.Client.Get(ctx, key, nc); err != nil {
			return false, err
		}
		ready := meta.FindStatusCondition(nc.Status.Conditions, ConditionTypeReady)
		return controllerutil.ContainsFinalizer(nc, awsv1.TerminationFinalizer) &&
			ready != nil && ready.Status == metav1.ConditionTrue && ready.ObservedGeneration == nc.Generation, nil
	})

	claim := newClaim(nc.Name, req(v1.LabelInstanceTypeStable, "m5.xlarge"), req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand))
	claim.UID = ""
	if err := cp.Client.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), claim) })
	if _, err := cloud.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	// Another node class's template, as nodewright names and tags them.
	other := "nodewright/my-cluster/0123456789abcdef0123"
	if _, err := e.clients.EC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(other),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-0a2023000000000a1")},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: []ec2types.Tag{
			{Key: aws.String("kubernetes.io/cluster/my-cluster"), Value: aws.String("owned")},
			{Key: aws.String(awsv1.TagNodePool), Value: aws.String("default")},
			{Key: aws.String(awsv1.TagEC2NodeClass), Value: aws.String("other")},
		}}},
	}); err != nil {
		t.Fatal(err)
	}
	ofClass := func() []string {
		var out []string
		for _, lt := range e.sim.LaunchTemplates() {
			if lt.Tags[awsv1.TagEC2NodeClass] == nc.Name {
				out = append(out, lt.Name)
			}
		}
		return out
	}
	if n := len(ofClass()); n != 1 {
		t.Fatalf("%d launch templates of the node class after a launch, want 1", n)
	}

	if err := cp.Client.Delete(ctx, nc); err != nil {
		t.Fatal(err)
	}
	cp.Eventually(t, 30*time.Second, "the deleted EC2NodeClass to say it waits for the NodeClaim", func(ctx context.Context) (bool, error) {
		if err := cp.Client.Get(ctx, key, nc); err != nil {
			return false, err
		}
		ready := meta.FindStatusCondition(nc.Status.Conditions, ConditionTypeReady)
		return ready != nil && ready.Status == metav1.ConditionFalse && ready.Reason == ReasonTerminating &&
			strings.Contains(ready.Message, claim.Name), nil
	})
	if !controllerutil.ContainsFinalizer(nc, awsv1.TerminationFinalizer) || len(ofClass()) != 1 {
		t.Errorf("while a NodeClaim uses it: finalizer %v, %d templates; want the finalizer and the template kept", nc.Finalizers, len(ofClass()))
	}
	_, err = cloud.Create(ctx, newClaim(nc.Name, req(v1.LabelInstanceTypeStable, "m5.xlarge")))
	var notReady *cloudprovider.NodeClassNotReadyError
	if !errors.As(err, &notReady) {
		t.Errorf("a launch from the deleted node class: want NodeClassNotReadyError, got %v", err)
	}

	if err := cp.Client.Delete(ctx, claim); err != nil {
		t.Fatal(err)
	}
	cp.Eventually(t, 30*time.Second, "the EC2NodeClass to go once its NodeClaim is gone", func(ctx context.Context) (bool, error) {
		err := cp.Client.Get(ctx, key, &awsv1.EC2NodeClass{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	if left := ofClass(); len(left) != 0 {
		t.Errorf("launch templates of the deleted node class left: %v", left)
	}
	if _, ok := e.sim.LaunchTemplate(other); !ok {
		t.Error("another node class's launch template was deleted")
	}
}
