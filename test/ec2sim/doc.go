// Package ec2sim is nodewright's EC2, Pricing, SSM and SQS simulator: an HTTP
// server that speaks the wire protocols aws-sdk-go-v2 uses (EC2 Query with XML
// responses and the EC2 error envelope; JSON 1.1 for Pricing and SSM; JSON 1.0
// for SQS), so the AWS provider runs its real SDK clients against it by
// setting BaseEndpoint.
//
// The read side answers from fixed data: instance types and prices from the
// catalog snapshot, the region's zones, subnets, security groups, images and
// SSM parameters from a Scenario.
//
// The write side keeps state, the way EC2 would for one account:
//
//   - Launch templates (CreateLaunchTemplate, DescribeLaunchTemplates,
//     DeleteLaunchTemplate), one version each, at most the account's quota
//     (SetLaunchTemplateQuota; MaxTemplateLimitExceeded past it);
//     LaunchTemplate returns what a provider stored, user data included,
//     for tests to inspect.
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
//   - Interruptible capacity reservations (ReclaimCapacityReservation): an
//     EventInterrupted for each of the reservation's instances, then
//     termination after CapacityReservationInterruptionNotice.
//
// SQS standard queues (CreateQueue, GetQueueUrl, GetQueueAttributes,
// SendMessage, ReceiveMessage, DeleteMessage, DeleteMessageBatch, PurgeQueue)
// carry the interruption feed. Visibility timeouts and retention run on the
// simulated clock; long polls wait in real time and end early when a message
// becomes visible, the request ends or the server closes. RouteEventsTo stands
// in for the EventBridge rules of an interruption queue: from then on the
// queue gets, as EventBridge's JSON, a spot interruption warning for each
// Interrupt, a capacity reservation interruption warning for each instance
// of a reclaimed reservation, a rebalance recommendation for each Rebalance, an AWS Health
// scheduled change for each ScheduleEvent and a state-change notification for
// every state an instance enters. QueueMessages and SendRaw let tests look at
// and poison the queue; SetDeliveryFaults makes a queue take the liberties
// SQS allows a standard queue (a deleted message delivered again, messages
// out of order).
//
// Watch reports every instance's life as events; NodeBridge uses them to
// register and delete the Kubernetes Nodes an EKS node's kubelet and the cloud
// node lifecycle controller would, for kwok to run. Tests inject faults per
// action (FailNext, FailAlways, Throttle, ThrottleRate, which also takes
// EveryAction) and per pool
// (SetCapacity, InsufficientCapacity, SpotPoolsOutOfCapacity,
// PartialFulfillment, SetSpotInstanceLimit), change spot prices (SetSpotPrice)
// and SSM parameters (SetParameter); Heal removes the faults. Every method is
// safe for concurrent use.
//
// AuditLog returns every call answered, with the IAM authorizations AWS would
// make for it (action, ARNs, request and resource tags, condition keys; see
// audit.go), for test/iam to evaluate against the chart's IAM policy.
package ec2sim
