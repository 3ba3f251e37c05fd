package aws

import (
	"fmt"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
)

// notYetSupported names each field of the class that Karpenter's schema
// accepts and nodewright does not act on yet. A class with one is refused
// (ValidationSucceeded False, so not Ready, naming the field) instead of
// launching nodes without what the field asked for: interfaces or EFA missing, CPU options, connection tracking or
// prefix delegation ignored, a placement group not joined.
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
	set("spec.ipPrefixCount", s.IPPrefixCount != nil)
	if pg := s.PlacementGroupSelector; pg != nil {
		set("spec.placementGroupSelector.name", pg.Name != "")
		set("spec.placementGroupSelector.id", pg.ID != "")
	}
	if ct := s.ConnectionTracking; ct != nil {
		set("spec.connectionTracking.tcpEstablishedTimeout", ct.TCPEstablishedTimeout != nil)
		set("spec.connectionTracking.udpStreamTimeout", ct.UDPStreamTimeout != nil)
		set("spec.connectionTracking.udpTimeout", ct.UDPTimeout != nil)
	}
	if co := s.CPUOptions; co != nil {
		set("spec.cpuOptions.nestedVirtualization", co.NestedVirtualization != nil)
	}
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f + " is not supported by nodewright yet: remove it to launch from this EC2NodeClass"
	}
	return out
}
