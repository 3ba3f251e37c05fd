package aws

import (
	"errors"
	"net/http"
	"sync"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// fleetAttemptsTTL is how long a claim's attempt count is kept after its
// last use. A claim calls Create until it launches or is deleted (at the
// latest after the registration TTL, 15 minutes); an hour is well past that.
const fleetAttemptsTTL = time.Hour

// fleetAttempts counts, per claim, the fleets EC2 answered definitively
// without an instance. The count goes into the client token: a request
// whose answer was lost is sent again with the same token (EC2 answers with
// the instance it launched, never a second one), while a request EC2
// refused is sent next time with a new token, so EC2 does not replay its
// cached refusal to a retry made after the capacity came back. Kept in
// memory: after a restart a claim's first retry may replay one cached
// refusal, which counts as one more failure.
type fleetAttempts struct {
	clock clock.PassiveClock
	mu    sync.Mutex
	// byClaim is the attempt number and when it was last used.
	byClaim map[types.UID]fleetAttempt
}

type fleetAttempt struct {
	n    int
	used time.Time
}

func newFleetAttempts(c clock.PassiveClock) *fleetAttempts {
	return &fleetAttempts{clock: c, byClaim: map[types.UID]fleetAttempt{}}
}

// current returns the claim's attempt number.
func (f *fleetAttempts) current(uid types.UID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.byClaim[uid]
	a.used = f.clock.Now()
	f.byClaim[uid] = a
	return a.n
}

// failed moves the claim to its next attempt, and forgets claims unused for
// fleetAttemptsTTL.
func (f *fleetAttempts) failed(uid types.UID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.clock.Now()
	for k, a := range f.byClaim {
		if now.Sub(a.used) > fleetAttemptsTTL {
			delete(f.byClaim, k)
		}
	}
	a := f.byClaim[uid]
	f.byClaim[uid] = fleetAttempt{n: a.n + 1, used: now}
}

// definitiveFailure reports whether a CreateFleet call certainly launched
// nothing: EC2 answered with no instance, or refused the request (HTTP 4xx).
// A lost answer, a timeout or a server error (5xx, throttling) may hide a
// launch, and the same token must be sent again to find it.
func definitiveFailure(out *ec2.CreateFleetOutput, err error) bool {
	if err != nil {
		var resp *awshttp.ResponseError
		return errors.As(err, &resp) && resp.HTTPStatusCode() >= http.StatusBadRequest && resp.HTTPStatusCode() < http.StatusInternalServerError
	}
	for _, i := range out.Instances {
		if len(i.InstanceIds) > 0 {
			return false
		}
	}
	return true
}
