package aws

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nodewright/nodewright/test/harness"
)

// The control plane is started by the first test that needs it, not by
// TestMain: most of this package's tests need only the EC2 simulator and must
// keep running under -short, which harness.Main would skip entirely.
var controlPlane struct {
	once sync.Once
	cp   *harness.ControlPlane
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cp := controlPlane.cp; cp != nil {
		if err := cp.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the control plane: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// needControlPlane returns the package's control plane, starting it on first
// use; under -short the test is skipped.
func needControlPlane(t *testing.T) *harness.ControlPlane {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a control plane; skipped with -short")
	}
	controlPlane.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		controlPlane.cp, controlPlane.err = harness.Start(ctx, harness.Options{})
	})
	if controlPlane.err != nil {
		t.Fatalf("starting the control plane: %v", controlPlane.err)
	}
	return controlPlane.cp
}
