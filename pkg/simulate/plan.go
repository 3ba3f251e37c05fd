package simulate

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/cloudprovider/aws"
	"github.com/nodewright/nodewright/pkg/scheduling"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
	"github.com/samber/lo"
)

// DefaultRegion is used when neither --catalog nor a NodePool's zones name
// one.
const DefaultRegion = "us-east-1"

// Report is a simulated provisioning round.
type Report struct {
	Region   string
	DataDate string
	Pods     int
	Plan     *scheduling.Plan
	// OnDemand is what the planned nodes would cost at on-demand prices.
	OnDemand float64
	// Skipped names NodePools that could not be used and why.
	Skipped []string
	// Preview is what consolidation would do to the files' Nodes (nil
	// when there are none).
	Preview *Preview
}

// Run plans for the input's pods. region may be empty: it is then read from
// the NodePools' zone requirements, else DefaultRegion.
func Run(in *Input, region string, minSavings float64) (*Report, error) {
	if region == "" {
		region = inferRegion(in.NodePools)
	}
	snap, err := catalog.EmbeddedSnapshot()
	if err != nil {
		return nil, err
	}
	cat, err := catalog.New(snap, region, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("catalog for %s: %w", region, err)
	}
	rep := &Report{Region: region, DataDate: snap.DataDate, Pods: len(in.Pods)}
	var pools []scheduling.NodePool
	for _, np := range in.NodePools {
		reqs, err := requirements.FromNodePool(np.Spec.Template.Spec.Requirements)
		if err != nil {
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("NodePool %s: %v", np.Name, err))
			continue
		}
		pool := scheduling.NodePool{
			Name: np.Name, Weight: ptr.Deref(np.Spec.Weight, 0), Requirements: reqs, Labels: np.Spec.Template.Labels,
			Taints: np.Spec.Template.Spec.Taints, Catalog: cat, Limits: corev1.ResourceList(np.Spec.Limits),
		}
		if ref := np.Spec.Template.Spec.NodeClassRef; ref != nil {
			if nc, ok := in.NodeClasses[ref.Name]; ok {
				settings, err := aws.NodeSettings(nc, catalog.DefaultVMMemoryOverheadPercent)
				if err != nil {
					rep.Skipped = append(rep.Skipped, fmt.Sprintf("NodePool %s: EC2NodeClass %s: %v", np.Name, nc.Name, err))
					continue
				}
				pool.Settings = &settings
			}
		}
		pools = append(pools, pool)
	}
	// Pending pods go to the room the files' Nodes have first.
	views, err := in.nodeViews(cat, lo.KeyBy(pools, func(p scheduling.NodePool) string { return p.Name }))
	if err != nil {
		return nil, err
	}
	existing := lo.Map(slices.Sorted(maps.Keys(views)), func(name string, _ int) scheduling.Node { return views[name].node })
	rep.Plan = scheduling.Solve(scheduling.Input{Pods: in.Pods, Nodes: existing, NodePools: pools}, scheduling.Options{SpotRiskWeight: -1})
	if len(in.Nodes) > 0 {
		if rep.Preview, err = in.Consolidate(cat, pools, minSavings); err != nil {
			return nil, err
		}
	}
	for _, c := range rep.Plan.NodeClaims {
		price, _ := cat.Price(c.InstanceTypes[0].Type.Name, c.Offering.Zone, v1.CapacityTypeOnDemand)
		rep.OnDemand += price
	}
	return rep, nil
}

// inferRegion reads the region from the first zone a NodePool requires
// (ap-northeast-2a is in ap-northeast-2).
func inferRegion(pools []*v1.NodePool) string {
	for _, np := range pools {
		for _, r := range np.Spec.Template.Spec.Requirements {
			if r.Key == corev1.LabelTopologyZone && r.Operator == corev1.NodeSelectorOpIn && len(r.Values) > 0 {
				if z := r.Values[0]; len(z) > 1 {
					return z[:len(z)-1]
				}
			}
		}
	}
	return DefaultRegion
}

// Print writes the report for a person.
func (r *Report) Print(w io.Writer) error {
	plan := r.Plan
	fmt.Fprintf(w, "Plan for %d pods in %s (catalog data of %s)\n\n", r.Pods, r.Region, r.DataDate)
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "skipped %s\n", s)
	}
	fmt.Fprintf(w, "Nodes to launch: %d\n", len(plan.NodeClaims))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODEPOOL\tINSTANCE TYPE\tCAPACITY\tZONE\t$/HOUR\tFALLBACKS\tPODS")
	for _, c := range plan.NodeClaims {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%.4f\t%d\t%s\n", c.NodePool, c.InstanceTypes[0].Type.Name, c.Offering.CapacityType,
			c.Offering.Zone, c.Price(), len(c.InstanceTypes)-1, podNames(c.Pods))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nPods that fit nowhere: %d\n", len(plan.Unschedulable))
	for _, u := range plan.Unschedulable {
		fmt.Fprintf(w, "  %s/%s: %s\n", u.Pod.Namespace, u.Pod.Name, u.Reason)
	}
	cost := plan.Cost()
	fmt.Fprintf(w, "\nTotal: $%.4f/hour", cost)
	if r.OnDemand > 0 {
		fmt.Fprintf(w, "; the same nodes on demand: $%.4f/hour (%.0f%% saved)", r.OnDemand, 100*(1-cost/r.OnDemand))
	}
	fmt.Fprintln(w)
	if r.Preview != nil {
		r.Preview.Print(w)
	}
	return nil
}

// podNames lists pods compactly: "job-0..job-9" style runs collapse to a
// count per workload.
func podNames(pods []*corev1.Pod) string {
	count, first := map[string]int{}, map[string]string{}
	var order []string
	for _, p := range pods {
		base := p.Name
		if i := strings.LastIndex(base, "-"); i > 0 {
			base = base[:i]
		}
		if count[base] == 0 {
			order = append(order, base)
			first[base] = p.Name
		}
		count[base]++
	}
	sort.Strings(order)
	parts := make([]string, 0, len(order))
	for _, b := range order {
		if count[b] == 1 {
			parts = append(parts, first[b])
		} else {
			parts = append(parts, fmt.Sprintf("%d x %s", count[b], b))
		}
	}
	return strings.Join(parts, ", ")
}
