package operator

import (
	"context"
	"errors"
	"strings"
	"testing"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"

	"github.com/nodewright/nodewright/pkg/cloudprovider/aws"
	"github.com/nodewright/nodewright/test/ec2sim"
)

// What --cluster-endpoint and --cluster-cidr (and the controller's own CA)
// do not give comes from EKS DescribeCluster, through the simulator; given
// values win and, all given, EKS is not asked; an unknown cluster is an
// error naming it.
// Mutations tried: discoverCluster always asking -> the all-given case makes
// a call; given values overwritten by EKS's -> the kept CA differs; the
// simulator describing any name -> the unknown cluster resolves.
func TestDiscoverCluster(t *testing.T) {
	sim, err := ec2sim.StartRegion("ap-northeast-2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	sim.SetCluster(ec2sim.EKSCluster{Name: "prod", Endpoint: "https://ABC.gr7.ap-northeast-2.eks.amazonaws.com",
		CertificateAuthority: "RUtTIENB", ServiceCIDR: "172.20.0.0/16", Version: "1.33"})
	ctx := context.Background()
	clients, err := aws.NewClients(ctx, aws.ClientOptions{Region: "ap-northeast-2", Endpoint: sim.URL,
		StaticCredentials: &sdkaws.Credentials{AccessKeyID: ec2sim.SimulatorAccessKeyID, SecretAccessKey: "secret"}})
	if err != nil {
		t.Fatal(err)
	}
	all := aws.Cluster{Endpoint: "https://given", CABundle: "Q09OVFJPTExFUg==", ServiceCIDR: "10.100.0.0/16"}
	if got, err := discoverCluster(ctx, clients.EKS, "prod", all); err != nil || got != all || sim.Calls("DescribeCluster") != 0 {
		t.Errorf("all given: %+v %v, %d calls", got, err, sim.Calls("DescribeCluster"))
	}
	got, err := discoverCluster(ctx, clients.EKS, "prod", aws.Cluster{CABundle: all.CABundle})
	want := aws.Cluster{Endpoint: "https://ABC.gr7.ap-northeast-2.eks.amazonaws.com", CABundle: all.CABundle, ServiceCIDR: "172.20.0.0/16"}
	if err != nil || got != want {
		t.Errorf("endpoint and CIDR from EKS: %+v %v, want %+v", got, err, want)
	}
	if got, err := discoverCluster(ctx, clients.EKS, "prod", aws.Cluster{}); err != nil || got.CABundle != "RUtTIENB" {
		t.Errorf("CA from EKS: %+v %v", got, err)
	}
	_, err = discoverCluster(ctx, clients.EKS, "staging", aws.Cluster{})
	var notFound *ekstypes.ResourceNotFoundException
	if !errors.As(err, &notFound) || !strings.Contains(err.Error(), `EKS has no cluster "staging"`) || !strings.Contains(err.Error(), "eks:DescribeCluster") {
		t.Errorf("unknown cluster: %v", err)
	}
	// The audit names the cluster's ARN, for the IAM policy test.
	log := sim.AuditLog()
	last := log[len(log)-1]
	if last.Action != "eks:DescribeCluster" || len(last.Checks) != 1 || last.Checks[0].Resource != "arn:aws:eks:ap-northeast-2:"+sim.Scenario().AccountID+":cluster/staging" {
		t.Errorf("audit: %+v", last)
	}
}
