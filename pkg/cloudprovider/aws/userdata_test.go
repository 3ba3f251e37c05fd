package aws

import (
	"encoding/base64"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
)

// parts reads MIME multipart user data back into (content type, body) pairs.
func parts(t *testing.T, userData string) [][2]string {
	t.Helper()
	var out [][2]string
	for _, p := range readParts(t, userData) {
		out = append(out, [2]string{p.header.Get("Content-Type"), string(p.body)})
	}
	return out
}

func TestAL2023UserDataIsANodeConfig(t *testing.T) {
	kubelet := awsv1.KubeletConfiguration{"maxPods": apiextensionsv1.JSON{Raw: []byte("42")}}
	ud, err := al2023UserData(testOptions, bootstrap{
		Labels:  map[string]string{"karpenter.sh/nodepool": "batch", "team": "data"},
		Taints:  []corev1.Taint{{Key: "dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule}, {Key: "karpenter.sh/unregistered", Effect: corev1.TaintEffectNoExecute}},
		Kubelet: kubelet,
	})
	if err != nil {
		t.Fatal(err)
	}
	ps := parts(t, ud)
	if len(ps) != 1 || ps[0][0] != "application/node.eks.aws" {
		t.Fatalf("want one NodeConfig part, got %v", ps)
	}
	var nc nodeConfig
	if err := yaml.UnmarshalStrict([]byte(ps[0][1]), &nc); err != nil {
		t.Fatalf("NodeConfig does not parse: %v\n%s", err, ps[0][1])
	}
	if nc.Kind != "NodeConfig" || nc.APIVersion != "node.eks.aws/v1alpha1" {
		t.Errorf("kind/apiVersion = %s %s", nc.Kind, nc.APIVersion)
	}
	c := nc.Spec.Cluster
	if c.Name != testOptions.ClusterName || c.APIServerEndpoint != testOptions.ClusterEndpoint || c.CertificateAuthority != testOptions.ClusterCABundle || c.CIDR != testOptions.ClusterCIDR {
		t.Errorf("cluster = %+v, want the options' cluster", c)
	}
	if string(nc.Spec.Kubelet.Config["maxPods"].Raw) != "42" {
		t.Errorf("kubelet config = %v, want the node class's maxPods", nc.Spec.Kubelet.Config)
	}
	wantFlags := []string{
		"--node-labels=karpenter.sh/nodepool=batch,team=data",
		"--register-with-taints=dedicated=batch:NoSchedule,karpenter.sh/unregistered:NoExecute",
	}
	if strings.Join(nc.Spec.Kubelet.Flags, " ") != strings.Join(wantFlags, " ") {
		t.Errorf("kubelet flags = %q, want %q", nc.Spec.Kubelet.Flags, wantFlags)
	}
	again, _ := al2023UserData(testOptions, bootstrap{
		Labels:  map[string]string{"team": "data", "karpenter.sh/nodepool": "batch"},
		Taints:  []corev1.Taint{{Key: "karpenter.sh/unregistered", Effect: corev1.TaintEffectNoExecute}, {Key: "dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule}},
		Kubelet: kubelet,
	})
	if again != ud {
		t.Error("the same labels and taints in another order give other user data: launch templates would not be shared")
	}
}

// TestAL2023UserDataMergesTheUsers: the user's parts come first, unchanged,
// and nodewright's NodeConfig last so nodeadm applies it over them.
func TestAL2023UserDataMergesTheUsers(t *testing.T) {
	for _, tc := range []struct {
		name, userData string
		want           [][2]string
	}{
		{"shell script", "#!/bin/bash\necho hello\n", [][2]string{{"text/x-shellscript", "#!/bin/bash\necho hello\n"}}},
		{"NodeConfig", "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  kubelet:\n    config:\n      shutdownGracePeriod: 30s\n",
			[][2]string{{"application/node.eks.aws", "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  kubelet:\n    config:\n      shutdownGracePeriod: 30s\n"}}},
		{"MIME", "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"BOUNDARY\"\n\n--BOUNDARY\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\n\n#!/bin/bash\necho one\n--BOUNDARY\nContent-Type: text/cloud-config\n\n#cloud-config\npackages: [jq]\n--BOUNDARY--\n",
			[][2]string{{`text/x-shellscript; charset="us-ascii"`, "#!/bin/bash\necho one"}, {"text/cloud-config", "#cloud-config\npackages: [jq]"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ud, err := al2023UserData(testOptions, bootstrap{UserData: tc.userData})
			if err != nil {
				t.Fatal(err)
			}
			ps := parts(t, ud)
			if len(ps) != len(tc.want)+1 {
				t.Fatalf("got %d parts, want the user's %d and nodewright's: %v", len(ps), len(tc.want), ps)
			}
			for i, want := range tc.want {
				if ps[i] != want {
					t.Errorf("part %d = %q, want %q", i, ps[i], want)
				}
			}
			if last := ps[len(ps)-1]; last[0] != "application/node.eks.aws" || !strings.Contains(last[1], "name: my-cluster") {
				t.Errorf("last part is not nodewright's NodeConfig: %q", last)
			}
		})
	}
	if _, err := al2023UserData(testOptions, bootstrap{UserData: "MIME-Version: 1.0\nContent-Type: text/plain\n\nhello"}); err == nil || !strings.Contains(err.Error(), "spec.userData") {
		t.Errorf("non-multipart MIME user data: want an error naming spec.userData, got %v", err)
	}
}

// A MIME part keeps its own headers: a base64 script without its
// Content-Transfer-Encoding would run as the base64 text. Mutation tried:
// keeping only each part's Content-Type (the code before this test) fails
// with the header gone.
func TestAL2023UserDataKeepsPartHeaders(t *testing.T) {
	userData := "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B\"\n\n--B\nContent-Type: text/x-shellscript\n" +
		"Content-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"setup.sh\"\n\nIyEvYmluL3NoCmVjaG8gaGkK\n--B--\n"
	ud, err := al2023UserData(testOptions, bootstrap{UserData: userData})
	if err != nil {
		t.Fatal(err)
	}
	got := readParts(t, ud)
	if len(got) != 2 {
		t.Fatalf("%d parts, want the user's and nodewright's", len(got))
	}
	h := got[0].header
	if h.Get("Content-Transfer-Encoding") != "base64" || h.Get("Content-Disposition") != `attachment; filename="setup.sh"` ||
		h.Get("Content-Type") != "text/x-shellscript" || string(got[0].body) != "IyEvYmluL3NoCmVjaG8gaGkK" {
		t.Errorf("the user's part came out as %v %q", h, got[0].body)
	}
}

// TestNodeLabels: the kubelet registers the node with the claim's labels it
// is allowed to set, never with labels that differ between the fleet's pools,
// and never with a value that is not a label value (pod affinity values are
// not validated: "x,node-role.kubernetes.io/x=" would smuggle a label into
// --node-labels; fails without validLabel, tried).
func TestNodeLabels(t *testing.T) {
	claim := newClaim("default",
		req(v1.LabelInstanceTypeStable, "m5.xlarge"), req(v1.LabelTopologyZone, "ap-northeast-2a"),
		req("example.com/tier", "gold"), req("example.com/many", "a", "b"),
		req("example.com/smuggle", "x,kubernetes.io/role=master"), req("example.com/spaced", "a --cloud-provider=x"))
	claim.Labels["node-role.kubernetes.io/worker"] = ""
	claim.Labels["node.kubernetes.io/lifecycle"] = "batch"
	claim.Labels[v1.LabelArchStable] = "amd64"
	nc := &awsv1.EC2NodeClass{}
	nc.Name = "default"
	got := nodeLabels(claim, nc, v1.CapacityTypeSpot)
	want := map[string]string{
		v1.NodePoolLabelKey: "batch-processing", "team": "data", "example.com/tier": "gold", "node.kubernetes.io/lifecycle": "batch",
		v1.CapacityTypeLabelKey: v1.CapacityTypeSpot, awsv1.LabelEC2NodeClass: "default",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("node labels = %v\nwant %v", got, want)
	}
}

// TestAL2023TemplateBuildsRAID0: an AL2023 class with instanceStorePolicy
// RAID0 gets a NodeConfig whose spec.instance.localStorage.strategy is
// RAID0 in its launch template, so nodeadm builds the array the
// allocatable ephemeral storage counts on; one without gets no
// spec.instance. (Before, RAID0 raised allocatable and the node never built
// the array.) Mutations tried: not passing the policy to the writer (no
// strategy with RAID0), writing the strategy always (one without has it).
func TestAL2023TemplateBuildsRAID0(t *testing.T) {
	for _, policy := range []*awsv1.InstanceStorePolicy{nil, ptr.To(awsv1.InstanceStorePolicyRAID0)} {
		ps := parts(t, templateUserData(t, &awsv1.EC2NodeClass{Spec: awsv1.EC2NodeClassSpec{AMISelectorTerms: []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}}, InstanceStorePolicy: policy}}))
		var doc map[string]any
		if err := yaml.Unmarshal([]byte(ps[len(ps)-1][1]), &doc); err != nil {
			t.Fatal(err)
		}
		instance, has := doc["spec"].(map[string]any)["instance"]
		want := map[string]any{"localStorage": map[string]any{"strategy": "RAID0"}}
		if has != (policy != nil) || (has && !reflect.DeepEqual(instance, want)) {
			t.Errorf("instanceStorePolicy %v: NodeConfig spec.instance = %v (set %v)", policy, instance, has)
		}
	}
}

// templateUserData is the decoded user data of the launch template the
// provider builds for nc.
func templateUserData(t *testing.T, nc *awsv1.EC2NodeClass) string {
	t.Helper()
	_, data, _, err := newLaunchTemplates(nil, testOptions).template(launchParams{nodeClass: nc, ami: awsv1.AMI{ID: "ami-0a2023000000000a1"}})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(*data.UserData)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}
