package aws

import (
	"context"
	"reflect"
	"strings"
	"testing"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/ec2sim"
)

func onlyTemplate(t *testing.T, sim *ec2sim.Server) ec2sim.LaunchTemplate {
	t.Helper()
	lts := sim.LaunchTemplates()
	if len(lts) != 1 {
		t.Fatalf("%d launch templates, want 1", len(lts))
	}
	return lts[0]
}

// TestLaunchTemplateIsShared: claims alike share one launch template, whose
// user data registers the node with the NodePool's labels and the claim's
// taints, and which carries the node class's settings and tags.
func TestLaunchTemplateIsShared(t *testing.T) {
	e := newEnv(t)
	nc := e.resolved(t, seedNodeClass(t))
	p := e.cloudProvider(t, nc)
	ctx := context.Background()
	for range 2 {
		claim := newClaim(nc.Name, req(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand), req(v1.LabelInstanceTypeStable, "m5.xlarge"))
		claim.Spec.StartupTaints = []corev1.Taint{{Key: "node.cilium.io/agent-not-ready", Value: "true", Effect: corev1.TaintEffectNoExecute}}
		if _, err := p.Create(ctx, claim); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.sim.Calls("CreateLaunchTemplate"); n != 1 {
		t.Errorf("CreateLaunchTemplate called %d times for two claims alike, want 1", n)
	}
	if n := e.sim.Calls("DescribeLaunchTemplates"); n != 1 {
		t.Errorf("DescribeLaunchTemplates called %d times: the provider does not remember the template it made", n)
	}
	lt := onlyTemplate(t, e.sim)
	if !strings.HasPrefix(lt.Name, "nodewright/my-cluster/") {
		t.Errorf("launch template name %q, want nodewright/my-cluster/<hash>", lt.Name)
	}
	userData, err := lt.Data.DecodedUserData()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Content-Type: application/node.eks.aws",
		"name: my-cluster", "apiServerEndpoint: https://my-cluster.eks.example", "cidr: 10.100.0.0/16",
		"--node-labels=karpenter.k8s.aws/ec2nodeclass=default,karpenter.sh/capacity-type=on-demand,karpenter.sh/nodepool=batch-processing,team=data",
		"--register-with-taints=dedicated=batch:NoSchedule,karpenter.sh/unregistered:NoExecute,node.cilium.io/agent-not-ready=true:NoExecute",
	} {
		if !strings.Contains(userData, want) {
			t.Errorf("user data lacks %q:\n%s", want, userData)
		}
	}
	if strings.Contains(userData, "node.kubernetes.io/instance-type") {
		t.Errorf("user data pins an instance-type label the fleet's other pools would contradict:\n%s", userData)
	}
	d := lt.Data
	if d.ImageID != "ami-0a2023000000000a1" || d.IAMInstanceProfile.Name != "KarpenterNodeInstanceProfile" || strings.Join(d.SecurityGroupIDs, ",") != "sg-0a00000000000001" {
		t.Errorf("template image %s, profile %+v, groups %v", d.ImageID, d.IAMInstanceProfile, d.SecurityGroupIDs)
	}
	if m := d.MetadataOptions; m.HTTPTokens != "required" || m.HTTPPutResponseHopLimit != 1 || m.HTTPEndpoint != "enabled" {
		t.Errorf("metadata options %+v, want IMDSv2 with hop limit 1", m)
	}
	if len(d.BlockDeviceMappings) != 1 || d.BlockDeviceMappings[0].DeviceName != "/dev/xvda" || d.BlockDeviceMappings[0].VolumeSize != 20 ||
		d.BlockDeviceMappings[0].VolumeType != "gp3" || !d.BlockDeviceMappings[0].Encrypted {
		t.Errorf("block devices %+v, want the 20GiB encrypted gp3 root", d.BlockDeviceMappings)
	}
	for k, v := range map[string]string{"kubernetes.io/cluster/my-cluster": "owned", "karpenter.sh/nodepool": "batch-processing", "karpenter.k8s.aws/ec2nodeclass": "default"} {
		if lt.Tags[k] != v || d.TagSpecifications["volume"][k] != v {
			t.Errorf("tag %s: template %q, volumes %q; want %q", k, lt.Tags[k], d.TagSpecifications["volume"][k], v)
		}
	}

	// A spot claim registers with another capacity-type label: its own template.
	if _, err := p.Create(ctx, newClaim(nc.Name, req(v1.CapacityTypeLabelKey, v1.CapacityTypeSpot), req(v1.LabelInstanceTypeStable, "m5.xlarge"))); err != nil {
		t.Fatal(err)
	}
	if n := len(e.sim.LaunchTemplates()); n != 2 {
		t.Errorf("%d launch templates after a spot claim, want 2", n)
	}
}

// TestLaunchTemplateFoundAfterRestart: a restarted provider finds the
// template by name instead of creating it again, and one deleted behind its
// back is recreated when the fleet says it is missing.
func TestLaunchTemplateFoundAfterRestart(t *testing.T) {
	e := newEnv(t)
	nc := e.resolved(t, seedNodeClass(t))
	ctx := context.Background()
	claim := func() *v1.NodeClaim { return newClaim(nc.Name, req(v1.LabelInstanceTypeStable, "m5.xlarge")) }
	first := e.cloudProvider(t, nc)
	if _, err := first.Create(ctx, claim()); err != nil {
		t.Fatal(err)
	}
	restarted := e.cloudProvider(t, nc)
	if _, err := restarted.Create(ctx, claim()); err != nil {
		t.Fatal(err)
	}
	if n := e.sim.Calls("CreateLaunchTemplate"); n != 1 {
		t.Errorf("CreateLaunchTemplate called %d times across a restart, want 1", n)
	}
	if e.sim.Calls("DescribeLaunchTemplates") < 2 {
		t.Error("the restarted provider did not look the template up")
	}

	lt := onlyTemplate(t, e.sim)
	if _, err := e.clients.EC2.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateName: aws.String(lt.Name)}); err != nil {
		t.Fatal(err)
	}
	got, err := first.Create(ctx, claim())
	if err != nil {
		t.Fatalf("Create after the template was deleted: %v", err)
	}
	if n := e.sim.Calls("CreateLaunchTemplate"); n != 2 {
		t.Errorf("CreateLaunchTemplate called %d times, want the deleted template recreated once", n)
	}
	if recreated := onlyTemplate(t, e.sim); recreated.Name != lt.Name || simInstance(t, e.sim, got.Status.ProviderID).LaunchTemplateID != recreated.ID {
		t.Errorf("recreated template %s (%s); the instance was not launched from it", recreated.Name, recreated.ID)
	}
}

// TestEveryLaunchSettingReachesTheTemplate: each launch setting of the node
// class (block devices with every EBS field, metadata options, detailed
// monitoring, Nitro Enclaves, a public address) is in the launch template
// EC2 receives (fails when a field is dropped on the way: tried removing
// VolumeInitializationRate, Monitoring and HttpProtocolIpv6 in turn).
func TestEveryLaunchSettingReachesTheTemplate(t *testing.T) {
	e := newEnv(t)
	nc := seedNodeClass(t)
	nc.Spec.BlockDeviceMappings = []*awsv1.BlockDeviceMapping{
		{DeviceName: ptr.To("/dev/xvda"), RootVolume: true, EBS: &awsv1.BlockDevice{
			VolumeSize: ptr.To(resource.MustParse("100Gi")), VolumeType: ptr.To("gp3"), IOPS: ptr.To(int64(6000)),
			Throughput: ptr.To(int64(500)), Encrypted: ptr.To(true), KMSKeyID: ptr.To("arn:aws:kms:ap-northeast-2:111122223333:key/1234abcd"),
			DeleteOnTermination: ptr.To(false)}},
		{DeviceName: ptr.To("/dev/xvdb"), EBS: &awsv1.BlockDevice{
			SnapshotID: ptr.To("snap-0123456789abcdef0"), VolumeInitializationRate: ptr.To(int32(200)), VolumeType: ptr.To("io2"),
			IOPS: ptr.To(int64(10000)), DeleteOnTermination: ptr.To(true)}},
	}
	nc.Spec.MetadataOptions = &awsv1.MetadataOptions{HTTPEndpoint: ptr.To("enabled"), HTTPProtocolIPv6: ptr.To("enabled"),
		HTTPPutResponseHopLimit: ptr.To(int64(3)), HTTPTokens: ptr.To("optional")}
	nc.Spec.DetailedMonitoring = ptr.To(true)
	nc.Spec.EnclaveOptions = &awsv1.EnclaveOptions{Enabled: ptr.To(true)}
	nc.Spec.AssociatePublicIPAddress = ptr.To(false)
	nc = e.resolved(t, nc)
	p := e.cloudProvider(t, nc)
	if _, err := p.Create(context.Background(), newClaim(nc.Name, req(v1.LabelInstanceTypeStable, "m5.xlarge"))); err != nil {
		t.Fatal(err)
	}
	d := onlyTemplate(t, e.sim).Data
	wantDevices := []ec2sim.BlockDeviceMapping{
		{DeviceName: "/dev/xvda", VolumeSize: 100, VolumeType: "gp3", IOPS: 6000, Throughput: 500, Encrypted: true,
			KMSKeyID: "arn:aws:kms:ap-northeast-2:111122223333:key/1234abcd", DeleteOnTermination: false},
		{DeviceName: "/dev/xvdb", VolumeType: "io2", IOPS: 10000, SnapshotID: "snap-0123456789abcdef0", VolumeInitializationRate: 200, DeleteOnTermination: true},
	}
	if !reflect.DeepEqual(d.BlockDeviceMappings, wantDevices) {
		t.Errorf("block devices\n got %+v\nwant %+v", d.BlockDeviceMappings, wantDevices)
	}
	if m := d.MetadataOptions; m.HTTPEndpoint != "enabled" || m.HTTPProtocolIPv6 != "enabled" || m.HTTPPutResponseHopLimit != 3 || m.HTTPTokens != "optional" {
		t.Errorf("metadata options %+v", m)
	}
	if !d.Monitoring || !d.Enclave {
		t.Errorf("detailed monitoring %v, enclave %v; want both on", d.Monitoring, d.Enclave)
	}
	if len(d.NetworkInterfaces) != 1 || d.NetworkInterfaces[0].AssociatePublicIPAddress != "false" {
		t.Errorf("interfaces %+v, want the primary one without a public address", d.NetworkInterfaces)
	}
}
