// Package controllers holds what the reconcilers under it share: the cache
// indexes they look objects up by, and their registration on a manager.
package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/nodewright/nodewright/apis/v1"
)

// Cache index names.
const (
	// NodeProviderID indexes Nodes by spec.providerID: a NodeClaim finds its
	// Node by the instance it launched.
	NodeProviderID = "spec.providerID"
	// NodeClaimProviderID indexes NodeClaims by status.providerID.
	NodeClaimProviderID = "status.providerID"
	// PodNodeName indexes Pods by spec.nodeName, for draining.
	PodNodeName = "spec.nodeName"
	// NodeClaimInstanceID indexes NodeClaims by the last path element of
	// status.providerID (the cloud's instance id), which is all a cloud's
	// interruption notice names.
	NodeClaimInstanceID = "status.providerID.instanceID"
)

// SetupIndexes registers the indexes on the manager's cache.
func SetupIndexes(ctx context.Context, mgr manager.Manager) error {
	return Index(ctx, mgr.GetFieldIndexer())
}

// Index registers the indexes on a cache (a manager's, or one a test runs
// on its own).
func Index(ctx context.Context, idx client.FieldIndexer) error {
	for _, i := range []struct {
		obj client.Object
		key string
		fn  client.IndexerFunc
	}{
		{&corev1.Node{}, NodeProviderID, func(o client.Object) []string { return nonEmpty(o.(*corev1.Node).Spec.ProviderID) }},
		{&v1.NodeClaim{}, NodeClaimProviderID, func(o client.Object) []string { return nonEmpty(o.(*v1.NodeClaim).Status.ProviderID) }},
		{&v1.NodeClaim{}, NodeClaimInstanceID, func(o client.Object) []string { return nonEmpty(InstanceID(o.(*v1.NodeClaim).Status.ProviderID)) }},
		{&corev1.Pod{}, PodNodeName, func(o client.Object) []string { return nonEmpty(o.(*corev1.Pod).Spec.NodeName) }},
	} {
		if err := idx.IndexField(ctx, i.obj, i.key, i.fn); err != nil {
			return fmt.Errorf("indexing %T by %s: %w", i.obj, i.key, err)
		}
	}
	return nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// InstanceID is the last path element of a provider ID (aws:///zone/i-123
// gives i-123), or "" for an empty one.
func InstanceID(providerID string) string {
	return providerID[strings.LastIndex(providerID, "/")+1:]
}

// EnqueueNodePoolOfClaim maps a NodeClaim event to a reconcile of the
// NodePool named by its karpenter.sh/nodepool label: for controllers of a
// pool that depends on its claims (counts, status).
var EnqueueNodePoolOfClaim = handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
	if name := o.GetLabels()[v1.NodePoolLabelKey]; name != "" {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: name}}}
	}
	return nil
})
