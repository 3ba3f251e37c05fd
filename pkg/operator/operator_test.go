package operator

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nodewright/nodewright/test/harness"
)

var cp *harness.ControlPlane

func TestMain(m *testing.M) { harness.Main(m, harness.Options{}, &cp) }

// TestOperatorElectsLeaderAndServesProbes runs the manager against the real
// apiserver: it must take the Lease, answer its probes, and hand the Lease back
// when stopped so a standby replica takes over at once.
func TestOperatorElectsLeaderAndServesProbes(t *testing.T) {
	ns := cp.Namespace(t)
	probeAddr := freeAddr(t)
	op, err := New(cp.Config, Options{
		ClusterName: "test", MetricsAddr: "0", HealthProbeAddr: probeAddr, LeaderElection: true,
		Region: "ap-northeast-2", ClusterEndpoint: cp.Config.Host, ClusterCIDR: "10.100.0.0/16",
		LeaderElectionNamespace: ns, BatchIdleDuration: time.Second, BatchMaxDuration: 10 * time.Second, LogLevel: "error",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- op.Run(ctx) }()

	for _, path := range []string{"/healthz", "/readyz"} {
		cp.Eventually(t, 30*time.Second, path+" OK", func(ctx context.Context) (bool, error) {
			resp, err := http.Get("http://" + probeAddr + path)
			if err != nil {
				return false, err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false, fmt.Errorf("status %d", resp.StatusCode)
			}
			return true, nil
		})
	}
	lease := &coordinationv1.Lease{}
	key := client.ObjectKey{Namespace: ns, Name: leaderElectionID}
	cp.Eventually(t, 30*time.Second, "leader Lease held", func(ctx context.Context) (bool, error) {
		if err := cp.Client.Get(ctx, key, lease); err != nil {
			return false, err
		}
		return lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "", nil
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("operator stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("operator did not stop within 30s of its context ending")
	}
	if err := cp.Client.Get(context.Background(), key, lease); err != nil {
		t.Fatal(err)
	}
	if lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "" {
		t.Errorf("Lease still held by %q after stop; a standby would wait for it to expire", *lease.Spec.HolderIdentity)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
