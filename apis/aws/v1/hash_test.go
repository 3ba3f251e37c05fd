package v1

import (
	"testing"

	"k8s.io/utils/ptr"
)

// Selector terms are compared through what they resolve to, not hashed;
// the rest of the spec is, but for ipPrefixCount (as Karpenter). Mutations
// tried: hashing the whole spec (the AMI selector case changed it); keeping
// ipPrefixCount in the hash (its case changed it).
func TestEC2NodeClassHash(t *testing.T) {
	base := func() *EC2NodeClass {
		nc := &EC2NodeClass{}
		nc.Spec.AMISelectorTerms = []AMISelectorTerm{{Alias: "al2023@latest"}}
		nc.Spec.SubnetSelectorTerms = []SubnetSelectorTerm{{Tags: map[string]string{"Tier": "private"}}}
		nc.Spec.Tags = map[string]string{"team": "a"}
		return nc
	}
	h := base().Hash()
	same := base()
	same.Spec.AMISelectorTerms = []AMISelectorTerm{{ID: "ami-0123"}}
	same.Spec.SubnetSelectorTerms = []SubnetSelectorTerm{{ID: "subnet-1"}}
	if same.Hash() != h {
		t.Error("changing the selector terms changed the hash")
	}
	same.Spec.IPPrefixCount = ptr.To[int32](4)
	if same.Hash() != h {
		t.Error("setting ipPrefixCount changed the hash: Karpenter does not drift nodes for it")
	}
	for name, change := range map[string]func(*EC2NodeClass){
		"userData": func(nc *EC2NodeClass) { nc.Spec.UserData = ptr.To("echo hi") },
		"tags":     func(nc *EC2NodeClass) { nc.Spec.Tags["team"] = "b" },
	} {
		nc := base()
		change(nc)
		if nc.Hash() == h {
			t.Errorf("changing %s left the hash", name)
		}
	}
}
