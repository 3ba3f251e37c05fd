package bridgetest

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nodewright/nodewright/test/ec2sim"
	"github.com/nodewright/nodewright/test/harness"
)

// userData is AL2023 user data as Karpenter writes it, for one NodePool.
func userData(nodePool string) string {
	return base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf(`MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="//"

--//
Content-Type: application/node.eks.aws

apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  cluster:
    name: demo
  kubelet:
    config:
      registerWithTaints:
      - effect: NoSchedule
        key: example.com/dedicated
        value: batch
    flags:
    - --node-labels="karpenter.sh/capacity-type=on-demand,karpenter.sh/nodepool=%s"

--//--
`, nodePool)))
}

func TestNodeBridgeRegistersAndRemovesNodes(t *testing.T) {
	ctx := context.Background()
	sim, err := ec2sim.StartRegion("ap-northeast-2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	api := ec2.NewFromConfig(aws.Config{Region: "ap-northeast-2", Credentials: credentials.NewStaticCredentialsProvider("AKIDSIMULATOR", "secret", "")},
		func(o *ec2.Options) { o.BaseEndpoint = aws.String(sim.URL) })

	nodePool := harness.Name("bridge")
	if _, err := api.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(nodePool),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-0a2023000000000a1"), UserData: aws.String(userData(nodePool))},
	}); err != nil {
		t.Fatal(err)
	}
	launch := func() string {
		t.Helper()
		out, err := api.CreateFleet(ctx, &ec2.CreateFleetInput{
			Type: ec2types.FleetTypeInstant,
			LaunchTemplateConfigs: []ec2types.FleetLaunchTemplateConfigRequest{{
				LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecificationRequest{LaunchTemplateName: aws.String(nodePool), Version: aws.String("$Latest")},
				Overrides: []ec2types.FleetLaunchTemplateOverridesRequest{{
					InstanceType: "m5.large", SubnetId: aws.String("subnet-0b000000000000002"), AvailabilityZone: aws.String("ap-northeast-2b"),
				}},
			}},
			TargetCapacitySpecification: &ec2types.TargetCapacitySpecificationRequest{TotalTargetCapacity: aws.Int32(1), DefaultTargetCapacityType: ec2types.DefaultTargetCapacityTypeOnDemand},
		})
		if err != nil || len(out.Instances) != 1 {
			t.Fatalf("launching: %+v %v", out, err)
		}
		id := out.Instances[0].InstanceIds[0]
		in, _ := sim.Instance(id)
		node := &corev1.Node{}
		node.Name = in.PrivateDNSName
		t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), node) })
		return id
	}

	// One instance runs before the bridge starts, one after.
	before := launch()
	bridge := ec2sim.NewNodeBridge(sim, cp.Client, ec2sim.NodeBridgeOptions{Log: testr.New(t)})
	if err := bridge.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bridge.Stop)
	if err := bridge.Start(ctx); err == nil {
		t.Error("a second Start succeeded")
	}
	after := launch()

	for _, id := range []string{before, after} {
		in, _ := sim.Instance(id)
		node := &corev1.Node{}
		cp.Eventually(t, 60*time.Second, "node "+in.PrivateDNSName+" Ready", func(ctx context.Context) (bool, error) {
			if err := cp.Client.Get(ctx, client.ObjectKey{Name: in.PrivateDNSName}, node); err != nil {
				return false, err
			}
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady {
					return c.Status == corev1.ConditionTrue, nil
				}
			}
			return false, fmt.Errorf("no Ready condition yet")
		})
		if node.Spec.ProviderID != "aws:///ap-northeast-2b/"+id || node.Labels["karpenter.sh/nodepool"] != nodePool ||
			node.Labels[corev1.LabelInstanceTypeStable] != "m5.large" || node.Labels[corev1.LabelTopologyZone] != "ap-northeast-2b" {
			t.Errorf("node %s: provider id %s, labels %v", node.Name, node.Spec.ProviderID, node.Labels)
		}
		tainted := false
		for _, taint := range node.Spec.Taints {
			tainted = tainted || (taint.Key == "example.com/dedicated" && taint.Value == "batch" && taint.Effect == corev1.TaintEffectNoSchedule)
		}
		if !tainted {
			t.Errorf("node %s lacks the user data's taint: %v", node.Name, node.Spec.Taints)
		}
		// kwok keeps the capacity the bridge registered: m5.large has 2 vCPUs
		// and the ENI limit of 29 pods.
		if node.Status.Capacity.Cpu().Value() != 2 || node.Status.Capacity.Pods().Value() != 29 || node.Status.Allocatable.Cpu().MilliValue() != 1930 {
			t.Errorf("node %s capacity %v allocatable %v", node.Name, node.Status.Capacity, node.Status.Allocatable)
		}
	}

	if _, err := api.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{before}}); err != nil {
		t.Fatal(err)
	}
	gone, _ := sim.Instance(before)
	cp.Eventually(t, 30*time.Second, "node of the terminated instance deleted", func(ctx context.Context) (bool, error) {
		err := cp.Client.Get(ctx, client.ObjectKey{Name: gone.PrivateDNSName}, &corev1.Node{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, fmt.Errorf("node still there (%v)", err)
	})
	kept, _ := sim.Instance(after)
	if err := cp.Client.Get(ctx, client.ObjectKey{Name: kept.PrivateDNSName}, &corev1.Node{}); err != nil {
		t.Errorf("node of the running instance: %v", err)
	}
}
