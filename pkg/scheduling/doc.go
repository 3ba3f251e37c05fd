// Package scheduling decides where pending pods go: onto existing or in-flight
// nodes, or onto new nodes it chooses from the catalog, as cheaply as it can.
// It is pure: plain values in (pods, nodes, NodePools with their instance
// types, DaemonSets), a Plan out, no client, no clock, no randomness, so the
// same input always gives the same plan and it can be benchmarked alone.
//
// The rules it applies are kube-scheduler's (resources, node selectors and
// affinity, taints, topology spread, pod affinity and anti-affinity, host
// ports, volume zones) so that the nodes it plans are ones the real scheduler
// will bind the pods to; test/e2e checks that against the real binary.
//
// Files by concern: solver.go (the solve and placing pods), build.go (the
// state built from the input), compat.go (which pools a pod group fits),
// domains.go (zones and topology checks), offerings.go (instance types,
// offerings, prices, limits), open.go (opening new nodes and finishing
// their claims), pack.go (packing shareable pods), pod.go (reading pods),
// topology.go (terms), consolidation.go (consolidation's entry point).
package scheduling
