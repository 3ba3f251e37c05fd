// Package operator wires nodewright together: it builds the controller-runtime
// manager (scheme, leader election, health and metrics endpoints) from Options,
// and is where each controller package is registered. It holds no logic of its
// own beyond that wiring, so cmd/nodewright stays a few lines.
package operator
