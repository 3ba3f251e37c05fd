// Package iam evaluates the AWS calls the EC2 simulator recorded (its audit
// log, ec2sim.Call) against an IAM identity policy with a real IAM policy
// evaluator, @cloud-copilot/iam-simulate: the end-to-end suites prove with it
// that the policy the chart ships (charts/nodewright/docs/iam-policy.json)
// allows everything nodewright does.
//
// The evaluator is a Node.js library under AGPL-3.0. It stays a test-time
// tool in this folder: package.json and package-lock.json pin it, `make
// iam-tools` installs it (npm ci), evaluate.mjs runs it, and this package
// talks to that script as a child process, so nothing of it is linked into
// nodewright. Only tests import this package.
package iam

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/nodewright/nodewright/test/ec2sim"
)

// Vars fill a policy's placeholders: CLUSTER_NAME for ${CLUSTER_NAME}, and
// so on.
type Vars map[string]string

// Denial is a check the policy does not allow.
type Denial struct {
	// Call is the API call that made the check, as in ec2sim.Call.Action.
	Call string
	// Check is the authorization that failed.
	Check ec2sim.Check
	// Decision is ImplicitlyDenied or ExplicitlyDenied.
	Decision string
	// Reasons say which statement would grant it and which of its
	// conditions the request fails, or that none names the resource.
	Reasons []string
	// Count is how many recorded checks were denied this same way.
	Count int
}

func (d Denial) String() string {
	s := fmt.Sprintf("%s: %s on %s %s", d.Call, d.Check.Action, d.Check.Resource, d.Decision)
	if d.Count > 1 {
		s += fmt.Sprintf(" (%d times)", d.Count)
	}
	if d.Check.Note != "" {
		s += " [" + d.Check.Note + "]"
	}
	for _, r := range d.Reasons {
		s += "\n    " + r
	}
	return s
}

// Dir is this folder: the evaluator script and its node_modules.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// ChartPolicy is the policy the chart ships.
func ChartPolicy() string {
	return filepath.Join(Dir(), "..", "..", "charts", "nodewright", "docs", "iam-policy.json")
}

// ErrNotInstalled says the evaluator is missing: `make iam-tools` installs it.
var ErrNotInstalled = errors.New("the IAM policy evaluator is not installed: run `make iam-tools` (npm ci --prefix test/iam)")

// Installed returns ErrNotInstalled (wrapped with what is missing) unless
// node and the evaluator's packages are there.
func Installed() error {
	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("%w; node is not on PATH: %v", ErrNotInstalled, err)
	}
	if _, err := os.Stat(filepath.Join(Dir(), "node_modules", "@cloud-copilot", "iam-simulate", "package.json")); err != nil {
		return fmt.Errorf("%w; %v", ErrNotInstalled, err)
	}
	return nil
}

type result struct {
	Call               int      `json:"call"`
	Check              int      `json:"check"`
	Decision           string   `json:"decision"`
	Engine             string   `json:"engine"`
	Reasons            []string `json:"reasons"`
	IgnoredContextKeys []string `json:"ignoredContextKeys"`
}

// Evaluate evaluates every check of calls against the policy file with vars
// filled in, and returns the denied ones, equal denials of several calls
// merged. An error means the evaluation itself failed: the evaluator is not
// installed, the policy does not parse or leaves a placeholder unfilled, or
// a check names an action IAM does not know.
func Evaluate(ctx context.Context, policyFile string, vars Vars, calls []ec2sim.Call) ([]Denial, error) {
	if err := Installed(); err != nil {
		return nil, err
	}
	// The evaluator reads the policy in its own process; reading it here too
	// tells go test's cache that the result depends on the file, so an edited
	// policy is evaluated again rather than passing from the cache.
	if _, err := os.ReadFile(policyFile); err != nil {
		return nil, fmt.Errorf("reading the IAM policy: %w", err)
	}
	args := []string{filepath.Join(Dir(), "evaluate.mjs"), "--policy", policyFile}
	names := make([]string, 0, len(vars))
	for name := range vars {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		args = append(args, "--var", name+"="+vars[name])
	}
	in, err := json.Marshal(calls)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = Dir()
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("evaluating %d calls against %s: %w: %s", len(calls), policyFile, err, strings.TrimSpace(stderr.String()))
	}
	var out struct{ Results []result }
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("reading the evaluator's answer: %w", err)
	}
	var denials []Denial
	index := map[string]int{}
	for _, r := range out.Results {
		if r.Decision == "Allowed" {
			continue
		}
		if r.Call >= len(calls) || r.Check >= len(calls[r.Call].Checks) {
			return nil, fmt.Errorf("the evaluator answered for call %d check %d, which does not exist", r.Call, r.Check)
		}
		d := Denial{Call: calls[r.Call].Action, Check: calls[r.Call].Checks[r.Check], Decision: r.Decision, Reasons: r.Reasons, Count: 1}
		key, _ := json.Marshal([]any{d.Call, d.Check.Action, d.Check.Resource, d.Check.Context})
		if i, ok := index[string(key)]; ok {
			denials[i].Count++
			continue
		}
		index[string(key)] = len(denials)
		denials = append(denials, d)
	}
	return denials, nil
}
