package ec2sim

import (
	"fmt"
	"os"

	"github.com/nodewright/nodewright/pkg/catalog"
)

// StartRegion serves the scenario shipped for region over the embedded
// catalog snapshot: the simulator tests, the end-to-end environment and the
// demo all run against.
func StartRegion(region string) (*Server, error) {
	scenario, err := LoadScenario(region)
	if err != nil {
		return nil, err
	}
	snap, err := catalog.EmbeddedSnapshot()
	if err != nil {
		return nil, err
	}
	sim, err := Start(scenario, snap)
	if err != nil {
		return nil, fmt.Errorf("starting the EC2 simulator: %w", err)
	}
	return sim, nil
}

// SimulatorAccessKeyID is the access key UseSimulatorCredentials sets; the
// audit log's Call.Caller tells the calls signed with it from others.
const SimulatorAccessKeyID = "AKIDSIMULATOR"

// UseSimulatorCredentials sets the environment the SDK's default credential
// chain reads, for code that builds its clients the production way: the
// simulator does not check signatures, but the SDK will not sign without
// credentials, and must not wait on an instance metadata service.
func UseSimulatorCredentials() error {
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": SimulatorAccessKeyID, "AWS_SECRET_ACCESS_KEY": "simulator", "AWS_EC2_METADATA_DISABLED": "true"} {
		if err := os.Setenv(k, v); err != nil {
			return err
		}
	}
	return nil
}

// Scenario is the account the simulator serves. Callers must not change it.
func (s *Server) Scenario() *Scenario { return s.scenario }
