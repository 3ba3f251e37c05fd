// Package bridgetest runs the simulator's NodeBridge against a real control
// plane with kwok, apart from the simulator's own tests so those still run
// under -short.
package bridgetest

import (
	"testing"

	"github.com/nodewright/nodewright/test/harness"
)

var cp *harness.ControlPlane

func TestMain(m *testing.M) { harness.Main(m, harness.Options{Cluster: true}, &cp) }
