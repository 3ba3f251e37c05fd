package aws

import (
	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
)

// notYetSupported names each field of the class that Karpenter's schema
// accepts and nodewright does not act on yet. A class with one is refused
// (ValidationSucceeded False, so not Ready, naming the field) instead of
// launching nodes without what the field asked for: a placement group not
// joined.
func notYetSupported(nc *awsv1.EC2NodeClass) []string {
	var fields []string
	set := func(path string, isSet bool) {
		if isSet {
			fields = append(fields, path)
		}
	}
	s := nc.Spec
	if pg := s.PlacementGroupSelector; pg != nil {
		set("spec.placementGroupSelector.name", pg.Name != "")
		set("spec.placementGroupSelector.id", pg.ID != "")
	}
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f + " is not supported by nodewright yet: remove it to launch from this EC2NodeClass"
	}
	return out
}
