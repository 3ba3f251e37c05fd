// Package provisioning checks the first vertical slice end to end: the seed
// NodePool, EC2NodeClass and batch Job on a local cluster with nodewright,
// its AWS provider and the EC2 simulator.
package provisioning

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nodewright/nodewright/test/env"
	"github.com/nodewright/nodewright/test/fixtures"
	"github.com/nodewright/nodewright/test/harness"
)

var (
	cp  *harness.ControlPlane
	e   *env.Env
	log string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("provisioning: -short: not running end-to-end tests")
		os.Exit(0)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var err error
	if cp, err = harness.Start(ctx, harness.Options{Cluster: true}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	// Outside cp.Dir, which Stop removes: the log is what explains a failure.
	log = filepath.Join(os.TempDir(), "nodewright-e2e-provisioning.log")
	f, err := os.Create(log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer f.Close()
	if e, err = env.Start(ctx, cp, env.Options{Logs: f, InterruptionQueue: interruptionQueue}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := e.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	// The seed EC2NodeClass is shared by every test, unchanged.
	objs, err := fixtures.SeedObjects(fixtures.EC2NodeClassDefault)
	if err == nil {
		err = cp.Client.Create(ctx, objs[0])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	// A run filtered with -run skips TestIAMPolicyAllowsEveryCall: check here.
	if !iamChecked {
		if err := checkIAM(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
			code = 1
		}
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "nodewright's log: %s\n", log)
	}
	return code
}

// iamChecked says TestIAMPolicyAllowsEveryCall ran.
var iamChecked bool

// checkIAM evaluates every AWS call the tests made nodewright do against the
// chart's IAM policy; each must be allowed. Dropping the fleet
// TagSpecification (fleetTagSpecifications in pkg/cloudprovider/aws) fails
// it with "ec2:CreateFleet on arn:aws:ec2:ap-northeast-2:111122223333:fleet/*
// ImplicitlyDenied ... statement LaunchTaggedForTheCluster grants
// ec2:CreateFleet on this resource but its condition fails: StringEquals
// aws:RequestTag/kubernetes.io/cluster/my-cluster".
func checkIAM() error {
	iamChecked = true
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := e.CheckIAM(ctx)
	if err != nil {
		// The calls, for `node test/iam/evaluate.mjs --text --policy ... < calls`.
		calls := filepath.Join(os.TempDir(), "nodewright-e2e-provisioning-aws-calls.json")
		if b, jerr := json.Marshal(e.Sim.AuditLog()); jerr == nil && os.WriteFile(calls, b, 0o644) == nil {
			err = fmt.Errorf("%w\nthe simulator's audit log: %s", err, calls)
		}
		return fmt.Errorf("IAM policy check of %d calls: %w", n, err)
	}
	fmt.Printf("IAM: the chart's policy allows all %d AWS calls nodewright made\n", n)
	return nil
}
