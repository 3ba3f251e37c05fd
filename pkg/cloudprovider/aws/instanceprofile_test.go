package aws

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	"github.com/nodewright/nodewright/test/harness"
)

// roleNodeClass is the seed node class with spec.role instead of
// spec.instanceProfile.
func roleNodeClass(t *testing.T, role string) *awsv1.EC2NodeClass {
	t.Helper()
	nc := seedNodeClass(t)
	nc.Spec.InstanceProfile = nil
	nc.Spec.Role = role
	nc.Spec.Tags = map[string]string{"team": "batch"}
	return nc
}

// profileCondition resolves nc and returns its status and
// InstanceProfileReady condition.
func profileCondition(t *testing.T, r *NodeClassResolver, nc *awsv1.EC2NodeClass) (awsv1.EC2NodeClassStatus, *metav1.Condition, error) {
	t.Helper()
	status, err := r.Resolve(context.Background(), nc)
	return status, meta.FindStatusCondition(status.Conditions, awsv1.ConditionTypeInstanceProfileReady), err
}

// TestInstanceProfileName: the name Karpenter gives the profile of a node
// class, "<cluster>_<FNV-1a 64 of region+name>" (hashstructure v2 hashes a
// string so), so a cluster moved from Karpenter finds its profiles. Tried:
// hashing "region/name" (the name before) fails it.
func TestInstanceProfileName(t *testing.T) {
	if got := InstanceProfileName("my-cluster", "ap-northeast-2", "default"); got != "my-cluster_7583076803529834757" {
		t.Errorf("InstanceProfileName = %s", got)
	}
}

// TestRoleCreatesInstanceProfile: a node class with spec.role gets a profile
// in IAM holding the role, tagged as the cluster's and the class's (with the
// class's spec.tags and the region), and the profile in its status; resolving
// again reuses it; a new spec.role replaces the role. Tried: reporting the
// profile ready without creating it (the code before) fails the IAM
// assertions; adding the new role without removing the old fails with
// LimitExceeded; creating on every resolution fails the reuse count.
func TestRoleCreatesInstanceProfile(t *testing.T) {
	e := newEnv(t)
	r := e.resolver(t)
	nc := roleNodeClass(t, "KarpenterNodeRole")
	name := InstanceProfileName("my-cluster", region, nc.Name)

	status, c, err := profileCondition(t, r, nc)
	if err != nil {
		t.Fatal(err)
	}
	if status.InstanceProfile != name || c.Status != metav1.ConditionTrue || !meta.IsStatusConditionTrue(status.Conditions, ConditionTypeReady) {
		t.Fatalf("status: profile %q, InstanceProfileReady %+v", status.InstanceProfile, c)
	}
	p, ok := e.sim.InstanceProfile(name)
	if !ok || p.Role != "KarpenterNodeRole" {
		t.Fatalf("profile in IAM: %+v %v, want it with role KarpenterNodeRole", p, ok)
	}
	for k, v := range map[string]string{"kubernetes.io/cluster/my-cluster": "owned", "eks:eks-cluster-name": "my-cluster",
		awsv1.TagEC2NodeClass: nc.Name, "topology.kubernetes.io/region": region, "team": "batch"} {
		if p.Tags[k] != v {
			t.Errorf("profile tag %s = %q, want %q (tags %v)", k, p.Tags[k], v, p.Tags)
		}
	}

	if _, c, err := profileCondition(t, r, nc); err != nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("resolving again: %v %+v", err, c)
	}
	if n := e.sim.Calls("CreateInstanceProfile"); n != 1 {
		t.Errorf("%d CreateInstanceProfile calls after two resolutions, want 1 (the profile reused)", n)
	}

	nc.Spec.Role, nc.Generation = "arn:aws:iam::111122223333:role/KarpenterGPUNodeRole", 2
	if _, c, err := profileCondition(t, r, nc); err != nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("after the role change: %v %+v", err, c)
	}
	if p, _ := e.sim.InstanceProfile(name); p.Role != "KarpenterGPUNodeRole" {
		t.Errorf("profile role after the change = %q, want KarpenterGPUNodeRole", p.Role)
	}
}

// TestInstanceProfileProblems: a role IAM does not have, and a profile of
// the name that is not nodewright's, make InstanceProfileReady False with a
// message naming spec.role, and no error (retrying does not help); a
// throttled IAM is an error to retry, and a new class is not Ready meanwhile.
// A class with spec.instanceProfile makes no IAM call. Tried: treating
// NoSuchEntity from AddRoleToInstanceProfile as success fails the first case;
// dropping the ownership check fails the second (it adds the role to the
// foreign profile).
func TestInstanceProfileProblems(t *testing.T) {
	e := newEnv(t)
	r := e.resolver(t)
	ctx := context.Background()

	nc := roleNodeClass(t, "NoSuchRole")
	status, c, err := profileCondition(t, r, nc)
	if err != nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonInstanceProfileNotReady ||
		!strings.Contains(c.Message, "spec.role NoSuchRole") || meta.IsStatusConditionTrue(status.Conditions, ConditionTypeReady) {
		t.Errorf("missing role: err %v, InstanceProfileReady %+v", err, c)
	}

	foreign := roleNodeClass(t, "KarpenterNodeRole")
	foreign.Name = "foreign"
	name := InstanceProfileName("my-cluster", region, foreign.Name)
	if _, err := e.clients.IAM.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	if _, c, err := profileCondition(t, r, foreign); err != nil || c.Status != metav1.ConditionFalse ||
		!strings.Contains(c.Message, "spec.role KarpenterNodeRole") || !strings.Contains(c.Message, "not nodewright's") {
		t.Errorf("foreign profile: err %v, InstanceProfileReady %+v", err, c)
	}
	if p, _ := e.sim.InstanceProfile(name); p.Role != "" {
		t.Errorf("the foreign profile was given role %s", p.Role)
	}
	if err := r.DeleteInstanceProfile(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.sim.InstanceProfile(name); !ok {
		t.Error("the foreign profile was deleted")
	}

	throttled := roleNodeClass(t, "KarpenterNodeRole")
	throttled.Name = "throttled"
	e.sim.FailNext("GetInstanceProfile", "Throttling", 400, 5)
	status, c, err = profileCondition(t, r, throttled)
	if err == nil || c.Status != metav1.ConditionUnknown || !strings.Contains(c.Message, "spec.role KarpenterNodeRole") || meta.IsStatusConditionTrue(status.Conditions, ConditionTypeReady) {
		t.Errorf("throttled: err %v, InstanceProfileReady %+v", err, c)
	}

	before := e.sim.Calls("GetInstanceProfile")
	given := seedNodeClass(t)
	if status, c, err := profileCondition(t, r, given); err != nil || c.Status != metav1.ConditionTrue || status.InstanceProfile != "KarpenterNodeInstanceProfile" {
		t.Errorf("spec.instanceProfile: %v %+v %q", err, c, status.InstanceProfile)
	}
	if e.sim.Calls("GetInstanceProfile") != before {
		t.Error("a class with spec.instanceProfile looked its profile up in IAM")
	}
}

// TestInstanceProfileAdoptedAndDeleted: a profile Karpenter made (its
// ownership tags, not the region one) is reused and given the tags it lacks;
// DeleteInstanceProfile removes its role and deletes it, and is done when it
// is gone. Tried: deleting without removing the role first fails with
// DeleteConflict.
func TestInstanceProfileAdoptedAndDeleted(t *testing.T) {
	e := newEnv(t)
	r := e.resolver(t)
	ctx := context.Background()
	nc := roleNodeClass(t, "KarpenterNodeRole")
	name := InstanceProfileName("my-cluster", region, nc.Name)
	if _, err := e.clients.IAM.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(name), Tags: []iamtypes.Tag{
		{Key: aws.String("kubernetes.io/cluster/my-cluster"), Value: aws.String("owned")},
		{Key: aws.String(awsv1.TagEC2NodeClass), Value: aws.String(nc.Name)},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.clients.IAM.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String(name), RoleName: aws.String("KarpenterNodeRole")}); err != nil {
		t.Fatal(err)
	}
	if _, c, err := profileCondition(t, r, nc); err != nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("adopting: %v %+v", err, c)
	}
	if p, _ := e.sim.InstanceProfile(name); p.Tags["topology.kubernetes.io/region"] != region || p.Role != "KarpenterNodeRole" || e.sim.Calls("CreateInstanceProfile") != 1 {
		t.Errorf("adopted profile %+v", p)
	}

	for range 2 {
		if err := r.DeleteInstanceProfile(ctx, nc); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := e.sim.InstanceProfile(name); ok {
		t.Error("the profile is still there after DeleteInstanceProfile")
	}
}

// TestNodeClassReconcilerManagesInstanceProfile: on the apiserver, a class
// with spec.role becomes Ready with the created profile in its status, and
// deleting the class deletes the profile before the finalizer goes. Tried:
// not calling DeleteInstanceProfile in finalize leaves the profile and fails
// the last assertion.
func TestNodeClassReconcilerManagesInstanceProfile(t *testing.T) {
	cp := needControlPlane(t)
	e := newEnv(t)
	ctx := context.Background()
	runReconciler(t, cp, &NodeClassReconciler{Resolver: e.resolver(t), LaunchTemplates: e.cloudProvider(t), Interval: time.Hour})

	nc := roleNodeClass(t, "KarpenterNodeRole")
	nc.Name, nc.Generation = harness.Name("role"), 0
	if err := cp.Client.Create(ctx, nc); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(nc)
	name := InstanceProfileName("my-cluster", region, nc.Name)
	cp.Eventually(t, 30*time.Second, "the EC2NodeClass to be Ready with its instance profile", func(ctx context.Context) (bool, error) {
		if err := cp.Client.Get(ctx, key, nc); err != nil {
			return false, err
		}
		return nc.Status.InstanceProfile == name && meta.IsStatusConditionTrue(nc.Status.Conditions, awsv1.ConditionTypeInstanceProfileReady) &&
			meta.IsStatusConditionTrue(nc.Status.Conditions, ConditionTypeReady), nil
	})
	if p, ok := e.sim.InstanceProfile(name); !ok || p.Role != "KarpenterNodeRole" {
		t.Fatalf("profile in IAM: %+v %v", p, ok)
	}

	if err := cp.Client.Delete(ctx, nc); err != nil {
		t.Fatal(err)
	}
	cp.Eventually(t, 30*time.Second, "the deleted EC2NodeClass to go", func(ctx context.Context) (bool, error) {
		err := cp.Client.Get(ctx, key, &awsv1.EC2NodeClass{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	if p, ok := e.sim.InstanceProfile(name); ok {
		t.Errorf("the deleted class's instance profile is left: %+v", p)
	}
}

// TestInstanceProfileRecordedInStatusAdopted: Karpenter after v1.0 names a
// class's profile with a random part and records it in
// status.instanceProfile. Such a profile, tagged as the cluster's and the
// class's, is reused (no second profile) and deleted with the class; one the
// status names without those tags is left alone and the class gets its own.
// Tried: resolving only InstanceProfileName (the code before) fails with a
// second CreateInstanceProfile and Karpenter's profile left after the delete.
func TestInstanceProfileRecordedInStatusAdopted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tagged bool
	}{{"karpenter's", true}, {"untagged", false}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			r := e.resolver(t)
			ctx := context.Background()
			nc := roleNodeClass(t, "KarpenterNodeRole")
			recorded := "my-cluster_16101357249373214061"
			in := &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(recorded)}
			if tc.tagged {
				in.Tags = []iamtypes.Tag{
					{Key: aws.String("kubernetes.io/cluster/my-cluster"), Value: aws.String("owned")},
					{Key: aws.String(awsv1.TagEC2NodeClass), Value: aws.String(nc.Name)},
				}
			}
			if _, err := e.clients.IAM.CreateInstanceProfile(ctx, in); err != nil {
				t.Fatal(err)
			}
			if _, err := e.clients.IAM.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String(recorded), RoleName: aws.String("KarpenterNodeRole")}); err != nil {
				t.Fatal(err)
			}
			nc.Status.InstanceProfile = recorded
			status, c, err := profileCondition(t, r, nc)
			if err != nil || c.Status != metav1.ConditionTrue {
				t.Fatalf("resolving: %v %+v", err, c)
			}
			want, creates := recorded, 1
			if !tc.tagged {
				want, creates = InstanceProfileName("my-cluster", region, nc.Name), 2
			}
			if status.InstanceProfile != want || e.sim.Calls("CreateInstanceProfile") != creates {
				t.Errorf("status.instanceProfile %s after %d CreateInstanceProfile, want %s after %d", status.InstanceProfile, e.sim.Calls("CreateInstanceProfile"), want, creates)
			}
			nc.Status = status
			if err := r.DeleteInstanceProfile(ctx, nc); err != nil {
				t.Fatal(err)
			}
			if _, ok := e.sim.InstanceProfile(recorded); ok == tc.tagged {
				t.Errorf("profile %s present %v after DeleteInstanceProfile, want %v", recorded, ok, !tc.tagged)
			}
			if _, ok := e.sim.InstanceProfile(want); ok {
				t.Errorf("profile %s still there after DeleteInstanceProfile", want)
			}
		})
	}
}
