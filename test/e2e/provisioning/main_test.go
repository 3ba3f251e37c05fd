// Package provisioning checks the first vertical slice end to end: the seed
// NodePool, EC2NodeClass and batch Job on a local cluster with nodewright,
// its AWS provider and the EC2 simulator.
package provisioning

import (
	"context"
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
	if code != 0 {
		fmt.Fprintf(os.Stderr, "nodewright's log: %s\n", log)
	}
	return code
}
