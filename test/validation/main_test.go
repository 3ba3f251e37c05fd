// Package validation proves nodewright's CRDs against a real kube-apiserver: bad
// manifests are rejected with a message naming the field and nothing is stored,
// users' manifests apply unchanged and read back without loss, defaults and
// immutability hold.
package validation

import (
	"testing"

	"github.com/nodewright/nodewright/test/harness"
)

var cp *harness.ControlPlane

func TestMain(m *testing.M) { harness.Main(m, harness.Options{}, &cp) }
