package provisioning

import "testing"

// TestIAMPolicyAllowsEveryCall checks every AWS call the suite's earlier tests
// made nodewright do against the chart's IAM policy (see checkIAM). It runs
// last (go test runs a package's tests in file order, and this file sorts
// last), inside m.Run, so go test's cache records that the result depends on
// the policy file: an edited policy is evaluated again, not passed from the
// cache. TestMain checks after filtered runs that skip it.
func TestIAMPolicyAllowsEveryCall(t *testing.T) {
	if err := checkIAM(); err != nil {
		t.Fatal(err)
	}
}
