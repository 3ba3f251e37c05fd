package ec2sim

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// The audit log: every request the simulator answers is recorded with the
// authorizations AWS makes for it, so a test can evaluate what nodewright
// does against the IAM policy its guides ship (test/iam). The simulator
// itself grants everything; the log only says what would have been asked.

// Call is one request the simulator answered.
type Call struct {
	// Time is the simulated time the request arrived.
	Time time.Time `json:"time"`
	// Caller is the access key id that signed the request, "" if unsigned.
	Caller string `json:"caller,omitempty"`
	// Action is the API operation with its IAM service prefix:
	// ec2:CreateFleet, ssm:GetParameter, sqs:DeleteMessageBatch.
	Action string `json:"action"`
	// Error is the error code of the answer, "" when the call succeeded.
	Error string `json:"error,omitempty"`
	// Checks are the authorizations AWS makes before it acts on the call.
	Checks []Check `json:"checks"`
}

// Check is one authorization of a call: an IAM action on a resource with the
// request's condition keys.
type Check struct {
	// Action is the IAM action checked. It may differ from the call's: the
	// tags of a CreateFleet are checked as ec2:CreateTags, its instance
	// profile's role as iam:PassRole, a DeleteMessageBatch as
	// sqs:DeleteMessage.
	Action string `json:"action"`
	// Resource is the ARN in the form IAM sees it: type/* for a resource the
	// call creates, whose id does not exist yet; "*" for actions without
	// resource-level permissions (Describe*).
	Resource string `json:"resource"`
	// RequestTags are the tags the call puts on the resource.
	RequestTags map[string]string `json:"requestTags,omitempty"`
	// ResourceTags are the tags the resource already has.
	ResourceTags map[string]string `json:"resourceTags,omitempty"`
	// Context is every condition key of the check with its values:
	// aws:RequestTag/<key> and aws:TagKeys from RequestTags,
	// aws:ResourceTag/<key> (and ec2:ResourceTag/<key>) from ResourceTags,
	// and keys like ec2:CreateAction and iam:PassedToService.
	Context map[string][]string `json:"context,omitempty"`
	// Note says what the simulator could not know, if anything.
	Note string `json:"note,omitempty"`
}

// AuditLog returns every call answered so far, in the order they were
// answered (a long poll when it answers). It grows for the simulator's
// life: a few hundred bytes a call.
func (s *Server) AuditLog() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.audit))
	for i, c := range s.audit {
		out[i] = c
		out[i].Checks = slices.Clone(c.Checks)
	}
	return out
}

// auditWriter records its call just before the first byte of the answer
// goes out, so a caller that has its answer finds the call in AuditLog.
type auditWriter struct {
	http.ResponseWriter
	s        *Server
	call     Call
	recorded bool
}

func (a *auditWriter) WriteHeader(status int) {
	a.record()
	a.ResponseWriter.WriteHeader(status)
}

func (a *auditWriter) Write(b []byte) (int, error) {
	a.record()
	return a.ResponseWriter.Write(b)
}

func (a *auditWriter) record() {
	if a.recorded {
		return
	}
	a.recorded = true
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	a.s.audit = append(a.s.audit, a.call)
}

// noteError tells the audit writer, if w is one, the error code of the
// answer.
func noteError(w http.ResponseWriter, code string) {
	if a, ok := w.(*auditWriter); ok {
		a.call.Error = code
	}
}

// credentialPattern finds the access key id in a SigV4 Authorization header.
var credentialPattern = regexp.MustCompile(`Credential=([^/,\s]+)/`)

// startAudit describes the request as the call to record, checks and all,
// before it is served (as AWS authorizes before it acts); the returned
// writer records it when the answer starts.
func (s *Server) startAudit(w http.ResponseWriter, r *http.Request, body []byte) *auditWriter {
	caller := ""
	if m := credentialPattern.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		caller = m[1]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	call := Call{Time: s.clock.now(), Caller: caller}
	a := authz{s: s, seen: map[string]bool{}}
	switch target := r.Header.Get("X-Amz-Target"); {
	case strings.HasPrefix(target, "AmazonSQS."):
		op := strings.TrimPrefix(target, "AmazonSQS.")
		call.Action = "sqs:" + op
		a.sqs(op, body)
	case target == "AmazonSSM.GetParameter":
		call.Action = "ssm:GetParameter"
		a.ssmGetParameter(body)
	case target == "AWSPriceListService.GetProducts":
		call.Action = "pricing:GetProducts"
		a.add(newCheck(call.Action, "*", nil, nil, nil))
	case target != "":
		call.Action = target
	case isSTS(r):
		// GetCallerIdentity needs no permission: AWS answers it even under
		// an explicit deny, so it has no check.
		form, _ := url.ParseQuery(string(body))
		call.Action = "sts:" + form.Get("Action")
	case isEKS(r):
		call.Action = "eks:" + r.Method + " " + r.URL.Path
		if name := eksClusterName(r); name != "" && r.Method == http.MethodGet {
			call.Action = "eks:DescribeCluster"
			a.add(newCheck(call.Action, s.clusterARN(name), nil, nil, nil))
		}
	case isIAM(r):
		form, _ := url.ParseQuery(string(body))
		call.Action = "iam:" + form.Get("Action")
		a.iam(form.Get("Action"), params(form))
	default:
		form, _ := url.ParseQuery(string(body))
		call.Action = "ec2:" + form.Get("Action")
		a.ec2(form.Get("Action"), params(form))
	}
	call.Checks = a.checks
	return &auditWriter{ResponseWriter: w, s: s, call: call}
}

// authz collects a call's checks, each once.
type authz struct {
	s      *Server
	checks []Check
	seen   map[string]bool
}

func (a *authz) add(c Check) {
	key, _ := json.Marshal(c)
	if a.seen[string(key)] {
		return
	}
	a.seen[string(key)] = true
	a.checks = append(a.checks, c)
}

// newCheck builds a check and its condition keys.
func newCheck(action, resource string, requestTags, resourceTags, context map[string]string) Check {
	c := Check{Action: action, Resource: resource, Context: map[string][]string{}}
	if len(requestTags) > 0 {
		c.RequestTags = maps.Clone(requestTags)
		for k, v := range requestTags {
			c.Context["aws:RequestTag/"+k] = []string{v}
		}
		c.Context["aws:TagKeys"] = sortedKeys(requestTags)
	}
	if len(resourceTags) > 0 {
		c.ResourceTags = maps.Clone(resourceTags)
		for k, v := range resourceTags {
			c.Context["aws:ResourceTag/"+k] = []string{v}
			if strings.HasPrefix(action, "ec2:") {
				c.Context["ec2:ResourceTag/"+k] = []string{v}
			}
		}
	}
	for k, v := range context {
		c.Context[k] = []string{v}
	}
	if len(c.Context) == 0 {
		c.Context = nil
	}
	return c
}

// ARNs in the forms IAM authorizes them.

func (s *Server) ec2ARN(resourceType, id string) string {
	return fmt.Sprintf("arn:aws:ec2:%s:%s:%s/%s", s.scenario.Region, s.scenario.AccountID, resourceType, id)
}

// publicEC2ARN is the ARN of images and snapshots, which carry no account.
func (s *Server) publicEC2ARN(resourceType, id string) string {
	return fmt.Sprintf("arn:aws:ec2:%s::%s/%s", s.scenario.Region, resourceType, id)
}

func (s *Server) queueARN(name string) string {
	return fmt.Sprintf("arn:aws:sqs:%s:%s:%s", s.scenario.Region, s.scenario.AccountID, name)
}

// ec2 adds the checks of an EC2 Query action. Actions on resources that do
// not exist get none: EC2 answers them with a NotFound error.
func (a *authz) ec2(action string, p params) {
	s := a.s
	iamAction := "ec2:" + action
	switch action {
	case "":
	case "CreateFleet":
		a.createFleet(p)
	case "CreateLaunchTemplate":
		specs, _ := readTagSpecifications(p, "launch-template")
		a.created(iamAction, action, s.ec2ARN("launch-template", "*"), specs["launch-template"])
	case "DeleteLaunchTemplate":
		if lt, err := s.templateLocked(p.get("LaunchTemplateId"), p.get("LaunchTemplateName")); err == nil {
			a.add(newCheck(iamAction, s.ec2ARN("launch-template", lt.ID), nil, lt.Tags, nil))
		}
	case "TerminateInstances":
		for _, id := range p.list("InstanceId") {
			if in, ok := s.instances[id]; ok {
				a.add(newCheck(iamAction, s.ec2ARN("instance", id), nil, in.Tags, nil))
			}
		}
	case "CreateTags":
		tags := p.tags("Tag")
		for _, id := range p.list("ResourceId") {
			if in, ok := s.instances[id]; ok {
				a.add(newCheck(iamAction, s.ec2ARN("instance", id), tags, in.Tags, nil))
			} else if lt, ok := s.templates[id]; ok {
				a.add(newCheck(iamAction, s.ec2ARN("launch-template", id), tags, lt.Tags, nil))
			}
		}
	default:
		if _, ok := ec2Handlers[action]; ok && strings.HasPrefix(action, "Describe") {
			// Describe actions have no resource-level permissions.
			a.add(newCheck(iamAction, "*", nil, nil, nil))
		}
	}
}

// created adds the checks of creating a resource with tags: the action on
// the resource, and, when it is tagged, the ec2:CreateTags that AWS checks
// for tags on create, with ec2:CreateAction naming the creating action.
func (a *authz) created(iamAction, createAction, arn string, tags map[string]string) {
	a.add(newCheck(iamAction, arn, tags, nil, nil))
	if len(tags) > 0 {
		a.add(newCheck("ec2:CreateTags", arn, tags, nil, map[string]string{"ec2:CreateAction": createAction}))
	}
}

// launchActions are the actions an instant fleet's launch is checked under.
// The Service Authorization Reference lists the fleet and the instances and
// volumes it creates under ec2:CreateFleet; the errors AWS returns for
// instant fleets name ec2:RunInstances on the instance, the launch template
// and the spot request. Both are recorded, so a policy passes only if it
// holds whichever AWS applies.
var launchActions = []string{"CreateFleet", "RunInstances"}

// createFleet adds an instant fleet's checks: the fleet; for each launch
// template config, what its launches use (template, images, subnets,
// security groups, snapshots, the instance profile's role) and create
// (instance, volumes, network interface, and a spot request for spot
// capacity), the created ones with the tags of the fleet's and the
// template's TagSpecifications.
func (a *authz) createFleet(p params) {
	s := a.s
	fleetSpecs, _ := readTagSpecifications(p, "instance", "volume", "network-interface", "fleet", "spot-instances-request")
	a.created("ec2:CreateFleet", "CreateFleet", s.ec2ARN("fleet", "*"), fleetSpecs["fleet"])

	capacityTypes := map[string]bool{p.get("TargetCapacitySpecification.DefaultTargetCapacityType"): true}
	if atoi(p.get("TargetCapacitySpecification.SpotTargetCapacity")) > 0 {
		capacityTypes[capacitySpot] = true
	}
	if atoi(p.get("TargetCapacitySpecification.OnDemandTargetCapacity")) > 0 {
		capacityTypes[capacityOnDemand] = true
	}
	created := []string{"instance", "volume", "network-interface"}
	if capacityTypes[capacitySpot] {
		created = append(created, "spot-instances-request")
	}

	for _, g := range p.groups("LaunchTemplateConfigs") {
		c := p.sub(g)
		lt, err := s.templateLocked(c.get("LaunchTemplateSpecification.LaunchTemplateId"), c.get("LaunchTemplateSpecification.LaunchTemplateName"))
		if err != nil {
			continue
		}
		use := func(arn string, tags map[string]string) {
			for _, action := range launchActions {
				a.add(newCheck("ec2:"+action, arn, nil, tags, nil))
			}
		}
		use(s.ec2ARN("launch-template", lt.ID), lt.Tags)
		images, subnets := map[string]bool{}, map[string]Subnet{}
		overrides := c.groups("Overrides")
		if len(overrides) == 0 {
			overrides = []string{""}
		}
		for _, og := range overrides {
			o := c.sub(og)
			images[orDefault(o.get("ImageId"), lt.Data.ImageID)] = true
			found, _ := s.overrideSubnets(&overrideRequest{subnetID: o.get("SubnetId"), zone: o.get("AvailabilityZone")})
			for _, sn := range found {
				subnets[sn.ID] = sn
			}
		}
		for _, id := range slices.Sorted(maps.Keys(images)) {
			if id != "" {
				img, _ := s.image(id)
				use(s.publicEC2ARN("image", id), img.Tags)
			}
		}
		for _, id := range slices.Sorted(maps.Keys(subnets)) {
			use(s.ec2ARN("subnet", id), subnets[id].Tags)
		}
		if id := lt.Data.CapacityReservationID; id != "" {
			// A launch into a reservation is authorized on it too.
			var tags map[string]string
			if r, ok := s.reservations[id]; ok {
				tags = r.Tags
			}
			use(s.ec2ARN("capacity-reservation", id), tags)
		}
		for _, id := range templateSecurityGroups(lt.Data) {
			var tags map[string]string
			for _, g := range s.scenario.SecurityGroups {
				if g.ID == id {
					tags = g.Tags
				}
			}
			use(s.ec2ARN("security-group", id), tags)
		}
		for _, b := range lt.Data.BlockDeviceMappings {
			if b.SnapshotID != "" {
				use(s.publicEC2ARN("snapshot", b.SnapshotID), nil)
			}
		}
		for _, resourceType := range created {
			// The fleet's tags for a type go over the template's.
			tags := maps.Clone(lt.Data.TagSpecifications[resourceType])
			if tags == nil {
				tags = map[string]string{}
			}
			maps.Copy(tags, fleetSpecs[resourceType])
			for _, action := range launchActions {
				a.created("ec2:"+action, action, s.ec2ARN(resourceType, "*"), tags)
			}
		}
		a.passRole(lt)
	}
}

// passRole adds the iam:PassRole of the template's instance profile's role:
// the scenario's instanceProfiles and those created through IAM.
func (a *authz) passRole(lt *LaunchTemplate) {
	s := a.s
	profile := orDefault(lt.Data.IAMInstanceProfile.Name, lt.Data.IAMInstanceProfile.ARN)
	if profile == "" {
		return
	}
	if i := strings.LastIndex(profile, "instance-profile/"); i >= 0 {
		profile = profile[i+len("instance-profile/"):]
	}
	context := map[string]string{"iam:PassedToService": "ec2.amazonaws.com"}
	ip, ok := s.profiles[profile]
	if !ok || ip.role == "" {
		c := newCheck("iam:PassRole", s.roleARN("*"), nil, nil, context)
		c.Note = fmt.Sprintf("instance profile %q does not exist or has no role", profile)
		a.add(c)
		return
	}
	a.add(newCheck("iam:PassRole", s.roleARN(ip.role), nil, nil, context))
}

// ssmGetParameter adds the check of reading a parameter. Public parameters
// (/aws/service/...) are AWS's and their ARN carries no account.
func (a *authz) ssmGetParameter(body []byte) {
	var in struct{ Name string }
	if json.Unmarshal(body, &in) != nil || in.Name == "" {
		return
	}
	account := a.s.scenario.AccountID
	if strings.HasPrefix(in.Name, "/aws/service/") {
		account = ""
	}
	arn := fmt.Sprintf("arn:aws:ssm:%s:%s:parameter/%s", a.s.scenario.Region, account, strings.TrimPrefix(in.Name, "/"))
	a.add(newCheck("ssm:GetParameter", arn, nil, nil, nil))
}

// sqsActions are the IAM actions of SQS operations whose names differ.
var sqsActions = map[string]string{
	"DeleteMessageBatch":           "DeleteMessage",
	"SendMessageBatch":             "SendMessage",
	"ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}

// sqs adds the check of an SQS operation on the queue it names by name or
// URL.
func (a *authz) sqs(op string, body []byte) {
	var in struct{ QueueName, QueueUrl string }
	if json.Unmarshal(body, &in) != nil {
		return
	}
	name := in.QueueName
	if in.QueueUrl != "" {
		if u, err := url.Parse(in.QueueUrl); err == nil {
			_, name, _ = strings.Cut(strings.Trim(u.Path, "/"), "/")
		}
	}
	if name == "" {
		return
	}
	action := op
	if v, ok := sqsActions[op]; ok {
		action = v
	}
	a.add(newCheck("sqs:"+action, a.s.queueARN(name), nil, nil, nil))
}
