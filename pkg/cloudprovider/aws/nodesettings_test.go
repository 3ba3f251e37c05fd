package aws

import (
	"encoding/json"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
)

func nodeClass(kubelet string) *awsv1.EC2NodeClass {
	nc := &awsv1.EC2NodeClass{}
	nc.Name = "default"
	if kubelet != "" {
		var m map[string]json.RawMessage
		_ = json.Unmarshal([]byte(kubelet), &m)
		nc.Spec.Kubelet = awsv1.KubeletConfiguration{}
		for k, v := range m {
			nc.Spec.Kubelet[k] = apiextensionsv1.JSON{Raw: v}
		}
	}
	return nc
}

func TestNodeSettingsFromNodeClass(t *testing.T) {
	nc := nodeClass(`{"maxPods": 20, "systemReserved": {"cpu": "100m"}}`)
	size := resource.MustParse("100Gi")
	nc.Spec.BlockDeviceMappings = []*awsv1.BlockDeviceMapping{{DeviceName: ptr.To("/dev/xvda"), RootVolume: true, EBS: &awsv1.BlockDevice{VolumeSize: &size}}}
	s, err := NodeSettings(nc, catalog.DefaultVMMemoryOverheadPercent)
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := catalog.EmbeddedSnapshot()
	c, _ := catalog.New(snap, region, nil, nil)
	capacity, alloc := c.Get("m5.xlarge").Spec.Resources(s)
	if capacity.Pods().Value() != 20 {
		t.Errorf("pods = %d, want the node class's maxPods 20", capacity.Pods().Value())
	}
	if got := capacity.StorageEphemeral(); got.Cmp(size) != 0 {
		t.Errorf("ephemeral storage = %s, want the 100Gi root volume", got.String())
	}
	if got := alloc.Cpu().MilliValue(); got != 3820 {
		t.Errorf("cpu allocatable = %dm, want 3820m", got)
	}
}

func TestNodeSettingsDefaultsAndErrors(t *testing.T) {
	s, err := NodeSettings(nodeClass(""), catalog.DefaultVMMemoryOverheadPercent)
	if err != nil || s.EphemeralStorage.Cmp(resource.MustParse("20Gi")) != 0 || s.MaxPods != nil {
		t.Errorf("defaults: %+v, %v", s, err)
	}
	_, err = NodeSettings(nodeClass(`{"evictionHard": {"disk.available": "5%"}}`), 0.075)
	if err == nil || !strings.Contains(err.Error(), "EC2NodeClass default: spec.kubelet.evictionHard[disk.available]") {
		t.Errorf("want an error naming the field, got %v", err)
	}
}

func TestInstanceStoreRAID0(t *testing.T) {
	nc := nodeClass("")
	nc.Spec.InstanceStorePolicy = ptr.To(awsv1.InstanceStorePolicyRAID0)
	snap, _ := catalog.EmbeddedSnapshot()
	c, _ := catalog.New(snap, region, nil, nil)
	q, ok := InstanceStoreEphemeral(nc, c.Get("m5d.large").Spec)
	if !ok || q.Value() != 75e9 {
		t.Errorf("m5d.large RAID0 ephemeral = %v %v, want 75 GB", q, ok)
	}
	if _, ok := InstanceStoreEphemeral(nc, c.Get("m5.large").Spec); ok {
		t.Error("m5.large has no instance store")
	}
}

// TestBottlerocketEphemeralIsTheDataVolume: pods' disk on Bottlerocket is the
// data volume /dev/xvdb, whether the family comes from spec.amiFamily or
// from a bottlerocket alias. Mutation tried: reading only spec.amiFamily
// (the alias class got the 4Gi OS volume's size).
func TestBottlerocketEphemeralIsTheDataVolume(t *testing.T) {
	osVolume, data := resource.MustParse("4Gi"), resource.MustParse("100Gi")
	for name, edit := range map[string]func(*awsv1.EC2NodeClass){
		"amiFamily": func(nc *awsv1.EC2NodeClass) { nc.Spec.AMIFamily = ptr.To("Bottlerocket") },
		"alias": func(nc *awsv1.EC2NodeClass) {
			nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: "bottlerocket@latest"}}
		},
	} {
		nc := nodeClass("")
		edit(nc)
		nc.Spec.BlockDeviceMappings = []*awsv1.BlockDeviceMapping{
			{DeviceName: ptr.To("/dev/xvda"), EBS: &awsv1.BlockDevice{VolumeSize: &osVolume}},
			{DeviceName: ptr.To("/dev/xvdb"), EBS: &awsv1.BlockDevice{VolumeSize: &data}},
		}
		s, err := NodeSettings(nc, catalog.DefaultVMMemoryOverheadPercent)
		if err != nil || s.EphemeralStorage.Cmp(data) != 0 {
			t.Errorf("%s: ephemeral storage %v (%v), want the 100Gi data volume", name, s.EphemeralStorage, err)
		}
	}
}
