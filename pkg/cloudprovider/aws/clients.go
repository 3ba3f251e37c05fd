package aws

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/pricing"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// ClientOptions say how to reach AWS.
type ClientOptions struct {
	// Region of the cluster's instances. Required.
	Region string
	// Endpoint, when set, replaces every service's endpoint (the simulator, or a
	// VPC endpoint proxy).
	Endpoint string
	// StaticCredentials, when set, replaces the default credential chain
	// (environment, web identity / IRSA, Pod Identity, instance profile).
	StaticCredentials *aws.Credentials
	// RetryMaxBackoff bounds the wait between retries of throttled or failed
	// calls; default the SDK's 20s.
	RetryMaxBackoff time.Duration
	// MaxAttempts per call; default 5. The SDK's 3 leaves no room after two
	// throttled attempts for the response cut by "use of closed network
	// connection" that its transport sometimes yields on the next one
	// (aws/aws-sdk-go-v2#2935; the SDK classifies it retryable), and EC2
	// throttles exactly when the autoscaler is busiest.
	MaxAttempts int
}

// defaultMaxAttempts is ClientOptions.MaxAttempts' default.
const defaultMaxAttempts = 5

// Clients are the SDK clients the provider uses.
type Clients struct {
	EC2     *ec2.Client
	Pricing *pricing.Client
	// SSM reads the public parameters that name the EKS-optimized AMIs.
	SSM *ssm.Client
	// SQS reads the interruption queue.
	SQS *sqs.Client
	// STS names the account nodewright runs as (GetCallerIdentity, which
	// needs no permission), so the interruption queue can ignore other
	// accounts' events.
	STS *sts.Client
	// IAM creates and deletes the instance profiles of EC2NodeClasses that
	// name a role.
	IAM *iam.Client
	// EKS describes the cluster (DescribeCluster), for its endpoint, CA and
	// service CIDR when they are not given.
	EKS *eks.Client
}

// NewClients loads the AWS configuration and builds the clients.
func NewClients(ctx context.Context, o ClientOptions) (*Clients, error) {
	if o.Region == "" {
		return nil, fmt.Errorf("aws: region is required")
	}
	loaders := []func(*config.LoadOptions) error{
		config.WithRegion(o.Region),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = defaultMaxAttempts
				if o.MaxAttempts > 0 {
					so.MaxAttempts = o.MaxAttempts
				}
				if o.RetryMaxBackoff > 0 {
					so.MaxBackoff = o.RetryMaxBackoff
				}
			})
		}),
	}
	if c := o.StaticCredentials; c != nil {
		loaders = append(loaders, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loaders...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	endpoint := func(base **string) {
		if o.Endpoint != "" {
			*base = aws.String(o.Endpoint)
		}
	}
	// The Pricing API lives only in a few regions; us-east-1 serves every
	// region's prices.
	pricingRegion := "us-east-1"
	return &Clients{
		EC2: ec2.NewFromConfig(cfg, func(opts *ec2.Options) { endpoint(&opts.BaseEndpoint) }),
		Pricing: pricing.NewFromConfig(cfg, func(opts *pricing.Options) {
			opts.Region = pricingRegion
			endpoint(&opts.BaseEndpoint)
		}),
		SSM: ssm.NewFromConfig(cfg, func(opts *ssm.Options) { endpoint(&opts.BaseEndpoint) }),
		SQS: sqs.NewFromConfig(cfg, func(opts *sqs.Options) { endpoint(&opts.BaseEndpoint) }),
		STS: sts.NewFromConfig(cfg, func(opts *sts.Options) { endpoint(&opts.BaseEndpoint) }),
		IAM: iam.NewFromConfig(cfg, func(opts *iam.Options) { endpoint(&opts.BaseEndpoint) }),
		EKS: eks.NewFromConfig(cfg, func(opts *eks.Options) { endpoint(&opts.BaseEndpoint) }),
	}, nil
}
