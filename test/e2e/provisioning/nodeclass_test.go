package provisioning

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	toml "github.com/pelletier/go-toml/v2"
	"github.com/samber/lo"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	"github.com/nodewright/nodewright/test/ec2sim"
	"github.com/nodewright/nodewright/test/fixtures"
	"github.com/nodewright/nodewright/test/harness"
)

// A class with a role instead of an instance profile launches its nodes
// with the profile nodewright creates for the role. Deleting an EC2NodeClass
// that a NodePool still launches from waits for its NodeClaims, then deletes
// the launch templates and the instance profile made for it and lets it go;
// the DeleteLaunchTemplate and IAM calls go through the suite's IAM check
// (TestMain) like every other call. Mutation tried: without the finalizer
// (the class is deleted at once) the templates stay in the simulator and the
// last wait fails naming them.
func TestDeletingANodeClassDeletesItsLaunchTemplates(t *testing.T) {
	ctx := context.Background()
	ns := cp.Namespace(t)
	class := &awsv1.EC2NodeClass{}
	if err := fixtures.SeedInto(fixtures.EC2NodeClassDefault, class); err != nil {
		t.Fatal(err)
	}
	class.Name = harness.Name("class")
	class.Spec.InstanceProfile, class.Spec.Role = nil, "KarpenterNodeRole"
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
	runPodOn(t, ns, "on-class", np.Name, "the pod running on a node of the new class")
	if n := len(templatesOf(class.Name)); n == 0 {
		t.Fatal("no launch template tagged with the class after a launch")
	}
	if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(class), class); err != nil {
		t.Fatal(err)
	}
	profile := class.Status.InstanceProfile
	if ip, ok := e.Sim.InstanceProfile(profile); !ok || profile == "" || ip.Role != "KarpenterNodeRole" || profile == "KarpenterNodeInstanceProfile" {
		t.Fatalf("status names instance profile %q (%+v, found %v), want one nodewright made for the class's role", profile, ip, ok)
	}
	launched := lo.Filter(e.Sim.Instances(), func(in ec2sim.Instance, _ int) bool { return in.Tags[awsv1.TagNodePool] == np.Name })
	if len(launched) == 0 {
		t.Fatal("no instance tagged with the pool")
	}
	for _, in := range launched {
		if !strings.HasSuffix(in.IAMInstanceProfile, "/"+profile) && in.IAMInstanceProfile != profile {
			t.Errorf("instance %s launched with profile %q, want the class's %q", in.ID, in.IAMInstanceProfile, profile)
		}
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
		if _, ok := e.Sim.InstanceProfile(profile); ok {
			return false, fmt.Errorf("instance profile %s left", profile)
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

// A Bottlerocket class (alias only, no amiFamily) becomes Ready, its nodes
// register and run pods, and the user data its instances boot with is TOML
// carrying the cluster's settings and the user's own merged in (a class that
// resolves no Bottlerocket image is not Ready, and the pod would stay pending).
func TestBottlerocketClassRunsPods(t *testing.T) {
	ctx := context.Background()
	ns := cp.Namespace(t)
	class := &awsv1.EC2NodeClass{}
	if err := fixtures.SeedInto(fixtures.EC2NodeClassDefault, class); err != nil {
		t.Fatal(err)
	}
	class.Name = harness.Name("bottlerocket")
	class.Spec.AMIFamily = nil
	class.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: "bottlerocket@latest"}}
	class.Spec.UserData = ptr.To("[settings.kernel.sysctl]\n\"net.core.somaxconn\" = \"4096\"\n")
	if err := cp.Client.Create(ctx, class); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), class) })
	np := seedPool(t, harness.Name("brpool"))
	np.Spec.Template.Spec.NodeClassRef.Name = class.Name
	createPool(t, np)
	runPodOn(t, ns, "on-bottlerocket", np.Name, "the pod running on a Bottlerocket node")
	launched := lo.Filter(e.Sim.Instances(), func(in ec2sim.Instance, _ int) bool { return in.Tags[awsv1.TagNodePool] == np.Name })
	if len(launched) == 0 {
		t.Fatal("no instance tagged with the pool")
	}
	raw, err := base64.StdEncoding.DecodeString(launched[0].UserData)
	if err != nil {
		t.Fatal(err)
	}
	var settings struct {
		Settings struct {
			Kubernetes struct {
				ClusterName string `toml:"cluster-name"`
			} `toml:"kubernetes"`
			Kernel struct {
				Sysctl map[string]string `toml:"sysctl"`
			} `toml:"kernel"`
		} `toml:"settings"`
	}
	if err := toml.Unmarshal(raw, &settings); err != nil {
		t.Fatalf("user data is not TOML: %v\n%s", err, raw)
	}
	if settings.Settings.Kubernetes.ClusterName != "my-cluster" || settings.Settings.Kernel.Sysctl["net.core.somaxconn"] != "4096" {
		t.Errorf("user data settings %+v, want the cluster's name and the user's sysctl:\n%s", settings.Settings, raw)
	}
	if !strings.HasPrefix(launched[0].ImageID, "ami-0b07") {
		t.Errorf("instance image %s, want a Bottlerocket image", launched[0].ImageID)
	}
}

// runPodOn creates a 1-CPU pod selecting the pool and waits until it runs.
func runPodOn(t *testing.T, ns, name, pool, what string) {
	t.Helper()
	if err := cp.Client.Create(context.Background(), podOnPool(ns, name, pool)); err != nil {
		t.Fatal(err)
	}
	cp.Eventually(t, 2*time.Minute, what, func(ctx context.Context) (bool, error) {
		pod := &corev1.Pod{}
		if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pod); err != nil {
			return false, err
		}
		if pod.Status.Phase != corev1.PodRunning {
			return false, fmt.Errorf("pod is %s", pod.Status.Phase)
		}
		return true, nil
	})
}
