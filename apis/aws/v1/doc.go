// Package v1 holds the karpenter.k8s.aws/v1 EC2NodeClass: how an AWS node is
// built (AMI, subnets, security groups, IAM, kubelet settings, disks). It is
// wire-compatible with Karpenter's AWS provider so existing manifests apply
// unchanged.
//
// +kubebuilder:object:generate=true
// +groupName=karpenter.k8s.aws
package v1
