// Package scheduling checks the solver against the real kube-scheduler: for
// each workload mix, the nodes the plan launches are created as kwok Nodes
// exactly as planned, the pods are created, and the real scheduler must bind
// every one of them with none left Pending.
package scheduling

import (
	"testing"

	"github.com/nodewright/nodewright/test/harness"
)

var cp *harness.ControlPlane

func TestMain(m *testing.M) { harness.Main(m, harness.Options{Cluster: true}, &cp) }
