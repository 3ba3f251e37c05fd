package termination

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/controllers"
)

// drainPass is what one look at a draining node found.
type drainPass struct {
	// left counts the pods still to go (terminating ones included until
	// their grace has run out).
	left int
	// next is how soon something is due without any pod event: a pod's
	// delete time ahead of the grace-period deadline. Zero when nothing is.
	next time.Duration
}

// drain evicts what should leave the node, in two waves: pods of ordinary
// priority first, then the critical ones (system-cluster-critical,
// system-node-critical), which only go once the first wave is gone, so the
// node's logging, DNS or network agents outlive the workloads they serve.
//
// With a terminationGracePeriod on the claim, each pod is deleted outright
// (PDBs and do-not-disrupt notwithstanding) at the deadline minus its own
// terminationGracePeriodSeconds, so it gets its whole grace before the
// instance goes at the deadline; a pod whose grace is longer than what is
// left is deleted at once with what is left.
func (c *Controller) drain(ctx context.Context, nc *v1.NodeClaim, node *corev1.Node, st *claimState) (drainPass, error) {
	logger := log.FromContext(ctx).WithValues("nodeclaim", nc.Name, "node", node.Name)
	var pods corev1.PodList
	if err := c.Kube.List(ctx, &pods, client.MatchingFields{controllers.PodNodeName: node.Name}); err != nil {
		return drainPass{}, fmt.Errorf("listing pods of node %s: %w", node.Name, err)
	}
	now := c.now()
	deadline, bounded := c.deadline(nc)
	var pass drainPass
	due := func(d time.Duration) {
		if d > 0 && (pass.next == 0 || d < pass.next) {
			pass.next = d
		}
	}
	var waves [2][]*corev1.Pod
	ordinaryLeft := 0
	for i := range pods.Items {
		p := &pods.Items[i]
		if !mustLeave(p) {
			continue
		}
		if !p.DeletionTimestamp.IsZero() {
			// Terminating; a pod stuck past its own grace period (a kubelet
			// that stopped answering) no longer holds the drain.
			grace := time.Duration(ptr.Deref(p.DeletionGracePeriodSeconds, 30)) * time.Second
			if now.Before(p.DeletionTimestamp.Add(grace + time.Minute)) {
				pass.left++
				if !critical(p) {
					ordinaryLeft++
				}
			}
			continue
		}
		pass.left++
		if critical(p) {
			waves[1] = append(waves[1], p)
		} else {
			ordinaryLeft++
			waves[0] = append(waves[0], p)
		}
	}
	var errs []error
	for wave, ps := range waves {
		for _, p := range ps {
			if bounded {
				deleteAt := deadline.Add(-podGrace(p))
				if !now.Before(deleteAt) {
					if err := c.deleteForDeadline(ctx, nc, p, deadline); err != nil {
						errs = append(errs, err)
					}
					continue
				}
				due(deleteAt.Sub(now))
			}
			if wave == 1 && ordinaryLeft > 0 {
				continue // critical pods wait for the others to be gone
			}
			if p.Annotations[v1.DoNotDisruptAnnotationKey] == "true" {
				c.once(st, "wait/"+string(p.UID), func() {
					c.Recorder.Eventf(nc, p, corev1.EventTypeNormal, "DisruptionBlocked", "Drain",
						"Waiting for pod %s/%s: it has %s=true; it is only deleted at the terminationGracePeriod deadline (%s)",
						p.Namespace, p.Name, v1.DoNotDisruptAnnotationKey, deadlineText(deadline, bounded))
				})
				continue
			}
			if err := c.evict(ctx, nc, p, st); err != nil {
				errs = append(errs, err)
			} else {
				logger.V(1).Info("evicted", "pod", p.Namespace+"/"+p.Name)
			}
		}
	}
	return pass, errors.Join(errs...)
}

// evictTimeout bounds one eviction request, retries included.
const evictTimeout = 5 * time.Second

// evict asks the Eviction API to remove p; a PodDisruptionBudget that says
// not now is not an error: the pod is tried again on a later pass, and its
// first refusal is told in an event on the claim and the pod.
func (c *Controller) evict(ctx context.Context, nc *v1.NodeClaim, p *corev1.Pod, st *claimState) error {
	eviction := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}}}
	// Bounded: a budget the API server has not processed yet is answered
	// 429 with Retry-After, which client-go would wait out ten times over
	// while this worker drains nothing; the back-off asks again instead.
	ectx, cancel := context.WithTimeout(ctx, evictTimeout)
	defer cancel()
	err := c.Kube.SubResource("eviction").Create(ectx, p, eviction)
	switch {
	case err == nil, apierrors.IsNotFound(err), apierrors.IsConflict(err):
		// Evicted, gone already, or replaced under the same name.
		return nil
	case apierrors.IsTooManyRequests(err), ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
		c.once(st, "blocked/"+string(p.UID), func() {
			c.Recorder.Eventf(nc, p, corev1.EventTypeWarning, "EvictionBlocked", "Drain",
				"Eviction of pod %s/%s refused, retrying with back-off: %v", p.Namespace, p.Name, err)
			c.Recorder.Eventf(p, nc, corev1.EventTypeWarning, "EvictionBlocked", "Drain",
				"Eviction from node %s refused, retrying with back-off: %v", nc.Status.NodeName, err)
		})
		return nil
	default:
		return fmt.Errorf("evicting pod %s/%s: %w", p.Namespace, p.Name, err)
	}
}

// deleteForDeadline deletes p so that its grace period ends by the claim's
// deadline: its own grace when that still fits, what is left otherwise.
func (c *Controller) deleteForDeadline(ctx context.Context, nc *v1.NodeClaim, p *corev1.Pod, deadline time.Time) error {
	grace := min(podGrace(p), max(deadline.Sub(c.now()), 0))
	seconds := int64(grace / time.Second)
	err := c.Kube.Delete(ctx, p, client.GracePeriodSeconds(seconds), client.Preconditions{UID: &p.UID})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting pod %s/%s for the termination grace period: %w", p.Namespace, p.Name, err)
	}
	log.FromContext(ctx).Info("deleted pod for the termination grace period", "nodeclaim", nc.Name,
		"pod", p.Namespace+"/"+p.Name, "gracePeriodSeconds", seconds, "deadline", deadline)
	note := "Deleted pod %s/%s with a grace period of %ds: the claim's terminationGracePeriod ends at %s"
	c.Recorder.Eventf(nc, p, corev1.EventTypeWarning, "PodDeleted", "Drain", note, p.Namespace, p.Name, seconds, deadline.UTC().Format(time.RFC3339))
	c.Recorder.Eventf(p, nc, corev1.EventTypeWarning, "PodDeleted", "Drain", note, p.Namespace, p.Name, seconds, deadline.UTC().Format(time.RFC3339))
	return nil
}

// podGrace is the pod's own terminationGracePeriodSeconds (the API server
// defaults it to 30 s).
func podGrace(p *corev1.Pod) time.Duration {
	return time.Duration(ptr.Deref(p.Spec.TerminationGracePeriodSeconds, corev1.DefaultTerminationGracePeriodSeconds)) * time.Second
}

// critical pods are the ones Kubernetes itself calls critical by their
// priority class; they leave last.
func critical(p *corev1.Pod) bool {
	return p.Spec.PriorityClassName == "system-cluster-critical" || p.Spec.PriorityClassName == "system-node-critical"
}

// mustLeave is false for pods that go with the node: finished ones, mirror
// pods, DaemonSet pods, and pods that tolerate the disrupted taint.
func mustLeave(p *corev1.Pod) bool {
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return false
	}
	for _, o := range p.OwnerReferences {
		if o.Kind == "DaemonSet" {
			return false
		}
	}
	for _, t := range p.Spec.Tolerations {
		// Tolerating every taint: evicted, it would come straight back.
		if t.Operator == corev1.TolerationOpExists && t.Key == "" && (t.Effect == "" || t.Effect == corev1.TaintEffectNoSchedule) {
			return false
		}
	}
	return true
}

func deadlineText(deadline time.Time, bounded bool) string {
	if !bounded {
		return "none: the claim has no terminationGracePeriod"
	}
	return deadline.UTC().Format(time.RFC3339)
}
