package iam

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eks"

	"github.com/nodewright/nodewright/test/ec2sim"
)

// The chart's policy lets nodewright describe its own cluster, through the
// simulator's EKS, and no other: the endpoint and service CIDR discovery
// (pkg/operator discoverCluster) needs exactly eks:DescribeCluster on the
// cluster's ARN. Mutation tried: the EKSClusterEndpoint statement's resource
// widened to cluster/* -> the other cluster's call is allowed.
func TestPolicyAllowsDescribingOnlyOurCluster(t *testing.T) {
	sim, err := ec2sim.StartRegion("ap-northeast-2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	sim.SetCluster(ec2sim.EKSCluster{Name: "my-cluster", Endpoint: "https://ABC.gr7.ap-northeast-2.eks.amazonaws.com", ServiceCIDR: "10.100.0.0/16"})
	sim.SetCluster(ec2sim.EKSCluster{Name: "other", Endpoint: "https://DEF.gr7.ap-northeast-2.eks.amazonaws.com", ServiceCIDR: "10.100.0.0/16"})
	client := eks.New(eks.Options{Region: "ap-northeast-2", BaseEndpoint: aws.String(sim.URL),
		Credentials: credentials.NewStaticCredentialsProvider(ec2sim.SimulatorAccessKeyID, "secret", "")})
	for _, name := range []string{"my-cluster", "other"} {
		if _, err := client.DescribeCluster(context.Background(), &eks.DescribeClusterInput{Name: aws.String(name)}); err != nil {
			t.Fatal(err)
		}
	}
	denials := evaluate(t, ChartPolicy(), sim.AuditLog())
	if len(denials) != 1 || denials[0].Check.Resource != "arn:aws:eks:ap-northeast-2:111122223333:cluster/other" {
		t.Errorf("want only the other cluster's DescribeCluster denied; got:\n%s", denialList(denials))
	}
}
