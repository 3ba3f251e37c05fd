package aws

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	clocktesting "k8s.io/utils/clock/testing"
)

func httpError(status int) error {
	return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: errors.New("refused")}}
}

// TestDefinitiveFailure: only an answer without an instance or a 4xx
// refusal moves a claim to its next token; a lost answer or a server error
// may hide a launch, which the same token must find again.
// Mutation tried: every error definitive (`... >= 400 || err != nil`): the
// 503, 500 and deadline rows failed.
func TestDefinitiveFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		out  *ec2.CreateFleetOutput
		err  error
		want bool
	}{
		{"an instance", &ec2.CreateFleetOutput{Instances: []ec2types.CreateFleetInstance{{InstanceIds: []string{"i-0123456789abcdef0"}}}}, nil, false},
		{"only errors", &ec2.CreateFleetOutput{Errors: []ec2types.CreateFleetError{{}}}, nil, true},
		{"400", nil, httpError(400), true},
		{"503 throttled", nil, httpError(503), false},
		{"500", nil, httpError(500), false},
		{"deadline", nil, context.DeadlineExceeded, false},
	} {
		if got := definitiveFailure(tc.out, tc.err); got != tc.want {
			t.Errorf("%s: definitive = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestFleetAttemptsAreForgotten: a claim's count is kept while it is used
// and forgotten an hour after, so deleted claims do not accumulate.
// Mutation tried: no pruning in failed: the idle claim was still counted.
func TestFleetAttemptsAreForgotten(t *testing.T) {
	clock := clocktesting.NewFakeClock(time.Now())
	f := newFleetAttempts(clock)
	f.failed("idle")
	f.failed("busy")
	if f.current("idle") != 1 || f.current("busy") != 1 {
		t.Fatal("a failure did not move the claims to their next attempt")
	}
	clock.Step(59 * time.Minute)
	f.current("busy")
	clock.Step(2 * time.Minute)
	f.failed("other")
	if _, ok := f.byClaim["idle"]; ok {
		t.Error("a claim unused for over an hour is still remembered")
	}
	if f.current("busy") != 1 {
		t.Error("a claim used within the hour lost its attempt")
	}
}
