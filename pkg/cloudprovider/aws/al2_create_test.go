package aws

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/ec2sim"
)

// al2Options are testOptions for a Kubernetes 1.32 cluster, the newest
// version EKS published AL2 images for.
func al2Options() Options {
	opts := testOptions
	opts.KubernetesVersion = "1.32"
	return opts
}

// al2Resolved is nc with the status a resolver for a 1.32 cluster gives it.
func (e *env) al2Resolved(t *testing.T, nc *awsv1.EC2NodeClass) *awsv1.EC2NodeClass {
	t.Helper()
	r, err := NewNodeClassResolver(e.clients, al2Options())
	if err != nil {
		t.Fatal(err)
	}
	status, err := r.Resolve(context.Background(), nc)
	if err != nil {
		t.Fatal(err)
	}
	nc = nc.DeepCopy()
	nc.Status = status
	return nc
}

// TestAL2AliasResolves: al2@latest and a pinned release resolve through the
// public SSM parameters under amazon-linux-2, amazon-linux-2-arm64 and
// amazon-linux-2-gpu to the standard image of each architecture (types
// without accelerators) and the x86 GPU image (for GPU and for Neuron
// types), and the class is Ready; a release whose parameters are gone is
// found by its image name; on a 1.37 cluster, for which EKS published no AL2
// image, the class is not Ready and says why. Mutations tried: the arm64
// directory spelled amazon-linux-2/arm64 (no arm64 entry), the GPU image's
// pinned name without gpu- (the pinned alias loses its GPU entries), the
// name fallback limited to al2023 (v20251020 resolves nothing).
func TestAL2AliasResolves(t *testing.T) {
	standard := `[{"key":"kubernetes.io/arch","operator":"In","values":["%s"]},{"key":"karpenter.k8s.aws/instance-gpu-count","operator":"DoesNotExist"},{"key":"karpenter.k8s.aws/instance-accelerator-count","operator":"DoesNotExist"}]`
	gpu := `[{"key":"kubernetes.io/arch","operator":"In","values":["amd64"]},{"key":"karpenter.k8s.aws/instance-gpu-count","operator":"Exists"}]`
	neuron := `[{"key":"kubernetes.io/arch","operator":"In","values":["amd64"]},{"key":"karpenter.k8s.aws/instance-accelerator-count","operator":"Exists"}]`
	latest := []string{
		"ami-0a2000000000000a1 " + fmt.Sprintf(standard, "amd64"), "ami-0a2000000000000c1 " + gpu, "ami-0a2000000000000c1 " + neuron,
		"ami-0a2000000000000b1 " + fmt.Sprintf(standard, "arm64"),
	}
	for _, tc := range []struct {
		alias string
		want  []string
	}{
		{"al2@latest", latest},
		{"al2@v20251112", latest},
		{"al2@v20251020", []string{"ami-0a2000000000000a0 " + fmt.Sprintf(standard, "amd64")}},
	} {
		t.Run(tc.alias, func(t *testing.T) {
			e := newEnv(t)
			nc := seedNodeClass(t)
			nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: tc.alias}}
			nc = e.al2Resolved(t, nc)
			if !meta.IsStatusConditionTrue(nc.Status.Conditions, ConditionTypeReady) {
				t.Errorf("not Ready: %+v", nc.Status.Conditions)
			}
			if got := amiSummaries(nc); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("AMIs:\n%s\nwant\n%s", strings.Join(amiSummaries(nc), "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
	t.Run("1.37", func(t *testing.T) {
		e := newEnv(t)
		nc := seedNodeClass(t)
		nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: "al2@latest"}}
		status, err := e.resolver(t).Resolve(context.Background(), nc)
		if err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(status.Conditions, awsv1.ConditionTypeAMIsReady)
		if c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "alias al2@latest (EKS publishes AL2 images for Kubernetes 1.32 and earlier only") {
			t.Errorf("AMIsReady = %+v, want False saying AL2 images stop at 1.32", c)
		}
	})
}

// TestCreateAL2: a class with alias al2@latest, kubelet settings, RAID0 and
// the user's own script is Ready and launches through the simulator with
// the AL2 image; the launch template's user data runs the user's script,
// then bootstrap.sh for the cluster with the claim's labels and taints and
// the kubelet settings, which the simulated node registers with. Mutations
// tried: dispatching AL2 to the AL2023 writer (no bootstrap.sh, the node
// registers without max pods), dropping --max-pods from the flags (the node
// registers with bootstrap.sh's ENI limit).
func TestCreateAL2(t *testing.T) {
	e := newEnv(t)
	nc := seedNodeClass(t)
	nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: "al2@latest"}}
	nc.Spec.Kubelet = kubeletJSON(t, `{"maxPods":58,"evictionHard":{"memory.available":"5%"}}`)
	nc.Spec.InstanceStorePolicy = ptr.To(awsv1.InstanceStorePolicyRAID0)
	nc.Spec.UserData = ptr.To("#!/bin/bash\necho custom\n")
	nc = e.al2Resolved(t, nc)
	if !meta.IsStatusConditionTrue(nc.Status.Conditions, ConditionTypeReady) {
		t.Fatalf("not Ready: %+v", nc.Status.Conditions)
	}
	p := e.cloudProvider(t, nc)
	claim := newClaim(nc.Name, req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand), req(v1.LabelInstanceTypeStable, "m5d.xlarge"))

	got, err := p.Create(context.Background(), claim)
	if err != nil {
		t.Fatal(err)
	}
	inst := simInstance(t, e.sim, got.Status.ProviderID)
	if inst.ImageID != "ami-0a2000000000000a1" || got.Status.ImageID != inst.ImageID {
		t.Errorf("image %s (claim %s), want AL2's x86 standard image", inst.ImageID, got.Status.ImageID)
	}
	text, err := onlyTemplate(t, e.sim).Data.DecodedUserData()
	if err != nil {
		t.Fatal(err)
	}
	ps := parts(t, text)
	if len(ps) != 2 || ps[0][1] != "#!/bin/bash\necho custom\n" {
		t.Fatalf("parts %q, want the user's script then nodewright's", ps)
	}
	for _, want := range []string{
		"/etc/eks/bootstrap.sh 'my-cluster' --apiserver-endpoint 'https://my-cluster.eks.example' --b64-cluster-ca '" + testOptions.ClusterCABundle + "'",
		"--dns-cluster-ip '10.100.0.10'", "--use-max-pods false", "--local-disks raid0",
		"--max-pods=58", "--eviction-hard=memory.available<5%",
	} {
		if !strings.Contains(ps[1][1], want) {
			t.Errorf("bootstrap script lacks %q:\n%s", want, ps[1][1])
		}
	}
	reg, err := ec2sim.ParseKubeletRegistration(text)
	if err != nil {
		t.Fatalf("the simulated node does not read its user data: %v", err)
	}
	wantTaints := []corev1.Taint{{Key: "dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule}, {Key: "karpenter.sh/unregistered", Effect: corev1.TaintEffectNoExecute}}
	if reg.Labels["karpenter.sh/nodepool"] != "batch-processing" || reg.Labels["karpenter.k8s.aws/ec2nodeclass"] != "default" ||
		!reflect.DeepEqual(reg.Taints, wantTaints) || reg.MaxPods == nil || *reg.MaxPods != 58 {
		t.Errorf("the node registers with labels %v taints %v max pods %v", reg.Labels, reg.Taints, reg.MaxPods)
	}
}

// amiSummaries are the AMIs of nc's status, each as its id and its
// requirements in JSON.
func amiSummaries(nc *awsv1.EC2NodeClass) []string {
	var out []string
	for _, a := range nc.Status.AMIs {
		reqs, _ := json.Marshal(a.Requirements)
		out = append(out, a.ID+" "+string(reqs))
	}
	return out
}
