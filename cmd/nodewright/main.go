// Command nodewright is the node autoscaler's controller.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/nodewright/nodewright/pkg/operator"
	"github.com/nodewright/nodewright/pkg/simulate"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "simulate" {
		os.Exit(simulate.Main(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	opts, err := operator.ParseOptions(os.Args[1:], operator.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "nodewright: %v\n", err)
		os.Exit(2)
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "nodewright: loading kubeconfig: %v\n", err)
		os.Exit(1)
	}
	op, err := operator.New(cfg, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nodewright: %v\n", err)
		os.Exit(1)
	}
	ctx := ctrl.SetupSignalHandler()
	cloud, err := op.AWS(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nodewright: %v\n", err)
		os.Exit(1)
	}
	if err := op.RegisterControllers(ctx, cloud); err != nil {
		fmt.Fprintf(os.Stderr, "nodewright: %v\n", err)
		os.Exit(1)
	}
	if err := op.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "nodewright: %v\n", err)
		os.Exit(1)
	}
}
