// Package fields holds the field table: every spec field of NodePool,
// NodeClaim and EC2NodeClass, walked from the Go types, with the test that
// shows nodewright honours it or the rule that refuses it. A field added to
// the API without an entry fails here, and so does an entry whose test no
// longer exists or no longer mentions the field.
package fields

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
)

// leaf is one spec field: its path as a user writes it, and the Go name of
// its struct field (what code and tests refer to).
type leaf struct {
	path   string
	goName string
}

// hasJSONFields reports whether t has a field with a JSON name.
func hasJSONFields(t reflect.Type) bool {
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			return true
		}
	}
	return false
}

// walk lists the leaves under t. Structs of this module with JSON fields are
// descended into (Disruption too, though it has its own MarshalJSON);
// everything else (strings, numbers, maps, Kubernetes and apimachinery types,
// and value types such as NillableDuration) is a leaf.
func walk(t reflect.Type, path, goName string, out *[]leaf) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	own := strings.HasPrefix(t.PkgPath(), "github.com/nodewright/nodewright/")
	switch {
	case t.Kind() == reflect.Slice:
		walk(t.Elem(), path+"[]", goName, out)
	case t.Kind() == reflect.Struct && own && hasJSONFields(t):
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch {
			case f.Anonymous:
				walk(f.Type, path, goName, out)
			case name != "" && name != "-":
				walk(f.Type, path+"."+name, f.Name, out)
			}
		}
	default:
		*out = append(*out, leaf{path, goName})
	}
}

func leaves() []leaf {
	var out []leaf
	walk(reflect.TypeOf(v1.NodePool{}.Spec), "NodePool.spec", "Spec", &out)
	walk(reflect.TypeOf(v1.NodeClaim{}.Spec), "NodeClaim.spec", "Spec", &out)
	walk(reflect.TypeOf(awsv1.EC2NodeClass{}.Spec), "EC2NodeClass.spec", "Spec", &out)
	return out
}

// evidence is "<file> <TestName>" for a test that shows the field honoured,
// or "refused <file>" for the code or CRD that refuses it with a message
// naming it. Files are relative to the repository root.
var evidence = map[string]string{
	// NodePool
	"NodePool.spec.template.labels":                        "pkg/controllers/provisioning/provisioner_test.go TestClaimCarriesTheTemplate",
	"NodePool.spec.template.annotations":                   "pkg/controllers/provisioning/provisioner_test.go TestClaimCarriesTheTemplate",
	"NodePool.spec.template.spec.taints[]":                 "pkg/scheduling/solver_test.go TestTaintsAndTolerations",
	"NodePool.spec.template.spec.startupTaints[]":          "pkg/controllers/provisioning/provisioner_test.go TestClaimCarriesTheTemplate",
	"NodePool.spec.template.spec.requirements[].key":       "pkg/controllers/provisioning/labels_test.go TestCustomKeysResolvedOntoTheClaim",
	"NodePool.spec.template.spec.requirements[].operator":  "pkg/controllers/provisioning/labels_test.go TestCustomKeysResolvedOntoTheClaim",
	"NodePool.spec.template.spec.requirements[].values[]":  "pkg/controllers/provisioning/labels_test.go TestCustomKeysResolvedOntoTheClaim",
	"NodePool.spec.template.spec.requirements[].minValues": "pkg/catalog/catalog_test.go TestFilterMinValuesAndUnsatisfiable",
	"NodePool.spec.template.spec.nodeClassRef.kind":        "pkg/cloudprovider/aws/create_test.go TestCreateNeedsAReadyNodeClass",
	"NodePool.spec.template.spec.nodeClassRef.name":        "pkg/controllers/nodepool/readiness/controller_test.go TestReadyFollowsTheNodeClass",
	"NodePool.spec.template.spec.nodeClassRef.group":       "pkg/cloudprovider/aws/create_test.go TestCreateNeedsAReadyNodeClass",
	"NodePool.spec.template.spec.expireAfter":              "pkg/controllers/provisioning/provisioner_test.go TestClaimCarriesTheTemplate",
	"NodePool.spec.template.spec.terminationGracePeriod":   "pkg/controllers/provisioning/provisioner_test.go TestClaimCarriesTheTemplate",
	"NodePool.spec.disruption.consolidateAfter":            "pkg/controllers/disruption/controller_test.go TestEmptyNodesGoWithinTheBudget",
	"NodePool.spec.disruption.consolidationPolicy":         "test/e2e/provisioning/consolidation_test.go TestBalancedAndDoNotDisruptKeepNodesThatWhenUnderutilizedReplaces",
	"NodePool.spec.disruption.budgets[].reasons[]":         "pkg/controllers/disruption/budgets_test.go TestAllowed",
	"NodePool.spec.disruption.budgets[].nodes":             "pkg/controllers/disruption/budgets_test.go TestAllowed",
	"NodePool.spec.disruption.budgets[].schedule":          "pkg/controllers/disruption/controller_test.go TestNeverAndBlockedBudgets",
	"NodePool.spec.disruption.budgets[].duration":          "pkg/controllers/disruption/controller_test.go TestNeverAndBlockedBudgets",
	"NodePool.spec.limits":                                 "pkg/scheduling/solver_test.go TestNodePoolLimitsAndWeights",
	"NodePool.spec.weight":                                 "pkg/scheduling/solver_test.go TestNodePoolLimitsAndWeights",
	"NodePool.spec.replicas":                               "test/e2e/provisioning/static_test.go TestStaticNodePoolScales",

	// NodeClaim: made by nodewright from the NodePool, or by a user directly.
	"NodeClaim.spec.taints[]":                 "pkg/controllers/nodeclaim/lifecycle/controller_test.go TestRegistrationAndInitialization",
	"NodeClaim.spec.startupTaints[]":          "pkg/cloudprovider/aws/launchtemplate_test.go TestLaunchTemplateIsShared",
	"NodeClaim.spec.requirements[].key":       "pkg/cloudprovider/aws/create_test.go TestPlanFleet",
	"NodeClaim.spec.requirements[].operator":  "pkg/cloudprovider/aws/create_test.go TestPlanFleet",
	"NodeClaim.spec.requirements[].values[]":  "pkg/cloudprovider/aws/create_test.go TestPlanFleet",
	"NodeClaim.spec.requirements[].minValues": "pkg/scheduling/requirements/requirements_test.go TestNodeSelectorRequirementsRoundTrip",
	"NodeClaim.spec.resources.requests":       "pkg/cloudprovider/aws/create_test.go TestPlanFleet",
	"NodeClaim.spec.nodeClassRef.kind":        "pkg/cloudprovider/aws/create_test.go TestCreateNeedsAReadyNodeClass",
	"NodeClaim.spec.nodeClassRef.name":        "pkg/cloudprovider/aws/create_test.go TestCreateNeedsAReadyNodeClass",
	"NodeClaim.spec.nodeClassRef.group":       "pkg/cloudprovider/aws/create_test.go TestCreateNeedsAReadyNodeClass",
	"NodeClaim.spec.expireAfter":              "pkg/controllers/nodeclaim/expiration/controller_test.go TestExpiry",
	"NodeClaim.spec.terminationGracePeriod":   "pkg/controllers/nodeclaim/termination/controller_test.go TestPodsGetTheirGraceBeforeTheDeadline",

	// EC2NodeClass
	"EC2NodeClass.spec.subnetSelectorTerms[].tags":                               "pkg/cloudprovider/aws/nodeclass_test.go TestSelectorTerms",
	"EC2NodeClass.spec.subnetSelectorTerms[].id":                                 "pkg/cloudprovider/aws/nodeclass_test.go TestSelectorTerms",
	"EC2NodeClass.spec.securityGroupSelectorTerms[].tags":                        "pkg/cloudprovider/aws/nodeclass_test.go TestSelectorTerms",
	"EC2NodeClass.spec.securityGroupSelectorTerms[].id":                          "pkg/cloudprovider/aws/nodeclass_test.go TestSelectorTerms",
	"EC2NodeClass.spec.securityGroupSelectorTerms[].name":                        "pkg/cloudprovider/aws/nodeclass_test.go TestSelectorTerms",
	"EC2NodeClass.spec.capacityReservationSelectorTerms[].tags":                  "pkg/cloudprovider/aws/capacityreservations_test.go TestResolveCapacityReservations",
	"EC2NodeClass.spec.capacityReservationSelectorTerms[].id":                    "pkg/cloudprovider/aws/capacityreservations_test.go TestResolveCapacityReservations",
	"EC2NodeClass.spec.capacityReservationSelectorTerms[].ownerID":               "pkg/cloudprovider/aws/capacityreservations_test.go TestResolveCapacityReservations",
	"EC2NodeClass.spec.capacityReservationSelectorTerms[].instanceMatchCriteria": "pkg/cloudprovider/aws/capacityreservations_test.go TestResolveCapacityReservations",
	"EC2NodeClass.spec.associatePublicIPAddress":                                 "pkg/cloudprovider/aws/launchtemplate_test.go TestEveryLaunchSettingReachesTheTemplate",
	"EC2NodeClass.spec.amiSelectorTerms[].alias":                                 "pkg/cloudprovider/aws/nodeclass_test.go TestAMITerms",
	"EC2NodeClass.spec.amiSelectorTerms[].tags":                                  "pkg/cloudprovider/aws/nodeclass_test.go TestAMITermsByTagsAndSSMParameter",
	"EC2NodeClass.spec.amiSelectorTerms[].id":                                    "pkg/cloudprovider/aws/nodeclass_test.go TestAMITerms",
	"EC2NodeClass.spec.amiSelectorTerms[].name":                                  "pkg/cloudprovider/aws/nodeclass_test.go TestAMITerms",
	"EC2NodeClass.spec.amiSelectorTerms[].owner":                                 "pkg/cloudprovider/aws/nodeclass_test.go TestAMITerms",
	"EC2NodeClass.spec.amiSelectorTerms[].ssmParameter":                          "pkg/cloudprovider/aws/nodeclass_test.go TestAMITermsByTagsAndSSMParameter",
	"EC2NodeClass.spec.amiFamily":                                                "pkg/cloudprovider/aws/windows_create_test.go TestCreateWindows",
	"EC2NodeClass.spec.userData":                                                 "pkg/cloudprovider/aws/userdata_bottlerocket_test.go TestBottlerocketUserDataMergesTheUsers",
	"EC2NodeClass.spec.role":                                                     "pkg/cloudprovider/aws/instanceprofile_test.go TestRoleCreatesInstanceProfile",
	"EC2NodeClass.spec.instanceProfile":                                          "pkg/cloudprovider/aws/instanceprofile_test.go TestInstanceProfileProblems",
	"EC2NodeClass.spec.tags":                                                     "pkg/cloudprovider/aws/tagging_test.go TestLaunchTagsEverythingItCreates",
	"EC2NodeClass.spec.kubelet":                                                  "pkg/cloudprovider/aws/userdata_test.go TestAL2023UserDataIsANodeConfig",
	"EC2NodeClass.spec.blockDeviceMappings[].deviceName":                         "pkg/cloudprovider/aws/launchtemplate_test.go TestEveryLaunchSettingReachesTheTemplate",
	"EC2NodeClass.spec.blockDeviceMappings[].ebs.deleteOnTermination":            "pkg/cloudprovider/aws/launchtemplate_test.go TestEveryLaunchSettingReachesTheTemplate",
	"EC2NodeClass.spec.blockDeviceMappings[].ebs.encrypted":                      "pkg/cloudprovider/aws/launchtemplate_test.go TestEveryLaunchSettingReachesTheTemplate",
	"EC2NodeClass.spec.blockDeviceMappings[].ebs.iops":                           "pkg/cloudprovider/aws/launchtemplate_test.go TestEveryLaunchSettingReachesTheTemplate",
	"EC2NodeClass.spec.blockDeviceMappings[].ebs.kmsKeyID":                       "pkg/cloudprovider/aws/launchtemplate_test.go TestEveryLaunchSettingReachesTheTemplate",
	"EC2NodeClass.spec.blockDeviceMappings[].ebs.snapshotID":                     "pkg/cloudprovider/aws/launchtemplate_test.go TestEveryLaunchSettingReachesTheTemplate",
	"EC2NodeClass.spec.blockDeviceMappings[].ebs.throughput":                     "pkg/cloudprovider/aws/launchtemplate_test.go TestEveryLaunchSettingReachesTheTemplate",
	"EC2NodeClass.spec.blockDeviceMappings[].ebs.volumeInitializationRate":       "pkg/cloudprovider/aws/launchtemplate_test.go TestEveryLaunchSettingReachesTheTemplate",
	"EC2NodeClass.spec.blockDeviceMappings[].ebs.volumeSize":                     "pkg/cloudprovider/aws/launchtemplate_test.go TestEveryLaunchSettingReachesTheTemplate",
	"EC2NodeClass.spec.blockDeviceMappings[].ebs.volumeType":                     "pkg/cloudprovider/aws/launchtemplate_test.go TestEveryLaunchSettingReachesTheTemplate",
	"EC2NodeClass.spec.blockDeviceMappings[].rootVolume":                         "pkg/cloudprovider/aws/nodesettings_test.go TestNodeSettingsFromNodeClass",
	"EC2NodeClass.spec.instanceStorePolicy":                                      "pkg/cloudprovider/aws/nodesettings_test.go TestInstanceStoreRAID0",
	"EC2NodeClass.spec.detailedMonitoring":                                       "pkg/cloudprovider/aws/launchtemplate_test.go TestEveryLaunchSettingReachesTheTemplate",
	"EC2NodeClass.spec.metadataOptions.httpEndpoint":                             "pkg/cloudprovider/aws/launchtemplate_test.go TestEveryLaunchSettingReachesTheTemplate",
	"EC2NodeClass.spec.metadataOptions.httpProtocolIPv6":                         "pkg/cloudprovider/aws/launchtemplate_test.go TestEveryLaunchSettingReachesTheTemplate",
	"EC2NodeClass.spec.metadataOptions.httpPutResponseHopLimit":                  "pkg/cloudprovider/aws/launchtemplate_test.go TestEveryLaunchSettingReachesTheTemplate",
	"EC2NodeClass.spec.metadataOptions.httpTokens":                               "pkg/cloudprovider/aws/launchtemplate_test.go TestEveryLaunchSettingReachesTheTemplate",
	"EC2NodeClass.spec.context":                                                  "pkg/cloudprovider/aws/create_test.go TestFleetCarriesTheContext",
	"EC2NodeClass.spec.ipPrefixCount":                                            "pkg/cloudprovider/aws/networksettings_test.go TestNetworkSettingsReachTheLaunchTemplate",
	"EC2NodeClass.spec.connectionTracking.tcpEstablishedTimeout":                 "pkg/cloudprovider/aws/networksettings_test.go TestNetworkSettingsReachTheLaunchTemplate",
	"EC2NodeClass.spec.connectionTracking.udpStreamTimeout":                      "pkg/cloudprovider/aws/networksettings_test.go TestNetworkSettingsReachTheLaunchTemplate",
	"EC2NodeClass.spec.connectionTracking.udpTimeout":                            "pkg/cloudprovider/aws/networksettings_test.go TestNetworkSettingsReachTheLaunchTemplate",
	"EC2NodeClass.spec.cpuOptions.nestedVirtualization":                          "pkg/cloudprovider/aws/networksettings_test.go TestNestedVirtualization",
	"EC2NodeClass.spec.enclaveOptions.enabled":                                   "pkg/cloudprovider/aws/launchtemplate_test.go TestEveryLaunchSettingReachesTheTemplate",
	"EC2NodeClass.spec.networkInterfaces[].networkCardIndex":                     "pkg/cloudprovider/aws/networkinterfaces_test.go TestNetworkInterfacesReachTheLaunchTemplate",
	"EC2NodeClass.spec.networkInterfaces[].deviceIndex":                          "pkg/cloudprovider/aws/networkinterfaces_test.go TestNetworkInterfacesReachTheLaunchTemplate",
	"EC2NodeClass.spec.networkInterfaces[].interfaceType":                        "pkg/cloudprovider/aws/networkinterfaces_test.go TestNetworkInterfacesReachTheLaunchTemplate",
	"EC2NodeClass.spec.placementGroupSelector.name":                              "pkg/cloudprovider/aws/placementgroups_test.go TestResolvePlacementGroupSelector",
	"EC2NodeClass.spec.placementGroupSelector.id":                                "pkg/cloudprovider/aws/placementgroups_test.go TestResolvePlacementGroupSelector",
}

const root = "../.."

// testBody returns the source of func name in file, up to the next top-level
// declaration.
func testBody(t *testing.T, file, name string) (string, bool) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		return "", false
	}
	s := string(src)
	i := strings.Index(s, "\nfunc "+name+"(")
	if i < 0 {
		return "", false
	}
	body := s[i+1:]
	if j := regexp.MustCompile(`\n(func|type|var|const) `).FindStringIndex(body[1:]); j != nil {
		body = body[:j[0]+1]
	}
	return body, true
}

// TestEveryFieldHasEvidence walks the three kinds' spec types and requires an
// entry for each field; each named test must exist and mention the field (by
// its Go name or its JSON name), each refusal file must name the field's
// path. Fails on a new field without an entry (tried: deleted the replicas
// entry), on a renamed or removed test (tried: TestPlanFleetX), and on a test
// that does not mention the field (tried: TestAMITerms for detailedMonitoring).
func TestEveryFieldHasEvidence(t *testing.T) {
	all := leaves()
	if len(all) < 80 {
		t.Fatalf("walked %d fields; the three kinds have more: the walker is broken", len(all))
	}
	seen := map[string]bool{}
	for _, l := range all {
		seen[l.path] = true
		ev, ok := evidence[l.path]
		if !ok {
			t.Errorf("%s (%s): no entry. Name the test that shows it honoured, or the rule that refuses it", l.path, l.goName)
			continue
		}
		jsonName := l.path[strings.LastIndex(l.path, ".")+1:]
		jsonName = strings.TrimSuffix(jsonName, "[]")
		if file, ok := strings.CutPrefix(ev, "refused "); ok {
			src, err := os.ReadFile(filepath.Join(root, file))
			if err != nil {
				t.Errorf("%s: refusal file: %v", l.path, err)
				continue
			}
			if !strings.Contains(string(src), jsonName) {
				t.Errorf("%s: %s does not name %q", l.path, file, jsonName)
			}
			continue
		}
		file, name, ok := strings.Cut(ev, " ")
		if !ok {
			t.Errorf("%s: evidence %q is neither \"<file> <Test>\" nor \"refused <file>\"", l.path, ev)
			continue
		}
		body, ok := testBody(t, file, name)
		if !ok {
			t.Errorf("%s: %s has no func %s", l.path, file, name)
			continue
		}
		if !strings.Contains(body, l.goName) && !strings.Contains(body, jsonName) {
			t.Errorf("%s: %s in %s mentions neither %s nor %s", l.path, name, file, l.goName, jsonName)
		}
	}
	for _, path := range slices.Sorted(func(yield func(string) bool) {
		for p := range evidence {
			if !yield(p) {
				return
			}
		}
	}) {
		if !seen[path] {
			t.Errorf("%s: entry for a field the types no longer have", path)
		}
	}
}
