package ec2sim

import (
	"fmt"
	"mime/multipart"
	"net/textproto"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/nodewright/nodewright/pkg/catalog"
)

// al2023UserData is user data as Karpenter writes it for AL2023: a MIME
// archive (LF line ends) with nodeadm's NodeConfig, then a custom script.
const al2023UserData = `MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="//"

--//
Content-Type: application/node.eks.aws

# Karpenter Generated NodeConfig
apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
metadata:
  creationTimestamp: null
spec:
  cluster:
    apiServerEndpoint: https://ABCDEF.gr7.ap-northeast-2.eks.amazonaws.com
    certificateAuthority: Y2EK
    cidr: 10.100.0.0/16
    name: demo
  containerd: {}
  instance:
    localStorage: {}
  kubelet:
    config:
      clusterDNS:
      - 10.100.0.10
      maxPods: 29
      registerWithTaints:
      - effect: NoSchedule
        key: example.com/dedicated
        value: batch
    flags:
    - --node-labels="karpenter.sh/capacity-type=spot,karpenter.sh/nodepool=default"

--//
Content-Type: text/x-shellscript; charset="us-ascii"

#!/bin/bash
echo "custom setup"

--//--
`

// bottlerocketUserData is Bottlerocket's TOML as Karpenter writes it (basic
// strings), a taint key with two effects.
const bottlerocketUserData = `[settings]
[settings.kubernetes]
api-server = "https://ABCDEF.gr7.ap-northeast-2.eks.amazonaws.com"
cluster-certificate = "Y2EK"
cluster-name = "demo"
max-pods = 29

[settings.kubernetes.node-labels]
"karpenter.sh/capacity-type" = "spot"
"karpenter.sh/nodepool" = "default"

[settings.kubernetes.node-taints]
"example.com/dedicated" = ["batch:NoSchedule", "batch:NoExecute"]
"karpenter.sh/unregistered" = [":NoExecute"]
`

// al2UserData is an AL2 bootstrap.sh call as Karpenter writes it. Mutations
// tried on the checks of bootstrap.sh's arguments: the cluster name not
// required, allowed values not checked, --use-max-pods false ignored (each
// makes TestParseKubeletRegistration fail).
const al2UserData = `MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="//"

--//
Content-Type: text/x-shellscript; charset="us-ascii"

#!/bin/bash -xe
exec > >(tee /var/log/user-data.log|logger -t user-data -s 2>/dev/console) 2>&1
/etc/eks/bootstrap.sh 'demo' --apiserver-endpoint 'https://ABCDEF.gr7.ap-northeast-2.eks.amazonaws.com' --b64-cluster-ca 'Y2EK' \
--use-max-pods false \
--kubelet-extra-args '--node-labels="karpenter.sh/nodepool=default,team=web" --register-with-taints="example.com/gpu=true:NoExecute,example.com/spot:PreferNoSchedule" --max-pods=58'
--//--
`

func TestParseKubeletRegistration(t *testing.T) {
	pods := func(n int32) *int32 { return &n }
	for _, tc := range []struct {
		name, userData string
		want           KubeletRegistration
	}{
		{"AL2023 MIME archive", al2023UserData, KubeletRegistration{
			Labels:  map[string]string{"karpenter.sh/capacity-type": "spot", "karpenter.sh/nodepool": "default"},
			Taints:  []corev1.Taint{{Key: "example.com/dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule}},
			MaxPods: pods(29),
		}},
		{"AL2 bootstrap.sh", al2UserData, KubeletRegistration{
			Labels: map[string]string{"karpenter.sh/nodepool": "default", "team": "web"},
			Taints: []corev1.Taint{
				{Key: "example.com/gpu", Value: "true", Effect: corev1.TaintEffectNoExecute},
				{Key: "example.com/spot", Effect: corev1.TaintEffectPreferNoSchedule},
			},
			MaxPods: pods(58),
		}},
		{"plain NodeConfig", "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  kubelet:\n    flags:\n    - --node-labels=a=b\n    - --register-with-taints=k=v:NoSchedule\n",
			KubeletRegistration{Labels: map[string]string{"a": "b"}, Taints: []corev1.Taint{{Key: "k", Value: "v", Effect: corev1.TaintEffectNoSchedule}}}},
		{"Bottlerocket TOML", bottlerocketUserData, KubeletRegistration{
			Labels: map[string]string{"karpenter.sh/capacity-type": "spot", "karpenter.sh/nodepool": "default"},
			Taints: []corev1.Taint{
				{Key: "example.com/dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule},
				{Key: "example.com/dedicated", Value: "batch", Effect: corev1.TaintEffectNoExecute},
				{Key: "karpenter.sh/unregistered", Effect: corev1.TaintEffectNoExecute},
			},
			MaxPods: pods(29),
		}},
		{"custom script only", "#!/bin/bash\necho hello\n", KubeletRegistration{Labels: map[string]string{}}},
		// bootstrap.sh with --use-max-pods false and no --max-pods: the
		// kubelet's own default.
		{"AL2 without max pods", strings.Replace(al2UserData, " --max-pods=58", "", 1), KubeletRegistration{
			Labels: map[string]string{"karpenter.sh/nodepool": "default", "team": "web"},
			Taints: []corev1.Taint{
				{Key: "example.com/gpu", Value: "true", Effect: corev1.TaintEffectNoExecute},
				{Key: "example.com/spot", Effect: corev1.TaintEffectPreferNoSchedule},
			},
			MaxPods: pods(110),
		}},
		{"empty", "", KubeletRegistration{Labels: map[string]string{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKubeletRegistration(tc.userData)
			if err != nil {
				t.Fatal(err)
			}
			if !equality.Semantic.DeepEqual(got, tc.want) {
				t.Errorf("got %s\nwant %s", show(got), show(tc.want))
			}
		})
	}
	for _, bad := range []string{
		"#!/bin/bash\n/etc/eks/bootstrap.sh demo --kubelet-extra-args '--register-with-taints=\"k=v:Sometimes\"'",
		"#!/bin/bash\n/etc/eks/bootstrap.sh demo --kubelet-extra-args '--node-labels=\"novalue\"'",
		// AL2 bootstrap.sh exits: no cluster name, a runtime, disk layout or
		// IP family it does not take, an option without its value.
		strings.Replace(al2UserData, "bootstrap.sh 'demo' ", "bootstrap.sh ", 1),
		strings.Replace(al2UserData, "--use-max-pods false", "--container-runtime dockerd", 1),
		strings.Replace(al2UserData, "--use-max-pods false", "--local-disks raid5", 1),
		strings.Replace(al2UserData, "--use-max-pods false", "--ip-family ipv6", 1),
		"#!/bin/bash\n/etc/eks/bootstrap.sh demo --b64-cluster-ca",
		// Bottlerocket: no cluster to join, a taint without an effect, a
		// label that is not a string, settings that are not TOML tables.
		"[settings.kubernetes]\nnode-labels = { a = \"b\" }\n",
		strings.Replace(bottlerocketUserData, `"batch:NoExecute"`, `"batch"`, 1),
		strings.Replace(bottlerocketUserData, `"karpenter.sh/nodepool" = "default"`, `"karpenter.sh/nodepool" = 3`, 1),
		"[settings]\nkubernetes = 3\n",
	} {
		if _, err := ParseKubeletRegistration(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func show(r KubeletRegistration) string {
	pods := "nil"
	if r.MaxPods != nil {
		pods = fmt.Sprint(*r.MaxPods)
	}
	return fmt.Sprintf("labels %v taints %v maxPods %s", r.Labels, r.Taints, pods)
}

func TestKubeletNodeIsWhatEKSRegisters(t *testing.T) {
	e := newEnv(t)
	e.launchTemplate(t, "nodes", al2023UserData)
	out := e.createFleet(t, fleetInput("nodes", "spot", 1, override("c5.large", "ap-northeast-2c")))
	in := e.instance(t, launched(out)[0])
	node, err := e.sim.kubeletNode(in)
	if err != nil {
		t.Fatal(err)
	}
	if node.Name != in.PrivateDNSName || !strings.HasSuffix(node.Name, ".ap-northeast-2.compute.internal") ||
		node.Spec.ProviderID != "aws:///ap-northeast-2c/"+in.ID || node.Annotations[KwokNodeAnnotation] != "fake" {
		t.Errorf("node %s, provider id %s, annotations %v", node.Name, node.Spec.ProviderID, node.Annotations)
	}
	for k, v := range map[string]string{
		corev1.LabelHostname: node.Name, corev1.LabelArchStable: "amd64", corev1.LabelOSStable: "linux",
		corev1.LabelInstanceTypeStable: "c5.large", corev1.LabelTopologyRegion: region, corev1.LabelTopologyZone: "ap-northeast-2c",
		"topology.k8s.aws/zone-id": "apne2-az3", "karpenter.sh/capacity-type": "spot", "karpenter.sh/nodepool": "default",
	} {
		if node.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, node.Labels[k], v)
		}
	}
	if len(node.Spec.Taints) != 1 || node.Spec.Taints[0].Key != "example.com/dedicated" {
		t.Errorf("taints %v", node.Spec.Taints)
	}
	spec := e.sim.types["c5.large"]
	pods := int32(29)
	capacity, allocatable := spec.Resources(catalog.NodeSettings{MaxPods: &pods})
	if !equality.Semantic.DeepEqual(node.Status.Capacity, capacity) || !equality.Semantic.DeepEqual(node.Status.Allocatable, allocatable) {
		t.Errorf("capacity %v allocatable %v, want the catalog's %v %v", node.Status.Capacity, node.Status.Allocatable, capacity, allocatable)
	}
	if node.Status.Capacity.Pods().Value() != 29 {
		t.Errorf("maxPods from the NodeConfig not applied: %v", node.Status.Capacity.Pods())
	}
}

// Go's multipart.Writer (and so the AWS provider) ends lines with CRLF; the
// closing boundary must still be found when the text arrives trimmed.
func TestParseKubeletRegistrationCRLF(t *testing.T) {
	var buf strings.Builder
	buf.WriteString("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"//b//\"\r\n\r\n")
	w := multipart.NewWriter(&buf)
	if err := w.SetBoundary("//b//"); err != nil {
		t.Fatal(err)
	}
	pw, err := w.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/node.eks.aws"}})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(pw, "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  kubelet:\n    flags:\n    - --node-labels=team=a\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := ParseKubeletRegistration(strings.TrimSpace(buf.String()))
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels["team"] != "a" {
		t.Errorf("labels %v, want team=a", got.Labels)
	}
}
