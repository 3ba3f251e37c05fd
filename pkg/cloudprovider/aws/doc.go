// Package aws is nodewright's AWS cloud provider, and the only package that
// imports the AWS SDK. Every AWS call goes through the real aws-sdk-go-v2
// clients (clients.go); tests point them at test/ec2sim with BaseEndpoint.
//
// What each file does:
//
//   - instancetypes.go: the region's catalog (types, zonal offerings, spot and
//     on-demand prices) from EC2 and Pricing, over the embedded snapshot.
//   - nodeclass.go, amis.go: resolve an EC2NodeClass's selectors (subnets,
//     security groups, AMIs by alias through SSM or by tags/id/name/owner,
//     the instance profile) into its status and conditions;
//     nodeclass_controller.go keeps that status current and, with a
//     finalizer, deletes a deleted node class's launch templates once no
//     NodeClaim uses it.
//   - nodeclasscatalog.go: a NodePool's catalog, the region's narrowed to its
//     node class's zones and the types its AMIs run on.
//   - launchtemplate.go, userdata.go: content-addressed launch templates with
//     nodeadm (AL2023) user data that registers the node with its labels and
//     taints; launchtemplate_cleanup.go deletes those no launch has asked for
//     within a TTL (LaunchTemplateSweeper), never one a launch is about to use.
//   - instance.go: Create through CreateFleet (type instant), marking pools
//     out of capacity and falling back from spot to on-demand; Delete, Get and
//     List by the tags nodewright puts on its instances.
//   - cloudprovider.go: CloudProvider, the cloudprovider.CloudProvider
//     implementation, and Catalog.
//
// The launch path never resolves selectors itself: it reads the node class's
// status, so a launch costs only the fleet call (and a tag lookup that keeps
// Create idempotent), and a node class that is not Ready stops launches with
// a NodeClassNotReadyError that says why.
package aws
