package aws

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"
)

// EKSAPI is the part of the EKS client cluster discovery uses.
type EKSAPI interface {
	DescribeCluster(ctx context.Context, in *eks.DescribeClusterInput, optFns ...func(*eks.Options)) (*eks.DescribeClusterOutput, error)
}

// Cluster is what EKS says about the cluster that new nodes need to join it.
type Cluster struct {
	// Endpoint is the API server URL.
	Endpoint string
	// CABundle is the API server's CA, base64-encoded PEM.
	CABundle string
	// ServiceCIDR is the service CIDR, IPv4 or, in an IPv6 cluster, IPv6.
	ServiceCIDR string
}

// DescribeCluster asks EKS for the named cluster, so a chart need give only
// the cluster's name, as Karpenter's does. It needs eks:DescribeCluster on
// the cluster's ARN.
func DescribeCluster(ctx context.Context, api EKSAPI, name string) (Cluster, error) {
	out, err := api.DescribeCluster(ctx, &eks.DescribeClusterInput{Name: aws.String(name)})
	var notFound *ekstypes.ResourceNotFoundException
	if errors.As(err, &notFound) {
		return Cluster{}, fmt.Errorf("EKS has no cluster %q in this region (is --cluster-name right?): %w", name, err)
	}
	if err != nil {
		return Cluster{}, fmt.Errorf("describing EKS cluster %q: %w", name, err)
	}
	c := out.Cluster
	if c == nil {
		return Cluster{}, fmt.Errorf("describing EKS cluster %q: empty answer", name)
	}
	var found Cluster
	found.Endpoint = aws.ToString(c.Endpoint)
	if c.CertificateAuthority != nil {
		found.CABundle = aws.ToString(c.CertificateAuthority.Data)
	}
	if n := c.KubernetesNetworkConfig; n != nil {
		found.ServiceCIDR = aws.ToString(n.ServiceIpv4Cidr)
		if n.IpFamily == ekstypes.IpFamilyIpv6 {
			found.ServiceCIDR = aws.ToString(n.ServiceIpv6Cidr)
		}
	}
	return found, nil
}
