package aws

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/samber/lo"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/log"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
)

// launchTemplateEC2API is what launch template management needs of EC2.
type launchTemplateEC2API interface {
	CreateLaunchTemplate(context.Context, *ec2.CreateLaunchTemplateInput, ...func(*ec2.Options)) (*ec2.CreateLaunchTemplateOutput, error)
	DescribeLaunchTemplates(context.Context, *ec2.DescribeLaunchTemplatesInput, ...func(*ec2.Options)) (*ec2.DescribeLaunchTemplatesOutput, error)
	DeleteLaunchTemplate(context.Context, *ec2.DeleteLaunchTemplateInput, ...func(*ec2.Options)) (*ec2.DeleteLaunchTemplateOutput, error)
}

// Error codes EC2 answers for a launch template that does not exist:
// DescribeLaunchTemplates by name, and CreateFleet (as the call's error or in
// its Errors array) by name or id.
var launchTemplateNotFoundCodes = map[string]bool{
	"InvalidLaunchTemplateName.NotFoundException": true,
	"InvalidLaunchTemplateId.NotFound":            true,
	"InvalidLaunchTemplateId.NotFoundException":   true,
	"InvalidLaunchTemplateId.VersionNotFound":     true,
}

func isLaunchTemplateNotFound(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && launchTemplateNotFoundCodes[apiErr.ErrorCode()]
}

// launchTemplates creates the launch templates instances are launched from,
// remembers which exist and when a launch last asked for each, and deletes
// the ones no launch has asked for in a while (see launchtemplate_cleanup.go). A
// template's name is a hash of its whole content, so equal launches share one
// template, a changed node class or NodePool gets a new one, and after a
// restart the same name is found again with DescribeLaunchTemplates instead
// of being created twice.
type launchTemplates struct {
	ec2  launchTemplateEC2API
	opts Options

	mu       sync.Mutex
	known    map[string]bool          // names known to exist in EC2
	used     map[string]time.Time     // name -> when a launch last asked for it
	deleting map[string]chan struct{} // names being deleted; closed once done
	sweeps   int                      // sweeps finished, so racing launches at the quota sweep once

	sweepMu sync.Mutex // one sweep at a time
}

func newLaunchTemplates(client launchTemplateEC2API, opts Options) *launchTemplates {
	return &launchTemplates{ec2: client, opts: opts, known: map[string]bool{}, used: map[string]time.Time{}, deleting: map[string]chan struct{}{}}
}

// launchParams are what one launch template is made of. Everything specific
// to one claim (its name, the instance type chosen) stays out, in the
// fleet's overrides and tags, so claims alike share a template.
type launchParams struct {
	nodeClass    *awsv1.EC2NodeClass
	nodePool     string
	ami          awsv1.AMI
	capacityType string
	labels       map[string]string
	taints       []corev1.Taint
	// capacityReservationID is the reservation every launch from the
	// template targets; empty for none.
	capacityReservationID string
}

// template builds the template's content and name.
func (l *launchTemplates) template(p launchParams) (string, *ec2types.RequestLaunchTemplateData, []ec2types.Tag, error) {
	nc := p.nodeClass
	var userData string
	// write is the family's user data writer; Custom passes spec.userData.
	var write func(Options, bootstrap) (string, error)
	switch family := AMIFamily(nc); family {
	case amiFamilyAL2023:
		write = al2023UserData
	case amiFamilyAL2:
		write = al2UserData
	case amiFamilyBottlerocket:
		write = bottlerocketUserData
	case amiFamilyWindows2019, amiFamilyWindows2022, amiFamilyWindows2025:
		write = windowsUserData
	case amiFamilyCustom:
		userData = aws.ToString(nc.Spec.UserData)
	default:
		return "", nil, nil, fmt.Errorf("EC2NodeClass %s: AMI family %q is not supported", nc.Name, family)
	}
	if write != nil {
		var err error
		userData, err = write(l.opts, bootstrap{Labels: p.labels, Taints: p.taints, Kubelet: nc.Spec.Kubelet, UserData: aws.ToString(nc.Spec.UserData),
			InstanceStoreRAID0: ptr.Deref(nc.Spec.InstanceStorePolicy, "") == awsv1.InstanceStorePolicyRAID0})
		if err != nil {
			return "", nil, nil, fmt.Errorf("EC2NodeClass %s user data: %w", nc.Name, err)
		}
	}
	groups := make([]string, len(nc.Status.SecurityGroups))
	for i, g := range nc.Status.SecurityGroups {
		groups[i] = g.ID
	}
	tags := ec2Tags(resourceTags(l.opts.ClusterName, nc, p.nodePool))
	data := &ec2types.RequestLaunchTemplateData{
		ImageId:             aws.String(p.ami.ID),
		IamInstanceProfile:  &ec2types.LaunchTemplateIamInstanceProfileSpecificationRequest{Name: aws.String(nc.Status.InstanceProfile)},
		MetadataOptions:     metadataOptions(nc.Spec.MetadataOptions),
		BlockDeviceMappings: blockDeviceMappings(nc),
		Monitoring:          &ec2types.LaunchTemplatesMonitoringRequest{Enabled: aws.Bool(aws.ToBool(nc.Spec.DetailedMonitoring))},
		TagSpecifications:   launchTemplateTagSpecifications(tags, p.capacityType),
	}
	if userData != "" {
		data.UserData = aws.String(base64.StdEncoding.EncodeToString([]byte(userData)))
	}
	if ifaces := networkInterfaces(nc, groups); ifaces != nil {
		data.NetworkInterfaces = ifaces
	} else {
		data.SecurityGroupIds = groups
	}
	if nv := nc.Spec.CPUOptions; nv != nil && nv.NestedVirtualization != nil {
		data.CpuOptions = &ec2types.LaunchTemplateCpuOptionsRequest{NestedVirtualization: ec2types.NestedVirtualizationSpecification(*nv.NestedVirtualization)}
	}
	if p.capacityReservationID != "" {
		data.CapacityReservationSpecification = &ec2types.LaunchTemplateCapacityReservationSpecificationRequest{
			CapacityReservationTarget: &ec2types.CapacityReservationTarget{CapacityReservationId: aws.String(p.capacityReservationID)},
		}
	}
	data.Placement = launchTemplatePlacement(nc)
	if e := nc.Spec.EnclaveOptions; e != nil {
		data.EnclaveOptions = &ec2types.LaunchTemplateEnclaveOptionsRequest{Enabled: e.Enabled}
	}
	content, err := json.Marshal(struct {
		Data *ec2types.RequestLaunchTemplateData
		Tags []ec2types.Tag
	}{data, tags})
	if err != nil {
		return "", nil, nil, fmt.Errorf("hashing launch template: %w", err)
	}
	sum := sha256.Sum256(content)
	return fmt.Sprintf("nodewright/%s/%s", l.opts.ClusterName, hex.EncodeToString(sum[:10])), data, tags, nil
}

// networkInterfaces are the instance's network interfaces when the node
// class names them (spec.networkInterfaces: more cards, EFA) or sets what
// EC2 takes only on an interface: a public address, IPv4 prefixes assigned
// at launch (ipPrefixCount, so the VPC CNI has prefixes for pods before it
// asks for any) or connection tracking timeouts. nil leaves the one
// interface to EC2 and the groups on the template.
//
// Every interface gets the class's security groups (a template naming
// interfaces cannot give groups for the instance). The public address and
// the prefixes go on the primary interface (card 0, device 0), the one the
// kubelet and the VPC CNI's pods use; connection tracking on every ENA
// interface ("interface"), the ones that carry IP traffic, not on EFA-only
// ones, which have no IP address. EC2 refuses a public address with
// several interfaces, as it does with Karpenter: the launch fails and says
// so. The fleet's subnet override applies to the interfaces.
func networkInterfaces(nc *awsv1.EC2NodeClass, groups []string) []ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest {
	s := nc.Spec
	if len(s.NetworkInterfaces) == 0 && s.AssociatePublicIPAddress == nil && s.IPPrefixCount == nil && s.ConnectionTracking == nil {
		return nil
	}
	layout := s.NetworkInterfaces
	if len(layout) == 0 {
		layout = []awsv1.NetworkInterface{{InterfaceType: awsv1.InterfaceTypeInterface}}
	}
	return lo.Map(layout, func(n awsv1.NetworkInterface, _ int) ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest {
		iface := ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest{DeviceIndex: aws.Int32(n.DeviceIndex), Groups: groups}
		if len(s.NetworkInterfaces) > 0 {
			iface.NetworkCardIndex, iface.InterfaceType = aws.Int32(n.NetworkCardIndex), aws.String(n.InterfaceType)
		}
		if n.NetworkCardIndex == 0 && n.DeviceIndex == 0 {
			iface.AssociatePublicIpAddress, iface.Ipv4PrefixCount = s.AssociatePublicIPAddress, s.IPPrefixCount
		}
		if ct := s.ConnectionTracking; ct != nil && n.InterfaceType == awsv1.InterfaceTypeInterface {
			iface.ConnectionTrackingSpecification = &ec2types.ConnectionTrackingSpecificationRequest{
				TcpEstablishedTimeout: ct.TCPEstablishedTimeout, UdpStreamTimeout: ct.UDPStreamTimeout, UdpTimeout: ct.UDPTimeout,
			}
		}
		return iface
	})
}

// ensure returns the name of the launch template for p, creating it in EC2
// unless it is known or found to exist.
func (l *launchTemplates) ensure(ctx context.Context, p launchParams) (string, error) {
	name, data, tags, err := l.template(p)
	if err != nil {
		return "", err
	}
	known, err := l.use(ctx, name)
	if err != nil {
		return "", err
	}
	if known {
		return name, nil
	}
	out, err := l.ec2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateNames: []string{name}})
	switch {
	case err == nil && len(out.LaunchTemplates) > 0:
		l.remember(name)
		return name, nil
	case err != nil && !isLaunchTemplateNotFound(err):
		return "", fmt.Errorf("describing launch template %s: %w", name, err)
	}
	create := func() error {
		_, err := l.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
			LaunchTemplateName: aws.String(name),
			LaunchTemplateData: data,
			TagSpecifications:  []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: tags}},
		})
		return err
	}
	sweeps := l.sweepsDone()
	err = create()
	if isTemplateQuotaExceeded(err) {
		// The account is at its quota: make room from the templates no
		// launch uses any more, now rather than at the next periodic sweep.
		if freed, sweepErr := l.sweepSince(ctx, sweeps); sweepErr == nil && freed {
			err = create()
		}
	}
	var apiErr smithy.APIError
	if err != nil && !(errors.As(err, &apiErr) && apiErr.ErrorCode() == "InvalidLaunchTemplateName.AlreadyExistsException") {
		return "", fmt.Errorf("creating launch template %s for EC2NodeClass %s: %w", name, p.nodeClass.Name, err)
	}
	if err == nil {
		log.FromContext(ctx).V(1).Info("created launch template", "launchTemplate", name, "ec2NodeClass", p.nodeClass.Name, "ami", p.ami.ID, "capacityType", p.capacityType)
	}
	l.remember(name)
	return name, nil
}

// use records that a launch is about to use name, after waiting out a
// deletion of it in progress, and reports whether it is known to exist. A
// sweep deletes only names not used within the TTL, and checks under the
// same lock, so a template is never deleted between ensure and the
// CreateFleet that names it.
func (l *launchTemplates) use(ctx context.Context, name string) (bool, error) {
	for {
		l.mu.Lock()
		done, deleting := l.deleting[name]
		if !deleting {
			l.used[name] = l.opts.Clock.Now()
			known := l.known[name]
			l.mu.Unlock()
			return known, nil
		}
		l.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return false, fmt.Errorf("waiting for launch template %s to be deleted: %w", name, ctx.Err())
		}
	}
}

func (l *launchTemplates) remember(name string) {
	l.mu.Lock()
	l.known[name] = true
	l.mu.Unlock()
}

// invalidate forgets a template EC2 no longer has, so the next ensure
// recreates it.
func (l *launchTemplates) invalidate(name string) {
	l.mu.Lock()
	delete(l.known, name)
	l.mu.Unlock()
}

// resourceTags are the tags on everything launched for nc: the user's, then
// the ones nodewright finds its resources by, which the user cannot override
// (the CRD rejects them in spec.tags too).
func resourceTags(cluster string, nc *awsv1.EC2NodeClass, nodePool string) map[string]string {
	tags := map[string]string{}
	for k, v := range nc.Spec.Tags {
		tags[k] = v
	}
	tags[awsv1.TagClusterPrefix+cluster] = "owned"
	tags[awsv1.TagEKSClusterName] = cluster
	tags[awsv1.TagEC2NodeClass] = nc.Name
	if nodePool != "" {
		tags[awsv1.TagNodePool] = nodePool
	}
	return tags
}

func ec2Tags(tags map[string]string) []ec2types.Tag {
	out := make([]ec2types.Tag, 0, len(tags))
	for _, k := range sortedKeys(tags) {
		out = append(out, ec2types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	return out
}

// metadataOptions applies the CRD's defaults (IMDSv2 only, hop limit 1) to
// whatever the node class leaves out.
func metadataOptions(m *awsv1.MetadataOptions) *ec2types.LaunchTemplateInstanceMetadataOptionsRequest {
	if m == nil {
		m = &awsv1.MetadataOptions{}
	}
	or := func(p *string, def string) string {
		if p == nil {
			return def
		}
		return *p
	}
	hops := int64(1)
	if m.HTTPPutResponseHopLimit != nil {
		hops = *m.HTTPPutResponseHopLimit
	}
	return &ec2types.LaunchTemplateInstanceMetadataOptionsRequest{
		HttpEndpoint:            ec2types.LaunchTemplateInstanceMetadataEndpointState(or(m.HTTPEndpoint, "enabled")),
		HttpProtocolIpv6:        ec2types.LaunchTemplateInstanceMetadataProtocolIpv6(or(m.HTTPProtocolIPv6, "disabled")),
		HttpPutResponseHopLimit: aws.Int32(int32(hops)),
		HttpTokens:              ec2types.LaunchTemplateHttpTokensState(or(m.HTTPTokens, "required")),
	}
}

// blockDeviceMappings converts the node class's disks, or gives the family's
// default, as Karpenter's: for AL2023 a 20GiB encrypted gp3 root volume, for
// Bottlerocket a 4GiB OS volume and a 20GiB data volume (/dev/xvdb, the one
// images, logs and pods' ephemeral storage live on), for Windows a 50GiB
// root volume on /dev/sda1, the Windows images' root device.
func blockDeviceMappings(nc *awsv1.EC2NodeClass) []ec2types.LaunchTemplateBlockDeviceMappingRequest {
	if len(nc.Spec.BlockDeviceMappings) == 0 {
		volume := func(device string, gib int64) ec2types.LaunchTemplateBlockDeviceMappingRequest {
			return ec2types.LaunchTemplateBlockDeviceMappingRequest{
				DeviceName: aws.String(device),
				Ebs: &ec2types.LaunchTemplateEbsBlockDeviceRequest{
					VolumeSize: aws.Int32(int32(gib)), VolumeType: ec2types.VolumeTypeGp3,
					Encrypted: aws.Bool(true), DeleteOnTermination: aws.Bool(true),
				},
			}
		}
		if AMIFamily(nc) == amiFamilyBottlerocket {
			return []ec2types.LaunchTemplateBlockDeviceMappingRequest{volume("/dev/xvda", bottlerocketOSVolumeGiB), volume("/dev/xvdb", gibibytes(defaultRootVolume))}
		}
		if windowsBuild(nc) != "" {
			return []ec2types.LaunchTemplateBlockDeviceMappingRequest{volume(windowsRootDevice, gibibytes(windowsRootVolume))}
		}
		return []ec2types.LaunchTemplateBlockDeviceMappingRequest{volume("/dev/xvda", gibibytes(defaultRootVolume))}
	}
	var out []ec2types.LaunchTemplateBlockDeviceMappingRequest
	for _, m := range nc.Spec.BlockDeviceMappings {
		if m == nil {
			continue
		}
		bdm := ec2types.LaunchTemplateBlockDeviceMappingRequest{DeviceName: m.DeviceName}
		if e := m.EBS; e != nil {
			ebs := &ec2types.LaunchTemplateEbsBlockDeviceRequest{
				DeleteOnTermination: e.DeleteOnTermination, Encrypted: e.Encrypted, KmsKeyId: e.KMSKeyID,
				SnapshotId: e.SnapshotID, VolumeType: ec2types.VolumeType(aws.ToString(e.VolumeType)),
				VolumeInitializationRate: e.VolumeInitializationRate,
			}
			if e.IOPS != nil {
				ebs.Iops = aws.Int32(int32(*e.IOPS))
			}
			if e.Throughput != nil {
				ebs.Throughput = aws.Int32(int32(*e.Throughput))
			}
			if e.VolumeSize != nil {
				ebs.VolumeSize = aws.Int32(int32(gibibytes(*e.VolumeSize)))
			}
			bdm.Ebs = ebs
		}
		out = append(out, bdm)
	}
	return out
}

// gibibytes rounds a size up to whole GiB, EBS's unit.
func gibibytes(q resource.Quantity) int64 {
	const gib = 1 << 30
	return (q.Value() + gib - 1) / gib
}
