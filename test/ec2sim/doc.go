// Package ec2sim is nodewright's EC2, Pricing and SSM simulator: an HTTP
// server that speaks the wire protocols aws-sdk-go-v2 uses (EC2 Query with XML
// responses and the EC2 error envelope; JSON 1.1 for Pricing and SSM), so the
// AWS provider runs its real SDK clients against it by setting BaseEndpoint.
//
// The read side answers from fixed data: instance types and prices from the
// catalog snapshot, the region's zones, subnets, security groups, images and
// SSM parameters from a Scenario.
//
// The write side keeps state, the way EC2 would for one account:
//
//   - Launch templates (CreateLaunchTemplate, DescribeLaunchTemplates,
//     DeleteLaunchTemplate), one version each; LaunchTemplate returns what a
//     provider stored, user data included, for tests to inspect.
//   - Instant fleets (CreateFleet, Type=instant only). Each override is a
//     capacity pool (type, zone, spot or on-demand); the spot or on-demand
//     allocation strategy orders the pools by the simulator's prices and
//     capacity, pools that fail add entries to the answer's errors with EC2's
//     codes (InsufficientInstanceCapacity, UnfulfillableCapacity,
//     MaxSpotInstanceCountExceeded, InvalidFleetConfiguration, Unsupported,
//     ...) while other pools fill the request, and a repeated ClientToken gets
//     the first answer again.
//   - Instances (DescribeInstances, TerminateInstances, CreateTags): pending
//     for a launch delay, running, shutting-down for a shutdown delay,
//     terminated, then gone after a retention. Simulated time is the wall
//     clock plus Advance, so tests jump over delays instead of sleeping.
//   - Spot interruptions (Interrupt): an EventInterrupted, then termination
//     after SpotInterruptionNotice.
//
// Watch reports every instance's life as events; NodeBridge uses them to
// register and delete the Kubernetes Nodes an EKS node's kubelet and the cloud
// node lifecycle controller would, for kwok to run. Tests inject faults per
// action (FailNext, FailAlways, Throttle, ThrottleRate) and per pool
// (SetCapacity, InsufficientCapacity, SpotPoolsOutOfCapacity,
// PartialFulfillment, SetSpotInstanceLimit), change spot prices (SetSpotPrice)
// and SSM parameters (SetParameter); Heal removes the faults. Every method is
// safe for concurrent use.
package ec2sim
