package aws

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	"github.com/nodewright/nodewright/test/harness"
)

// createNodeClass stores the seed EC2NodeClass under a fresh name. At the
// end of the test it is deleted, its finalizer removed: the test's
// reconciler may have stopped.
func createNodeClass(t *testing.T, cp *harness.ControlPlane) *awsv1.EC2NodeClass {
	t.Helper()
	nc := seedNodeClass(t)
	nc.Name, nc.Generation = harness.Name("default"), 0
	if err := cp.Client.Create(context.Background(), nc); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(nc)
	t.Cleanup(func() {
		ctx := context.Background()
		_ = cp.Client.Delete(ctx, &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: key.Name}})
		_ = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			latest := &awsv1.EC2NodeClass{}
			if err := cp.Client.Get(ctx, key, latest); err != nil || !controllerutil.RemoveFinalizer(latest, awsv1.TerminationFinalizer) {
				return client.IgnoreNotFound(err)
			}
			return cp.Client.Update(ctx, latest)
		})
	})
	return nc
}

// TestNodeClassReconcilerWritesStatus: with the reconciler running in a
// manager, a new EC2NodeClass gets its resolved status and Ready, and a spec
// change is resolved again: a selector that matches nothing turns it not
// Ready with a message naming the selector.
func TestNodeClassReconcilerWritesStatus(t *testing.T) {
	cp := needControlPlane(t)
	e := newEnv(t)
	runReconciler(t, cp, &NodeClassReconciler{Resolver: e.resolver(t), LaunchTemplates: e.cloudProvider(t)})

	nc := createNodeClass(t, cp)
	key := client.ObjectKeyFromObject(nc)
	cp.Eventually(t, 30*time.Second, "the EC2NodeClass to be Ready", func(ctx context.Context) (bool, error) {
		if err := cp.Client.Get(ctx, key, nc); err != nil {
			return false, err
		}
		ready := meta.FindStatusCondition(nc.Status.Conditions, ConditionTypeReady)
		return ready != nil && ready.Status == metav1.ConditionTrue && ready.ObservedGeneration == nc.Generation, nil
	})
	if len(nc.Status.Subnets) != 4 || len(nc.Status.SecurityGroups) != 1 || len(nc.Status.AMIs) != 3 || nc.Status.InstanceProfile != "KarpenterNodeInstanceProfile" {
		t.Errorf("stored status: %d subnets, %d groups, %d AMIs, profile %q; want 4, 1, 3, KarpenterNodeInstanceProfile",
			len(nc.Status.Subnets), len(nc.Status.SecurityGroups), len(nc.Status.AMIs), nc.Status.InstanceProfile)
	}
	for _, c := range nc.Status.Conditions {
		if c.LastTransitionTime.IsZero() {
			t.Errorf("condition %s has no transition time", c.Type)
		}
	}

	nc.Spec.SubnetSelectorTerms = []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"Tier": "nope"}}}
	if err := cp.Client.Update(context.Background(), nc); err != nil {
		t.Fatal(err)
	}
	want := `no subnet matches subnetSelectorTerms[0] {"tags":{"Tier":"nope"}}`
	cp.Eventually(t, 30*time.Second, "the spec change to be resolved", func(ctx context.Context) (bool, error) {
		if err := cp.Client.Get(ctx, key, nc); err != nil {
			return false, err
		}
		subnets := meta.FindStatusCondition(nc.Status.Conditions, awsv1.ConditionTypeSubnetsReady)
		ready := meta.FindStatusCondition(nc.Status.Conditions, ConditionTypeReady)
		return subnets != nil && subnets.Status == metav1.ConditionFalse && subnets.Message == want &&
			ready.Status == metav1.ConditionFalse && ready.ObservedGeneration == nc.Generation, nil
	})
	if len(nc.Status.Subnets) != 0 {
		t.Errorf("status still lists %d subnets no selector matches", len(nc.Status.Subnets))
	}
}

// TestNodeClassReconcilerRequeues: a resolved node class is resolved again
// after the interval; a failed lookup is returned for backoff after what did
// resolve is written.
func TestNodeClassReconcilerRequeues(t *testing.T) {
	cp := needControlPlane(t)
	e := newEnv(t)
	r := &NodeClassReconciler{Client: cp.Client, Resolver: e.resolver(t), LaunchTemplates: e.cloudProvider(t)}
	nc := createNodeClass(t, cp)
	request := reconcile.Request{NamespacedName: types.NamespacedName{Name: nc.Name}}
	result, err := r.Reconcile(context.Background(), request)
	if err != nil || result.RequeueAfter != 5*time.Minute {
		t.Errorf("Reconcile = %+v, %v; want a requeue after 5 minutes", result, err)
	}

	e.sim.FailAlways("DescribeSecurityGroups", "InternalError", 500)
	if err := cp.Client.Get(context.Background(), client.ObjectKeyFromObject(nc), nc); err != nil {
		t.Fatal(err)
	}
	nc.Spec.SubnetSelectorTerms = []awsv1.SubnetSelectorTerm{{ID: "subnet-0a000000000000001"}}
	if err := cp.Client.Update(context.Background(), nc); err != nil {
		t.Fatal(err)
	}
	_, err = r.Reconcile(context.Background(), request)
	if err == nil || !strings.Contains(err.Error(), "describing security groups") {
		t.Errorf("Reconcile with DescribeSecurityGroups failing: want its error for backoff, got %v", err)
	}
	if err := cp.Client.Get(context.Background(), client.ObjectKeyFromObject(nc), nc); err != nil {
		t.Fatal(err)
	}
	if len(nc.Status.Subnets) != 1 || len(nc.Status.SecurityGroups) != 1 {
		t.Errorf("status: %d subnets, %d groups; want the new subnet written and the old group kept", len(nc.Status.Subnets), len(nc.Status.SecurityGroups))
	}

	gone := reconcile.Request{NamespacedName: types.NamespacedName{Name: "no-such-node-class"}}
	if _, err := r.Reconcile(context.Background(), gone); err != nil {
		t.Errorf("Reconcile of a deleted node class: %v", err)
	}
}

// TestReconcilerBottlerocketAndWindowsReady: through the apiserver (the
// CRD's rules included), a Bottlerocket class with the user's TOML and a
// windows2022 alias class with the user's PowerShell become Ready with
// their images. Mutations tried: aliasVariants without the bottlerocket
// case (the Bottlerocket class never became Ready: no AMI matches), and
// without the Windows cases (the Windows class neither).
func TestReconcilerBottlerocketAndWindowsReady(t *testing.T) {
	cp := needControlPlane(t)
	e := newEnv(t)
	runReconciler(t, cp, &NodeClassReconciler{Resolver: e.resolver(t), LaunchTemplates: e.cloudProvider(t)})
	for _, tc := range []struct {
		alias, userData string
		ready           metav1.ConditionStatus
		message         string
		amis            int
		firstAMI        string
	}{
		{"bottlerocket@latest", "[settings.kubernetes]\nkube-api-qps = 30\n", metav1.ConditionTrue, "", 5, "ami-0b07000000000a150"},
		{"windows2022@latest", "<powershell>\nWrite-Host 'hello'\n</powershell>\n", metav1.ConditionTrue, "", 1, "ami-0e20220000000a137"},
	} {
		nc := seedNodeClass(t)
		nc.Name, nc.Generation = harness.Name("family"), 0
		nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: tc.alias}}
		if tc.userData != "" {
			nc.Spec.UserData = &tc.userData
		}
		if err := cp.Client.Create(context.Background(), nc); err != nil {
			t.Fatalf("%s: %v", tc.alias, err)
		}
		key := client.ObjectKeyFromObject(nc)
		t.Cleanup(func() {
			ctx := context.Background()
			_ = retry.RetryOnConflict(retry.DefaultRetry, func() error {
				latest := &awsv1.EC2NodeClass{}
				if err := cp.Client.Get(ctx, key, latest); err != nil || !controllerutil.RemoveFinalizer(latest, awsv1.TerminationFinalizer) {
					return client.IgnoreNotFound(err)
				}
				return cp.Client.Update(ctx, latest)
			})
			_ = cp.Client.Delete(ctx, &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: key.Name}})
		})
		var ready *metav1.Condition
		cp.Eventually(t, 30*time.Second, tc.alias+" class's Ready to be "+string(tc.ready), func(ctx context.Context) (bool, error) {
			if err := cp.Client.Get(ctx, key, nc); err != nil {
				return false, err
			}
			ready = meta.FindStatusCondition(nc.Status.Conditions, ConditionTypeReady)
			return ready != nil && ready.Status == tc.ready && ready.ObservedGeneration == nc.Generation, nil
		})
		if !strings.Contains(ready.Message, tc.message) {
			t.Errorf("%s: Ready message %q, want it to contain %q", tc.alias, ready.Message, tc.message)
		}
		if tc.ready == metav1.ConditionTrue && (len(nc.Status.AMIs) != tc.amis || nc.Status.AMIs[0].ID != tc.firstAMI) {
			t.Errorf("%s: AMIs %+v, want %d (image, requirements) entries, the first %s", tc.alias, nc.Status.AMIs, tc.amis, tc.firstAMI)
		}
	}
}
