// Package ec2sim is nodewright's EC2 and Pricing simulator: an HTTP server that
// speaks the wire protocols aws-sdk-go-v2 uses (EC2 Query with XML responses and
// the EC2 error envelope; the Pricing API's JSON 1.1), so the AWS provider runs
// its real SDK clients against it by setting BaseEndpoint. Instance types and
// prices come from the catalog snapshot, the region's zones, subnets, security
// groups and images from a Scenario, and tests inject faults: throttling,
// errors per action, changed spot prices.
package ec2sim
