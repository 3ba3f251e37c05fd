// Package harness starts a real Kubernetes control plane for nodewright's tests:
// etcd and kube-apiserver (through controller-runtime's envtest) with nodewright's
// CRDs installed and, for end-to-end suites, kube-scheduler,
// kube-controller-manager and kwok, so that Nodes become Ready and bound pods run.
//
// The binaries come from bin/, built from pinned modules by `make tools`; the
// harness never downloads anything. Start one control plane per test package
// (see Main) and give each test its own namespace (see Namespace).
package harness
