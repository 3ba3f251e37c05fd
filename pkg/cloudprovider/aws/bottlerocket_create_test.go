package aws

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/pelletier/go-toml/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/ec2sim"
)

// TestCreateBottlerocket: a class with alias bottlerocket@latest, kubelet
// settings and the user's own TOML is Ready, launches through the simulator
// with the Bottlerocket image and its two default volumes, and the launch
// template's user data is TOML with the cluster, the user's settings, the
// kubelet settings and the claim's labels and taints, which the simulated
// node registers with. Mutations tried: dispatching Bottlerocket to the
// AL2023 writer (user data is not TOML), the AL2023 default disks for
// Bottlerocket (one 20GiB /dev/xvda).
func TestCreateBottlerocket(t *testing.T) {
	e := newEnv(t)
	nc := seedNodeClass(t)
	nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: "bottlerocket@latest"}}
	nc.Spec.Kubelet = kubeletJSON(t, `{"maxPods":58,"evictionHard":{"memory.available":"5%"}}`)
	nc.Spec.UserData = ptr.To("[settings.kubernetes]\nkube-api-qps = 30\n\n[settings.kubernetes.node-labels]\nteam = \"theirs\"\nrack = \"r7\"\n")
	nc = e.resolved(t, nc)
	p := e.cloudProvider(t, nc)
	claim := newClaim(nc.Name, req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand), req(v1.LabelInstanceTypeStable, "m5.xlarge"))

	got, err := p.Create(context.Background(), claim)
	if err != nil {
		t.Fatal(err)
	}
	inst := simInstance(t, e.sim, got.Status.ProviderID)
	if inst.ImageID != "ami-0b07000000000a150" || got.Status.ImageID != inst.ImageID {
		t.Errorf("image %s (claim %s), want Bottlerocket's x86 aws-k8s image", inst.ImageID, got.Status.ImageID)
	}
	lt := onlyTemplate(t, e.sim)
	var disks []string
	for _, b := range lt.Data.BlockDeviceMappings {
		disks = append(disks, fmt.Sprintf("%s %s %dGiB encrypted=%t", b.DeviceName, b.VolumeType, b.VolumeSize, b.Encrypted))
	}
	if want := []string{"/dev/xvda gp3 4GiB encrypted=true", "/dev/xvdb gp3 20GiB encrypted=true"}; !reflect.DeepEqual(disks, want) {
		t.Errorf("block devices %q, want Bottlerocket's OS and data volumes %q", disks, want)
	}
	text, err := lt.Data.DecodedUserData()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Settings struct {
			Kubernetes map[string]any `toml:"kubernetes"`
		} `toml:"settings"`
	}
	if err := toml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("launch template user data is not TOML: %v\n%s", err, text)
	}
	k := doc.Settings.Kubernetes
	for key, want := range map[string]any{
		"cluster-name": "my-cluster", "api-server": testOptions.ClusterEndpoint, "cluster-certificate": testOptions.ClusterCABundle,
		"cluster-dns-ip": "10.100.0.10", "max-pods": int64(58), "kube-api-qps": int64(30),
		"eviction-hard": map[string]any{"memory.available": "5%"},
		"node-labels": map[string]any{
			"karpenter.k8s.aws/ec2nodeclass": "default", "karpenter.sh/capacity-type": "on-demand",
			"karpenter.sh/nodepool": "batch-processing", "team": "data", "rack": "r7",
		},
		"node-taints": map[string]any{"dedicated": []any{"batch:NoSchedule"}, "karpenter.sh/unregistered": []any{":NoExecute"}},
	} {
		if !reflect.DeepEqual(k[key], want) {
			t.Errorf("settings.kubernetes.%s = %#v, want %#v", key, k[key], want)
		}
	}
	reg, err := ec2sim.ParseKubeletRegistration(text)
	if err != nil {
		t.Fatalf("the simulated node does not read its user data: %v", err)
	}
	wantTaints := []corev1.Taint{{Key: "dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule}, {Key: "karpenter.sh/unregistered", Effect: corev1.TaintEffectNoExecute}}
	if reg.Labels["karpenter.sh/nodepool"] != "batch-processing" || !reflect.DeepEqual(reg.Taints, wantTaints) || reg.MaxPods == nil || *reg.MaxPods != 58 {
		t.Errorf("the node registers with labels %v taints %v max pods %v", reg.Labels, reg.Taints, reg.MaxPods)
	}
}
