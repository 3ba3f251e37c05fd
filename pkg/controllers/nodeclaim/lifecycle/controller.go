// Package lifecycle takes a NodeClaim from creation to a Ready node:
// Launched (the cloud provider started an instance), Registered (its Node
// joined; labels, taints and ownership synced, the unregistered taint lifted),
// Initialized (the Node is Ready, startup taints are gone and requested
// extended resources are advertised). A claim whose Node never registers,
// or registers and never initializes, is deleted after the registration TTL,
// so its pods get another node.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
	"github.com/nodewright/nodewright/pkg/controllers"
	"github.com/nodewright/nodewright/pkg/metrics"
)

// Recorder emits Kubernetes events.
type Recorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Launcher is the part of the cloud provider this controller uses.
type Launcher interface {
	Create(ctx context.Context, claim *v1.NodeClaim) (*v1.NodeClaim, error)
	// Delete terminates the instance Create launched for a claim deleted
	// while Create was in flight.
	Delete(ctx context.Context, claim *v1.NodeClaim) error
}

// Controller reconciles NodeClaims through their lifecycle.
type Controller struct {
	Kube     client.Client
	Cloud    Launcher
	Recorder Recorder
	// Live reads a claim from the apiserver when its launch could not be
	// recorded, to tell a deletion the cache has not seen yet from a
	// conflicting write; SetupWithManager sets the manager's API reader,
	// default Kube.
	Live client.Reader
	// RegistrationTTL is how long a launched claim may wait for its Node;
	// default 15 minutes.
	RegistrationTTL time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Reconcile advances one NodeClaim.
func (c *Controller) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	res, err := c.reconcile(ctx, req)
	if apierrors.IsConflict(err) {
		// Another writer (the kubelet, the drift or pod-events controller)
		// changed the claim or node since the cache saw it: expected, not an
		// error; look again with the new version.
		log.FromContext(ctx).V(1).Info("conflict, retrying", "nodeclaim", req.Name, "error", err.Error())
		return ctrl.Result{Requeue: true}, nil
	}
	return res, err
}

func (c *Controller) reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	nc := &v1.NodeClaim{}
	if err := c.Kube.Get(ctx, req.NamespacedName, nc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !nc.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	if !controllerutil.ContainsFinalizer(nc, v1.TerminationFinalizer) {
		patch := client.MergeFromWithOptions(nc.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(nc, v1.TerminationFinalizer)
		if err := c.Kube.Patch(ctx, nc, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer to nodeclaim %s: %w", nc.Name, err)
		}
	}
	if !isTrue(nc, v1.ConditionTypeLaunched) {
		// A claim that cannot launch (a misconfigured node class, an
		// error EC2 keeps returning) must not hold its pods forever: in
		// flight, it keeps them from being planned elsewhere.
		if waited := c.now().Sub(nc.CreationTimestamp.Time); waited > c.ttl() {
			log.FromContext(ctx).Info("nodeclaim never launched, deleting it", "nodeclaim", nc.Name, "waited", waited.String())
			c.Recorder.Eventf(nc, nil, corev1.EventTypeWarning, "LaunchTimeout", "Launch", "Not launched within %s", c.ttl())
			return ctrl.Result{}, client.IgnoreNotFound(c.Kube.Delete(ctx, nc))
		}
		return c.launch(ctx, nc)
	}
	node, err := c.node(ctx, nc)
	if err != nil {
		return ctrl.Result{}, err
	}
	if node == nil {
		return c.awaitRegistration(ctx, nc)
	}
	if !isTrue(nc, v1.ConditionTypeRegistered) {
		if err := c.register(ctx, nc, node); err != nil {
			return ctrl.Result{}, err
		}
	}
	if !isTrue(nc, v1.ConditionTypeInitialized) {
		return c.initialize(ctx, nc, node)
	}
	return ctrl.Result{}, nil
}

// launch asks the cloud for an instance. When no offering had capacity the
// claim is deleted: the offerings that failed are now cached as unavailable,
// so the next provisioning round plans around them.
func (c *Controller) launch(ctx context.Context, nc *v1.NodeClaim) (ctrl.Result, error) {
	logger := log.FromContext(ctx).WithValues("nodeclaim", nc.Name)
	launched, err := c.Cloud.Create(ctx, nc)
	switch {
	case cloudprovider.IsInsufficientCapacity(err):
		metrics.LaunchFailures.WithLabelValues(nc.Labels[v1.NodePoolLabelKey], "insufficient_capacity", errorCode(err)).Inc()
		c.Recorder.Eventf(nc, nil, corev1.EventTypeWarning, "InsufficientCapacity", "Launch", "No offering had capacity, deleting the NodeClaim: %v", err)
		logger.Info("insufficient capacity, deleting nodeclaim", "error", err.Error())
		if err := c.Kube.Delete(ctx, nc); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("deleting nodeclaim %s after insufficient capacity: %w", nc.Name, err)
		}
		return ctrl.Result{}, nil
	case cloudprovider.IsNodeClassNotReady(err):
		metrics.LaunchFailures.WithLabelValues(nc.Labels[v1.NodePoolLabelKey], "nodeclass_not_ready", errorCode(err)).Inc()
		return ctrl.Result{RequeueAfter: 10 * time.Second}, c.setCondition(ctx, nc, v1.ConditionTypeLaunched, metav1.ConditionFalse, "NodeClassNotReady", err.Error())
	case err != nil:
		metrics.LaunchFailures.WithLabelValues(nc.Labels[v1.NodePoolLabelKey], "error", errorCode(err)).Inc()
		c.Recorder.Eventf(nc, nil, corev1.EventTypeWarning, "LaunchFailed", "Launch", "Launching failed: %v", err)
		return ctrl.Result{}, fmt.Errorf("launching nodeclaim %s: %w", nc.Name, err)
	}
	// Labels the instance resolved (type, zone, capacity type...) first:
	// they are what a pending pod's selector needs to see on the claim. The
	// optimistic lock makes a reconcile that read a stale, not-yet-launched
	// copy fail here (Create was idempotent) instead of recording the
	// launch twice.
	patch := client.MergeFromWithOptions(nc.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if nc.Labels == nil {
		nc.Labels = map[string]string{}
	}
	for k, v := range launched.Labels {
		nc.Labels[k] = v
	}
	// And the annotations the cloud records for drift (its node class's hash).
	if len(launched.Annotations) > 0 && nc.Annotations == nil {
		nc.Annotations = map[string]string{}
	}
	for k, v := range launched.Annotations {
		nc.Annotations[k] = v
	}
	if err := c.Kube.Patch(ctx, nc, patch); err != nil {
		return ctrl.Result{}, c.abandon(ctx, nc, launched, fmt.Errorf("labelling nodeclaim %s: %w", nc.Name, err))
	}
	nc.Status.ProviderID = launched.Status.ProviderID
	nc.Status.ImageID = launched.Status.ImageID
	nc.Status.Capacity = launched.Status.Capacity
	nc.Status.Allocatable = launched.Status.Allocatable
	meta.SetStatusCondition(&nc.Status.Conditions, metav1.Condition{Type: v1.ConditionTypeLaunched, Status: metav1.ConditionTrue, Reason: "Launched", ObservedGeneration: nc.Generation})
	if err := c.Kube.Status().Update(ctx, nc); err != nil {
		return ctrl.Result{}, c.abandon(ctx, nc, launched, fmt.Errorf("recording launch of nodeclaim %s: %w", nc.Name, err))
	}
	metrics.NodeClaimsLaunched.WithLabelValues(nc.Labels[v1.NodePoolLabelKey], nc.Labels[corev1.LabelInstanceTypeStable],
		nc.Labels[v1.CapacityTypeLabelKey], nc.Labels[corev1.LabelTopologyZone]).Inc()
	logger.Info("launched", "providerID", nc.Status.ProviderID, "instanceType", nc.Labels[corev1.LabelInstanceTypeStable],
		"zone", nc.Labels[corev1.LabelTopologyZone], "capacityType", nc.Labels[v1.CapacityTypeLabelKey])
	c.Recorder.Eventf(nc, nil, corev1.EventTypeNormal, "Launched", "Launch", "Launched %s %s in %s",
		nc.Labels[v1.CapacityTypeLabelKey], nc.Labels[corev1.LabelInstanceTypeStable], nc.Labels[corev1.LabelTopologyZone])
	return ctrl.Result{RequeueAfter: 5 * time.Second}, nil
}

// abandon handles a launch that could not be recorded (failed with
// recordErr). When the claim was deleted while Create was in flight, nothing
// will ever record the instance, and the termination controller, seeing no
// provider ID, terminates nothing: the instance is terminated here rather
// than left to garbage collection. Otherwise recordErr is returned, and the
// retry's Create finds the same instance.
func (c *Controller) abandon(ctx context.Context, nc *v1.NodeClaim, launched *v1.NodeClaim, recordErr error) error {
	current := &v1.NodeClaim{}
	live := c.Live
	if live == nil {
		live = c.Kube
	}
	getErr := live.Get(ctx, client.ObjectKeyFromObject(nc), current)
	switch {
	case getErr != nil && !apierrors.IsNotFound(getErr):
		return errors.Join(recordErr, fmt.Errorf("checking whether nodeclaim %s was deleted: %w", nc.Name, getErr))
	case getErr == nil && current.DeletionTimestamp.IsZero():
		return recordErr
	}
	log.FromContext(ctx).Info("nodeclaim deleted while launching; terminating its instance", "nodeclaim", nc.Name, "providerID", launched.Status.ProviderID)
	if err := c.Cloud.Delete(ctx, launched); err != nil && !cloudprovider.IsNotFound(err) {
		return fmt.Errorf("terminating instance %s of nodeclaim %s, deleted while launching: %w", launched.Status.ProviderID, nc.Name, err)
	}
	if getErr == nil { // still there, being deleted: say why its instance went
		c.Recorder.Eventf(current, nil, corev1.EventTypeNormal, "LaunchAbandoned", "Launch", "Deleted while launching; terminated instance %s", launched.Status.ProviderID)
	}
	return nil
}

// node finds the claim's Node by provider id.
func (c *Controller) node(ctx context.Context, nc *v1.NodeClaim) (*corev1.Node, error) {
	var nodes corev1.NodeList
	if err := c.Kube.List(ctx, &nodes, client.MatchingFields{controllers.NodeProviderID: nc.Status.ProviderID}); err != nil {
		return nil, fmt.Errorf("finding node of nodeclaim %s: %w", nc.Name, err)
	}
	switch len(nodes.Items) {
	case 0:
		return nil, nil
	case 1:
		return &nodes.Items[0], nil
	default:
		return nil, fmt.Errorf("nodeclaim %s: %d nodes have provider id %s", nc.Name, len(nodes.Items), nc.Status.ProviderID)
	}
}

// awaitRegistration deletes a claim whose Node is overdue.
func (c *Controller) awaitRegistration(ctx context.Context, nc *v1.NodeClaim) (ctrl.Result, error) {
	launched := meta.FindStatusCondition(nc.Status.Conditions, v1.ConditionTypeLaunched)
	waited := c.now().Sub(launched.LastTransitionTime.Time)
	if waited < c.ttl() {
		return ctrl.Result{RequeueAfter: c.ttl() - waited}, nil
	}
	log.FromContext(ctx).Info("node did not register in time, deleting nodeclaim", "nodeclaim", nc.Name, "waited", waited.String())
	c.Recorder.Eventf(nc, nil, corev1.EventTypeWarning, "RegistrationTimeout", "Register", "No Node registered for %s within %s", nc.Status.ProviderID, c.ttl())
	return ctrl.Result{}, client.IgnoreNotFound(c.Kube.Delete(ctx, nc))
}

// register syncs the claim onto its Node: labels, annotations, taints (the claim's and
// its startup taints, without the unregistered one), the termination
// finalizer and an owner reference, so the Node goes when the claim goes.
func (c *Controller) register(ctx context.Context, nc *v1.NodeClaim, node *corev1.Node) error {
	// Optimistic lock: the merge patch replaces the whole taint list, which
	// would drop a taint the kubelet or another controller added since the
	// cache saw the node.
	patch := client.MergeFromWithOptions(node.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	var refused []string
	for k, v := range nc.Labels {
		if !nodeMayCarry(k) {
			refused = append(refused, k)
			continue
		}
		node.Labels[k] = v
	}
	if len(refused) > 0 {
		slices.Sort(refused)
		log.FromContext(ctx).Info("not copying restricted labels onto the node", "nodeclaim", nc.Name, "labels", refused)
		c.Recorder.Eventf(nc, nil, corev1.EventTypeWarning, "RestrictedLabels", "Register",
			"Not copied onto node %s: %s are in domains Kubernetes or nodewright owns (kubernetes.io, k8s.io, karpenter.sh); set them from the NodePool only if they are well-known labels", node.Name, strings.Join(refused, ", "))
	}
	node.Labels[v1.NodeRegisteredLabelKey] = "true"
	// The template's annotations (spec.template.metadata.annotations reach
	// the claim at launch) and the hashes drift compares, as Karpenter
	// puts them on its nodes.
	if len(nc.Annotations) > 0 && node.Annotations == nil {
		node.Annotations = map[string]string{}
	}
	maps.Copy(node.Annotations, nc.Annotations)
	var taints []corev1.Taint
	for _, t := range node.Spec.Taints {
		if !t.MatchTaint(&v1.UnregisteredNoExecuteTaint) {
			taints = append(taints, t)
		}
	}
	for _, want := range append(append([]corev1.Taint{}, nc.Spec.Taints...), nc.Spec.StartupTaints...) {
		if !hasTaint(taints, want) {
			taints = append(taints, want)
		}
	}
	node.Spec.Taints = taints
	controllerutil.AddFinalizer(node, v1.TerminationFinalizer)
	if !hasOwner(node, nc.UID) {
		node.OwnerReferences = append(node.OwnerReferences, metav1.OwnerReference{
			APIVersion: v1.SchemeGroupVersion.String(), Kind: "NodeClaim", Name: nc.Name, UID: nc.UID,
		})
	}
	if err := c.Kube.Patch(ctx, node, patch); err != nil {
		return fmt.Errorf("registering node %s of nodeclaim %s: %w", node.Name, nc.Name, err)
	}
	nc.Status.NodeName = node.Name
	meta.SetStatusCondition(&nc.Status.Conditions, metav1.Condition{Type: v1.ConditionTypeRegistered, Status: metav1.ConditionTrue, Reason: "Registered", ObservedGeneration: nc.Generation})
	if err := c.Kube.Status().Update(ctx, nc); err != nil {
		return fmt.Errorf("recording registration of nodeclaim %s: %w", nc.Name, err)
	}
	metrics.NodeClaimsRegistered.WithLabelValues(nc.Labels[v1.NodePoolLabelKey]).Inc()
	log.FromContext(ctx).Info("registered", "nodeclaim", nc.Name, "node", node.Name)
	return nil
}

// initialize marks the claim Initialized and Ready once its Node is Ready,
// its startup taints are gone and the extended resources the pods asked
// for are advertised.
func (c *Controller) initialize(ctx context.Context, nc *v1.NodeClaim, node *corev1.Node) (ctrl.Result, error) {
	if why := notInitialized(nc, node); why != "" {
		// A node that joined but never becomes usable (a CNI that never
		// starts, a startup taint nothing removes, a device plugin that
		// never advertises) would hold the pods planned onto it forever.
		registered := c.now()
		if cond := meta.FindStatusCondition(nc.Status.Conditions, v1.ConditionTypeRegistered); cond != nil {
			registered = cond.LastTransitionTime.Time
		}
		waited := c.now().Sub(registered)
		if waited >= c.ttl() {
			log.FromContext(ctx).Info("node did not initialize in time, deleting nodeclaim", "nodeclaim", nc.Name, "node", node.Name, "waited", waited.String(), "reason", why)
			c.Recorder.Eventf(nc, nil, corev1.EventTypeWarning, "InitializationTimeout", "Initialize", "Not initialized %s after registering (%s), deleting the NodeClaim", c.ttl(), why)
			return ctrl.Result{}, client.IgnoreNotFound(c.Kube.Delete(ctx, nc))
		}
		if err := c.setCondition(ctx, nc, v1.ConditionTypeInitialized, metav1.ConditionFalse, "NotInitialized", why); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{RequeueAfter: c.ttl() - waited}, nil
	}
	if node.Labels[v1.NodeInitializedLabelKey] != "true" {
		patch := client.MergeFromWithOptions(node.DeepCopy(), client.MergeFromWithOptimisticLock{})
		node.Labels[v1.NodeInitializedLabelKey] = "true"
		if err := c.Kube.Patch(ctx, node, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("labelling node %s initialized: %w", node.Name, err)
		}
	}
	meta.SetStatusCondition(&nc.Status.Conditions, metav1.Condition{Type: v1.ConditionTypeInitialized, Status: metav1.ConditionTrue, Reason: "Initialized", ObservedGeneration: nc.Generation})
	meta.SetStatusCondition(&nc.Status.Conditions, metav1.Condition{Type: v1.ConditionTypeReady, Status: metav1.ConditionTrue, Reason: "Ready", ObservedGeneration: nc.Generation})
	if err := c.Kube.Status().Update(ctx, nc); err != nil {
		return ctrl.Result{}, fmt.Errorf("recording initialization of nodeclaim %s: %w", nc.Name, err)
	}
	metrics.NodeClaimsInitialized.WithLabelValues(nc.Labels[v1.NodePoolLabelKey]).Inc()
	log.FromContext(ctx).Info("initialized", "nodeclaim", nc.Name, "node", node.Name)
	return ctrl.Result{}, nil
}

func notInitialized(nc *v1.NodeClaim, node *corev1.Node) string {
	ready := false
	for _, cond := range node.Status.Conditions {
		ready = ready || (cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue)
	}
	if !ready {
		return fmt.Sprintf("node %s is not Ready", node.Name)
	}
	for _, t := range nc.Spec.StartupTaints {
		if hasTaint(node.Spec.Taints, t) {
			return fmt.Sprintf("node %s still has startup taint %s", node.Name, t.ToString())
		}
	}
	if hasTaint(node.Spec.Taints, v1.UnregisteredNoExecuteTaint) {
		return fmt.Sprintf("node %s still has taint %s", node.Name, v1.UnregisteredNoExecuteTaint.ToString())
	}
	for name, q := range nc.Spec.Resources.Requests {
		if !extended(name) || q.IsZero() {
			continue
		}
		if have, ok := node.Status.Allocatable[name]; !ok || have.IsZero() {
			return fmt.Sprintf("node %s does not advertise %s yet", node.Name, name)
		}
	}
	return ""
}

func extended(name corev1.ResourceName) bool {
	switch name {
	case corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods, corev1.ResourceEphemeralStorage:
		return false
	}
	return true
}

func (c *Controller) setCondition(ctx context.Context, nc *v1.NodeClaim, t string, status metav1.ConditionStatus, reason, message string) error {
	before := nc.DeepCopy()
	meta.SetStatusCondition(&nc.Status.Conditions, metav1.Condition{Type: t, Status: status, Reason: reason, Message: message, ObservedGeneration: nc.Generation})
	if equality.Semantic.DeepEqual(before.Status, nc.Status) {
		return nil
	}
	if err := c.Kube.Status().Update(ctx, nc); err != nil {
		return fmt.Errorf("setting %s on nodeclaim %s: %w", t, nc.Name, err)
	}
	return nil
}

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Controller) ttl() time.Duration {
	if c.RegistrationTTL > 0 {
		return c.RegistrationTTL
	}
	return 15 * time.Minute
}

// nodeMayCarry reports whether a claim label is copied onto its Node: any
// label outside the domains Kubernetes and nodewright reserve, and the
// well-known ones nodewright itself resolves (zone, instance type, arch,
// capacity type, pool...). The CRD refuses the others in a NodePool, but a
// claim's labels are not validated, and the controller writes Nodes with
// more privilege than the kubelet has (node-role.kubernetes.io, say).
func nodeMayCarry(key string) bool {
	return !v1.IsRestrictedLabel(key) || v1.WellKnownLabels.Has(key)
}

func isTrue(nc *v1.NodeClaim, t string) bool {
	return meta.IsStatusConditionTrue(nc.Status.Conditions, t)
}

func hasTaint(taints []corev1.Taint, t corev1.Taint) bool {
	for i := range taints {
		if taints[i].MatchTaint(&t) {
			return true
		}
	}
	return false
}

func hasOwner(o metav1.Object, uid types.UID) bool {
	for _, ref := range o.GetOwnerReferences() {
		if ref.UID == uid {
			return true
		}
	}
	return false
}

// SetupWithManager watches NodeClaims, and Nodes mapped to their claim by
// provider id (a Node joining or turning Ready advances its claim).
func (c *Controller) SetupWithManager(mgr ctrl.Manager) error {
	byProvider := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		node := o.(*corev1.Node)
		if node.Spec.ProviderID == "" {
			return nil
		}
		var claims v1.NodeClaimList
		if err := c.Kube.List(ctx, &claims, client.MatchingFields{controllers.NodeClaimProviderID: node.Spec.ProviderID}); err != nil {
			return nil
		}
		var out []reconcile.Request
		for _, nc := range claims.Items {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: nc.Name}})
		}
		return out
	})
	if c.Live == nil {
		c.Live = mgr.GetAPIReader()
	}
	// Launches wait on EC2; a scale-up of hundreds of claims must not queue
	// behind one worker. A key is never reconciled twice at once.
	return ctrl.NewControllerManagedBy(mgr).Named("nodeclaim.lifecycle").
		WithOptions(controller.Options{MaxConcurrentReconciles: 50}).
		For(&v1.NodeClaim{}).
		Watches(&corev1.Node{}, byProvider).
		Complete(c)
}

// errorCode is the cloud's error code for the launch failure metric, or
// "unknown" (a timeout, a network error).
func errorCode(err error) string {
	if code := cloudprovider.ErrorCode(err); code != "" {
		return code
	}
	return "unknown"
}
