package aws

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// healthTTL is how long one answer of DescribeInstanceStatus is reused: the
// disruption controller asks every evaluation (10 s), and a status check
// repair waits 30 minutes on anyway.
const healthTTL = time.Minute

// healthCache holds the last answer.
type healthCache struct {
	mu       sync.Mutex
	at       time.Time
	impaired map[string]string
}

// ImpairedInstances returns the running instances whose EC2 status checks
// fail, by provider ID, with which check: the instance's (its OS or
// kernel: unreachable, out of memory, a full disk) or the system's (the
// host). It asks EC2 at most once a minute: two DescribeInstanceStatus
// calls filtered on the impaired status, so the answer stays small however
// many instances run.
func (p *CloudProvider) ImpairedInstances(ctx context.Context) (map[string]string, error) {
	p.health.mu.Lock()
	defer p.health.mu.Unlock()
	if p.health.impaired != nil && time.Since(p.health.at) < healthTTL {
		return p.health.impaired, nil
	}
	out := map[string]string{}
	for filter, what := range map[string]string{"instance-status.status": "instance status check failed", "system-status.status": "system status check failed"} {
		pages := ec2.NewDescribeInstanceStatusPaginator(p.ec2, &ec2.DescribeInstanceStatusInput{
			Filters: []ec2types.Filter{{Name: aws.String(filter), Values: []string{"impaired"}}},
		})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("describing instance status: %w", err)
			}
			for _, st := range page.InstanceStatuses {
				out[ProviderID(aws.ToString(st.AvailabilityZone), aws.ToString(st.InstanceId))] = what
			}
		}
	}
	p.health.at, p.health.impaired = time.Now(), out
	return out, nil
}
