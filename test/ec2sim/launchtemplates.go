package ec2sim

import (
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// LaunchTemplate is a launch template as CreateLaunchTemplate stored it; tests
// read its Data to check what the provider asked EC2 for. The simulator keeps
// one version per template (CreateLaunchTemplateVersion is not simulated).
type LaunchTemplate struct {
	ID         string
	Name       string
	CreateTime time.Time
	Tags       map[string]string
	Data       LaunchTemplateData
}

// LaunchTemplateData is the part of RequestLaunchTemplateData the simulator
// reads; other fields are accepted and ignored.
type LaunchTemplateData struct {
	ImageID      string
	InstanceType string
	// UserData is base64-encoded, as the API carries it; see DecodedUserData.
	UserData            string
	SecurityGroupIDs    []string
	IAMInstanceProfile  IAMInstanceProfile
	MetadataOptions     MetadataOptions
	BlockDeviceMappings []BlockDeviceMapping
	// NestedVirtualization is CpuOptions.NestedVirtualization: "", enabled
	// or disabled.
	NestedVirtualization string
	// NetworkInterfaces are the interfaces the template names; with any,
	// security groups are given on them instead of in SecurityGroupIDs.
	NetworkInterfaces []NetworkInterface
	// Monitoring is Monitoring.Enabled (detailed CloudWatch monitoring) and
	// Enclave EnclaveOptions.Enabled (Nitro Enclaves).
	Monitoring, Enclave bool
	// CapacityReservationID is CapacityReservationSpecification's target:
	// the reservation every launch from the template goes into.
	CapacityReservationID string
	// PlacementGroupName and PlacementGroupID are Placement.GroupName and
	// Placement.GroupId: the placement group every launch from the template
	// joins (EC2 takes one or the other).
	PlacementGroupName, PlacementGroupID string
	// TagSpecifications tag what instances launched from the template create,
	// by resource type (instance, volume, ...).
	TagSpecifications map[string]map[string]string
}

// DecodedUserData returns the user data as the instance would see it.
func (d LaunchTemplateData) DecodedUserData() (string, error) {
	b, err := base64.StdEncoding.DecodeString(d.UserData)
	return string(b), err
}

// IAMInstanceProfile names an instance profile by name or ARN.
type IAMInstanceProfile struct {
	Name string
	ARN  string
}

// MetadataOptions are the instance metadata service settings.
type MetadataOptions struct {
	HTTPTokens              string
	HTTPEndpoint            string
	HTTPProtocolIPv6        string
	HTTPPutResponseHopLimit int32
	InstanceMetadataTags    string
}

// NetworkInterface is one interface of the template.
type NetworkInterface struct {
	DeviceIndex              int32
	NetworkCardIndex         int32
	InterfaceType            string // "" is EC2's default, interface
	AssociatePublicIPAddress string // "", "true" or "false"
	SecurityGroupIDs         []string
	// IPv4PrefixCount is how many /28 prefixes EC2 assigns the interface.
	IPv4PrefixCount int32
	// ConnectionTracking holds the idle timeouts asked for, 0 where EC2's
	// default applies.
	ConnectionTracking ConnectionTracking
}

// ConnectionTracking are an interface's connection tracking idle timeouts in
// seconds.
type ConnectionTracking struct {
	TCPEstablishedTimeout int32
	UDPStreamTimeout      int32
	UDPTimeout            int32
}

// BlockDeviceMapping is one volume of the template.
type BlockDeviceMapping struct {
	DeviceName          string
	VolumeSize          int32 // GiB
	VolumeType          string
	IOPS                int32
	Throughput          int32
	Encrypted           bool
	DeleteOnTermination bool
	KMSKeyID            string
	SnapshotID          string
	// VolumeInitializationRate is the MiB/s at which a volume created from
	// SnapshotID is hydrated; 0 when not asked for.
	VolumeInitializationRate int32
}

// LaunchTemplates returns a copy of every launch template, by name.
func (s *Server) LaunchTemplates() []LaunchTemplate {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]LaunchTemplate, 0, len(s.templates))
	for _, lt := range s.templates {
		out = append(out, lt.copy())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// LaunchTemplate returns a copy of the template with that name or id.
func (s *Server) LaunchTemplate(nameOrID string) (LaunchTemplate, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lt, ok := s.templates[nameOrID]; ok {
		return lt.copy(), true
	}
	if lt := s.templateByNameLocked(nameOrID); lt != nil {
		return lt.copy(), true
	}
	return LaunchTemplate{}, false
}

func (lt *LaunchTemplate) copy() LaunchTemplate {
	out := *lt
	out.Tags = maps.Clone(lt.Tags)
	out.Data.SecurityGroupIDs = slices.Clone(lt.Data.SecurityGroupIDs)
	out.Data.BlockDeviceMappings = slices.Clone(lt.Data.BlockDeviceMappings)
	out.Data.NetworkInterfaces = slices.Clone(lt.Data.NetworkInterfaces)
	for i := range out.Data.NetworkInterfaces {
		out.Data.NetworkInterfaces[i].SecurityGroupIDs = slices.Clone(lt.Data.NetworkInterfaces[i].SecurityGroupIDs)
	}
	out.Data.TagSpecifications = map[string]map[string]string{}
	for k, v := range lt.Data.TagSpecifications {
		out.Data.TagSpecifications[k] = maps.Clone(v)
	}
	return out
}

func (s *Server) templateByNameLocked(name string) *LaunchTemplate {
	for _, lt := range s.templates {
		if lt.Name == name {
			return lt
		}
	}
	return nil
}

// DefaultLaunchTemplateQuota is how many launch templates an account may
// have in a region unless it asked AWS for more.
const DefaultLaunchTemplateQuota = 5000

// SetLaunchTemplateQuota sets how many launch templates the account may have
// (default DefaultLaunchTemplateQuota; n <= 0 restores it). Past it,
// CreateLaunchTemplate fails with MaxTemplateLimitExceeded, the code EC2
// answers (aws/karpenter-provider-aws#8686), until templates are deleted.
// Templates already over a lowered quota stay. The quota is the account's,
// not a fault: Heal keeps it.
func (s *Server) SetLaunchTemplateQuota(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ltQuota = max(n, 0)
}

func (s *Server) launchTemplateQuotaLocked() int {
	if s.ltQuota > 0 {
		return s.ltQuota
	}
	return DefaultLaunchTemplateQuota
}

var launchTemplateNamePattern = regexp.MustCompile(`^[a-zA-Z0-9().\-/_]{3,128}$`)

func (s *Server) createLaunchTemplate(p params) (any, *APIError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if answer, ok, apiErr := s.replayLocked("CreateLaunchTemplate", p); ok || apiErr != nil {
		return answer, apiErr
	}
	name := p.get("LaunchTemplateName")
	if !launchTemplateNamePattern.MatchString(name) {
		return nil, &APIError{Code: "InvalidLaunchTemplateName.MalformedException", Status: 400,
			Message: "A launch template name must be between 3 and 128 characters, and may contain letters, numbers, and the following characters: - ( ) . / _."}
	}
	if len(p.sub("LaunchTemplateData")) == 0 {
		return nil, &APIError{Code: "MissingParameter", Status: 400, Message: "The request must contain the parameter LaunchTemplateData"}
	}
	if s.templateByNameLocked(name) != nil {
		return nil, &APIError{Code: "InvalidLaunchTemplateName.AlreadyExistsException", Status: 400,
			Message: fmt.Sprintf("Launch template name already in use: %s", name)}
	}
	if len(s.templates) >= s.launchTemplateQuotaLocked() {
		return nil, &APIError{Code: "MaxTemplateLimitExceeded", Status: 400, Message: "Account has already reached max permitted templates"}
	}
	data, apiErr := readLaunchTemplateData(p.sub("LaunchTemplateData"))
	if apiErr != nil {
		return nil, apiErr
	}
	specs, apiErr := readTagSpecifications(p, "launch-template")
	if apiErr != nil {
		return nil, apiErr
	}
	lt := &LaunchTemplate{ID: s.newID("lt", 17), Name: name, CreateTime: s.clock.now(), Tags: specs["launch-template"], Data: data}
	if lt.Tags == nil {
		lt.Tags = map[string]string{}
	}
	s.templates[lt.ID] = lt
	answer := struct {
		XMLName        xml.Name          `xml:"r"`
		LaunchTemplate launchTemplateXML `xml:"launchTemplate"`
	}{LaunchTemplate: s.launchTemplateInfo(lt)}
	s.rememberLocked("CreateLaunchTemplate", p, answer)
	return answer, nil
}

// readLaunchTemplateData reads LaunchTemplateData.* fields.
func readLaunchTemplateData(p params) (LaunchTemplateData, *APIError) {
	d := LaunchTemplateData{
		ImageID: p.get("ImageId"), InstanceType: p.get("InstanceType"), UserData: p.get("UserData"),
		SecurityGroupIDs: p.list("SecurityGroupId"), NestedVirtualization: p.get("CpuOptions.NestedVirtualization"),
		IAMInstanceProfile: IAMInstanceProfile{
			Name: p.get("IamInstanceProfile.Name"), ARN: p.get("IamInstanceProfile.Arn"),
		},
		MetadataOptions: MetadataOptions{
			HTTPTokens: p.get("MetadataOptions.HttpTokens"), HTTPEndpoint: p.get("MetadataOptions.HttpEndpoint"),
			HTTPProtocolIPv6: p.get("MetadataOptions.HttpProtocolIpv6"), InstanceMetadataTags: p.get("MetadataOptions.InstanceMetadataTags"),
			HTTPPutResponseHopLimit: int32(atoi(p.get("MetadataOptions.HttpPutResponseHopLimit"))),
		},
		TagSpecifications:     map[string]map[string]string{},
		Monitoring:            p.get("Monitoring.Enabled") == "true",
		Enclave:               p.get("EnclaveOptions.Enabled") == "true",
		CapacityReservationID: p.get("CapacityReservationSpecification.CapacityReservationTarget.CapacityReservationId"),
		PlacementGroupName:    p.get("Placement.GroupName"), PlacementGroupID: p.get("Placement.GroupId"),
	}
	if d.PlacementGroupName != "" && d.PlacementGroupID != "" {
		return d, invalidParameter("Placement.GroupName and Placement.GroupId cannot both be specified")
	}
	if id := d.PlacementGroupID; id != "" && !placementGroupIDPattern.MatchString(id) {
		return d, &APIError{Code: "InvalidPlacementGroupId.Malformed", Status: 400, Message: fmt.Sprintf("Invalid id: \"%s\"", id)}
	}
	if id := d.CapacityReservationID; id != "" && !capacityReservationIDPattern.MatchString(id) {
		return d, &APIError{Code: "InvalidCapacityReservationId.Malformed", Status: 400, Message: fmt.Sprintf("Invalid id: \"%s\"", id)}
	}
	if p.get("CapacityReservationSpecification.CapacityReservationTarget.CapacityReservationResourceGroupArn") != "" {
		return d, invalidParameter("the simulator does not model capacity reservation resource groups")
	}
	if d.UserData != "" {
		if _, err := base64.StdEncoding.DecodeString(d.UserData); err != nil {
			return d, &APIError{Code: "InvalidUserData.Malformed", Status: 400, Message: "Invalid BASE64 encoding of user data."}
		}
	}
	for _, g := range p.groups("BlockDeviceMapping") {
		b := p.sub(g)
		d.BlockDeviceMappings = append(d.BlockDeviceMappings, BlockDeviceMapping{
			DeviceName: b.get("DeviceName"), VolumeSize: int32(atoi(b.get("Ebs.VolumeSize"))), VolumeType: b.get("Ebs.VolumeType"),
			IOPS: int32(atoi(b.get("Ebs.Iops"))), Throughput: int32(atoi(b.get("Ebs.Throughput"))),
			Encrypted: b.get("Ebs.Encrypted") == "true", DeleteOnTermination: b.get("Ebs.DeleteOnTermination") == "true",
			KMSKeyID: b.get("Ebs.KmsKeyId"), SnapshotID: b.get("Ebs.SnapshotId"),
			VolumeInitializationRate: int32(atoi(b.get("Ebs.VolumeInitializationRate"))),
		})
		if apiErr := checkInitializationRate(d.BlockDeviceMappings[len(d.BlockDeviceMappings)-1]); apiErr != nil {
			return d, apiErr
		}
	}
	for _, g := range p.groups("NetworkInterface") {
		n := p.sub(g)
		d.NetworkInterfaces = append(d.NetworkInterfaces, NetworkInterface{
			DeviceIndex: int32(atoi(n.get("DeviceIndex"))), NetworkCardIndex: int32(atoi(n.get("NetworkCardIndex"))),
			InterfaceType: n.get("InterfaceType"), AssociatePublicIPAddress: n.get("AssociatePublicIpAddress"),
			SecurityGroupIDs: n.list("SecurityGroupId"), IPv4PrefixCount: int32(atoi(n.get("Ipv4PrefixCount"))),
			ConnectionTracking: ConnectionTracking{
				TCPEstablishedTimeout: int32(atoi(n.get("ConnectionTrackingSpecification.TcpEstablishedTimeout"))),
				UDPStreamTimeout:      int32(atoi(n.get("ConnectionTrackingSpecification.UdpStreamTimeout"))),
				UDPTimeout:            int32(atoi(n.get("ConnectionTrackingSpecification.UdpTimeout"))),
			},
		})
	}
	specs, apiErr := readTagSpecifications(p, "instance", "volume", "network-interface", "spot-instances-request")
	if apiErr != nil {
		return d, apiErr
	}
	d.TagSpecifications = specs
	return d, nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

type launchTemplateXML struct {
	ID             string         `xml:"launchTemplateId"`
	Name           string         `xml:"launchTemplateName"`
	CreateTime     string         `xml:"createTime"`
	CreatedBy      string         `xml:"createdBy"`
	DefaultVersion int64          `xml:"defaultVersionNumber"`
	LatestVersion  int64          `xml:"latestVersionNumber"`
	Tags           *items[tagXML] `xml:"tagSet,omitempty"`
}

func (s *Server) launchTemplateInfo(lt *LaunchTemplate) launchTemplateXML {
	return launchTemplateXML{lt.ID, lt.Name, ec2Time(lt.CreateTime), fmt.Sprintf("arn:aws:iam::%s:root", s.scenario.AccountID), 1, 1, tagSet(lt.Tags)}
}

var launchTemplateIDPattern = regexp.MustCompile(`^lt-[0-9a-f]{17}$`)

// templateLocked finds a template named by id or name, failing as EC2 does.
func (s *Server) templateLocked(id, name string) (*LaunchTemplate, *APIError) {
	switch {
	case id != "":
		if !launchTemplateIDPattern.MatchString(id) {
			return nil, &APIError{Code: "InvalidLaunchTemplateId.Malformed", Status: 400, Message: fmt.Sprintf("The specified ID for the launch template, %s, is not valid.", id)}
		}
		if lt, ok := s.templates[id]; ok {
			return lt, nil
		}
		return nil, &APIError{Code: "InvalidLaunchTemplateId.NotFound", Status: 400, Message: fmt.Sprintf("The specified launch template, with template ID %s, does not exist.", id)}
	case name != "":
		if lt := s.templateByNameLocked(name); lt != nil {
			return lt, nil
		}
		return nil, &APIError{Code: "InvalidLaunchTemplateName.NotFoundException", Status: 400, Message: fmt.Sprintf("The specified launch template, with template name %s, does not exist.", name)}
	}
	return nil, &APIError{Code: "MissingParameter", Status: 400, Message: "The request must contain the parameter LaunchTemplateName or LaunchTemplateId"}
}

func (s *Server) describeLaunchTemplates(p params) (any, *APIError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names, ids := p.list("LaunchTemplateName"), p.list("LaunchTemplateId")
	wanted := map[*LaunchTemplate]bool{}
	for _, id := range ids {
		lt, apiErr := s.templateLocked(id, "")
		if apiErr != nil {
			return nil, apiErr
		}
		wanted[lt] = true
	}
	for _, name := range names {
		lt := s.templateByNameLocked(name)
		if lt == nil {
			return nil, &APIError{Code: "InvalidLaunchTemplateName.NotFoundException", Status: 400,
				Message: "At least one of the launch templates specified in the request does not exist."}
		}
		wanted[lt] = true
	}
	filters := p.filters()
	var out []launchTemplateXML
	for _, lt := range s.sortedTemplatesLocked() {
		if len(wanted) > 0 && !wanted[lt] {
			continue
		}
		attrs := map[string]string{"launch-template-name": lt.Name, "launch-template-id": lt.ID}
		if !matchFilters(filters, attrs, lt.Tags) {
			continue
		}
		out = append(out, s.launchTemplateInfo(lt))
	}
	pg, next, apiErr := pageWithin(p, out, 1, 200)
	if apiErr != nil {
		return nil, apiErr
	}
	return struct {
		XMLName   xml.Name                 `xml:"r"`
		Templates items[launchTemplateXML] `xml:"launchTemplates"`
		NextToken string                   `xml:"nextToken,omitempty"`
	}{Templates: items[launchTemplateXML]{Item: pg}, NextToken: next}, nil
}

func (s *Server) sortedTemplatesLocked() []*LaunchTemplate {
	out := make([]*LaunchTemplate, 0, len(s.templates))
	for _, lt := range s.templates {
		out = append(out, lt)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// deleteLaunchTemplate deletes a template named by id or by name, not both.
// Instances launched from it are not affected; fleets naming it from then on
// fail with the not-found error of templateLocked.
func (s *Server) deleteLaunchTemplate(p params) (any, *APIError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, name := p.get("LaunchTemplateId"), p.get("LaunchTemplateName")
	if id != "" && name != "" {
		return nil, &APIError{Code: "InvalidParameterCombination", Status: 400,
			Message: "You must specify either the launch template ID or the launch template name, but not both."}
	}
	lt, apiErr := s.templateLocked(id, name)
	if apiErr != nil {
		return nil, apiErr
	}
	delete(s.templates, lt.ID)
	return struct {
		XMLName        xml.Name          `xml:"r"`
		LaunchTemplate launchTemplateXML `xml:"launchTemplate"`
	}{LaunchTemplate: s.launchTemplateInfo(lt)}, nil
}

// resolveVersion checks a launch template version of a fleet request: the
// simulator's templates have exactly one.
func resolveVersion(lt *LaunchTemplate, version string) *APIError {
	switch strings.TrimSpace(version) {
	case "$Latest", "$Default", "1":
		return nil
	case "":
		return &APIError{Code: "MissingParameter", Status: 400, Message: "The request must contain the parameter LaunchTemplateSpecification.Version"}
	}
	return &APIError{Code: "InvalidLaunchTemplateId.VersionNotFound", Status: 400,
		Message: fmt.Sprintf("Could not find launch template version %s for the launch template %s.", version, lt.ID)}
}

// checkInitializationRate applies EBS's rules for a provisioned volume
// initialization rate: 100 to 300 MiB/s, and only for a volume created from
// a snapshot. The error codes are the ones EC2 uses for a bad value and a
// bad combination; the messages are the simulator's.
func checkInitializationRate(b BlockDeviceMapping) *APIError {
	r := b.VolumeInitializationRate
	switch {
	case r == 0:
		return nil
	case r < 100 || r > 300:
		return invalidParameter("Volume initialization rate %d MiB/s for %s is outside 100-300", r, b.DeviceName)
	case b.SnapshotID == "":
		return &APIError{Code: "InvalidParameterCombination", Status: 400,
			Message: fmt.Sprintf("A volume initialization rate needs a snapshot (%s has none)", b.DeviceName)}
	}
	return nil
}
