package chaos

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"testing"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/nodewright/nodewright/test/env"
)

// enableEnv runs the suite when "1"; `make chaos` sets it.
const enableEnv = "NODEWRIGHT_CHAOS"

// controllerEnv, set in a child process of the suite's test binary, holds
// the controllerSpec it runs nodewright with instead of the tests.
const controllerEnv = "NODEWRIGHT_CHAOS_CONTROLLER"

// electedMessage is logged by a child once its manager has won the Lease;
// the suite reads it from the child's output to know which replica leads.
const electedMessage = "chaos replica elected leader"

// controllerSpec is what a child process needs to run nodewright: the
// operator wiring of test/env, pointed at the parent's simulator. The
// kubeconfig comes in KUBECONFIG, as in a pod.
type controllerSpec struct {
	Controller env.Controller
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(controllerEnv); spec != "" {
		os.Exit(runController(spec))
	}
	flag.Parse()
	if os.Getenv(enableEnv) != "1" || testing.Short() {
		fmt.Printf("chaos: skipped; `make chaos` runs it (%s=1)\n", enableEnv)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runController is a child process: nodewright as cmd/nodewright runs it,
// with leader election, until SIGTERM (which releases the Lease) or SIGKILL.
func runController(raw string) int {
	var spec controllerSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "chaos controller: reading %s: %v\n", controllerEnv, err)
		return 2
	}
	cfg, err := config.GetConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos controller: loading kubeconfig: %v\n", err)
		return 1
	}
	ctx := ctrl.SetupSignalHandler()
	op, err := spec.Controller.Build(ctx, cfg, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos controller: %v\n", err)
		return 1
	}
	go func() {
		select {
		case <-op.Elected():
			ctrl.Log.WithName("chaos").Info(electedMessage, "pid", os.Getpid())
		case <-ctx.Done():
		}
	}()
	if err := op.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "chaos controller: %v\n", err)
		return 1
	}
	return 0
}
