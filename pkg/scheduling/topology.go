package scheduling

import (
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// term is a set of pods (a namespace set and a label selector) counted per
// domain of a topology key. Topology spread constraints, pod affinity and pod
// anti-affinity are all questions about a term's counts, so pods with the same
// constraint share one term.
type term struct {
	// id identifies the term across solves (key, namespaces, selector).
	id         string
	key        string
	namespaces []string // nil: every namespace
	selector   labels.Selector
	// counts are the pods matching the term per domain.
	counts map[string]int
	total  int
	// owners are the pods per domain that hold this term as a required
	// anti-affinity: a pod matching it may not join them.
	owners map[string]int
}

func (t *term) matches(namespace string, lbls map[string]string) bool {
	if t.namespaces != nil && !slices.Contains(t.namespaces, namespace) {
		return false
	}
	return t.selector.Matches(labels.Set(lbls))
}

// termRegistry deduplicates terms.
type termRegistry struct {
	terms []*term
	index map[string]int
}

func newTermRegistry() *termRegistry { return &termRegistry{index: map[string]int{}} }

func (r *termRegistry) register(key string, namespaces []string, sel labels.Selector) int {
	ns := append([]string(nil), namespaces...)
	slices.Sort(ns)
	id := key + "|" + strings.Join(ns, ",") + "|" + sel.String()
	if i, ok := r.index[id]; ok {
		return i
	}
	r.terms = append(r.terms, &term{id: id, key: key, namespaces: namespaces, selector: sel, counts: map[string]int{}, owners: map[string]int{}})
	r.index[id] = len(r.terms) - 1
	return len(r.terms) - 1
}

// minCount is the smallest count over domains.
func (t *term) minCount(domains []string) int {
	m := -1
	for _, d := range domains {
		if c := t.counts[d]; m < 0 || c < m {
			m = c
		}
	}
	return max(m, 0)
}
