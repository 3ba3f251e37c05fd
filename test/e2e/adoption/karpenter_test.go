package adoption

import (
	"context"
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/test/env"
)

// What Karpenter v1 leaves in a cluster, made the way Karpenter makes it,
// before nodewright ever runs: its EC2NodeClass with spec.role and the
// instance profile it created for it, its NodePools, launch templates named
// and tagged as its, instances launched through CreateFleet with its tags,
// and NodeClaims and Nodes in the state its lifecycle controllers leave
// them (labels, annotations, finalizer, owner references, status). Nothing
// here uses nodewright's code: a mistake in nodewright's idea of Karpenter's
// state must not be copied into the test.

// karpenterKey signs the calls "Karpenter" makes, so the audit log tells them
// from nodewright's.
const karpenterKey = "AKIDKARPENTER"

// Karpenter's hash versions (karpenter.sh/nodepool-hash-version and
// karpenter.k8s.aws/ec2nodeclass-hash-version) in v1; its hashes are
// hashstructure numbers nodewright cannot reproduce.
const (
	karpenterNodePoolHashVersion  = "v3"
	karpenterNodeClassHashVersion = "v4"
	karpenterNodePoolHash         = "6821555240594823938"
	karpenterNodeClassHash        = "9584739200918364729"
)

// The seed of the Karpenter installation: one EC2NodeClass naming a role,
// three NodePools. "karpenter" empties nodes at once (WhenEmpty, 0s);
// "karpenter-expiring" expires its nodes after 45s; "karpenter-spot" is spot
// only.
const (
	nodeClassName = "karpenter-default"
	nodeRole      = "KarpenterNodeRole"
	poolMain      = "karpenter"
	poolExpiring  = "karpenter-expiring"
	poolSpot      = "karpenter-spot"
	expireAfter   = 45 * time.Second
)

const nodeClassYAML = `
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata:
  name: karpenter-default
spec:
  role: KarpenterNodeRole
  amiSelectorTerms:
    - alias: al2023@latest
  subnetSelectorTerms:
    - tags:
        Tier: private
  securityGroupSelectorTerms:
    - tags:
        kubernetes.io/cluster/my-cluster: owned
`

// nodePoolYAML is a Karpenter NodePool of the class; %s are its name,
// capacity types, expireAfter and consolidateAfter.
const nodePoolYAML = `
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: %s
spec:
  template:
    spec:
      nodeClassRef:
        group: karpenter.k8s.aws
        kind: EC2NodeClass
        name: karpenter-default
      expireAfter: %s
      requirements:
        - key: karpenter.sh/capacity-type
          operator: In
          values: [%s]
        - key: node.kubernetes.io/instance-type
          operator: In
          values: [c5.xlarge, m5.xlarge, c6i.xlarge]
        - key: topology.kubernetes.io/zone
          operator: In
          values: [ap-northeast-2a, ap-northeast-2c]
  disruption:
    consolidationPolicy: WhenEmpty
    consolidateAfter: %s
`

// adopted is one node Karpenter launched: its claim, instance and Node.
type adopted struct {
	pool, capacityType, instanceType, zone string
	claim                                  string
	expireAfter                            string
	instanceID, providerID, node           string
}

// karpenter is the Karpenter installation being replaced.
type karpenter struct {
	ec2     *ec2.Client
	iam     *iam.Client
	catalog *catalog.Catalog
	image   string
	// templates by pool and capacity type, as Karpenter keeps one per
	// distinct user data.
	templates map[string]string
}

func newKarpenter() (*karpenter, error) {
	creds := credentials.NewStaticCredentialsProvider(karpenterKey, "simulator", "")
	sc := e.Sim.Scenario()
	snap, err := catalog.EmbeddedSnapshot()
	if err != nil {
		return nil, err
	}
	zoneIDs := make([]string, 0, len(sc.Zones))
	for _, z := range sc.Zones {
		zoneIDs = append(zoneIDs, z.ID)
	}
	c, err := catalog.New(snap, env.Region, catalog.DefaultZoneNames(env.Region, zoneIDs), nil)
	if err != nil {
		return nil, err
	}
	return &karpenter{
		ec2:     ec2.New(ec2.Options{Region: env.Region, BaseEndpoint: sdkaws.String(e.Sim.URL), Credentials: creds}),
		iam:     iam.New(iam.Options{Region: "us-east-1", BaseEndpoint: sdkaws.String(e.Sim.URL), Credentials: creds}),
		catalog: c, templates: map[string]string{},
	}, nil
}

// karpenterProfileName is the instance profile Karpenter creates for a
// class with spec.role and records in its status.instanceProfile:
// "<cluster>_<hash>", the hash being hashstructure v2 (for a string, FNV-1a
// 64 of its bytes) of region, class name and, since after v1.0, a random
// UUID, so that nodewright cannot derive it from the class.
func karpenterProfileName(class string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(env.Region + class + "3f2c9a4e-8d1b-4c6f-9e7a-5b0d2c1f8a63"))
	return fmt.Sprintf("%s_%d", env.ClusterName, h.Sum64())
}

// install creates the class, its instance profile and the pools, and
// resolves the image Karpenter launched from: the alias's SSM parameter for
// the cluster's Kubernetes version.
func (k *karpenter) install(ctx context.Context) error {
	class := &awsv1.EC2NodeClass{}
	if err := yaml.UnmarshalStrict([]byte(nodeClassYAML), class); err != nil {
		return err
	}
	class.Finalizers = []string{awsv1.TerminationFinalizer}
	if err := cp.Client.Create(ctx, class); err != nil {
		return fmt.Errorf("creating the EC2NodeClass: %w", err)
	}
	profile := karpenterProfileName(nodeClassName)
	statusPatch := client.MergeFrom(class.DeepCopy())
	class.Status.InstanceProfile = profile
	if err := cp.Client.Status().Patch(ctx, class, statusPatch); err != nil {
		return fmt.Errorf("recording the instance profile of the EC2NodeClass: %w", err)
	}
	if _, err := k.iam.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{
		InstanceProfileName: sdkaws.String(profile),
		Tags: []iamtypes.Tag{
			{Key: sdkaws.String("kubernetes.io/cluster/" + env.ClusterName), Value: sdkaws.String("owned")},
			{Key: sdkaws.String("eks:eks-cluster-name"), Value: sdkaws.String(env.ClusterName)},
			{Key: sdkaws.String("karpenter.k8s.aws/ec2nodeclass"), Value: sdkaws.String(nodeClassName)},
			{Key: sdkaws.String("topology.kubernetes.io/region"), Value: sdkaws.String(env.Region)},
		},
	}); err != nil {
		return fmt.Errorf("creating instance profile %s: %w", profile, err)
	}
	if _, err := k.iam.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{
		InstanceProfileName: sdkaws.String(profile), RoleName: sdkaws.String(nodeRole),
	}); err != nil {
		return fmt.Errorf("adding role %s to %s: %w", nodeRole, profile, err)
	}
	for _, p := range []struct{ name, capacityTypes, expireAfter, consolidateAfter string }{
		{poolMain, "spot, on-demand", "720h", "0s"},
		{poolExpiring, "on-demand", expireAfter.String(), "Never"},
		{poolSpot, "spot", "720h", "Never"},
	} {
		np := &v1.NodePool{}
		if err := yaml.UnmarshalStrict([]byte(fmt.Sprintf(nodePoolYAML, p.name, p.expireAfter, p.capacityTypes, p.consolidateAfter)), np); err != nil {
			return err
		}
		np.Annotations = map[string]string{v1.NodePoolHashAnnotationKey: karpenterNodePoolHash, v1.NodePoolHashVersionAnnotationKey: karpenterNodePoolHashVersion}
		if err := cp.Client.Create(ctx, np); err != nil {
			return fmt.Errorf("creating nodepool %s: %w", p.name, err)
		}
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cp.Config)
	if err != nil {
		return err
	}
	v, err := dc.ServerVersion()
	if err != nil {
		return err
	}
	minor := strings.TrimSuffix(v.Minor, "+")
	out, err := ssm.New(ssm.Options{Region: env.Region, BaseEndpoint: sdkaws.String(e.Sim.URL),
		Credentials: credentials.NewStaticCredentialsProvider(karpenterKey, "simulator", "")}).GetParameter(ctx, &ssm.GetParameterInput{
		Name: sdkaws.String(fmt.Sprintf("/aws/service/eks/optimized-ami/%s.%s/amazon-linux-2023/x86_64/standard/recommended/image_id", v.Major, minor)),
	})
	if err != nil {
		return fmt.Errorf("resolving al2023@latest: %w", err)
	}
	k.image = sdkaws.ToString(out.Parameter.Value)
	return nil
}

// userData is Karpenter's AL2023 user data: a MIME archive with nodeadm's
// NodeConfig, registering with its labels and the unregistered taint.
func userData(pool, capacityType string) string {
	labels := fmt.Sprintf("karpenter.k8s.aws/ec2nodeclass=%s,karpenter.sh/capacity-type=%s,karpenter.sh/nodepool=%s", nodeClassName, capacityType, pool)
	text := strings.Join([]string{
		`MIME-Version: 1.0`,
		`Content-Type: multipart/mixed; boundary="//"`,
		``,
		`--//`,
		`Content-Type: application/node.eks.aws`,
		``,
		`apiVersion: node.eks.aws/v1alpha1`,
		`kind: NodeConfig`,
		`spec:`,
		`  cluster:`,
		`    apiServerEndpoint: ` + cp.Config.Host,
		`    certificateAuthority: Y2VydGlmaWNhdGU=`,
		`    cidr: 10.100.0.0/16`,
		`    name: ` + env.ClusterName,
		`  kubelet:`,
		`    config:`,
		`      maxPods: 58`,
		`      clusterDNS:`,
		`      - 10.100.0.10`,
		`      registerWithTaints:`,
		`      - effect: NoExecute`,
		`        key: karpenter.sh/unregistered`,
		`    flags:`,
		`    - --node-labels="` + labels + `"`,
		``,
		`--//--`,
		``,
	}, "\r\n")
	return base64.StdEncoding.EncodeToString([]byte(text))
}

// template returns Karpenter's launch template for the pool and capacity
// type, creating it: named karpenter.k8s.aws/<hash>, tagged with
// karpenter.k8s.aws/cluster.
func (k *karpenter) template(ctx context.Context, pool, capacityType string) (string, error) {
	key := pool + "/" + capacityType
	if name, ok := k.templates[key]; ok {
		return name, nil
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	name := fmt.Sprintf("karpenter.k8s.aws/%d", h.Sum64())
	instanceTags := []ec2types.Tag{
		{Key: sdkaws.String("kubernetes.io/cluster/" + env.ClusterName), Value: sdkaws.String("owned")},
		{Key: sdkaws.String(v1.NodePoolLabelKey), Value: sdkaws.String(pool)},
		{Key: sdkaws.String(awsv1.LabelEC2NodeClass), Value: sdkaws.String(nodeClassName)},
		{Key: sdkaws.String("eks:eks-cluster-name"), Value: sdkaws.String(env.ClusterName)},
	}
	specs := []ec2types.LaunchTemplateTagSpecificationRequest{{ResourceType: ec2types.ResourceTypeNetworkInterface, Tags: instanceTags}}
	if capacityType == v1.CapacityTypeSpot {
		specs = append(specs, ec2types.LaunchTemplateTagSpecificationRequest{ResourceType: ec2types.ResourceTypeSpotInstancesRequest, Tags: instanceTags})
	}
	if _, err := k.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: sdkaws.String(name),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{
			ImageId:            sdkaws.String(k.image),
			IamInstanceProfile: &ec2types.LaunchTemplateIamInstanceProfileSpecificationRequest{Name: sdkaws.String(karpenterProfileName(nodeClassName))},
			SecurityGroupIds:   []string{e.Sim.Scenario().SecurityGroups[0].ID},
			UserData:           sdkaws.String(userData(pool, capacityType)),
			MetadataOptions: &ec2types.LaunchTemplateInstanceMetadataOptionsRequest{
				HttpEndpoint: ec2types.LaunchTemplateInstanceMetadataEndpointStateEnabled, HttpTokens: ec2types.LaunchTemplateHttpTokensStateRequired,
				HttpPutResponseHopLimit: sdkaws.Int32(1), HttpProtocolIpv6: ec2types.LaunchTemplateInstanceMetadataProtocolIpv6Disabled,
			},
			BlockDeviceMappings: []ec2types.LaunchTemplateBlockDeviceMappingRequest{{DeviceName: sdkaws.String("/dev/xvda"), Ebs: &ec2types.LaunchTemplateEbsBlockDeviceRequest{
				VolumeSize: sdkaws.Int32(20), VolumeType: ec2types.VolumeTypeGp3, Encrypted: sdkaws.Bool(true), DeleteOnTermination: sdkaws.Bool(true),
			}}},
			TagSpecifications: specs,
		},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: []ec2types.Tag{
			{Key: sdkaws.String("karpenter.k8s.aws/cluster"), Value: sdkaws.String(env.ClusterName)},
			{Key: sdkaws.String(awsv1.LabelEC2NodeClass), Value: sdkaws.String(nodeClassName)},
		}}},
	}); err != nil {
		return "", fmt.Errorf("creating launch template %s: %w", name, err)
	}
	k.templates[key] = name
	return name, nil
}

// subnet is the scenario's private subnet in zone.
func subnet(zone string) string {
	for _, s := range e.Sim.Scenario().Subnets {
		if s.Zone == zone && s.Tags["Tier"] == "private" {
			return s.ID
		}
	}
	return ""
}

// launch launches a's instance as Karpenter does, with CreateFleet instant
// and its tags; a.claim names the claim the instance is tagged with.
func (k *karpenter) launch(ctx context.Context, a *adopted) error {
	lt, err := k.template(ctx, a.pool, a.capacityType)
	if err != nil {
		return err
	}
	tags := []ec2types.Tag{
		{Key: sdkaws.String("kubernetes.io/cluster/" + env.ClusterName), Value: sdkaws.String("owned")},
		{Key: sdkaws.String("eks:eks-cluster-name"), Value: sdkaws.String(env.ClusterName)},
		{Key: sdkaws.String(v1.NodePoolLabelKey), Value: sdkaws.String(a.pool)},
		{Key: sdkaws.String(awsv1.LabelEC2NodeClass), Value: sdkaws.String(nodeClassName)},
		{Key: sdkaws.String("karpenter.sh/nodeclaim"), Value: sdkaws.String(a.claim)},
	}
	in := &ec2.CreateFleetInput{
		Type: ec2types.FleetTypeInstant,
		TargetCapacitySpecification: &ec2types.TargetCapacitySpecificationRequest{
			TotalTargetCapacity: sdkaws.Int32(1), DefaultTargetCapacityType: ec2types.DefaultTargetCapacityType(a.capacityType),
		},
		LaunchTemplateConfigs: []ec2types.FleetLaunchTemplateConfigRequest{{
			LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecificationRequest{LaunchTemplateName: sdkaws.String(lt), Version: sdkaws.String("$Latest")},
			Overrides: []ec2types.FleetLaunchTemplateOverridesRequest{{
				InstanceType: ec2types.InstanceType(a.instanceType), SubnetId: sdkaws.String(subnet(a.zone)), AvailabilityZone: sdkaws.String(a.zone),
			}},
		}},
		TagSpecifications: []ec2types.TagSpecification{
			{ResourceType: ec2types.ResourceTypeInstance, Tags: tags},
			{ResourceType: ec2types.ResourceTypeVolume, Tags: tags},
			{ResourceType: ec2types.ResourceTypeFleet, Tags: tags},
		},
	}
	if a.capacityType == v1.CapacityTypeSpot {
		in.SpotOptions = &ec2types.SpotOptionsRequest{AllocationStrategy: ec2types.SpotAllocationStrategyPriceCapacityOptimized}
	} else {
		in.OnDemandOptions = &ec2types.OnDemandOptionsRequest{AllocationStrategy: ec2types.FleetOnDemandAllocationStrategyLowestPrice}
	}
	out, err := k.ec2.CreateFleet(ctx, in)
	if err != nil {
		return fmt.Errorf("launching %s: %w", a.claim, err)
	}
	if len(out.Instances) != 1 || len(out.Instances[0].InstanceIds) != 1 {
		return fmt.Errorf("launching %s: fleet answered %d instances, errors %v", a.claim, len(out.Instances), out.Errors)
	}
	a.instanceID = out.Instances[0].InstanceIds[0]
	a.providerID = fmt.Sprintf("aws:///%s/%s", a.zone, a.instanceID)
	return nil
}

// claim is the NodeClaim Karpenter created for a, before the launch.
func (k *karpenter) claim(ctx context.Context, a *adopted) error {
	np := &v1.NodePool{}
	if err := cp.Client.Get(ctx, client.ObjectKey{Name: a.pool}, np); err != nil {
		return err
	}
	it := k.catalog.Get(a.instanceType)
	if it == nil {
		return fmt.Errorf("instance type %s is not in the catalog", a.instanceType)
	}
	labels := map[string]string{}
	for k, v := range it.Labels {
		labels[k] = v
	}
	for k, v := range map[string]string{
		v1.NodePoolLabelKey: a.pool, awsv1.LabelEC2NodeClass: nodeClassName, v1.CapacityTypeLabelKey: a.capacityType,
		corev1.LabelTopologyZone: a.zone, corev1.LabelTopologyRegion: env.Region, awsv1.LabelTopologyZoneID: e.Sim.Scenario().ZoneID(a.zone),
	} {
		labels[k] = v
	}
	nc := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name:   a.claim,
			Labels: labels,
			Annotations: map[string]string{
				v1.NodePoolHashAnnotationKey: karpenterNodePoolHash, v1.NodePoolHashVersionAnnotationKey: karpenterNodePoolHashVersion,
				awsv1.EC2NodeClassHashAnnotationKey: karpenterNodeClassHash, awsv1.EC2NodeClassHashVersionAnnotationKey: karpenterNodeClassHashVersion,
				"karpenter.k8s.aws/tagged": "true",
			},
			Finalizers: []string{v1.TerminationFinalizer},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "karpenter.sh/v1", Kind: "NodePool", Name: np.Name, UID: np.UID,
				BlockOwnerDeletion: ptr.To(true)}},
		},
		Spec: v1.NodeClaimSpec{
			NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: nodeClassName},
			Requirements: append(np.Spec.Template.Spec.Requirements,
				v1.NodeSelectorRequirementWithMinValues{Key: v1.NodePoolLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{a.pool}},
				v1.NodeSelectorRequirementWithMinValues{Key: awsv1.LabelEC2NodeClass, Operator: corev1.NodeSelectorOpIn, Values: []string{nodeClassName}},
			),
			Resources:   v1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")}},
			ExpireAfter: np.Spec.Template.Spec.ExpireAfter,
		},
	}
	if err := cp.Client.Create(ctx, nc); err != nil {
		return fmt.Errorf("creating nodeclaim %s: %w", a.claim, err)
	}
	return nil
}

// registered waits for the Node the bridge registers for a's instance, then
// brings the Node and the claim to what Karpenter's registration and
// initialization leave: the claim's labels and karpenter.sh/registered and
// initialized on the Node, the unregistered taint gone, the termination
// finalizer and the claim as owner; the instance's Name tag; the claim's status with the provider ID,
// node name, image, resources and Launched, Registered, Initialized and
// Ready conditions.
func (k *karpenter) registered(ctx context.Context, a *adopted) error {
	node := &corev1.Node{}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var nodes corev1.NodeList
		if err := cp.Client.List(ctx, &nodes); err != nil {
			return false, nil
		}
		for _, n := range nodes.Items {
			if n.Spec.ProviderID == a.providerID {
				*node = n
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		return fmt.Errorf("waiting for the node of %s: %w", a.instanceID, err)
	}
	a.node = node.Name
	nc := &v1.NodeClaim{}
	if err := cp.Client.Get(ctx, client.ObjectKey{Name: a.claim}, nc); err != nil {
		return err
	}
	patch := client.MergeFrom(node.DeepCopy())
	for k, v := range nc.Labels {
		node.Labels[k] = v
	}
	node.Labels[v1.NodeRegisteredLabelKey] = "true"
	node.Labels[v1.NodeInitializedLabelKey] = "true"
	node.Spec.Taints = nil
	node.Finalizers = append(node.Finalizers, v1.TerminationFinalizer)
	node.OwnerReferences = append(node.OwnerReferences, metav1.OwnerReference{APIVersion: "karpenter.sh/v1", Kind: "NodeClaim", Name: nc.Name, UID: nc.UID, BlockOwnerDeletion: ptr.To(true)})
	if err := cp.Client.Patch(ctx, node, patch); err != nil {
		return fmt.Errorf("registering node %s: %w", node.Name, err)
	}
	// Karpenter's tagging controller names the instance after its Node once
	// it registered, and marks the claim karpenter.k8s.aws/tagged.
	if _, err := k.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{a.instanceID}, Tags: []ec2types.Tag{
		{Key: sdkaws.String("Name"), Value: sdkaws.String(node.Name)},
		{Key: sdkaws.String("karpenter.sh/nodeclaim"), Value: sdkaws.String(a.claim)},
		{Key: sdkaws.String("eks:eks-cluster-name"), Value: sdkaws.String(env.ClusterName)},
	}}); err != nil {
		return fmt.Errorf("tagging %s: %w", a.instanceID, err)
	}
	it := k.catalog.Get(a.instanceType)
	statusPatch := client.MergeFrom(nc.DeepCopy())
	now := metav1.Now()
	nc.Status.ProviderID, nc.Status.NodeName, nc.Status.ImageID = a.providerID, node.Name, k.image
	nc.Status.Capacity, nc.Status.Allocatable = it.Capacity, it.Allocatable
	for _, c := range []string{v1.ConditionTypeLaunched, v1.ConditionTypeRegistered, v1.ConditionTypeInitialized, v1.ConditionTypeReady} {
		nc.Status.Conditions = append(nc.Status.Conditions, metav1.Condition{Type: c, Status: metav1.ConditionTrue, Reason: c, LastTransitionTime: now, ObservedGeneration: nc.Generation})
	}
	if err := cp.Client.Status().Patch(ctx, nc, statusPatch); err != nil {
		return fmt.Errorf("recording the launch of %s: %w", nc.Name, err)
	}
	return nil
}
