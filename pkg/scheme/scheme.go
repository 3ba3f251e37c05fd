// Package scheme builds the runtime.Scheme every nodewright client uses: the
// built-in Kubernetes types and nodewright's own API groups.
package scheme

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
)

// New returns a scheme with the Kubernetes types and nodewright's.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1.AddToScheme, awsv1.AddToScheme} {
		if err := add(s); err != nil {
			// Only a programming error (a type registered twice) gets here.
			panic(fmt.Sprintf("registering API types: %v", err))
		}
	}
	return s
}
