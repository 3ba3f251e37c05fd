package ec2sim

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

const al2023Parameter = "/aws/service/eks/optimized-ami/1.37/amazon-linux-2023/x86_64/standard/recommended/image_id"

func TestGetParameter(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	out, err := e.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(al2023Parameter)})
	if err != nil {
		t.Fatal(err)
	}
	p := out.Parameter
	if aws.ToString(p.Value) != amiX86 || aws.ToString(p.Name) != al2023Parameter || p.Type != ssmtypes.ParameterTypeString ||
		p.Version != 1 || p.LastModifiedDate == nil || aws.ToString(p.ARN) != "arn:aws:ssm:ap-northeast-2::parameter"+al2023Parameter {
		t.Errorf("parameter %+v", p)
	}

	_, err = e.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/aws/service/eks/optimized-ami/1.99/nope")})
	var notFound *ssmtypes.ParameterNotFound
	if !errors.As(err, &notFound) {
		t.Errorf("unknown parameter: want *types.ParameterNotFound, got %T %v", err, err)
	}

	// A new AMI release moves the parameter.
	e.sim.SetParameter(al2023Parameter, "ami-0a2023000000000a0")
	out, err = e.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(al2023Parameter)})
	if err != nil || aws.ToString(out.Parameter.Value) != "ami-0a2023000000000a0" || out.Parameter.Version != 2 {
		t.Errorf("after SetParameter: %+v %v", out, err)
	}
	e.sim.FailNext("AmazonSSM.GetParameter", "InternalServerError", 500, 1)
	if _, err := e.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(al2023Parameter)}); err != nil {
		t.Errorf("one injected 500 is retried: %v", err)
	}
}
