package aws

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/samber/lo"
)

// instanceBatcher coalesces the Get calls that arrive within one window into
// a single DescribeInstances: when a mass drain ends, each of many claims
// asks whether its instance still runs, and one read per claim per pass is
// what throttles an account.
type instanceBatcher struct {
	describe func(ctx context.Context, in *ec2.DescribeInstancesInput) ([]ec2types.Instance, error)
	// window is how long the first request of a batch waits for others.
	window time.Duration

	mu        sync.Mutex
	waiting   map[string][]chan instanceAnswer
	scheduled bool
}

type instanceAnswer struct {
	instance *ec2types.Instance
	err      error
}

const (
	// instanceBatchWindow adds at most this to a Get's latency.
	instanceBatchWindow = 50 * time.Millisecond
	// instanceBatchMax is how many ids one DescribeInstances filter holds
	// (EC2 accepts 200 values per filter).
	instanceBatchMax = 200
	// instanceBatchTimeout bounds one batch's call: it is made for several
	// callers, so no one caller's context cancels it.
	instanceBatchTimeout = 30 * time.Second
)

// get describes the instance id with the others asked for in the same
// window. It returns nil, nil when EC2 does not know the instance.
func (b *instanceBatcher) get(ctx context.Context, id string) (*ec2types.Instance, error) {
	answer := make(chan instanceAnswer, 1)
	b.mu.Lock()
	if b.waiting == nil {
		b.waiting = map[string][]chan instanceAnswer{}
	}
	b.waiting[id] = append(b.waiting[id], answer)
	if !b.scheduled {
		b.scheduled = true
		time.AfterFunc(b.window, b.flush)
	}
	b.mu.Unlock()
	select {
	case a := <-answer:
		return a.instance, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// flush answers every waiting caller. Ids go in an instance-id filter, not
// InstanceIds, so one id EC2 does not know (a claim's instance long gone)
// does not fail the whole batch with InvalidInstanceID.NotFound.
func (b *instanceBatcher) flush() {
	b.mu.Lock()
	waiting := b.waiting
	b.waiting, b.scheduled = nil, false
	b.mu.Unlock()
	for _, ids := range lo.Chunk(slices.Sorted(maps.Keys(waiting)), instanceBatchMax) {
		ctx, cancel := context.WithTimeout(context.Background(), instanceBatchTimeout)
		instances, err := b.describe(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{filter("instance-id", ids...)}})
		cancel()
		byID := lo.KeyBy(instances, func(i ec2types.Instance) string { return aws.ToString(i.InstanceId) })
		for _, id := range ids {
			a := instanceAnswer{err: err}
			if inst, ok := byID[id]; ok && err == nil {
				a.instance = &inst
			}
			for _, ch := range waiting[id] {
				ch <- a
			}
		}
	}
}
