package aws

import (
	"fmt"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
)

// notYetSupported names each field of the class that Karpenter's schema
// accepts and nodewright does not act on yet. A class with one is refused
// (ValidationSucceeded False, so not Ready, naming the field) instead of
// launching nodes without what the field asked for: interfaces or EFA
// missing.
func notYetSupported(nc *awsv1.EC2NodeClass) []string {
	var fields []string
	set := func(path string, isSet bool) {
		if isSet {
			fields = append(fields, path)
		}
	}
	s := nc.Spec
	for i, n := range s.NetworkInterfaces {
		p := fmt.Sprintf("spec.networkInterfaces[%d]", i)
		// Every entry is refused; the fields say which interface it is.
		set(fmt.Sprintf("%s (networkCardIndex %d, deviceIndex %d, interfaceType %q)", p, n.NetworkCardIndex, n.DeviceIndex, n.InterfaceType), true)
	}
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f + " is not supported by nodewright yet: remove it to launch from this EC2NodeClass"
	}
	return out
}
