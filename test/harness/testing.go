package harness

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Main starts one control plane for a test package, runs its tests, stops the
// control plane and exits. It sets *cp before the tests run. Use it from
// TestMain:
//
//	var cp *harness.ControlPlane
//	func TestMain(m *testing.M) { harness.Main(m, harness.Options{}, &cp) }
//
// With -short (`make unit`) the package's tests are not run: every one of them
// needs the control plane. Each setup runs once the control plane is up, with
// a context that lasts until the tests end (informers a package shares).
func Main(m *testing.M, opts Options, cp **ControlPlane, setup ...func(context.Context) error) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("harness: -short: not running tests that need a control plane")
		os.Exit(0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	started, err := Start(ctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "harness: %v\n", err)
		os.Exit(1)
	}
	*cp = started
	run, stop := context.WithCancel(context.Background())
	for _, s := range setup {
		if err := s(run); err != nil {
			fmt.Fprintf(os.Stderr, "harness: setting up: %v\n", err)
			stop()
			_ = started.Stop()
			os.Exit(1)
		}
	}
	code := m.Run()
	stop()
	if err := started.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "harness: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// Namespace creates a namespace for one test, named after it, and deletes it when
// the test ends, so tests sharing a control plane never see each other's objects.
func (c *ControlPlane) Namespace(t testing.TB) string {
	t.Helper()
	name := strings.ToLower(t.Name())
	name = strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			return r
		}
		return '-'
	}, name)
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.Trim(name, "-") + "-" + rand.String(5)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = c.Client.Delete(context.Background(), ns)
	})
	return name
}

// Name returns a name unique to this test run with the given prefix, for
// cluster-scoped objects (NodePools, EC2NodeClasses, Nodes).
func Name(prefix string) string { return prefix + "-" + rand.String(6) }

// Eventually polls condition every interval until it reports done, fails the
// test with the last error (and any crashed component) after timeout.
func (c *ControlPlane) Eventually(t testing.TB, timeout time.Duration, what string, condition func(ctx context.Context) (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		// Each attempt gets its own deadline: cut short by the overall one,
		// it would fail with a deadline or rate-limiter error that hides why
		// the test is still waiting.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		done, err := condition(actx)
		if err != nil {
			last = err
			return false, nil
		}
		return done, nil
	})
	if err != nil {
		t.Fatalf("waiting %s for %s: %v (last error: %v)\n%v", timeout, what, err, last, c.Healthy())
	}
}
