// Package chaos runs nodewright through every fault at once and checks it
// keeps its promises: one scenario (TestChaos) on the real control plane
// (test/harness), kwok and the EC2 simulator (test/ec2sim), with nodewright
// as two leader-elected replicas in child processes it can kill. EC2
// throttles 30 % of calls, half the pools have no capacity, the leader is
// SIGKILLed mid-launch and mid-drain, leadership is handed over, the API
// server restarts, a fifth of the spot nodes are interrupted at once and the
// interruption queue delivers duplicates, out of order, and poison. A
// watcher fails the run on a leaked or missing instance, a PDB violated, a
// pod pending too long, a claim stuck deleting, a duplicate launch or
// controller memory growth. designs/reliability.md has the faults, the
// invariants and the measured results.
//
// The suite takes minutes, so `go test ./...` skips it: it runs with
// NODEWRIGHT_CHAOS=1, which `make chaos` sets.
package chaos
