package harness

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// A restarted kube-apiserver keeps its data (etcd), its port and the
// certificates clients trust: the same client reads what it wrote before.
// Fails when the apiserver gets envtest's random certificate directory
// (tried removing `apiserver.CertDir = ...` in Start: the restart
// generated a new serving CA and the Get failed with "tls: failed to verify
// certificate: x509: certificate signed by unknown authority").
func TestRestartAPIServerKeepsClientsWorking(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cp, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			t.Error(err)
		}
	}()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before-restart", Namespace: "default"}, Data: map[string]string{"k": "v"}}
	if err := cp.Client.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if err := cp.RestartAPIServer(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	cp.Eventually(t, 30*time.Second, "the ConfigMap read through the restarted apiserver", func(ctx context.Context) (bool, error) {
		got := &corev1.ConfigMap{}
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(cm), got); err != nil {
			return false, err
		}
		return got.Data["k"] == "v", nil
	})
}
