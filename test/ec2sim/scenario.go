package ec2sim

import (
	"embed"
	"errors"
	"fmt"

	"sigs.k8s.io/yaml"
)

// Scenario is the simulated account: its region and what is in it.
type Scenario struct {
	Region         string            `json:"region"`
	AccountID      string            `json:"accountID"`
	Zones          []Zone            `json:"zones"`
	VPCID          string            `json:"vpcID"`
	Subnets        []Subnet          `json:"subnets"`
	SecurityGroups []SecurityGroup   `json:"securityGroups"`
	Images         []Image           `json:"images"`
	SSMParameters  map[string]string `json:"ssmParameters"`
	// InstanceProfiles are the account's instance profiles by name, each
	// with the name of its role (what launching with it passes, for the
	// audit log's iam:PassRole).
	InstanceProfiles map[string]string `json:"instanceProfiles"`
	// Roles are IAM roles of the account besides those of InstanceProfiles:
	// what an EC2NodeClass's spec.role may name for nodewright to add to the
	// instance profile it creates.
	Roles []string `json:"roles"`
}

// Zone is an availability zone: its name in this account and its id.
type Zone struct {
	Name string `json:"name"`
	ID   string `json:"id"`
}

// Subnet is a subnet in one zone.
type Subnet struct {
	ID           string            `json:"id"`
	Zone         string            `json:"zone"`
	CIDR         string            `json:"cidr"`
	AvailableIPs int32             `json:"availableIPs"`
	Tags         map[string]string `json:"tags"`
}

// SecurityGroup is a security group of the VPC.
type SecurityGroup struct {
	ID   string            `json:"id"`
	Name string            `json:"name"`
	Tags map[string]string `json:"tags"`
}

// Image is an AMI.
type Image struct {
	ID      string            `json:"id"`
	Name    string            `json:"name"`
	Arch    string            `json:"arch"` // x86_64 or arm64
	Created string            `json:"created"`
	Owner   string            `json:"owner"`
	Tags    map[string]string `json:"tags"`
	// Platform is "windows" for a Windows image (EC2 reports no platform
	// for Linux ones); WindowsBuild is then the build of its Windows Server
	// (10.0.20348 for 2022), which its kubelet reports as
	// node.kubernetes.io/windows-build. EC2 does not describe the build:
	// only the simulated node reads it.
	Platform     string `json:"platform,omitempty"`
	WindowsBuild string `json:"windowsBuild,omitempty"`
}

//go:embed scenarios/*.yaml
var scenarios embed.FS

// LoadScenario reads a scenario shipped with the simulator by region name.
func LoadScenario(region string) (*Scenario, error) {
	data, err := scenarios.ReadFile("scenarios/" + region + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("no simulator scenario for region %q: %w", region, err)
	}
	return ParseScenario(data)
}

// ParseScenario reads a scenario file, rejecting unknown fields.
func ParseScenario(data []byte) (*Scenario, error) {
	var s Scenario
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return nil, fmt.Errorf("parsing scenario: %w", err)
	}
	return &s, s.Validate()
}

// Validate checks the scenario is consistent: subnets in known zones, ids set.
func (s *Scenario) Validate() error {
	var errs []error
	if s.Region == "" {
		errs = append(errs, errors.New("scenario: region is required"))
	}
	zones := map[string]bool{}
	for i, z := range s.Zones {
		if z.Name == "" || z.ID == "" {
			errs = append(errs, fmt.Errorf("scenario: zones[%d] needs a name and an id", i))
		}
		zones[z.Name] = true
	}
	for i, sn := range s.Subnets {
		if !zones[sn.Zone] {
			errs = append(errs, fmt.Errorf("scenario: subnets[%d] (%s) is in unknown zone %q", i, sn.ID, sn.Zone))
		}
	}
	return errors.Join(errs...)
}

// ZoneID returns the id of a zone name, or "".
func (s *Scenario) ZoneID(name string) string {
	for _, z := range s.Zones {
		if z.Name == name {
			return z.ID
		}
	}
	return ""
}
