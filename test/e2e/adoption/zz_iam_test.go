package adoption

import (
	"context"
	"testing"
	"time"
)

// TestIAMPolicyAllowsEveryCall evaluates every AWS call nodewright made on
// Karpenter's resources (terminating its instances, reading and deleting
// its instance profile, launching replacements in its pools) against the
// chart's IAM policy: on AWS a denied one fails with UnauthorizedOperation.
// It runs last (this file sorts last); alone (-run) it sees only the calls
// of nodewright's first moments. Tried narrowing the policy's instance
// profile resources to "${CLUSTER_NAME}_1*": iam:GetInstanceProfile of
// Karpenter's profile is denied.
func TestIAMPolicyAllowsEveryCall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := e.CheckIAM(ctx)
	if err != nil {
		t.Fatalf("IAM policy check of %d calls: %v", n, err)
	}
	t.Logf("the chart's IAM policy allows all %d AWS calls nodewright made", n)
}
