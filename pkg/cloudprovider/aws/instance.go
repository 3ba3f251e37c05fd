package aws

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/samber/lo"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
	"github.com/nodewright/nodewright/pkg/cloudprovider"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
)

// instanceEC2API is what launching, finding and terminating instances needs
// of EC2.
type instanceEC2API interface {
	launchTemplateEC2API
	ec2.DescribeInstancesAPIClient
	ec2.DescribeInstanceStatusAPIClient
	CreateFleet(context.Context, *ec2.CreateFleetInput, ...func(*ec2.Options)) (*ec2.CreateFleetOutput, error)
	TerminateInstances(context.Context, *ec2.TerminateInstancesInput, ...func(*ec2.Options)) (*ec2.TerminateInstancesOutput, error)
}

// capacityErrorCodes are the CreateFleet error codes that say an offering
// (type, zone, capacity type) cannot be had right now: the offering is
// marked unavailable and the launch moves on to the others.
var capacityErrorCodes = map[string]bool{
	"InsufficientInstanceCapacity": true,
	"UnfulfillableCapacity":        true,
	"MaxSpotInstanceCountExceeded": true,
	"VcpuLimitExceeded":            true,
	"Unsupported":                  true,
	reservationExceededCode:        true,
}

// subnetFullCode is EC2's fleet error for an override whose subnet has no
// free address. It says nothing of the offering: the zone's other subnets
// may have room. Only when all of them are full is the offering marked.
const subnetFullCode = "InsufficientFreeAddressesInSubnet"

// maxFleetAttempts bounds the fleets one Create tries: each marks the pools
// that failed, so the next one asks only for the rest (and on-demand once
// spot is exhausted). Beyond a few, the provisioner's next plan, which sees
// the marked pools, is the better retry.
const maxFleetAttempts = 4

// liveStates are the instance states that still hold (or will again hold) a
// node. Shutting-down and terminated instances count as gone: their
// termination cannot be undone.
var liveStates = []string{"pending", "running", "stopping", "stopped"}

// Create launches an instance for claim: the cheapest offerings its
// requirements allow, in the zones of its node class's subnets, spot when
// allowed and available, else on-demand. See cloudprovider.CloudProvider.
func (p *CloudProvider) Create(ctx context.Context, claim *v1.NodeClaim) (*v1.NodeClaim, error) {
	nc, err := p.readyNodeClass(ctx, claim.Spec.NodeClassRef)
	if err != nil {
		return nil, fmt.Errorf("NodeClaim %s: %w", claim.Name, err)
	}
	reqs, err := requirements.FromNodePool(claim.Spec.Requirements)
	if err != nil {
		return nil, fmt.Errorf("NodeClaim %s requirements: %w", claim.Name, err)
	}
	settings, err := NodeSettings(nc, p.opts.VMMemoryOverheadPercent)
	if err != nil {
		return nil, &cloudprovider.NodeClassNotReadyError{Name: nc.Name, Reason: err.Error()}
	}
	// An instance already launched for this claim (a retry after the
	// status write failed, a restart) is the answer: never a second one.
	existing, err := p.describeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		filter("tag:"+awsv1.TagNodeClaim, claim.Name), filter("tag:"+p.clusterTag(), "owned"), filter("instance-state-name", liveStates...),
	}})
	if err != nil {
		return nil, fmt.Errorf("looking for an instance of NodeClaim %s: %w", claim.Name, err)
	}
	if len(existing) > 0 {
		log.FromContext(ctx).V(1).Info("instance already launched", "nodeClaim", claim.Name, "instance", aws.ToString(existing[0].InstanceId))
		return p.describedLaunch(claim, existing[0], nc, settings)
	}
	c, err := p.catalogs.get(p.instanceTypes.Catalog(), nc)
	if err != nil {
		return nil, &cloudprovider.NodeClassNotReadyError{Name: nc.Name, Reason: err.Error()}
	}
	inst, err := p.launch(ctx, claim, nc, reqs, c, settings)
	if err != nil {
		return nil, err
	}
	out, err := p.describedLaunch(claim, inst, nc, settings)
	if err != nil {
		return nil, err
	}
	log.FromContext(ctx).Info("launched instance", "nodeClaim", claim.Name, "instance", aws.ToString(inst.InstanceId),
		"instanceType", string(inst.InstanceType), "zone", out.Labels[v1.LabelTopologyZone], "capacityType", out.Labels[v1.CapacityTypeLabelKey])
	return out, nil
}

// launch creates fleets until one launches an instance, each without the
// offerings the previous ones found out of capacity. Each zone is asked for
// in every subnet of the node class there, the one with the most free
// addresses first (see subnetAddresses).
func (p *CloudProvider) launch(ctx context.Context, claim *v1.NodeClaim, nc *awsv1.EC2NodeClass, reqs requirements.Requirements, c *catalog.Catalog, settings catalog.NodeSettings) (ec2types.Instance, error) {
	if err := p.subnets.refresh(ctx, nc.Status.Subnets); err != nil {
		log.FromContext(ctx).V(1).Info("using the free addresses known", "error", err.Error())
	}
	var capacityErrs []string
	lastCode := cloudprovider.NoOfferingAvailable
	for range maxFleetAttempts {
		plan, err := p.planFleet(claim, nc, reqs, c, settings, p.subnets.byZone(nc.Status.Subnets))
		if err != nil {
			if len(capacityErrs) > 0 {
				err = fmt.Errorf("%w (after %s)", err, strings.Join(capacityErrs, "; "))
			}
			return ec2types.Instance{}, &cloudprovider.InsufficientCapacityError{Code: lastCode, Err: fmt.Errorf("NodeClaim %s: %w", claim.Name, err)}
		}
		reservation := p.subnets.reserve(plan.preferredSubnets())
		out, err := p.createFleet(ctx, claim, nc, plan)
		if err != nil {
			p.subnets.release(reservation, "")
			return ec2types.Instance{}, err
		}
		var other []string
		otherCode := ""
		learned := 0
		for _, e := range out.Errors {
			code, message := aws.ToString(e.ErrorCode), aws.ToString(e.ErrorMessage)
			o, ok := plan.find(e.LaunchTemplateAndOverrides)
			if ok && code == subnetFullCode {
				p.subnets.full(o.subnet)
				log.FromContext(ctx).V(1).Info("subnet full", "nodeClaim", claim.Name, "subnet", o.subnet, "zone", o.zone)
				if !p.subnets.zoneFull(o.zone, nc.Status.Subnets) {
					// The next fleet asks for the zone's other subnets first.
					learned++
					capacityErrs = append(capacityErrs, fmt.Sprintf("subnet %s: %s", o.subnet, code))
					continue
				}
			} else if !capacityErrorCodes[code] || !ok {
				other = append(other, code+": "+message)
				otherCode = cmp.Or(otherCode, code)
				continue
			}
			lastCode = code
			capacityType := cmp.Or(string(e.Lifecycle), plan.capacityType)
			if plan.capacityType == v1.CapacityTypeReserved {
				// EC2 names the launch on-demand (or capacity-block); what is
				// out is the reservation, not the type's on-demand capacity.
				capacityType = v1.CapacityTypeReserved
			}
			c.Unavailable.MarkUnavailable(o.instanceType.Name, o.zone, capacityType)
			learned++
			capacityErrs = append(capacityErrs, fmt.Sprintf("%s %s %s: %s", o.instanceType.Name, o.zone, capacityType, code))
			log.FromContext(ctx).V(1).Info("offering out of capacity", "nodeClaim", claim.Name, "instanceType", o.instanceType.Name, "zone", o.zone, "capacityType", capacityType, "code", code)
		}
		for _, fi := range out.Instances {
			if len(fi.InstanceIds) > 0 {
				inst := p.launchedInstance(ctx, fi, plan)
				p.subnets.release(reservation, aws.ToString(inst.SubnetId))
				return inst, nil
			}
		}
		p.subnets.release(reservation, "")
		if learned == 0 {
			// Nothing learned: another fleet would fail the same way.
			if len(other) == 0 {
				other = []string{"no instance and no error"}
			}
			return ec2types.Instance{}, &cloudprovider.LaunchError{Code: otherCode, Err: fmt.Errorf("creating fleet for NodeClaim %s: %s", claim.Name, strings.Join(other, "; "))}
		}
	}
	return ec2types.Instance{}, &cloudprovider.InsufficientCapacityError{Code: lastCode, Err: fmt.Errorf("NodeClaim %s: %d fleets launched nothing: %s", claim.Name, maxFleetAttempts, strings.Join(capacityErrs, "; "))}
}

// fleetPlan is one CreateFleet request: a capacity type and the pools to
// choose among, cheapest first.
type fleetPlan struct {
	capacityType string
	overrides    []override
	labels       map[string]string
	taints       []corev1.Taint
}

// override is one pool in one subnet: an instance type in a zone, with
// its AMI; rank is the subnet's place among the zone's (0: most free
// addresses).
type override struct {
	instanceType *catalog.InstanceType
	zone, subnet string
	rank         int
	ami          awsv1.AMI
	price        float64
	// reservationID and reservationType are a reserved pool's reservation.
	reservationID, reservationType string
}

// targetCapacityType is the fleet's capacity type: a reserved plan
// launches as on-demand into its reservations, or as capacity-block into
// capacity blocks.
func (f fleetPlan) targetCapacityType() ec2types.DefaultTargetCapacityType {
	if f.capacityType != v1.CapacityTypeReserved {
		return ec2types.DefaultTargetCapacityType(f.capacityType)
	}
	if len(f.overrides) > 0 && f.overrides[0].reservationType == reservationTypeCapacityBlock {
		return ec2types.DefaultTargetCapacityTypeCapacityBlock
	}
	return ec2types.DefaultTargetCapacityTypeOnDemand
}

// preferredSubnets are the subnets the plan prefers, one per zone: where
// its launch will most likely take an address.
func (f fleetPlan) preferredSubnets() []string {
	return lo.Uniq(lo.FilterMap(f.overrides, func(o override, _ int) (string, bool) { return o.subnet, o.rank == 0 }))
}

// find returns the override a fleet error names.
func (f fleetPlan) find(lo *ec2types.LaunchTemplateAndOverridesResponse) (override, bool) {
	if lo == nil || lo.Overrides == nil {
		return override{}, false
	}
	o := lo.Overrides
	for _, ov := range f.overrides {
		if ov.instanceType.Name == string(o.InstanceType) &&
			(aws.ToString(o.SubnetId) == ov.subnet || (o.SubnetId == nil && aws.ToString(o.AvailabilityZone) == ov.zone)) {
			return ov, true
		}
	}
	return override{}, false
}

// planFleet chooses the capacity type and pools for the next fleet from the
// offerings still available, each pool in every subnet of its zone in the
// order zoneSubnets gives, so a full subnet does not take its zone out.
func (p *CloudProvider) planFleet(claim *v1.NodeClaim, nc *awsv1.EC2NodeClass, reqs requirements.Requirements, c *catalog.Catalog, settings catalog.NodeSettings, zoneSubnets map[string][]string) (fleetPlan, error) {
	candidates, err := c.Filter(reqs)
	if err != nil {
		return fleetPlan{}, err
	}
	var spot, onDemand, reserved []override
	for _, cand := range candidates {
		if !fits(claim.Spec.Resources.Requests, cand.Type, nc, settings) {
			continue
		}
		ami, ok := amiFor(nc.Status.AMIs, cand.Type.Labels)
		if !ok {
			continue
		}
		for _, o := range cand.Offerings() {
			for rank, subnet := range zoneSubnets[o.Zone] {
				ov := override{instanceType: cand.Type, zone: o.Zone, subnet: subnet, rank: rank, ami: ami, price: o.Price,
					reservationID: o.ReservationID, reservationType: o.ReservationType}
				switch o.CapacityType {
				case v1.CapacityTypeReserved:
					reserved = append(reserved, ov)
				case v1.CapacityTypeSpot:
					spot = append(spot, ov)
				case v1.CapacityTypeOnDemand:
					onDemand = append(onDemand, ov)
				}
			}
		}
	}
	byPrice := func(a, b override) int {
		return cmp.Or(cmp.Compare(a.price, b.price), cmp.Compare(a.instanceType.Name, b.instanceType.Name), cmp.Compare(a.zone, b.zone), cmp.Compare(a.rank, b.rank))
	}
	slices.SortFunc(spot, byPrice)
	slices.SortFunc(onDemand, byPrice)
	slices.SortFunc(reserved, byPrice)
	if len(reserved) > 0 {
		// A fleet launches into default reservations as on-demand and into
		// capacity blocks as capacity-block: one kind per fleet, the
		// cheapest pool's.
		kind := reserved[0].reservationType
		reserved = slices.DeleteFunc(reserved, func(o override) bool { return o.reservationType != kind })
	}
	if len(onDemand) > 0 {
		// Spot is never worth more than on-demand: its pools priced above the
		// cheapest on-demand one are left out, as Karpenter does.
		spot = slices.DeleteFunc(spot, func(o override) bool { return o.price > onDemand[0].price })
	}
	// Reserved capacity is paid for whether used or not: first, then spot,
	// then on-demand.
	plan := fleetPlan{capacityType: v1.CapacityTypeReserved, overrides: reserved}
	if len(reserved) == 0 {
		plan = fleetPlan{capacityType: v1.CapacityTypeSpot, overrides: spot}
	}
	if len(reserved) == 0 && len(spot) == 0 {
		plan = fleetPlan{capacityType: v1.CapacityTypeOnDemand, overrides: onDemand}
	}
	if len(plan.overrides) == 0 {
		return fleetPlan{}, fmt.Errorf("no available offering fits the requests %v in the zones of EC2NodeClass %s's subnets with one of its AMIs", claim.Spec.Resources.Requests, nc.Name)
	}
	if len(plan.overrides) > p.opts.MaxFleetOverrides {
		plan.overrides = plan.overrides[:p.opts.MaxFleetOverrides]
	}
	plan.labels = nodeLabels(claim, nc, plan.capacityType)
	plan.taints = registrationTaints(claim)
	return plan, nil
}

// fits reports whether a node of the type, under the node class's settings,
// has room for the claim's requests.
func fits(requests corev1.ResourceList, it *catalog.InstanceType, nc *awsv1.EC2NodeClass, settings catalog.NodeSettings) bool {
	if len(requests) == 0 {
		return true
	}
	_, allocatable := it.Spec.Resources(typeSettings(nc, it, settings))
	for name, q := range requests {
		if have, ok := allocatable[name]; !ok && !q.IsZero() || ok && have.Cmp(q) < 0 {
			return false
		}
	}
	return true
}

// typeSettings are the node class's settings for one type: with a RAID0
// instance store, the type's local NVMe is the ephemeral storage.
func typeSettings(nc *awsv1.EC2NodeClass, it *catalog.InstanceType, settings catalog.NodeSettings) catalog.NodeSettings {
	if q, ok := InstanceStoreEphemeral(nc, it.Spec); ok {
		settings.EphemeralStorage = q
	}
	return settings
}

// nodeLabels are the labels the kubelet registers the node with: the
// claim's labels and single-valued requirements the kubelet may set, the
// capacity type and the node class. Instance-type and zone labels are left
// to the node lifecycle, which syncs every label once the node registers:
// they differ between the fleet's pools, which share the template.
func nodeLabels(claim *v1.NodeClaim, nc *awsv1.EC2NodeClass, capacityType string) map[string]string {
	labels := map[string]string{}
	add := func(k, v string) {
		// Requirement values come from pods' node affinity, which the API
		// server does not validate as label values: one holding a comma or
		// a space would add labels or flags to the kubelet's command line.
		if !catalog.CatalogKeys[k] && kubeletMaySet(k) && validLabel(k, v) {
			labels[k] = v
		}
	}
	for k, v := range claim.Labels {
		add(k, v)
	}
	for _, r := range claim.Spec.Requirements {
		if r.Operator == corev1.NodeSelectorOpIn && len(r.Values) == 1 {
			add(r.Key, r.Values[0])
		}
	}
	labels[v1.CapacityTypeLabelKey] = capacityType
	labels[awsv1.LabelEC2NodeClass] = nc.Name
	return labels
}

// validLabel reports whether k=v is a label the API server would store.
func validLabel(k, v string) bool {
	return len(validation.IsQualifiedName(k)) == 0 && len(validation.IsValidLabelValue(v)) == 0
}

// kubeletMaySet reports whether the kubelet accepts key in --node-labels: it
// refuses the kubernetes.io and k8s.io namespaces except its own and the
// node.kubernetes.io ones.
func kubeletMaySet(key string) bool {
	domain, _, ok := strings.Cut(key, "/")
	if !ok {
		return true
	}
	if !strings.HasSuffix(domain, "kubernetes.io") && !strings.HasSuffix(domain, "k8s.io") {
		return true
	}
	for _, allowed := range []string{"kubelet.kubernetes.io", "node.kubernetes.io"} {
		if domain == allowed || strings.HasSuffix(domain, "."+allowed) {
			return true
		}
	}
	return false
}

// registrationTaints are the taints the node registers with: the claim's,
// its startup taints and the unregistered taint that keeps pods off until
// the lifecycle controller has synced the claim onto the node.
func registrationTaints(claim *v1.NodeClaim) []corev1.Taint {
	var out []corev1.Taint
	for _, t := range slices.Concat(claim.Spec.Taints, claim.Spec.StartupTaints, []corev1.Taint{v1.UnregisteredNoExecuteTaint}) {
		if !slices.ContainsFunc(out, func(o corev1.Taint) bool { return o.MatchTaint(&t) }) {
			out = append(out, t)
		}
	}
	return out
}

// createFleet makes the plan's CreateFleet call. A launch template EC2 no
// longer has (deleted by hand, by a cleanup) is recreated and the call
// retried once.
func (p *CloudProvider) createFleet(ctx context.Context, claim *v1.NodeClaim, nc *awsv1.EC2NodeClass, plan fleetPlan) (*ec2.CreateFleetOutput, error) {
	for retry := 0; ; retry++ {
		configs, names, err := p.launchTemplateConfigs(ctx, claim, nc, plan)
		if err != nil {
			return nil, fmt.Errorf("NodeClaim %s: %w", claim.Name, err)
		}
		in := &ec2.CreateFleetInput{
			Type:                  ec2types.FleetTypeInstant,
			LaunchTemplateConfigs: configs,
			TargetCapacitySpecification: &ec2types.TargetCapacitySpecificationRequest{
				TotalTargetCapacity:       aws.Int32(1),
				DefaultTargetCapacityType: plan.targetCapacityType(),
			},
			TagSpecifications: fleetTagSpecifications(ec2Tags(p.instanceTags(claim, nc))),
			Context:           nc.Spec.Context,
		}
		if plan.targetCapacityType() == ec2types.DefaultTargetCapacityTypeSpot {
			in.SpotOptions = &ec2types.SpotOptionsRequest{AllocationStrategy: ec2types.SpotAllocationStrategyPriceCapacityOptimized}
		} else {
			in.OnDemandOptions = &ec2types.OnDemandOptionsRequest{AllocationStrategy: ec2types.FleetOnDemandAllocationStrategyLowestPrice}
		}
		if in.ClientToken, err = clientToken(claim, in, p.fleetAttempts.current(claim.UID)); err != nil {
			return nil, err
		}
		out, err := p.ec2.CreateFleet(ctx, in)
		if definitiveFailure(out, err) {
			p.fleetAttempts.failed(claim.UID)
		}
		if retry == 0 && launchTemplateMissing(out, err) {
			log.FromContext(ctx).Info("launch template missing; recreating it", "nodeClaim", claim.Name, "launchTemplates", names)
			for _, name := range names {
				p.launchTemplates.invalidate(name)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("creating fleet for NodeClaim %s: %w", claim.Name, err)
		}
		return out, nil
	}
}

// launchTemplateMissing reports whether a fleet failed for want of its launch
// template, as the call's error or, with no instance, in its Errors.
func launchTemplateMissing(out *ec2.CreateFleetOutput, err error) bool {
	if err != nil {
		return isLaunchTemplateNotFound(err)
	}
	for _, i := range out.Instances {
		if len(i.InstanceIds) > 0 {
			return false
		}
	}
	return slices.ContainsFunc(out.Errors, func(e ec2types.CreateFleetError) bool { return launchTemplateNotFoundCodes[aws.ToString(e.ErrorCode)] })
}

// launchTemplateConfigs groups the plan's pools by AMI and reservation, one
// launch template each: a template targets at most one reservation.
func (p *CloudProvider) launchTemplateConfigs(ctx context.Context, claim *v1.NodeClaim, nc *awsv1.EC2NodeClass, plan fleetPlan) ([]ec2types.FleetLaunchTemplateConfigRequest, []string, error) {
	var configs []ec2types.FleetLaunchTemplateConfigRequest
	var names []string
	byTemplate := map[[2]string]int{}
	for _, o := range plan.overrides {
		i, ok := byTemplate[[2]string{o.ami.ID, o.reservationID}]
		if !ok {
			name, err := p.launchTemplates.ensure(ctx, launchParams{
				nodeClass: nc, nodePool: claim.Labels[v1.NodePoolLabelKey], ami: o.ami,
				capacityType: plan.capacityType, labels: plan.labels, taints: plan.taints,
				capacityReservationID: o.reservationID,
			})
			if err != nil {
				return nil, nil, err
			}
			i = len(configs)
			byTemplate[[2]string{o.ami.ID, o.reservationID}] = i
			names = append(names, name)
			configs = append(configs, ec2types.FleetLaunchTemplateConfigRequest{
				LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecificationRequest{LaunchTemplateName: aws.String(name), Version: aws.String("$Latest")},
			})
		}
		configs[i].Overrides = append(configs[i].Overrides, ec2types.FleetLaunchTemplateOverridesRequest{
			InstanceType: ec2types.InstanceType(o.instanceType.Name), SubnetId: aws.String(o.subnet), AvailabilityZone: aws.String(o.zone),
		})
	}
	return configs, names, nil
}

// clientToken makes a fleet request idempotent: the SDK's retry of a call
// whose answer was lost, or the next Create after it, returns the first
// call's instance instead of launching another. It is a hash of the claim's
// UID, its attempt (see fleetAttempts) and the whole request, so it differs
// between the fleets of one Create (other pools, another capacity type, a
// recreated template), which EC2 would otherwise answer with
// IdempotentParameterMismatch, and after a fleet EC2 refused, whose cached
// answer EC2 would otherwise replay to every later identical request. No UID
// (a claim not from the apiserver), no token: the tag lookup in Create still
// guards against a second instance.
func clientToken(claim *v1.NodeClaim, in *ec2.CreateFleetInput, attempt int) (*string, error) {
	if claim.UID == "" {
		return nil, nil
	}
	request, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("hashing the fleet request: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%d\n", claim.UID, attempt)
	h.Write(request)
	return aws.String("nodewright-" + hex.EncodeToString(h.Sum(nil)[:16])), nil
}

// instanceTags are the launched instance's tags: the node class's resource
// tags and the claim that owns it, by which List, Get and Create find it.
func (p *CloudProvider) instanceTags(claim *v1.NodeClaim, nc *awsv1.EC2NodeClass) map[string]string {
	tags := resourceTags(p.opts.ClusterName, nc, claim.Labels[v1.NodePoolLabelKey])
	tags[awsv1.TagNodeClaim] = claim.Name
	if _, ok := nc.Spec.Tags[awsv1.TagName]; !ok {
		tags[awsv1.TagName] = claim.Name
	}
	return tags
}

func (p *CloudProvider) clusterTag() string { return awsv1.TagClusterPrefix + p.opts.ClusterName }

// launchedInstance describes the instance a fleet launched. DescribeInstances
// is eventually consistent and may not know an instance for a moment after
// its launch; if it still does not, the fleet's answer is enough to describe
// it (its type, zone, capacity type and AMI are known from the pool).
func (p *CloudProvider) launchedInstance(ctx context.Context, fi ec2types.CreateFleetInstance, plan fleetPlan) ec2types.Instance {
	id := fi.InstanceIds[0]
	var found *ec2types.Instance
	_ = wait.ExponentialBackoffWithContext(ctx, wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Steps: 5}, func(ctx context.Context) (bool, error) {
		instances, err := p.describeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
		if err != nil || len(instances) == 0 {
			return false, nil
		}
		found = &instances[0]
		return true, nil
	})
	if found != nil {
		return *found
	}
	log.FromContext(ctx).Info("launched instance not described yet; using the fleet's answer", "instance", id)
	inst := ec2types.Instance{InstanceId: aws.String(id), InstanceType: fi.InstanceType, State: &ec2types.InstanceState{Name: ec2types.InstanceStateNamePending}}
	if fi.Lifecycle == ec2types.InstanceLifecycleSpot {
		inst.InstanceLifecycle = ec2types.InstanceLifecycleTypeSpot
	}
	if o, ok := plan.find(fi.LaunchTemplateAndOverrides); ok {
		inst.Placement = &ec2types.Placement{AvailabilityZone: aws.String(o.zone)}
		inst.ImageId = aws.String(o.ami.ID)
		if o.reservationID != "" {
			inst.CapacityReservationId = aws.String(o.reservationID)
			if o.reservationType == reservationTypeCapacityBlock {
				inst.InstanceLifecycle = ec2types.InstanceLifecycleTypeCapacityBlock
			}
		}
		if o.subnet != "" {
			inst.SubnetId = aws.String(o.subnet)
		}
	}
	return inst
}

// describeInstances pages through DescribeInstances.
func (p *CloudProvider) describeInstances(ctx context.Context, in *ec2.DescribeInstancesInput) ([]ec2types.Instance, error) {
	var out []ec2types.Instance
	pages := ec2.NewDescribeInstancesPaginator(p.ec2, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Reservations {
			out = append(out, r.Instances...)
		}
	}
	return out, nil
}

// describedLaunch is launchedClaim, or an error when what is known of the
// instance does not make a provider ID (no zone: DescribeInstances does not
// know it yet and the fleet's answer named no pool of the plan). A claim
// recorded with such an ID could never be found, drained or terminated; the
// error makes the caller retry, and the retry finds the instance by its tags
// once EC2 describes it.
func (p *CloudProvider) describedLaunch(claim *v1.NodeClaim, inst ec2types.Instance, nc *awsv1.EC2NodeClass, settings catalog.NodeSettings) (*v1.NodeClaim, error) {
	out := p.launchedClaim(claim, inst, nc, settings)
	if _, _, err := ParseProviderID(out.Status.ProviderID); err != nil {
		return nil, &cloudprovider.LaunchError{Code: "InstanceNotDescribed", Err: fmt.Errorf(
			"NodeClaim %s: instance %s was launched but its zone is not known yet: %w", claim.Name, aws.ToString(inst.InstanceId), err)}
	}
	return out, nil
}

// launchedClaim is claim as Create returns it: its labels joined by the ones
// the instance resolved, its status by the instance's.
func (p *CloudProvider) launchedClaim(claim *v1.NodeClaim, inst ec2types.Instance, nc *awsv1.EC2NodeClass, settings catalog.NodeSettings) *v1.NodeClaim {
	described := p.claimFromInstance(inst, nc, settings)
	out := claim.DeepCopy()
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	for k, v := range described.Labels {
		out.Labels[k] = v
	}
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	if nc != nil {
		// What the instance was launched from, for drift.
		out.Annotations[awsv1.EC2NodeClassHashAnnotationKey] = nc.Hash()
		out.Annotations[awsv1.EC2NodeClassHashVersionAnnotationKey] = awsv1.EC2NodeClassHashVersion
	}
	// Where the instance sits, so drift can compare it with what the class
	// selects now without describing every instance.
	if id := aws.ToString(inst.SubnetId); id != "" {
		out.Annotations[SubnetAnnotation] = id
	}
	if len(inst.SecurityGroups) > 0 {
		ids := lo.Map(inst.SecurityGroups, func(g ec2types.GroupIdentifier, _ int) string { return aws.ToString(g.GroupId) })
		slices.Sort(ids)
		out.Annotations[SecurityGroupsAnnotation] = strings.Join(ids, ",")
	}
	out.Status.ProviderID = described.Status.ProviderID
	out.Status.ImageID = described.Status.ImageID
	out.Status.Capacity = described.Status.Capacity
	out.Status.Allocatable = described.Status.Allocatable
	return out
}

// claimFromInstance describes an instance as a NodeClaim: named by its
// nodeclaim tag, labeled with its type's, zone's and capacity type's labels,
// with the capacity and allocatable of its type under the node class's
// settings.
func (p *CloudProvider) claimFromInstance(inst ec2types.Instance, nc *awsv1.EC2NodeClass, settings catalog.NodeSettings) *v1.NodeClaim {
	tags := map[string]string{}
	for _, t := range inst.Tags {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	var zone, zoneID string
	if inst.Placement != nil {
		zone, zoneID = aws.ToString(inst.Placement.AvailabilityZone), aws.ToString(inst.Placement.AvailabilityZoneId)
	}
	capacityType := v1.CapacityTypeOnDemand
	if inst.InstanceLifecycle == ec2types.InstanceLifecycleTypeSpot {
		capacityType = v1.CapacityTypeSpot
	}
	reservation := aws.ToString(inst.CapacityReservationId)
	if reservation != "" && (inst.InstanceLifecycle == ec2types.InstanceLifecycleTypeCapacityBlock || reservedBy(nc, reservation)) {
		// Launched into a reservation the class selects (or a capacity
		// block, which only a targeted launch enters); an on-demand
		// instance EC2 matched into some other open reservation stays
		// on-demand, as in Karpenter.
		capacityType = v1.CapacityTypeReserved
	}
	claim := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: tags[awsv1.TagNodeClaim], Labels: map[string]string{}}}
	if t := inst.LaunchTime; t != nil {
		claim.CreationTimestamp = metav1.NewTime(*t)
	}
	if name := tags[awsv1.TagEC2NodeClass]; name != "" {
		claim.Spec.NodeClassRef = &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: name}
		claim.Labels[awsv1.LabelEC2NodeClass] = name
	}
	if it := p.instanceTypes.Catalog().Get(string(inst.InstanceType)); it != nil {
		for k, v := range it.Labels {
			claim.Labels[k] = v
		}
		if build := windowsBuildOf(nc); build != "" {
			// The region catalog's types are Linux; this one runs the
			// class's Windows (see restrictCatalog).
			claim.Labels[v1.LabelOSStable], claim.Labels[v1.LabelWindowsBuild] = string(corev1.Windows), build
		}
		for _, o := range it.Offerings {
			if o.Zone == zone && zoneID == "" {
				zoneID = o.ZoneID
			}
		}
		if nc != nil {
			settings = typeSettings(nc, it, settings)
		}
		claim.Status.Capacity, claim.Status.Allocatable = it.Spec.Resources(settings)
	} else {
		claim.Labels[v1.LabelInstanceTypeStable] = string(inst.InstanceType)
	}
	claim.Labels[v1.LabelTopologyZone] = zone
	if zoneID != "" {
		claim.Labels[awsv1.LabelTopologyZoneID] = zoneID
	}
	claim.Labels[v1.LabelTopologyRegion] = p.opts.Region
	claim.Labels[v1.CapacityTypeLabelKey] = capacityType
	if capacityType == v1.CapacityTypeReserved {
		claim.Labels[awsv1.LabelCapacityReservationID] = reservation
		claim.Labels[awsv1.LabelCapacityReservationType] = reservationTypeDefault
		if inst.InstanceLifecycle == ec2types.InstanceLifecycleTypeCapacityBlock {
			claim.Labels[awsv1.LabelCapacityReservationType] = reservationTypeCapacityBlock
		}
		// From the class's status: the instance does not say whether its
		// reservation is interruptible.
		cr, _ := statusReservation(nc, reservation)
		claim.Labels[awsv1.LabelCapacityReservationInterruptible] = strconv.FormatBool(cr.Interruptible)
	}
	maps.Copy(claim.Labels, placementLabels(inst))
	if pool := tags[awsv1.TagNodePool]; pool != "" {
		claim.Labels[v1.NodePoolLabelKey] = pool
	}
	claim.Status.ProviderID = ProviderID(zone, aws.ToString(inst.InstanceId))
	claim.Status.ImageID = aws.ToString(inst.ImageId)
	return claim
}

// Delete terminates the claim's instance. It returns a *NotFoundError when
// the instance is gone, terminated or already shutting down.
func (p *CloudProvider) Delete(ctx context.Context, claim *v1.NodeClaim) error {
	_, id, err := ParseProviderID(claim.Status.ProviderID)
	if err != nil {
		return fmt.Errorf("NodeClaim %s: %w", claim.Name, err)
	}
	out, err := p.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
	if isInstanceNotFound(err) {
		return &cloudprovider.NotFoundError{ProviderID: claim.Status.ProviderID}
	}
	if err != nil {
		return fmt.Errorf("terminating instance %s of NodeClaim %s: %w", id, claim.Name, err)
	}
	for _, change := range out.TerminatingInstances {
		if prev := change.PreviousState; prev != nil && (prev.Name == ec2types.InstanceStateNameShuttingDown || prev.Name == ec2types.InstanceStateNameTerminated) {
			return &cloudprovider.NotFoundError{ProviderID: claim.Status.ProviderID}
		}
	}
	log.FromContext(ctx).Info("terminating instance", "nodeClaim", claim.Name, "instance", id)
	return nil
}

// Get describes the instance behind providerID; shutting-down and terminated
// instances are not found. Concurrent Gets share one DescribeInstances.
func (p *CloudProvider) Get(ctx context.Context, providerID string) (*v1.NodeClaim, error) {
	_, id, err := ParseProviderID(providerID)
	if err != nil {
		return nil, err
	}
	inst, err := p.instances.get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("describing instance %s: %w", id, err)
	}
	if inst != nil && inst.State != nil && slices.Contains(liveStates, string(inst.State.Name)) {
		return p.describedClaim(ctx, *inst, map[string]*awsv1.EC2NodeClass{}), nil
	}
	return nil, &cloudprovider.NotFoundError{ProviderID: providerID}
}

// List returns a NodeClaim for every live instance of this cluster that
// nodewright launched (tagged with the cluster and a nodeclaim).
func (p *CloudProvider) List(ctx context.Context) ([]*v1.NodeClaim, error) {
	instances, err := p.describeInstances(ctx, &ec2.DescribeInstancesInput{
		Filters: []ec2types.Filter{
			filter("tag:"+p.clusterTag(), "owned"), filter("tag-key", awsv1.TagNodeClaim), filter("instance-state-name", liveStates...),
		},
		MaxResults: aws.Int32(1000),
	})
	if err != nil {
		return nil, fmt.Errorf("listing instances of cluster %s: %w", p.opts.ClusterName, err)
	}
	nodeClasses := map[string]*awsv1.EC2NodeClass{}
	out := make([]*v1.NodeClaim, 0, len(instances))
	for _, inst := range instances {
		out = append(out, p.describedClaim(ctx, inst, nodeClasses))
	}
	return out, nil
}

// describedClaim is claimFromInstance with the settings of the instance's
// node class, read once per call into cache; without it (deleted, not
// readable) the defaults apply.
func (p *CloudProvider) describedClaim(ctx context.Context, inst ec2types.Instance, cache map[string]*awsv1.EC2NodeClass) *v1.NodeClaim {
	var name string
	for _, t := range inst.Tags {
		if aws.ToString(t.Key) == awsv1.TagEC2NodeClass {
			name = aws.ToString(t.Value)
		}
	}
	nc, ok := cache[name]
	if !ok && name != "" {
		nc = &awsv1.EC2NodeClass{}
		if err := p.nodeClasses.Get(ctx, client.ObjectKey{Name: name}, nc); err != nil {
			nc = nil
		}
		cache[name] = nc
	}
	var settings catalog.NodeSettings
	if nc != nil {
		if s, err := NodeSettings(nc, p.opts.VMMemoryOverheadPercent); err == nil {
			settings = s
		}
	}
	if settings.VMMemoryOverheadPercent == nil {
		settings.VMMemoryOverheadPercent = &p.opts.VMMemoryOverheadPercent
	}
	return p.claimFromInstance(inst, nc, settings)
}

func isInstanceNotFound(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "InvalidInstanceID.NotFound"
}
