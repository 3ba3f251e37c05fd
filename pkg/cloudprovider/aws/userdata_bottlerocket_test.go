package aws

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata from the current output")

// kubeletJSON is spec.kubelet as JSON ("" for none).
func kubeletJSON(t *testing.T, raw string) awsv1.KubeletConfiguration {
	t.Helper()
	k := awsv1.KubeletConfiguration{}
	if raw != "" {
		if err := json.Unmarshal([]byte(raw), &k); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// checkGolden compares user data with the golden file at path, writing it
// first when the test runs with -update.
func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("user data differs from %s:\n%s\nwant\n%s", path, got, want)
	}
}

// bottlerocketBootstrap is a claim's registration as the provider passes it:
// the NodePool's labels, a taint, the unregistered taint.
func bottlerocketBootstrap(kubelet awsv1.KubeletConfiguration, userData string) bootstrap {
	return bootstrap{
		Labels:   map[string]string{"karpenter.sh/nodepool": "batch", "team": "data"},
		Taints:   []corev1.Taint{{Key: "dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule}, {Key: "karpenter.sh/unregistered", Effect: corev1.TaintEffectNoExecute}},
		Kubelet:  kubelet,
		UserData: userData,
	}
}

// TestBottlerocketUserDataGolden: one golden file per kubelet setting (and
// one without any, one for instanceStorePolicy RAID0), under testdata/bottlerocket. Each is the whole TOML a
// Bottlerocket node gets, so a change in any setting's name, type or
// format shows as a diff; run with -update to accept one. Mutations tried:
// image-gc percentages written as integers (the imageGC files differ),
// cpu-cfs-quota-enforced renamed cpu-cfs-quota (cpuCFSQuota.toml differs),
// the DNS address taken as the CIDR's first address (none.toml differs),
// RAID0 ignored (instanceStorePolicy-RAID0.toml differs).
func TestBottlerocketUserDataGolden(t *testing.T) {
	for _, tc := range []struct{ name, kubelet string }{
		{"none", ""},
		{"clusterDNS", `{"clusterDNS":["10.0.1.100"]}`},
		{"clusterDNS-several", `{"clusterDNS":["10.0.1.100","10.0.1.101"]}`},
		{"maxPods", `{"maxPods":42}`},
		{"systemReserved", `{"systemReserved":{"cpu":"100m","memory":"100Mi","ephemeral-storage":"1Gi"}}`},
		{"kubeReserved", `{"kubeReserved":{"cpu":"200m","memory":"100Mi","ephemeral-storage":"3Gi"}}`},
		{"evictionHard", `{"evictionHard":{"memory.available":"5%","nodefs.available":"10%"}}`},
		{"evictionSoft", `{"evictionSoft":{"memory.available":"500Mi","nodefs.available":"15%"},"evictionSoftGracePeriod":{"memory.available":"1m","nodefs.available":"1m30s"}}`},
		{"evictionMaxPodGracePeriod", `{"evictionMaxPodGracePeriod":60}`},
		{"imageGCHighThresholdPercent", `{"imageGCHighThresholdPercent":85}`},
		{"imageGCLowThresholdPercent", `{"imageGCLowThresholdPercent":80}`},
		{"cpuCFSQuota", `{"cpuCFSQuota":false}`},
		{"instanceStorePolicy-RAID0", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bottlerocketBootstrap(kubeletJSON(t, tc.kubelet), "")
			b.InstanceStoreRAID0 = tc.name == "instanceStorePolicy-RAID0"
			ud, err := bottlerocketUserData(testOptions, b)
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := toml.Unmarshal([]byte(ud), &doc); err != nil {
				t.Fatalf("user data is not TOML: %v\n%s", err, ud)
			}
			checkGolden(t, filepath.Join("testdata", "bottlerocket", tc.name+".toml"), ud)
		})
	}
}

// TestBottlerocketUserDataMergesTheUsers: the user's settings are kept,
// nodewright's cluster, kubelet settings, labels and taints win where both
// set one, and the user's labels and taints of other keys stay. Mutations
// tried: writing our labels table over the user's (the user's "extra" label
// lost), and setting cluster-name only where the user set none (it stayed
// "theirs").
func TestBottlerocketUserDataMergesTheUsers(t *testing.T) {
	user := `[settings.kubernetes]
cluster-name = "theirs"
api-server = "https://elsewhere"
max-pods = 7
kube-api-qps = 30
cluster-dns-ip = "10.0.0.53"

[settings.kubernetes.node-labels]
team = "theirs"
extra = "kept"

[settings.kubernetes.node-taints]
dedicated = ["theirs:NoExecute"]
special = ["true:NoSchedule"]

[settings.host-containers.admin]
enabled = true
`
	ud, err := bottlerocketUserData(testOptions, bottlerocketBootstrap(kubeletJSON(t, `{"maxPods":42}`), user))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Settings struct {
			Kubernetes map[string]any `toml:"kubernetes"`
			Host       map[string]any `toml:"host-containers"`
		} `toml:"settings"`
	}
	if err := toml.Unmarshal([]byte(ud), &doc); err != nil {
		t.Fatalf("user data is not TOML: %v\n%s", err, ud)
	}
	k := doc.Settings.Kubernetes
	for key, want := range map[string]any{
		"cluster-name": "my-cluster", "api-server": testOptions.ClusterEndpoint, "cluster-certificate": testOptions.ClusterCABundle,
		"max-pods": int64(42), "kube-api-qps": int64(30), "cluster-dns-ip": "10.0.0.53",
		"node-labels": map[string]any{"karpenter.sh/nodepool": "batch", "team": "data", "extra": "kept"},
		"node-taints": map[string]any{"dedicated": []any{"batch:NoSchedule"}, "special": []any{"true:NoSchedule"}, "karpenter.sh/unregistered": []any{":NoExecute"}},
	} {
		if !reflect.DeepEqual(k[key], want) {
			t.Errorf("settings.kubernetes.%s = %#v, want %#v", key, k[key], want)
		}
	}
	if !reflect.DeepEqual(doc.Settings.Host, map[string]any{"admin": map[string]any{"enabled": true}}) {
		t.Errorf("the user's host-containers settings were not kept: %#v", doc.Settings.Host)
	}
	again, _ := bottlerocketUserData(testOptions, bottlerocketBootstrap(kubeletJSON(t, `{"maxPods":42}`), user))
	if again != ud {
		t.Error("the same inputs give other user data: launch templates would not be shared")
	}
}

// TestBottlerocketUserDataRefusesInvalidTOML: user data that is not TOML, or
// whose settings are not tables, is refused naming spec.userData, both when
// the launch template is written and by the node class's validation (so the
// class is not Ready). Mutations tried: dropping the check in validate (the
// class with bad TOML validated), dropping the node-labels/node-taints
// (or bootstrap-commands) check from bottlerocketSettings (validation passed them; only the launch
// failed).
func TestBottlerocketUserDataRefusesInvalidTOML(t *testing.T) {
	for _, userData := range []string{
		"#!/bin/bash\necho hello\n",
		"[settings.kubernetes\nmax-pods = 3\n",
		"settings = 3\n",
		"[settings]\nkubernetes = \"x\"\n",
		"[settings.kubernetes]\nnode-labels = \"team=data\"\n",
		"[settings.kubernetes]\nnode-taints = [\"dedicated=batch:NoSchedule\"]\n",
		"[settings]\nbootstrap-commands = [\"echo\"]\n",
	} {
		_, err := bottlerocketUserData(testOptions, bottlerocketBootstrap(nil, userData))
		if err == nil || !strings.Contains(err.Error(), "spec.userData") {
			t.Errorf("user data %q: error %v, want one naming spec.userData", userData, err)
		}
		nc := &awsv1.EC2NodeClass{Spec: awsv1.EC2NodeClassSpec{AMIFamily: ptr.To("Bottlerocket"), UserData: &userData}}
		problems := (&NodeClassResolver{opts: testOptions}).validate(nc)
		if len(problems) != 1 || !strings.Contains(problems[0], "spec.userData") {
			t.Errorf("user data %q: validation %q, want one problem naming spec.userData", userData, problems)
		}
	}
}

// TestBottlerocketRefusesKubeletFieldsItCannotSet: podsPerCore (no
// Bottlerocket setting) and free-form kubelet fields are refused by name,
// not dropped. Mutation tried: mapping podsPerCore to nothing but allowing
// it (no problem reported).
func TestBottlerocketRefusesKubeletFieldsItCannotSet(t *testing.T) {
	for _, raw := range []string{`{"podsPerCore":2}`, `{"shutdownGracePeriod":"30s"}`} {
		key := strings.Split(raw, `"`)[1]
		nc := &awsv1.EC2NodeClass{Spec: awsv1.EC2NodeClassSpec{AMISelectorTerms: []awsv1.AMISelectorTerm{{Alias: "bottlerocket@latest"}}, Kubelet: kubeletJSON(t, raw)}}
		problems := (&NodeClassResolver{opts: testOptions}).validate(nc)
		if len(problems) != 1 || !strings.Contains(problems[0], "spec.kubelet."+key) || !strings.Contains(problems[0], "Bottlerocket") {
			t.Errorf("%s: problems %q, want one naming spec.kubelet.%s for Bottlerocket", raw, problems, key)
		}
		if _, err := bottlerocketUserData(testOptions, bottlerocketBootstrap(nc.Spec.Kubelet, "")); err == nil {
			t.Errorf("%s: user data written without it", raw)
		}
	}
}

// TestBottlerocketTemplateBuildsRAID0: a Bottlerocket class with
// instanceStorePolicy RAID0 gets the bootstrap command that builds the
// array in its launch template's user data, one without does not. Mutation
// tried: not passing the policy to the writer (no command with RAID0).
func TestBottlerocketTemplateBuildsRAID0(t *testing.T) {
	for _, policy := range []*awsv1.InstanceStorePolicy{nil, ptr.To(awsv1.InstanceStorePolicyRAID0)} {
		raw := templateUserData(t, &awsv1.EC2NodeClass{Spec: awsv1.EC2NodeClassSpec{AMISelectorTerms: []awsv1.AMISelectorTerm{{Alias: "bottlerocket@latest"}}, InstanceStorePolicy: policy}})
		var doc struct {
			Settings struct {
				Commands map[string]any `toml:"bootstrap-commands"`
			} `toml:"settings"`
		}
		if err := toml.Unmarshal([]byte(raw), &doc); err != nil {
			t.Fatal(err)
		}
		if _, has := doc.Settings.Commands[raid0Command]; has != (policy != nil) {
			t.Errorf("instanceStorePolicy %v: bootstrap commands %v", policy, doc.Settings.Commands)
		}
	}
}
