// Package validation keeps a NodePool's ValidationSucceeded condition: the
// CRD refuses bad pools at admission, but one stored before a rule existed
// (or written with validation off) is refused again at runtime, and the
// person who owns it needs to see why in `kubectl describe nodepool`, not
// in the controller's log.
package validation

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
)

// Recorder emits Kubernetes events.
type Recorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Controller validates NodePools.
type Controller struct {
	Kube     client.Client
	Recorder Recorder
}

// Reconcile validates one NodePool and records the verdict.
func (c *Controller) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	np := &v1.NodePool{}
	if err := c.Kube.Get(ctx, req.NamespacedName, np); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	cond := metav1.Condition{Type: v1.ConditionTypeValidationSucceeded, Status: metav1.ConditionTrue, Reason: "Valid", ObservedGeneration: np.Generation}
	err := np.RuntimeValidate()
	if err == nil {
		if _, rerr := requirements.FromNodePool(np.Spec.Template.Spec.Requirements); rerr != nil {
			err = fmt.Errorf("spec.template.spec.requirements: %w", rerr)
		}
	}
	if err != nil {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Invalid", "Not provisioning from this NodePool until it is fixed: "+err.Error()
	}
	if old := meta.FindStatusCondition(np.Status.Conditions, cond.Type); old != nil &&
		old.Status == cond.Status && old.Message == cond.Message && old.ObservedGeneration == cond.ObservedGeneration {
		return ctrl.Result{}, nil
	}
	patch := client.MergeFromWithOptions(np.DeepCopy(), client.MergeFromWithOptimisticLock{})
	meta.SetStatusCondition(&np.Status.Conditions, cond)
	if perr := c.Kube.Status().Patch(ctx, np, patch); perr != nil {
		return ctrl.Result{}, fmt.Errorf("recording validation of nodepool %s: %w", np.Name, perr)
	}
	if err != nil {
		log.FromContext(ctx).Info("nodepool invalid", "nodepool", np.Name, "error", err.Error())
		c.Recorder.Eventf(np, nil, corev1.EventTypeWarning, "InvalidNodePool", "Validate", "%s", cond.Message)
	}
	return ctrl.Result{}, nil
}

// SetupWithManager watches NodePools.
func (c *Controller) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("nodepool.validation").For(&v1.NodePool{}).Complete(c)
}
