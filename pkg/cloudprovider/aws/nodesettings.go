package aws

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
)

// defaultRootVolume is the root volume of the EKS AMIs when the node class
// names none: 20Gi (Bottlerocket splits a 4Gi OS volume and a 20Gi data one,
// and the data volume is what pods see).
var defaultRootVolume = resource.MustParse("20Gi")

// windowsRootVolume on windowsRootDevice is the Windows families' default
// root volume, as Karpenter's: Windows Server with its container images
// needs more than the Linux images' 20Gi.
var windowsRootVolume = resource.MustParse("50Gi")

const windowsRootDevice = "/dev/sda1"

// bottlerocketOSVolumeGiB is Bottlerocket's default OS volume (/dev/xvda).
const bottlerocketOSVolumeGiB = 4

// NodeSettings derives, from a node class, the settings that decide a node's
// capacity and allocatable: kubelet reservations and limits, and the disk pods
// get (the root volume, or the instance store when it is RAID0'd for the kubelet,
// which catalog.InstanceType callers apply per type). Errors name the field.
func NodeSettings(nc *awsv1.EC2NodeClass, vmMemoryOverheadPercent float64) (catalog.NodeSettings, error) {
	kubelet, errs := nc.Spec.Kubelet.Settings(field.NewPath("spec", "kubelet"))
	if len(errs) > 0 {
		return catalog.NodeSettings{}, fmt.Errorf("EC2NodeClass %s: %w", nc.Name, errs.ToAggregate())
	}
	s := catalog.NodeSettings{
		MaxPods:                 kubelet.MaxPods,
		PodsPerCore:             kubelet.PodsPerCore,
		KubeReserved:            kubelet.KubeReserved,
		SystemReserved:          kubelet.SystemReserved,
		EvictionHard:            kubelet.EvictionHard,
		VMMemoryOverheadPercent: &vmMemoryOverheadPercent,
		EphemeralStorage:        rootVolumeSize(nc),
	}
	return s, nil
}

// rootVolumeSize is the size of the block device mapping marked as the root
// volume, else of the AMI family's root device, else the default (the
// family's: 50Gi for Windows, 20Gi for the others).
func rootVolumeSize(nc *awsv1.EC2NodeClass) *resource.Quantity {
	var root *awsv1.BlockDeviceMapping
	for _, m := range nc.Spec.BlockDeviceMappings {
		if m != nil && m.RootVolume {
			root = m
		}
	}
	if root == nil {
		device := "/dev/xvda"
		switch {
		case AMIFamily(nc) == amiFamilyBottlerocket:
			device = "/dev/xvdb"
		case windowsBuild(nc) != "":
			device = windowsRootDevice
		}
		for _, m := range nc.Spec.BlockDeviceMappings {
			if m != nil && m.DeviceName != nil && *m.DeviceName == device {
				root = m
			}
		}
	}
	if root != nil && root.EBS != nil && root.EBS.VolumeSize != nil {
		q := root.EBS.VolumeSize.DeepCopy()
		return &q
	}
	q := defaultRootVolume.DeepCopy()
	if windowsBuild(nc) != "" {
		q = windowsRootVolume.DeepCopy()
	}
	return &q
}

// InstanceStoreEphemeral returns the ephemeral storage of a type under a node
// class whose instanceStorePolicy is RAID0: the local NVMe, when it has any.
func InstanceStoreEphemeral(nc *awsv1.EC2NodeClass, spec catalog.SnapshotType) (*resource.Quantity, bool) {
	if nc.Spec.InstanceStorePolicy == nil || *nc.Spec.InstanceStorePolicy != awsv1.InstanceStorePolicyRAID0 || spec.LocalNVMeGB == 0 {
		return nil, false
	}
	return resource.NewQuantity(spec.LocalNVMeGB*1e9, resource.DecimalSI), true
}
