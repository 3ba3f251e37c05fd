// Package v1 holds the karpenter.sh/v1 wire types nodewright serves: NodePool and
// NodeClaim. They are wire-compatible with Karpenter v1 so that a manifest written
// for Karpenter applies unchanged, and a manifest Karpenter rejects is rejected here
// too. Validation lives in the CRD (OpenAPI and CEL) rather than in a webhook, so it
// holds even when the controller is down.
//
// +kubebuilder:object:generate=true
// +groupName=karpenter.sh
package v1
