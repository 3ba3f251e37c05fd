// Package aws is nodewright's AWS cloud provider, and the only package that
// imports the AWS SDK. It turns EC2 and Pricing answers into the catalog the
// solver reads (instancetypes.go), and will launch and terminate instances
// through EC2 Fleet. Every AWS call goes through the real aws-sdk-go-v2 clients;
// tests point them at test/ec2sim with BaseEndpoint.
package aws
