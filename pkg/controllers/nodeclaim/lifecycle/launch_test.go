package lifecycle

import (
	"context"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/cloudprovider/aws"
	"github.com/nodewright/nodewright/test/ec2sim"
	"github.com/nodewright/nodewright/test/harness"
	"github.com/nodewright/nodewright/test/simcloud"
)

var nodeClassOnce sync.Once

// awsCloud is the real AWS provider against a fresh simulator, with the
// seed EC2NodeClass ("default") resolved in the control plane.
func awsCloud(t *testing.T) (*aws.CloudProvider, *ec2sim.Server) {
	t.Helper()
	env := simcloud.Start(t, cp)
	env.Types.Refresh(context.Background())
	nodeClassOnce.Do(func() { env.SeedNodeClass(t, cp) })
	return env.Cloud, env.Sim
}

// deletedDuringCreate is a claim deleted while its Create is in flight;
// released, it has also been let go by the termination controller (no
// provider ID: finalizer removed, claim gone) before the launch returns.
type deletedDuringCreate struct {
	*aws.CloudProvider
	released bool
}

func (d deletedDuringCreate) Create(ctx context.Context, claim *v1.NodeClaim) (*v1.NodeClaim, error) {
	if err := cp.Client.Delete(ctx, claim); err != nil {
		return nil, err
	}
	if !d.released {
		return d.CloudProvider.Create(ctx, claim)
	}
	if err := cp.Client.Patch(ctx, &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: claim.Name}},
		client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))); client.IgnoreNotFound(err) != nil {
		return nil, err
	}
	return d.CloudProvider.Create(ctx, claim)
}

// TestClaimDeletedWhileLaunchingTerminatesItsInstance: the instance a Create
// returns for a claim deleted meanwhile (gone, or still being deleted) is
// terminated at once, not left running until garbage collection notices it.
// Mutation tried: returning the labelling error without abandon (the
// launch path before this fix): the reconcile failed and the instance
// stayed pending, in both cases.
func TestClaimDeletedWhileLaunchingTerminatesItsInstance(t *testing.T) {
	for name, released := range map[string]bool{"gone": true, "being deleted": false} {
		t.Run(name, func(t *testing.T) { claimDeletedWhileLaunching(t, released) })
	}
}

func claimDeletedWhileLaunching(t *testing.T, released bool) {
	ctx := context.Background()
	cloud, sim := awsCloud(t)
	nc := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: harness.Name("deleted"), Labels: map[string]string{v1.NodePoolLabelKey: "batch-processing"}},
		Spec: v1.NodeClaimSpec{
			NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"},
			Requirements: []v1.NodeSelectorRequirementWithMinValues{
				{Key: v1.NodePoolLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{"batch-processing"}},
				{Key: corev1.LabelInstanceTypeStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"m5.xlarge"}},
			},
		},
	}
	if err := cp.Client.Create(ctx, nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cp.Client.Patch(ctx, &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: nc.Name}}, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))
		_ = cp.Client.Delete(ctx, nc)
	})
	c := &Controller{Kube: byProviderID{cp.Client}, Cloud: deletedDuringCreate{cloud, released}, Recorder: discard{}}
	// The first pass adds the finalizer and launches; the launch cannot be
	// recorded on a claim that is gone, and that is not an error to retry.
	step(t, c, nc)
	instances := sim.Instances()
	if len(instances) != 1 {
		t.Fatalf("%d instances launched, want 1", len(instances))
	}
	if state := instances[0].State; state != ec2sim.StateShuttingDown && state != ec2sim.StateTerminated {
		t.Errorf("the instance of the deleted claim is %s, want shutting-down", state)
	}
}
