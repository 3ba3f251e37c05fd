package ec2sim

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// The real STS client reads the scenario's account from GetCallerIdentity,
// the call is audited with no check (it needs no permission), and an
// injected fault comes back as STS's error. Mutation tried: routing the
// request to the EC2 handlers (no isSTS branch) fails with InvalidAction.
func TestGetCallerIdentity(t *testing.T) {
	e := newEnv(t)
	client := sts.New(sts.Options{
		Region: region, BaseEndpoint: aws.String(e.sim.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDSIMULATOR", "secret", ""),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts, o.MaxBackoff = 1, 10*time.Millisecond
		}),
	})
	ctx := context.Background()
	out, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.Account) != e.sim.Scenario().AccountID || aws.ToString(out.Arn) == "" {
		t.Errorf("caller identity %s in account %s, want account %s", aws.ToString(out.Arn), aws.ToString(out.Account), e.sim.Scenario().AccountID)
	}
	if c := lastCall(t, e.sim, "sts:GetCallerIdentity"); len(c.Checks) != 0 || c.Caller != "AKIDSIMULATOR" {
		t.Errorf("audited as %+v, want no check and the caller", c)
	}

	e.sim.FailNext("GetCallerIdentity", "ExpiredToken", 400, 1)
	_, err = client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "ExpiredToken" {
		t.Errorf("injected fault came back as %v", err)
	}
}
