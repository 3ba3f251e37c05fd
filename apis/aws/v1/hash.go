package v1

import (
	karpv1 "github.com/nodewright/nodewright/apis/v1"
)

// Annotations on a NodeClaim recording the EC2NodeClass it was launched
// from, for drift.
const (
	EC2NodeClassHashAnnotationKey        = Group + "/ec2nodeclass-hash"
	EC2NodeClassHashVersionAnnotationKey = Group + "/ec2nodeclass-hash-version"
	// EC2NodeClassHashVersion is the version of EC2NodeClass.Hash: a claim
	// stamped with another is re-stamped, not drifted.
	EC2NodeClassHashVersion = "v1"
)

// Hash digests the fields of the class a launched instance cannot follow
// without being replaced (AMI family, user data, kubelet, block devices,
// metadata options, role or instance profile, tags, public IP, instance
// store policy, ...). The selector terms are left out: what they select
// changes without the spec changing, so drift compares the instance's AMI
// with status.amis instead. ipPrefixCount is left out too (see below).
func (nc *EC2NodeClass) Hash() string {
	spec := *nc.Spec.DeepCopy()
	spec.SubnetSelectorTerms, spec.SecurityGroupSelectorTerms, spec.AMISelectorTerms = nil, nil, nil
	spec.CapacityReservationSelectorTerms = nil
	// Karpenter does not hash ipPrefixCount either: the prefixes a launch
	// assigns are a warm start for the VPC CNI, which assigns more as pods
	// need them, so a running node does not need replacing for it.
	spec.IPPrefixCount = nil
	return karpv1.Digest(spec)
}
