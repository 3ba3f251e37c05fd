package aws

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
)

// ConditionTypeReady is the EC2NodeClass's summary condition: True when every
// other condition the resolver sets is True. Karpenter names it the same; the
// API package has no constant for it because the apiserver never sets it.
const ConditionTypeReady = "Ready"

// Condition reasons the resolver sets. True conditions carry their type as the
// reason, as Karpenter's do, so dashboards written for Karpenter still match.
const (
	ReasonSubnetsNotFound        = "SubnetsNotFound"
	ReasonSecurityGroupsNotFound = "SecurityGroupsNotFound"
	ReasonAMINotFound            = "AMINotFound"
	ReasonInvalidSpec            = "InvalidSpec"
	ReasonResolutionFailed       = "ResolutionFailed"
	ReasonUnhealthyDependents    = "UnhealthyDependents"
	// ReasonInstanceProfileNotReady: spec.role names a role IAM does not
	// have, or the profile nodewright would make is someone else's.
	ReasonInstanceProfileNotReady = "InstanceProfileNotReady"
)

// readinessConditions are the conditions Ready summarizes, in message order.
var readinessConditions = []string{
	awsv1.ConditionTypeSubnetsReady, awsv1.ConditionTypeSecurityGroupsReady, awsv1.ConditionTypeAMIsReady,
	awsv1.ConditionTypeInstanceProfileReady, awsv1.ConditionTypeCapacityReservationsReady, awsv1.ConditionTypeValidationSucceeded,
}

// nodeClassEC2API is what resolving an EC2NodeClass needs of EC2.
type nodeClassEC2API interface {
	ec2.DescribeSubnetsAPIClient
	ec2.DescribeSecurityGroupsAPIClient
	ec2.DescribeImagesAPIClient
	ec2.DescribeCapacityReservationsAPIClient
	describePlacementGroupsAPI
}

// ssmAPI is what resolving AMI aliases and SSM parameter terms needs of SSM.
type ssmAPI interface {
	GetParameter(context.Context, *ssm.GetParameterInput, ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
}

// NodeClassResolver turns an EC2NodeClass's selectors into the EC2 resources
// they name, as the status the launch path reads: the provider never queries
// selectors itself, so a launch costs no Describe calls and every node of a
// class uses the subnets, groups and AMIs its status shows.
type NodeClassResolver struct {
	ec2  nodeClassEC2API
	ssm  ssmAPI
	iam  iamAPI
	opts Options
}

// NewNodeClassResolver builds a resolver from the EC2, SSM and IAM clients; opts
// must pass the same validation as the cloud provider's.
func NewNodeClassResolver(clients *Clients, opts Options) (*NodeClassResolver, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &NodeClassResolver{ec2: clients.EC2, ssm: clients.SSM, iam: clients.IAM, opts: opts}, nil
}

// Resolve returns nc's status as EC2 and SSM answer now: subnets, security
// groups, AMIs and instance profile, and a condition for each with a message
// naming the selector terms that matched nothing. A part whose lookup failed
// keeps its previous value, and its condition when that was resolved for the
// current spec (a throttled call must not take a working node class out of
// service); when the spec changed since, its condition turns Unknown
// (ResolutionFailed) for the new generation, so Ready is not True and no
// launch uses what the old spec selected (an AMI the user moved away from).
// The failures are returned, joined, so the caller retries with backoff.
func (r *NodeClassResolver) Resolve(ctx context.Context, nc *awsv1.EC2NodeClass) (awsv1.EC2NodeClassStatus, error) {
	status := *nc.Status.DeepCopy()
	now := metav1.NewTime(r.opts.Clock.Now())
	set := func(conditionType string, ok bool, reason, message string) {
		c := metav1.Condition{Type: conditionType, Status: metav1.ConditionFalse, Reason: reason, Message: message, ObservedGeneration: nc.Generation, LastTransitionTime: now}
		if ok {
			c.Status, c.Reason = metav1.ConditionTrue, conditionType
		}
		meta.SetStatusCondition(&status.Conditions, c)
	}
	var errs []error
	failed := func(conditionType string, err error) {
		errs = append(errs, err)
		if c := meta.FindStatusCondition(status.Conditions, conditionType); c == nil || c.ObservedGeneration != nc.Generation {
			meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: conditionType, Status: metav1.ConditionUnknown,
				Reason: ReasonResolutionFailed, Message: err.Error(), ObservedGeneration: nc.Generation, LastTransitionTime: now})
		}
	}

	if subnets, unmatched, err := r.subnets(ctx, nc); err != nil {
		failed(awsv1.ConditionTypeSubnetsReady, err)
	} else {
		status.Subnets = subnets
		set(awsv1.ConditionTypeSubnetsReady, len(subnets) > 0, ReasonSubnetsNotFound, selectionMessage("subnet", len(subnets), unmatched))
	}
	if groups, unmatched, err := r.securityGroups(ctx, nc); err != nil {
		failed(awsv1.ConditionTypeSecurityGroupsReady, err)
	} else {
		status.SecurityGroups = groups
		set(awsv1.ConditionTypeSecurityGroupsReady, len(groups) > 0, ReasonSecurityGroupsNotFound, selectionMessage("security group", len(groups), unmatched))
	}
	if amis, unmatched, err := r.amis(ctx, nc); err != nil {
		failed(awsv1.ConditionTypeAMIsReady, err)
	} else {
		status.AMIs = amis
		set(awsv1.ConditionTypeAMIsReady, len(amis) > 0, ReasonAMINotFound, selectionMessage("AMI", len(amis), unmatched))
	}

	// Reservations come and go (a block ends, one is cancelled): none
	// selected leaves the class ready to launch spot and on-demand, as in
	// Karpenter; the message names the terms that matched nothing.
	if len(nc.Spec.CapacityReservationSelectorTerms) == 0 {
		status.CapacityReservations = nil
		set(awsv1.ConditionTypeCapacityReservationsReady, true, "", "")
	} else if reservations, unmatched, err := r.capacityReservations(ctx, nc); err != nil {
		failed(awsv1.ConditionTypeCapacityReservationsReady, err)
	} else {
		status.CapacityReservations = reservations
		set(awsv1.ConditionTypeCapacityReservationsReady, true, "", selectionMessage("capacity reservation", len(reservations), unmatched))
	}

	switch profile, err := r.instanceProfile(ctx, nc); {
	case errors.As(err, new(*profileProblem)):
		set(awsv1.ConditionTypeInstanceProfileReady, false, ReasonInstanceProfileNotReady, err.Error())
	case err != nil:
		failed(awsv1.ConditionTypeInstanceProfileReady, err)
	default:
		status.InstanceProfile = profile
		set(awsv1.ConditionTypeInstanceProfileReady, true, "", "")
	}

	// As in Karpenter, PlacementGroupReady exists only while a selector
	// does; with one, the class is not Ready until EC2 has the group.
	readiness := readinessConditions
	if sel := nc.Spec.PlacementGroupSelector; sel == nil {
		meta.RemoveStatusCondition(&status.Conditions, awsv1.ConditionTypePlacementGroupReady)
	} else {
		readiness = append(slices.Clone(readiness), awsv1.ConditionTypePlacementGroupReady)
		switch g, err := r.placementGroup(ctx, sel); {
		case err != nil:
			failed(awsv1.ConditionTypePlacementGroupReady, err)
		case g == nil:
			set(awsv1.ConditionTypePlacementGroupReady, false, ReasonPlacementGroupNotFound,
				fmt.Sprintf("no available placement group has spec.placementGroupSelector %s", placementGroupSelectorText(sel)))
		default:
			set(awsv1.ConditionTypePlacementGroupReady, true, "", placementGroupMessage(g))
		}
	}

	problems := r.validate(nc)
	set(awsv1.ConditionTypeValidationSucceeded, len(problems) == 0, ReasonInvalidSpec, strings.Join(problems, "; "))

	setReady(&status, readiness, nc.Generation, now)
	return status, errors.Join(errs...)
}

// setReady summarizes the readiness conditions into Ready: False when one is
// False, else Unknown while one is not resolved yet (reason ResolutionFailed
// when a lookup failed, naming it), else True.
func setReady(status *awsv1.EC2NodeClassStatus, readiness []string, generation int64, now metav1.Time) {
	var falses, unknowns []string
	failed := false
	for _, t := range readiness {
		switch c := meta.FindStatusCondition(status.Conditions, t); {
		case c == nil:
			unknowns = append(unknowns, t+" is unknown")
		case c.Status == metav1.ConditionUnknown:
			unknowns = append(unknowns, fmt.Sprintf("%s is unknown: %s", t, c.Message))
			failed = failed || c.Reason == ReasonResolutionFailed
		case c.Status == metav1.ConditionFalse:
			falses = append(falses, fmt.Sprintf("%s=False: %s", t, c.Message))
		}
	}
	ready := metav1.Condition{Type: ConditionTypeReady, Status: metav1.ConditionTrue, Reason: ConditionTypeReady, ObservedGeneration: generation, LastTransitionTime: now}
	switch {
	case len(falses) > 0:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, ReasonUnhealthyDependents, strings.Join(append(falses, unknowns...), "; ")
	case len(unknowns) > 0:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionUnknown, ReasonUnhealthyDependents, strings.Join(unknowns, "; ")
		if failed {
			ready.Reason = ReasonResolutionFailed
		}
	}
	meta.SetStatusCondition(&status.Conditions, ready)
}

// selectionMessage says what the selectors found and which terms found
// nothing, the first thing to check when a node class is not ready.
func selectionMessage(what string, found int, unmatched []string) string {
	switch {
	case found == 0 && len(unmatched) > 0:
		return fmt.Sprintf("no %s matches %s", what, strings.Join(unmatched, ", "))
	case found == 0:
		return fmt.Sprintf("no %s selected", what)
	case len(unmatched) > 0:
		return fmt.Sprintf("%d %s(s) selected; %s matched nothing", found, what, strings.Join(unmatched, ", "))
	default:
		return ""
	}
}

// describeTerm names a selector term in messages as the user wrote it.
func describeTerm(field string, i int, term any) string {
	raw, err := json.Marshal(term)
	if err != nil {
		return fmt.Sprintf("%s[%d]", field, i)
	}
	return fmt.Sprintf("%s[%d] %s", field, i, raw)
}

func filter(name string, values ...string) ec2types.Filter {
	return ec2types.Filter{Name: aws.String(name), Values: values}
}

// tagFilters turns selector tags into EC2 filters; "*" selects any value of
// the key.
func tagFilters(tags map[string]string) []ec2types.Filter {
	var out []ec2types.Filter
	for _, k := range sortedKeys(tags) {
		if v := tags[k]; v == "*" {
			out = append(out, filter("tag-key", k))
		} else {
			out = append(out, filter("tag:"+k, v))
		}
	}
	return out
}

// hasTags checks the selector's tags again on an answer: EC2 merges filters
// of the same name (several "tag-key") into one OR, and the term means AND.
// Values keep the wildcards EC2 filtered with (Karpenter documents
// `Name: "*Public*"`), or the check drops every resource the filter found.
func hasTags(have []ec2types.Tag, want map[string]string) bool {
	got := make(map[string]string, len(have))
	for _, t := range have {
		got[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	for k, v := range want {
		gv, ok := got[k]
		if !ok || !wildcardMatch(v, gv) {
			return false
		}
	}
	return true
}

// wildcardMatch applies an EC2 filter value to s: * matches any run of
// characters, ? exactly one, a backslash makes the next one literal.
func wildcardMatch(pattern, s string) bool {
	var b strings.Builder
	b.WriteString("^")
	runes := []rune(pattern)
	for i := 0; i < len(runes); i++ {
		switch r := runes[i]; {
		case r == '\\' && i+1 < len(runes):
			i++
			b.WriteString(regexp.QuoteMeta(string(runes[i])))
		case r == '*':
			b.WriteString("(?s:.*)")
		case r == '?':
			b.WriteString("(?s:.)")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	ok, err := regexp.MatchString(b.String(), s)
	return err == nil && ok
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// subnets resolves subnetSelectorTerms (ORed), the ones with the most free
// addresses first: the order a launch uses when it cannot count them itself
// (see subnetAddresses).
func (r *NodeClassResolver) subnets(ctx context.Context, nc *awsv1.EC2NodeClass) ([]awsv1.Subnet, []string, error) {
	type found struct {
		subnet awsv1.Subnet
		free   int32
	}
	byID := map[string]found{}
	var unmatched []string
	for i, term := range nc.Spec.SubnetSelectorTerms {
		desc := describeTerm("subnetSelectorTerms", i, term)
		if term.ID == "" && len(term.Tags) == 0 {
			unmatched = append(unmatched, desc)
			continue // an empty term would select every subnet of the account
		}
		filters := tagFilters(term.Tags)
		if term.ID != "" {
			filters = append(filters, filter("subnet-id", term.ID))
		}
		matched := 0
		pages := ec2.NewDescribeSubnetsPaginator(r.ec2, &ec2.DescribeSubnetsInput{Filters: filters})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, nil, fmt.Errorf("describing subnets for %s: %w", desc, err)
			}
			for _, s := range page.Subnets {
				if !hasTags(s.Tags, term.Tags) {
					continue
				}
				matched++
				id := aws.ToString(s.SubnetId)
				byID[id] = found{awsv1.Subnet{ID: id, Zone: aws.ToString(s.AvailabilityZone), ZoneID: aws.ToString(s.AvailabilityZoneId)}, aws.ToInt32(s.AvailableIpAddressCount)}
			}
		}
		if matched == 0 {
			unmatched = append(unmatched, desc)
		}
	}
	all := make([]found, 0, len(byID))
	for _, f := range byID {
		all = append(all, f)
	}
	slices.SortFunc(all, func(a, b found) int {
		return cmp.Or(cmp.Compare(b.free, a.free), cmp.Compare(a.subnet.ID, b.subnet.ID))
	})
	out := make([]awsv1.Subnet, len(all))
	for i, f := range all {
		out[i] = f.subnet
	}
	return out, unmatched, nil
}

// securityGroups resolves securityGroupSelectorTerms (ORed), sorted by id.
func (r *NodeClassResolver) securityGroups(ctx context.Context, nc *awsv1.EC2NodeClass) ([]awsv1.SecurityGroup, []string, error) {
	byID := map[string]awsv1.SecurityGroup{}
	var unmatched []string
	for i, term := range nc.Spec.SecurityGroupSelectorTerms {
		desc := describeTerm("securityGroupSelectorTerms", i, term)
		if term.ID == "" && term.Name == "" && len(term.Tags) == 0 {
			unmatched = append(unmatched, desc)
			continue
		}
		filters := tagFilters(term.Tags)
		if term.ID != "" {
			filters = append(filters, filter("group-id", term.ID))
		}
		if term.Name != "" {
			filters = append(filters, filter("group-name", term.Name))
		}
		matched := 0
		pages := ec2.NewDescribeSecurityGroupsPaginator(r.ec2, &ec2.DescribeSecurityGroupsInput{Filters: filters})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, nil, fmt.Errorf("describing security groups for %s: %w", desc, err)
			}
			for _, g := range page.SecurityGroups {
				if !hasTags(g.Tags, term.Tags) {
					continue
				}
				matched++
				id := aws.ToString(g.GroupId)
				byID[id] = awsv1.SecurityGroup{ID: id, Name: aws.ToString(g.GroupName)}
			}
		}
		if matched == 0 {
			unmatched = append(unmatched, desc)
		}
	}
	out := make([]awsv1.SecurityGroup, 0, len(byID))
	for _, id := range sortedKeys(byID) {
		out = append(out, byID[id])
	}
	return out, unmatched, nil
}

// instanceProfile returns the instance profile nodes of nc launch with:
// spec.instanceProfile as given, or the one made for spec.role (see
// ensureInstanceProfile). A *profileProblem is for the user to fix.
func (r *NodeClassResolver) instanceProfile(ctx context.Context, nc *awsv1.EC2NodeClass) (string, error) {
	if p := nc.Spec.InstanceProfile; p != nil && *p != "" {
		return *p, nil
	}
	if nc.Spec.Role == "" {
		return "", &profileProblem{"neither spec.role nor spec.instanceProfile is set"}
	}
	name, err := r.ensureInstanceProfile(ctx, nc)
	if err != nil && !errors.As(err, new(*profileProblem)) {
		return "", fmt.Errorf("instance profile for spec.role %s: %w", nc.Spec.Role, err)
	}
	return name, err
}

// validate lists what in nc's spec the provider cannot launch with.
func (r *NodeClassResolver) validate(nc *awsv1.EC2NodeClass) []string {
	var problems []string
	if _, err := NodeSettings(nc, r.opts.VMMemoryOverheadPercent); err != nil {
		problems = append(problems, err.Error())
	}
	switch family := AMIFamily(nc); family {
	case amiFamilyAL2023, amiFamilyCustom:
	case amiFamilyAL2:
		problems = append(problems, al2KubeletProblems(nc.Spec.Kubelet)...)
	case amiFamilyBottlerocket:
		if _, err := bottlerocketSettings(aws.ToString(nc.Spec.UserData)); err != nil {
			problems = append(problems, err.Error())
		}
		problems = append(problems, bottlerocketKubeletProblems(nc.Spec.Kubelet)...)
	case amiFamilyWindows2019, amiFamilyWindows2022, amiFamilyWindows2025:
		problems = append(problems, windowsProblems(nc, r.opts.ClusterCIDR)...)
	case "":
		problems = append(problems, "spec.amiFamily is required when amiSelectorTerms has no alias")
	default:
		problems = append(problems, fmt.Sprintf("%s: AMI family %s is not supported: %s", familyField(nc), family, unsupportedFamily))
	}
	return problems
}

// familyField names the field the family came from: spec.amiFamily when
// set, else the alias term.
func familyField(nc *awsv1.EC2NodeClass) string {
	if aws.ToString(nc.Spec.AMIFamily) != "" {
		return "spec.amiFamily"
	}
	for i, term := range nc.Spec.AMISelectorTerms {
		if term.Alias != "" {
			return fmt.Sprintf("spec.amiSelectorTerms[%d].alias %s", i, term.Alias)
		}
	}
	return "spec.amiFamily"
}
