package v1

// Well-known labels describing an EC2 instance type, set on every node so pods
// and NodePool requirements can select on them.
const (
	LabelInstanceHypervisor                   = Group + "/instance-hypervisor"
	LabelInstanceEncryptionInTransitSupported = Group + "/instance-encryption-in-transit-supported"
	LabelInstanceCategory                     = Group + "/instance-category"
	LabelInstanceFamily                       = Group + "/instance-family"
	LabelInstanceGeneration                   = Group + "/instance-generation"
	LabelInstanceLocalNVME                    = Group + "/instance-local-nvme"
	LabelInstanceSize                         = Group + "/instance-size"
	LabelInstanceCPU                          = Group + "/instance-cpu"
	LabelInstanceCPUManufacturer              = Group + "/instance-cpu-manufacturer"
	LabelInstanceCPUSustainedClockSpeedMhz    = Group + "/instance-cpu-sustained-clock-speed-mhz"
	LabelInstanceMemory                       = Group + "/instance-memory"
	LabelInstanceEBSBandwidth                 = Group + "/instance-ebs-bandwidth"
	LabelInstanceNetworkBandwidth             = Group + "/instance-network-bandwidth"
	LabelInstanceGPUName                      = Group + "/instance-gpu-name"
	LabelInstanceGPUManufacturer              = Group + "/instance-gpu-manufacturer"
	LabelInstanceGPUCount                     = Group + "/instance-gpu-count"
	LabelInstanceGPUMemory                    = Group + "/instance-gpu-memory"
	LabelInstanceAcceleratorName              = Group + "/instance-accelerator-name"
	LabelInstanceAcceleratorManufacturer      = Group + "/instance-accelerator-manufacturer"
	LabelInstanceAcceleratorCount             = Group + "/instance-accelerator-count"
	// LabelInstanceTenancy is default on every node nodewright launches: it
	// launches shared-tenancy instances only, so a requirement for dedicated
	// matches no instance type rather than labelling a shared instance.
	LabelInstanceTenancy = Group + "/instance-tenancy"
	// LabelInstanceCapabilityFlex is "true" for the flex families (c7i-flex,
	// m7i-flex, ...), whose baseline is a share of the vCPUs, "false" for others.
	LabelInstanceCapabilityFlex  = Group + "/instance-capability-flex"
	LabelTopologyZoneID          = "topology.k8s.aws/zone-id"
	LabelCapacityReservationID   = Group + "/capacity-reservation-id"
	LabelCapacityReservationType = Group + "/capacity-reservation-type"
	// LabelCapacityReservationInterruptible is "true" on a node in an
	// interruptible reservation (its owner may reclaim it with two minutes'
	// notice), "false" on other reserved nodes, absent on the rest.
	LabelCapacityReservationInterruptible = Group + "/capacity-reservation-interruptible"
	LabelEC2NodeClass                     = Group + "/ec2nodeclass"
	// LabelPlacementGroupID and LabelPlacementGroupPartition say where EC2
	// put a node launched into its class's placement group: the group's id,
	// and its partition in a partition group. Set from the instance.
	LabelPlacementGroupID        = Group + "/placement-group-id"
	LabelPlacementGroupPartition = Group + "/placement-group-partition"
)

// Tags nodewright puts on the EC2 resources it creates, used to find its own
// instances again (garbage collection, List) and to attribute cost.
const (
	TagNodePool       = "karpenter.sh/nodepool"
	TagNodeClaim      = "karpenter.sh/nodeclaim"
	TagEC2NodeClass   = Group + "/ec2nodeclass"
	TagClusterPrefix  = "kubernetes.io/cluster/"
	TagEKSClusterName = "eks:eks-cluster-name"
	TagName           = "Name"
)

// TerminationFinalizer holds an EC2NodeClass until no NodeClaim uses it and
// the launch templates made for it are deleted; Karpenter's has the same name.
const TerminationFinalizer = Group + "/termination"
