package aws

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// TestHasTagsWildcards: a selector tag value with EC2's wildcards keeps the
// resources EC2's filter found with it (Karpenter's docs select subnets by
// `Name: "*Public*"`). Fails when hasTags compares values exactly except
// for a bare "*" (the code before: every "*private*" subnet was dropped and
// the class had no subnet).
func TestHasTagsWildcards(t *testing.T) {
	have := []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String("private-2a")}, {Key: aws.String("Tier"), Value: aws.String("private")}}
	for _, tc := range []struct {
		want map[string]string
		ok   bool
	}{
		{map[string]string{"Name": "private-2a"}, true},
		{map[string]string{"Name": "private-2b"}, false},
		{map[string]string{"Name": "*"}, true},
		{map[string]string{"Name": "*private*"}, true},
		{map[string]string{"Name": "*Private*"}, false}, // EC2 filters are case-sensitive
		{map[string]string{"Name": "private-2?"}, true},
		{map[string]string{"Name": "private-?"}, false},
		{map[string]string{"Name": "priv*2a", "Tier": "pri*"}, true},
		{map[string]string{"Name": "*2a", "Tier": "public"}, false},
		{map[string]string{"Name": `private\*`}, false},  // an escaped * is literal
		{map[string]string{"Name": "private.2a"}, false}, // no regexp leaks through
		{map[string]string{"Owner": "*"}, false},
	} {
		if got := hasTags(have, tc.want); got != tc.ok {
			t.Errorf("hasTags(%v) = %v, want %v", tc.want, got, tc.ok)
		}
	}
}
