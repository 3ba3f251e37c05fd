package aws

import (
	"context"
	"encoding/base64"
	"fmt"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/fixtures"
	"github.com/nodewright/nodewright/test/harness"
)

// testOptions describe the simulated cluster: the scenario's security group
// is tagged for my-cluster and its SSM parameters are for Kubernetes 1.37.
var testOptions = Options{
	ClusterName:       "my-cluster",
	ClusterEndpoint:   "https://my-cluster.eks.example",
	ClusterCABundle:   base64.StdEncoding.EncodeToString([]byte("-----BEGIN CERTIFICATE-----\nsim\n-----END CERTIFICATE-----\n")),
	ClusterCIDR:       "10.100.0.0/16",
	KubernetesVersion: "1.37",
	Region:            region,
}

// seedNodeClass is the seed fixture's EC2NodeClass, as users bring it.
func seedNodeClass(t *testing.T) *awsv1.EC2NodeClass {
	t.Helper()
	nc := &awsv1.EC2NodeClass{}
	if err := fixtures.SeedInto(fixtures.EC2NodeClassDefault, nc); err != nil {
		t.Fatal(err)
	}
	nc.Generation = 1
	return nc
}

func (e *env) resolver(t *testing.T) *NodeClassResolver {
	t.Helper()
	r, err := NewNodeClassResolver(e.clients, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// resolved returns nc with the status the resolver gives it, which must be
// Ready.
func (e *env) resolved(t *testing.T, nc *awsv1.EC2NodeClass) *awsv1.EC2NodeClass {
	t.Helper()
	status, err := e.resolver(t).Resolve(context.Background(), nc)
	if err != nil {
		t.Fatal(err)
	}
	nc = nc.DeepCopy()
	nc.Status = status
	if !meta.IsStatusConditionTrue(nc.Status.Conditions, ConditionTypeReady) {
		t.Fatalf("node class %s is not ready: %+v", nc.Name, nc.Status.Conditions)
	}
	return nc
}

// nodeClasses is a NodeClassReader over a fixed set of node classes: the
// provider tests are about EC2, and the reconciler that writes the status
// has its own tests against a real apiserver.
type nodeClasses map[string]*awsv1.EC2NodeClass

func (n nodeClasses) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	nc, ok := n[key.Name]
	if !ok {
		return apierrors.NewNotFound(awsv1.SchemeGroupVersion.WithResource("ec2nodeclasses").GroupResource(), key.Name)
	}
	nc.DeepCopyInto(obj.(*awsv1.EC2NodeClass))
	return nil
}

// cloudProvider is a provider over the simulator with the given (resolved)
// node classes and a fresh catalog from the simulator's live data.
func (e *env) cloudProvider(t *testing.T, ncs ...*awsv1.EC2NodeClass) *CloudProvider {
	t.Helper()
	types := e.provider(t)
	types.Refresh(context.Background())
	return e.cloudProviderWith(t, types, ncs...)
}

func (e *env) cloudProviderWith(t *testing.T, types *InstanceTypeProvider, ncs ...*awsv1.EC2NodeClass) *CloudProvider {
	t.Helper()
	reader := nodeClasses{}
	for _, nc := range ncs {
		reader[nc.Name] = nc
	}
	p, err := NewCloudProvider(testOptions, e.clients, types, reader)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var claimSeq atomic.Int64

// newClaim is a NodeClaim of the batch NodePool on the given node class, as
// the provisioner creates it: a UID, the NodePool label and requirements.
func newClaim(nodeClass string, reqs ...v1.NodeSelectorRequirementWithMinValues) *v1.NodeClaim {
	n := claimSeq.Add(1)
	return &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name:   fmt.Sprintf("batch-processing-%05d", n),
			UID:    types.UID(fmt.Sprintf("00000000-0000-0000-0000-%012d", n)),
			Labels: map[string]string{v1.NodePoolLabelKey: "batch-processing", "team": "data"},
		},
		Spec: v1.NodeClaimSpec{
			Requirements: append([]v1.NodeSelectorRequirementWithMinValues{
				{Key: v1.NodePoolLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{"batch-processing"}},
			}, reqs...),
			NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: nodeClass},
			Taints:       []corev1.Taint{{Key: "dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule}},
		},
	}
}

func req(key string, values ...string) v1.NodeSelectorRequirementWithMinValues {
	return v1.NodeSelectorRequirementWithMinValues{Key: key, Operator: corev1.NodeSelectorOpIn, Values: values}
}

// runReconciler runs r, on a client of its own manager, until the test
// ends, and fails the test if the manager stopped with an error.
func runReconciler(t *testing.T, cp *harness.ControlPlane, r *NodeClassReconciler) {
	t.Helper()
	mgr, err := ctrl.NewManager(cp.Config, ctrl.Options{
		Scheme:                 cp.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Client = mgr.GetClient()
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
}
