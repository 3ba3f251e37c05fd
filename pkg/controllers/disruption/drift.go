package disruption

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/nodewright/nodewright/apis/v1"
)

// Drift replaces nodes whose claim the drift controller marked Drifted
// (pkg/controllers/nodeclaim/drift), whatever consolidateAfter says, within
// the pool's Drifted budget, the replacement first. A pod annotated
// karpenter.sh/do-not-disrupt holds its node, unless the claim has a
// terminationGracePeriod (which bounds how long such a pod may hold a
// node being deleted), as in Karpenter.
type Drift struct{}

// Reason is the Drifted budget reason.
func (Drift) Reason() v1.DisruptionReason { return v1.DisruptionReasonDrifted }

// Annotation is "drifted".
func (Drift) Annotation() string { return "drifted" }

// DrainWait gives the replacement as long as a consolidation's.
func (Drift) DrainWait() time.Duration { return DefaultReplaceDrainWait }

// Describe names the drift.
func (Drift) Describe(c *Candidate) string {
	cond := meta.FindStatusCondition(c.Claim.Status.Conditions, v1.ConditionTypeDrifted)
	if cond == nil {
		return "Drifted"
	}
	return fmt.Sprintf("Drifted (%s): %s; replacing it", cond.Reason, cond.Message)
}

// ShouldDisrupt reports whether c is drifted and free to go.
func (Drift) ShouldDisrupt(c *Candidate, now time.Time) (bool, string) {
	cond := meta.FindStatusCondition(c.Claim.Status.Conditions, v1.ConditionTypeDrifted)
	if cond == nil || cond.Status != metav1.ConditionTrue {
		return false, "not drifted"
	}
	if c.Claim.Spec.TerminationGracePeriod == nil {
		for _, p := range c.Pods {
			if workloadPods([]*corev1.Pod{p}) == 0 {
				continue // finished or going: it holds nothing
			}
			if why := doNotDisrupt(p, now); why != "" {
				return false, why
			}
		}
	}
	return true, ""
}
