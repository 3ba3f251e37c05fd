package aws

import (
	"context"
	"slices"
	"testing"

	"github.com/samber/lo"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
)

type versionNow struct{ v string }

func (s *versionNow) KubernetesVersion(context.Context) (string, error) { return s.v, nil }

// An alias resolves to the AMIs of the control plane's version at the time
// of the resolution: after an upgrade to 1.38 the class moves to the 1.38
// image (and drift replaces the nodes), with no restart. Fails when the
// resolver uses the version given at start (tried: kubernetesVersion
// returning opts.KubernetesVersion).
func TestAliasFollowsTheControlPlaneVersion(t *testing.T) {
	e := newEnv(t)
	versions := &versionNow{v: "1.37"}
	opts := testOptions
	opts.Version = versions
	r, err := NewNodeClassResolver(e.clients, opts)
	if err != nil {
		t.Fatal(err)
	}
	ids := func() []string {
		t.Helper()
		status, err := r.Resolve(context.Background(), seedNodeClass(t))
		if err != nil {
			t.Fatal(err)
		}
		return lo.Map(status.AMIs, func(a awsv1.AMI, _ int) string { return a.ID })
	}
	if got := ids(); !slices.Contains(got, "ami-0a2023000000000a1") {
		t.Fatalf("1.37 AMIs: %v", got)
	}
	// EKS publishes the 1.38 image; the control plane is upgraded.
	e.sim.SetParameter("/aws/service/eks/optimized-ami/1.38/amazon-linux-2023/x86_64/standard/recommended/image_id", "ami-0a2023000000000a0")
	versions.v = "1.38"
	if got := ids(); !slices.Equal(got, []string{"ami-0a2023000000000a0"}) {
		t.Errorf("after the upgrade to 1.38: %v, want only the 1.38 image", got)
	}
}
