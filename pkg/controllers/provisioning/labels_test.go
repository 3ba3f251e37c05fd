package provisioning

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
	"github.com/nodewright/nodewright/test/harness"
)

// A NodePool that allows several values of a custom key (team In [a b]),
// any value (tier Exists), or one value in a domain the kubelet may not set
// (node-restriction.kubernetes.io/zone-group In [west]): each claim carries
// one concrete value of each key its pods need, every pod's node selector
// accepts its claim's labels, and the next round sees the claims in flight
// and launches nothing more. Mutation tried: without the plan's labels on the
// claim (resolveLabels returning nothing) the claims carry no team, tier or
// zone-group label (every check below fails), and the second round creates
// more claims for pods already provided for: the "nodes launched forever" of
// issue 11.
func TestCustomKeysResolvedOntoTheClaim(t *testing.T) {
	ctx := context.Background()
	p, _ := newProvisioner(t)
	ns := cp.Namespace(t)
	np := seedPool(t, false)
	np.Spec.Template.Spec.Requirements = append(np.Spec.Template.Spec.Requirements,
		v1.NodeSelectorRequirementWithMinValues{Key: "team", Operator: corev1.NodeSelectorOpIn, Values: []string{"a", "b"}},
		v1.NodeSelectorRequirementWithMinValues{Key: "tier", Operator: corev1.NodeSelectorOpExists},
		v1.NodeSelectorRequirementWithMinValues{Key: "node-restriction.kubernetes.io/zone-group", Operator: corev1.NodeSelectorOpIn, Values: []string{"west"}},
	)
	if err := cp.Client.Update(ctx, np); err != nil {
		t.Fatal(err)
	}
	selectors := []map[string]string{
		{"pool": np.Name, "team": "b"},
		{"pool": np.Name, "node-restriction.kubernetes.io/zone-group": "west"},
	}
	affinities := [][]corev1.NodeSelectorRequirement{
		{{Key: "team", Operator: corev1.NodeSelectorOpIn, Values: []string{"a", "b"}}, {Key: "tier", Operator: corev1.NodeSelectorOpExists}},
		{{Key: "team", Operator: corev1.NodeSelectorOpExists}},
	}
	var pods []*corev1.Pod
	add := func(name string, sel map[string]string, aff []corev1.NodeSelectorRequirement) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.PodSpec{NodeSelector: sel, Containers: []corev1.Container{{Name: "c", Image: "i",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3")}}}}},
		}
		if sel["pool"] == "" {
			pod.Spec.NodeSelector = map[string]string{"pool": np.Name}
		}
		if aff != nil {
			pod.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: aff}}}}}
		}
		if err := cp.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable}}
		if err := cp.Client.Status().Update(ctx, pod); err != nil {
			t.Fatal(err)
		}
		pods = append(pods, pod)
	}
	add("team-b", selectors[0], nil)
	add("restricted", selectors[1], nil)
	add("any-team-tier", nil, affinities[0])
	add("team-exists", nil, affinities[1])

	res, err := p.Provision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Plan.Placed() != len(pods) {
		t.Fatalf("placed %d of %d pods: %+v", res.Plan.Placed(), len(pods), res.Plan.Unschedulable)
	}
	for i, plan := range res.Plan.NodeClaims {
		nc := res.Created[i]
		for _, key := range []string{"team", "tier", "node-restriction.kubernetes.io/zone-group"} {
			if nc.Labels[key] == "" {
				t.Errorf("claim %s has no %s label: %v", nc.Name, key, nc.Labels)
			}
		}
		if nc.Labels["team"] != "a" && nc.Labels["team"] != "b" {
			t.Errorf("claim %s: team=%q is outside the pool's [a b]", nc.Name, nc.Labels["team"])
		}
		reqs, err := requirements.FromNodePool(nc.Spec.Requirements)
		if err != nil {
			t.Fatal(err)
		}
		if r := reqs["team"]; r == nil || r.Len() != 1 || !r.Has(nc.Labels["team"]) {
			t.Errorf("claim %s: requirement %v not narrowed to its label %q", nc.Name, r, nc.Labels["team"])
		}
		for _, pod := range plan.Pods {
			if !podAccepts(pod, nc.Labels) {
				t.Errorf("pod %s planned on claim %s, whose labels %v it does not accept", pod.Name, nc.Name, nc.Labels)
			}
		}
	}
	again, err := p.Provision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Created) != 0 {
		t.Errorf("the second round created %d more claims: the in-flight claims do not carry the labels their pods need", len(again.Created))
	}
}

// podAccepts checks a pod's node selector and required node affinity against
// labels, the way kube-scheduler does (one term is enough).
func podAccepts(pod *corev1.Pod, labels map[string]string) bool {
	for k, v := range pod.Spec.NodeSelector {
		if labels[k] != v {
			return false
		}
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	return slices.ContainsFunc(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms, func(term corev1.NodeSelectorTerm) bool {
		for _, e := range term.MatchExpressions {
			r, err := requirements.New(e.Key, e.Operator, e.Values...)
			if err != nil || !(requirements.Requirements{e.Key: r}).Matches(labels) {
				return false
			}
		}
		return true
	})
}

// withStoredPool lists one more NodePool than the apiserver holds: one stored
// before the CRD refused overflowing durations, which the apiserver now
// cannot be made to store.
type withStoredPool struct {
	client.Client
	pool v1.NodePool
}

func (c withStoredPool) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := c.Client.List(ctx, list, opts...); err != nil {
		return err
	}
	if pools, ok := list.(*v1.NodePoolList); ok {
		pools.Items = append(pools.Items, c.pool)
	}
	return nil
}

// A NodePool stored before the CRD refused its content (an expireAfter that
// overflows Go's duration, a template label in a reserved domain) is skipped
// with an InvalidNodePool event naming the field; the other pools still
// provision. Mutation tried: without the RuntimeValidate check the pool is
// planned and its claim would carry the invalid duration or write the
// reserved label onto its Node (the test sees a claim for it).
func TestNodePoolStoredInvalidIsSkipped(t *testing.T) {
	for name, spoil := range map[string]func(t *testing.T, np *v1.NodePool){
		"overflowing expireAfter": func(t *testing.T, np *v1.NodePool) {
			if err := json.Unmarshal([]byte(`"9999999h"`), &np.Spec.Template.Spec.ExpireAfter); err != nil {
				t.Fatal(err)
			}
		},
		"reserved template label": func(_ *testing.T, np *v1.NodePool) {
			np.Spec.Template.Labels["node-role.kubernetes.io/control-plane"] = ""
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			p, _ := newProvisioner(t)
			rec := &recorder{reasons: map[string][]string{}}
			p.recorder = rec
			ns := cp.Namespace(t)
			good := seedPool(t, false)
			bad := good.DeepCopy()
			bad.Name, bad.UID = harness.Name("stored-bad"), "stored-bad-uid"
			bad.Spec.Template.Labels = map[string]string{"pool": bad.Name}
			spoil(t, bad)
			p.kube = withStoredPool{Client: p.kube, pool: *bad}
			pendingPods(t, ns, bad.Name, 1)
			res, err := p.Provision(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, nc := range res.Created {
				if nc.Labels[v1.NodePoolLabelKey] == bad.Name {
					t.Errorf("claim %s created from the invalid pool", nc.Name)
				}
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if !slices.Contains(rec.reasons[bad.Name], "InvalidNodePool") {
				t.Errorf("events on the invalid pool: %v", rec.reasons[bad.Name])
			}
		})
	}
}
