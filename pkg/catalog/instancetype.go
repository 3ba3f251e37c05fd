package catalog

import (
	"cmp"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
)

// Extended resources an instance type's devices are advertised as by their
// device plugins.
const (
	ResourceNVIDIAGPU corev1.ResourceName = "nvidia.com/gpu"
	ResourceAMDGPU    corev1.ResourceName = "amd.com/gpu"
	ResourceNeuron    corev1.ResourceName = "aws.amazon.com/neuron"
	// ResourceEFA is the EFA device plugin's: one per EFA interface.
	ResourceEFA corev1.ResourceName = "vpc.amazonaws.com/efa"
)

// InstanceType is one EC2 instance type in one region: what a node of it offers
// and where and at what price it can be launched.
type InstanceType struct {
	Name string
	// Labels are the well-known labels every node of the type carries (the
	// zone and capacity type come from the Offering).
	Labels map[string]string
	// Capacity is what the node reports before reservations, with the default
	// NodeSettings; Allocatable is what pods may use.
	Capacity    corev1.ResourceList
	Allocatable corev1.ResourceList
	Offerings   []Offering
	Spec        SnapshotType
}

// Offering is a place and a way to buy an instance type.
type Offering struct {
	Zone         string
	ZoneID       string
	CapacityType string // karpenter.sh/capacity-type: spot, on-demand or reserved
	// ReservationID and ReservationType name a reserved offering's capacity
	// reservation (karpenter.k8s.aws/capacity-reservation-id and -type).
	ReservationID, ReservationType string
	// ReservationInterruptible is a reserved offering's
	// karpenter.k8s.aws/capacity-reservation-interruptible: its reservation
	// may be reclaimed by its owner.
	ReservationInterruptible bool
	// Price is the hourly price in USD.
	Price float64
	// Interruption is the spot interruption-frequency bucket ("<5%" ... ">20%"),
	// empty for on-demand.
	Interruption string

	// zoneIdx and capacityIdx index the catalog's zones and capacity types, so
	// Filter tests offerings with bit masks instead of string sets.
	zoneIdx, capacityIdx uint8
}

// InterruptionRank orders spot risk: 0 for on-demand and "<5%", up to 4 for
// ">20%"; unknown spot risk ranks 2, the middle, so it is neither preferred nor
// shunned.
func (o Offering) InterruptionRank() int {
	switch o.Interruption {
	case "", "<5%":
		if o.CapacityType == v1.CapacityTypeSpot && o.Interruption == "" {
			return 2
		}
		return 0
	case "5-10%":
		return 1
	case "10-15%":
		return 2
	case "15-20%":
		return 3
	default:
		return 4
	}
}

// DefaultSpotRiskWeight is how much spot interruption risk weighs against price
// by default: a pool in the ">20%" bucket must be 10% cheaper than a "<5%" one
// to be chosen over it, and between equal prices the safer pool always wins.
const DefaultSpotRiskWeight = 0.10

// RiskAdjustedPrice is the price the solver compares offerings by: the hourly
// price raised by weight x InterruptionRank/4, so weight is the premium the
// riskiest spot bucket pays. Weight 0 compares raw prices (ties broken by the
// caller), on-demand offerings are never adjusted.
func (o Offering) RiskAdjustedPrice(weight float64) float64 {
	if o.CapacityType != v1.CapacityTypeSpot || weight <= 0 {
		return o.Price
	}
	return o.Price * (1 + weight*float64(o.InterruptionRank())/4)
}

// NodeSettings are the node-class settings that change a node's capacity and
// allocatable: kubelet reservations and limits, the VM memory overhead and the
// root volume.
type NodeSettings struct {
	// MaxPods overrides the ENI-derived pod limit.
	MaxPods *int32
	// PodsPerCore caps pods per vCPU; the smaller of it and the pod limit wins.
	PodsPerCore *int32
	// KubeReserved and SystemReserved override the computed reservations per
	// resource (cpu, memory, ephemeral-storage).
	KubeReserved   corev1.ResourceList
	SystemReserved corev1.ResourceList
	// EvictionHard thresholds, as in the kubelet; defaults memory.available
	// 100Mi and nodefs.available 10%.
	EvictionHard map[string]string
	// VMMemoryOverheadPercent is the share of the advertised memory the
	// hypervisor and firmware keep; default 0.075.
	VMMemoryOverheadPercent *float64
	// EphemeralStorage is the root volume size; default 20Gi.
	EphemeralStorage *resource.Quantity
}

// DefaultVMMemoryOverheadPercent is the share of advertised memory a node does
// not report as capacity (Karpenter's default, measured on Nitro instances).
const DefaultVMMemoryOverheadPercent = 0.075

var defaultEvictionHard = map[string]string{"memory.available": "100Mi", "nodefs.available": "10%"}

// Resources computes capacity and allocatable for the type under settings,
// following the EKS AMI's formulas: pods from ENI limits (maxENIs*(ipsPerENI-1)
// + 2), kube-reserved CPU as 6% of the first core, 1% of the second, 0.5% of the
// next two and 0.25% of the rest, kube-reserved memory 11 MiB per pod + 255 MiB,
// 1 GiB of kube-reserved ephemeral storage, minus the eviction thresholds.
func (t SnapshotType) Resources(s NodeSettings) (capacity, allocatable corev1.ResourceList) {
	pods := int64(t.MaxENIs)*int64(t.IPv4PerENI-1) + 2
	if t.MaxENIs == 0 {
		pods = 110
	}
	if s.MaxPods != nil {
		pods = int64(*s.MaxPods)
	}
	if s.PodsPerCore != nil && *s.PodsPerCore > 0 {
		pods = min(pods, int64(*s.PodsPerCore)*int64(t.VCPU))
	}
	overhead := DefaultVMMemoryOverheadPercent
	if s.VMMemoryOverheadPercent != nil {
		overhead = *s.VMMemoryOverheadPercent
	}
	memMiB := t.MemoryMiB - int64(math.Ceil(float64(t.MemoryMiB)*overhead))
	storage := resource.MustParse("20Gi")
	if s.EphemeralStorage != nil {
		storage = *s.EphemeralStorage
	}
	capacity = corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewMilliQuantity(int64(t.VCPU)*1000, resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity(memMiB*1024*1024, resource.BinarySI),
		corev1.ResourcePods:             *resource.NewQuantity(pods, resource.DecimalSI),
		corev1.ResourceEphemeralStorage: storage,
	}
	if t.GPU != nil {
		name := ResourceNVIDIAGPU
		if t.GPU.Manufacturer == "amd" {
			name = ResourceAMDGPU
		}
		capacity[name] = *resource.NewQuantity(int64(t.GPU.Count), resource.DecimalSI)
	}
	if t.Accelerator != nil && t.Accelerator.Manufacturer == "aws" {
		capacity[ResourceNeuron] = *resource.NewQuantity(int64(t.Accelerator.Count), resource.DecimalSI)
	}
	if t.EFADevices > 0 {
		capacity[ResourceEFA] = *resource.NewQuantity(int64(t.EFADevices), resource.DecimalSI)
	}

	kubeReserved := corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewMilliQuantity(kubeReservedMilliCPU(int64(t.VCPU)), resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity((11*pods+255)*1024*1024, resource.BinarySI),
		corev1.ResourceEphemeralStorage: resource.MustParse("1Gi"),
	}
	for name, q := range s.KubeReserved {
		kubeReserved[name] = q
	}
	allocatable = capacity.DeepCopy()
	for _, reserved := range []corev1.ResourceList{kubeReserved, s.SystemReserved} {
		for name, q := range reserved {
			subtract(allocatable, name, q)
		}
	}
	eviction := s.EvictionHard
	if eviction == nil {
		eviction = defaultEvictionHard
	}
	for signal, threshold := range eviction {
		var name corev1.ResourceName
		switch signal {
		case "memory.available":
			name = corev1.ResourceMemory
		case "nodefs.available":
			name = corev1.ResourceEphemeralStorage
		default:
			continue
		}
		c := capacity[name]
		subtract(allocatable, name, thresholdQuantity(threshold, c))
	}
	return capacity, allocatable
}

// kubeReservedMilliCPU is the EKS AMI's CPU reservation for a node of n vCPUs.
func kubeReservedMilliCPU(n int64) int64 {
	// Tenths of a millicore, to keep the 0.25% steps exact.
	var tenths int64
	for core := int64(1); core <= n; core++ {
		switch {
		case core == 1:
			tenths += 600
		case core == 2:
			tenths += 100
		case core <= 4:
			tenths += 50
		default:
			tenths += 25
		}
	}
	return tenths / 10
}

// thresholdQuantity reads an eviction threshold, a quantity or a percentage of
// capacity.
func thresholdQuantity(threshold string, capacity resource.Quantity) resource.Quantity {
	if pct, ok := strings.CutSuffix(threshold, "%"); ok {
		p, err := strconv.ParseFloat(pct, 64)
		if err != nil {
			return resource.Quantity{}
		}
		return *resource.NewQuantity(int64(math.Ceil(float64(capacity.Value())*p/100)), resource.BinarySI)
	}
	q, err := resource.ParseQuantity(threshold)
	if err != nil {
		return resource.Quantity{}
	}
	return q
}

func subtract(list corev1.ResourceList, name corev1.ResourceName, q resource.Quantity) {
	v, ok := list[name]
	if !ok {
		return
	}
	v.Sub(q)
	if v.Sign() < 0 {
		v = resource.Quantity{}
	}
	list[name] = v
}

var familyPattern = regexp.MustCompile(`^([a-z]+)(\d+)`)

// labels returns the well-known labels of the type in region.
func (t SnapshotType) labels(region string) map[string]string {
	family, size, _ := strings.Cut(t.Name, ".")
	l := map[string]string{
		v1.LabelInstanceTypeStable:        t.Name,
		v1.LabelArchStable:                t.Arch,
		v1.LabelOSStable:                  cmp.Or(t.OS, "linux"),
		v1.LabelWindowsBuild:              t.WindowsBuild,
		v1.LabelTopologyRegion:            region,
		awsv1.LabelInstanceFamily:         family,
		awsv1.LabelInstanceSize:           size,
		awsv1.LabelInstanceCPU:            strconv.Itoa(int(t.VCPU)),
		awsv1.LabelInstanceMemory:         strconv.FormatInt(t.MemoryMiB, 10),
		awsv1.LabelInstanceHypervisor:     t.Hypervisor,
		awsv1.LabelInstanceLocalNVME:      strconv.FormatInt(t.LocalNVMeGiB(), 10),
		awsv1.LabelInstanceEBSBandwidth:   strconv.FormatInt(t.EBSMbps, 10),
		awsv1.LabelInstanceTenancy:        "default",
		awsv1.LabelInstanceCapabilityFlex: strconv.FormatBool(strings.Contains(family, "-flex")),
	}
	if t.EncryptionInTransit != nil {
		l[awsv1.LabelInstanceEncryptionInTransitSupported] = strconv.FormatBool(*t.EncryptionInTransit)
	}
	if m := familyPattern.FindStringSubmatch(family); m != nil {
		l[awsv1.LabelInstanceCategory] = m[1]
		l[awsv1.LabelInstanceGeneration] = m[2]
	}
	if t.CPUManufacturer != "" {
		l[awsv1.LabelInstanceCPUManufacturer] = t.CPUManufacturer
	}
	if t.ClockMHz > 0 {
		l[awsv1.LabelInstanceCPUSustainedClockSpeedMhz] = strconv.Itoa(int(t.ClockMHz))
	}
	if t.NetworkMbps > 0 {
		l[awsv1.LabelInstanceNetworkBandwidth] = strconv.FormatInt(t.NetworkMbps, 10)
	}
	if g := t.GPU; g != nil {
		l[awsv1.LabelInstanceGPUName] = g.Name
		l[awsv1.LabelInstanceGPUManufacturer] = g.Manufacturer
		l[awsv1.LabelInstanceGPUCount] = strconv.Itoa(int(g.Count))
		l[awsv1.LabelInstanceGPUMemory] = strconv.FormatInt(g.MemoryMiB, 10)
	}
	if a := t.Accelerator; a != nil {
		l[awsv1.LabelInstanceAcceleratorName] = a.Name
		l[awsv1.LabelInstanceAcceleratorManufacturer] = a.Manufacturer
		l[awsv1.LabelInstanceAcceleratorCount] = strconv.Itoa(int(a.Count))
	}
	for k, v := range l {
		if v == "" {
			delete(l, k)
		}
	}
	return l
}

// LocalNVMeGiB is the instance-store NVMe size in GiB, the unit of the
// instance-local-nvme label.
func (t SnapshotType) LocalNVMeGiB() int64 { return t.LocalNVMeGB * 1e9 / (1 << 30) }

// String names the type with its headline resources, for messages.
func (t *InstanceType) String() string {
	return fmt.Sprintf("%s (%d vCPU, %d GiB)", t.Name, t.Spec.VCPU, t.Spec.MemoryMiB/1024)
}
