package simulate

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// files is a repeatable -f flag.
type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

// Main runs `nodewright simulate` with args (after the subcommand) and
// returns the exit code: 0, 1 when reading or planning failed, 2 for bad
// usage or bad YAML.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nodewright simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var paths files
	fs.Var(&paths, "f", "a YAML file of NodePools, EC2NodeClasses, Pods, Deployments, ReplicaSets, StatefulSets or Jobs, and Nodes with the Pods bound to them for a consolidation preview (repeatable; - for standard input)")
	minSavings := fs.Float64("consolidation-min-savings", 0.10, "share of a node's price a consolidation replace must save, as the controller's flag")
	region := fs.String("catalog", "", "the region whose catalog to plan with (default: from the NodePools' zones, else "+DefaultRegion+")")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: nodewright simulate -f nodepools.yaml -f pods.yaml [--catalog region]")
		fmt.Fprintln(stderr, "Plans what nodewright would launch for the workloads, without a cluster or an AWS account.")
		fmt.Fprintln(stderr, "Given Nodes (labelled with instance type, zone, capacity type and karpenter.sh/nodepool) and Pods bound to them")
		fmt.Fprintln(stderr, "(spec.nodeName), it also previews what consolidation would delete or replace, and the saving.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(paths) == 0 || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	contents := map[string][]byte{}
	for _, p := range paths {
		var data []byte
		var err error
		if p == "-" {
			data, err = io.ReadAll(stdin)
		} else {
			data, err = os.ReadFile(p)
		}
		if err != nil {
			fmt.Fprintf(stderr, "nodewright simulate: %v\n", err)
			return 1
		}
		contents[p] = data
	}
	in, errs := Load(contents, paths)
	if len(errs) > 0 {
		for _, err := range errs {
			fmt.Fprintf(stderr, "nodewright simulate: %v\n", err)
		}
		return 2
	}
	if *minSavings < 0 || *minSavings >= 1 {
		fmt.Fprintf(stderr, "nodewright simulate: --consolidation-min-savings must be a fraction in [0, 1), got %v\n", *minSavings)
		return 2
	}
	rep, err := Run(in, *region, *minSavings)
	if err != nil {
		fmt.Fprintf(stderr, "nodewright simulate: %v\n", err)
		return 1
	}
	if err := rep.Print(stdout); err != nil {
		fmt.Fprintf(stderr, "nodewright simulate: %v\n", err)
		return 1
	}
	return 0
}
