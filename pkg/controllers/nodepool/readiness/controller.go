// Package readiness keeps a NodePool's status conditions and
// nodeClassObservedGeneration, what `kubectl get nodepools` shows as READY:
//   - ValidationSucceeded: the CRD refuses bad pools at admission, but one
//     stored before a rule existed (or with a label in a domain only runtime
//     checks cover) is refused again here, naming the field;
//   - NodeClassReady: the node class the template names exists, is not being
//     deleted and is Ready itself;
//   - Ready: both hold, so the provisioner will launch from the pool.
package readiness

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
)

// Recorder emits Kubernetes events.
type Recorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Controller writes NodePool readiness.
type Controller struct {
	Kube     client.Client
	Recorder Recorder
	// NodeClass is an empty object of the cloud's node class kind (the
	// provider's NodeClass()); its status conditions are read generically.
	NodeClass client.Object
}

// Reconcile recomputes one NodePool's conditions.
func (c *Controller) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	np := &v1.NodePool{}
	if err := c.Kube.Get(ctx, req.NamespacedName, np); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := np.DeepCopy()
	invalid := validate(np)
	valid := c.condition(np, v1.ConditionTypeValidationSucceeded, invalid == nil, "Invalid", func() string {
		return "Not provisioning from this NodePool until it is fixed: " + invalid.Error()
	})
	classReady, classMessage, generation, err := c.nodeClass(ctx, np)
	if err != nil {
		return ctrl.Result{}, err
	}
	np.Status.NodeClassObservedGeneration = generation
	class := c.condition(np, v1.ConditionTypeNodeClassReady, classReady, "NodeClassNotReady", func() string { return classMessage })
	c.condition(np, v1.ConditionTypeReady, valid && class, "NotReady", func() string {
		if !valid {
			return "ValidationSucceeded is False"
		}
		return "NodeClassReady is False: " + classMessage
	})
	// SetStatusCondition keeps a condition's transition time when its
	// status holds, so an unchanged verdict leaves the status equal.
	if equality.Semantic.DeepEqual(before.Status, np.Status) {
		return ctrl.Result{}, nil
	}
	patch := client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})
	if err := c.Kube.Status().Patch(ctx, np, patch); err != nil {
		return ctrl.Result{}, fmt.Errorf("recording readiness of nodepool %s: %w", np.Name, err)
	}
	if invalid != nil && conditionChanged(before, np, v1.ConditionTypeValidationSucceeded) {
		log.FromContext(ctx).Info("nodepool invalid", "nodepool", np.Name, "error", invalid.Error())
		c.Recorder.Eventf(np, nil, corev1.EventTypeWarning, "InvalidNodePool", "Validate", "%s",
			meta.FindStatusCondition(np.Status.Conditions, v1.ConditionTypeValidationSucceeded).Message)
	}
	if !classReady && conditionChanged(before, np, v1.ConditionTypeNodeClassReady) {
		c.Recorder.Eventf(np, nil, corev1.EventTypeWarning, "NodeClassNotReady", "Validate", "%s", classMessage)
	}
	return ctrl.Result{}, nil
}

// validate is what ValidationSucceeded reports: RuntimeValidate and the
// requirements the solver must be able to read.
func validate(np *v1.NodePool) error {
	if err := np.RuntimeValidate(); err != nil {
		return err
	}
	if _, err := requirements.FromNodePool(np.Spec.Template.Spec.Requirements); err != nil {
		return fmt.Errorf("spec.template.spec.requirements: %w", err)
	}
	return nil
}

// condition sets t True (reason t) or False (reason, message()) and reports ok.
func (c *Controller) condition(np *v1.NodePool, t string, ok bool, reason string, message func() string) bool {
	cond := metav1.Condition{Type: t, Status: metav1.ConditionTrue, Reason: t, ObservedGeneration: np.Generation}
	if !ok {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, reason, message()
	}
	meta.SetStatusCondition(&np.Status.Conditions, cond)
	return ok
}

// nodeClass reads the pool's node class: whether it is ready, why not, and
// the generation read.
func (c *Controller) nodeClass(ctx context.Context, np *v1.NodePool) (bool, string, int64, error) {
	ref := np.Spec.Template.Spec.NodeClassRef
	if ref == nil || c.NodeClass == nil {
		return false, "spec.template.spec.nodeClassRef names no node class", 0, nil
	}
	obj := c.NodeClass.DeepCopyObject().(client.Object)
	kind := obj.GetObjectKind().GroupVersionKind().Kind
	if kind == "" {
		kind = ref.Kind
	}
	err := c.Kube.Get(ctx, client.ObjectKey{Name: ref.Name}, obj)
	if apierrors.IsNotFound(err) {
		return false, fmt.Sprintf("%s %s (spec.template.spec.nodeClassRef) not found", kind, ref.Name), 0, nil
	}
	if err != nil {
		return false, "", 0, fmt.Errorf("reading node class %s of nodepool %s: %w", ref.Name, np.Name, err)
	}
	if !obj.GetDeletionTimestamp().IsZero() {
		return false, fmt.Sprintf("%s %s is being deleted", kind, ref.Name), obj.GetGeneration(), nil
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return false, "", 0, fmt.Errorf("reading the status of node class %s: %w", ref.Name, err)
	}
	var conditions []metav1.Condition
	status, _ := content["status"].(map[string]any)
	if raw, ok := status["conditions"].([]any); ok {
		for _, r := range raw {
			var cond metav1.Condition
			if m, ok := r.(map[string]any); ok && runtime.DefaultUnstructuredConverter.FromUnstructured(m, &cond) == nil {
				conditions = append(conditions, cond)
			}
		}
	}
	ready := meta.FindStatusCondition(conditions, "Ready")
	switch {
	case ready == nil:
		return false, fmt.Sprintf("%s %s has no Ready condition yet", kind, ref.Name), obj.GetGeneration(), nil
	case ready.Status != metav1.ConditionTrue:
		return false, fmt.Sprintf("%s %s is not Ready: %s", kind, ref.Name, ready.Message), obj.GetGeneration(), nil
	case ready.ObservedGeneration != obj.GetGeneration():
		return false, fmt.Sprintf("%s %s is Ready for generation %d, not yet for %d", kind, ref.Name, ready.ObservedGeneration, obj.GetGeneration()), obj.GetGeneration(), nil
	}
	return true, "", obj.GetGeneration(), nil
}

func conditionChanged(a, b *v1.NodePool, t string) bool {
	x, y := meta.FindStatusCondition(a.Status.Conditions, t), meta.FindStatusCondition(b.Status.Conditions, t)
	if x == nil || y == nil {
		return x != y
	}
	return x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message || x.ObservedGeneration != y.ObservedGeneration
}

// SetupWithManager watches NodePools and their node classes.
func (c *Controller) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).Named("nodepool.readiness").For(&v1.NodePool{})
	if c.NodeClass != nil {
		b = b.Watches(c.NodeClass, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			var pools v1.NodePoolList
			if err := c.Kube.List(ctx, &pools); err != nil {
				log.FromContext(ctx).Error(err, "listing nodepools for a node class change")
				return nil
			}
			var out []reconcile.Request
			for _, np := range pools.Items {
				if ref := np.Spec.Template.Spec.NodeClassRef; ref != nil && ref.Name == o.GetName() {
					out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Name: np.Name}})
				}
			}
			return out
		}))
	}
	return b.Complete(c)
}
