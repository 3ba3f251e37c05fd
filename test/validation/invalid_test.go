package validation

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// invalidCase changes one thing in a valid manifest and says how the apiserver
// must answer: the offending field's path and words from the message.
type invalidCase struct {
	name  string
	base  string
	edits [][2]string // path, YAML value ("" deletes)
	field string
	msg   string
}

var invalidCases = []invalidCase{
	// NodePool
	{name: "weight 0", base: validNodePool, edits: [][2]string{{"spec.weight", "0"}},
		field: "spec.weight", msg: "should be greater than or equal to 1"},
	{name: "weight 101", base: validNodePool, edits: [][2]string{{"spec.weight", "101"}},
		field: "spec.weight", msg: "should be less than or equal to 100"},
	{name: "unknown operator", base: validNodePool, edits: [][2]string{{"spec.template.spec.requirements.0.operator", "Like"}},
		field: "spec.template.spec.requirements[0].operator", msg: `Unsupported value: "Like"`},
	{name: "In with no values", base: validNodePool, edits: [][2]string{{"spec.template.spec.requirements.0.values", "[]"}},
		field: "spec.template.spec.requirements", msg: "requirements with operator 'In' must have a value defined"},
	{name: "minValues above the number of values", base: validNodePool, edits: [][2]string{{"spec.template.spec.requirements.0.minValues", "3"}},
		field: "spec.template.spec.requirements", msg: "must have at least that many values"},
	{name: "minValues 0", base: validNodePool, edits: [][2]string{{"spec.template.spec.requirements.0.minValues", "0"}},
		field: "spec.template.spec.requirements[0].minValues", msg: "should be greater than or equal to 1"},
	{name: "Gt with a non-integer", base: validNodePool, edits: [][2]string{{"spec.template.spec.requirements.0", "{key: karpenter.k8s.aws/instance-cpu, operator: Gt, values: [four]}"}},
		field: "spec.template.spec.requirements", msg: "must have a single positive integer value"},
	{name: "Gte with two values", base: validNodePool, edits: [][2]string{{"spec.template.spec.requirements.0", "{key: karpenter.k8s.aws/instance-cpu, operator: Gte, values: ['4', '8']}"}},
		field: "spec.template.spec.requirements", msg: "must have a single positive integer value"},
	{name: "template label in the karpenter.sh domain", base: validNodePool, edits: [][2]string{{"spec.template.metadata.labels", "{karpenter.sh/custom: x}"}},
		field: "spec.template.metadata.labels", msg: `label domain "karpenter.sh" is restricted`},
	{name: "template label in the karpenter.k8s.aws domain", base: validNodePool, edits: [][2]string{{"spec.template.metadata.labels", "{karpenter.k8s.aws/custom: x}"}},
		field: "spec.template.metadata.labels", msg: `label domain "karpenter.k8s.aws" is restricted`},
	{name: "template label kubernetes.io/hostname", base: validNodePool, edits: [][2]string{{"spec.template.metadata.labels", "{kubernetes.io/hostname: x}"}},
		field: "spec.template.metadata.labels", msg: `label "kubernetes.io/hostname" is restricted`},
	{name: "template label value not a label value", base: validNodePool, edits: [][2]string{{"spec.template.metadata.labels", "{team: 'has space'}"}},
		field: "spec.template.metadata.labels.team", msg: "should match"},
	{name: "requirement on karpenter.sh/nodepool", base: validNodePool, edits: [][2]string{{"spec.template.spec.requirements.0.key", "karpenter.sh/nodepool"}},
		field: "spec.template.spec.requirements", msg: `label "karpenter.sh/nodepool" is restricted`},
	{name: "requirement on kubernetes.io/hostname", base: validNodePool, edits: [][2]string{{"spec.template.spec.requirements.0.key", "kubernetes.io/hostname"}},
		field: "spec.template.spec.requirements[0].key", msg: `label "kubernetes.io/hostname" is restricted`},
	{name: "requirement key not a label key", base: validNodePool, edits: [][2]string{{"spec.template.spec.requirements.0.key", "not a key"}},
		field: "spec.template.spec.requirements[0].key", msg: "should match"},
	// Karpenter's CRD requires consolidateAfter in a disruption block (a
	// NodePool without the block gets 0s: TestNodePoolDefaults). Mutation
	// tried: `required: [consolidateAfter]` dropped from the CRD -> accepted.
	{name: "disruption block without consolidateAfter", base: validNodePool, edits: [][2]string{{"spec.disruption", "{consolidationPolicy: WhenEmpty}"}},
		field: "spec.disruption.consolidateAfter", msg: "Required value"},
	{name: "consolidateAfter soon", base: validNodePool, edits: [][2]string{{"spec.disruption.consolidateAfter", "soon"}},
		field: "spec.disruption.consolidateAfter", msg: "should match"},
	{name: "unknown consolidationPolicy", base: validNodePool, edits: [][2]string{{"spec.disruption.consolidationPolicy", "WhenIdle"}},
		field: "spec.disruption.consolidationPolicy", msg: `Unsupported value: "WhenIdle"`},
	{name: "expireAfter forever", base: validNodePool, edits: [][2]string{{"spec.template.spec.expireAfter", "forever"}},
		field: "spec.template.spec.expireAfter", msg: "should match"},
	{name: "terminationGracePeriod in days", base: validNodePool, edits: [][2]string{{"spec.template.spec.terminationGracePeriod", "1d"}},
		field: "spec.template.spec.terminationGracePeriod", msg: "should match"},
	// Issue 11: these match the pattern but overflow Go's duration; stored,
	// they would have failed the controller's NodePool informer.
	{name: "expireAfter that overflows", base: validNodePool, edits: [][2]string{{"spec.template.spec.expireAfter", "9999999h"}},
		field: "spec.template.spec.expireAfter", msg: "must be a duration Go can hold"},
	{name: "consolidateAfter that overflows", base: validNodePool, edits: [][2]string{{"spec.disruption.consolidateAfter", "1000000h2000000h"}},
		field: "spec.disruption.consolidateAfter", msg: "must be a duration Go can hold"},
	{name: "terminationGracePeriod that overflows", base: validNodePool, edits: [][2]string{{"spec.template.spec.terminationGracePeriod", "99999999999s"}},
		field: "spec.template.spec.terminationGracePeriod", msg: "must be a duration Go can hold"},
	{name: "budget duration that overflows", base: validNodePool, edits: [][2]string{{"spec.disruption.budgets", "[{nodes: '10%', schedule: '@daily', duration: 9999999h}]"}},
		field: "spec.disruption.budgets[0].duration", msg: "must be a duration Go can hold"},
	{name: "nodeclaim expireAfter that overflows", base: validNodeClaim, edits: [][2]string{{"spec.expireAfter", "9999999h"}},
		field: "spec.expireAfter", msg: "must be a duration Go can hold"},
	{name: "nodeclaim terminationGracePeriod that overflows", base: validNodeClaim, edits: [][2]string{{"spec.terminationGracePeriod", "9999999h"}},
		field: "spec.terminationGracePeriod", msg: "must be a duration Go can hold"},
	{name: "budget nodes 150%", base: validNodePool, edits: [][2]string{{"spec.disruption.budgets", "[{nodes: '150%'}]"}},
		field: "spec.disruption.budgets[0].nodes", msg: "should match"},
	{name: "budget with an invalid cron schedule", base: validNodePool, edits: [][2]string{{"spec.disruption.budgets", "[{nodes: '10%', schedule: 'every day', duration: 1h}]"}},
		field: "spec.disruption.budgets[0].schedule", msg: "should match"},
	{name: "budget schedule without duration", base: validNodePool, edits: [][2]string{{"spec.disruption.budgets", "[{nodes: '10%', schedule: '@daily'}]"}},
		field: "spec.disruption.budgets", msg: "'schedule' must be set with 'duration'"},
	{name: "budget duration in seconds", base: validNodePool, edits: [][2]string{{"spec.disruption.budgets", "[{nodes: '10%', schedule: '@daily', duration: 30s}]"}},
		field: "spec.disruption.budgets[0].duration", msg: "should match"},
	{name: "budget with an unknown reason", base: validNodePool, edits: [][2]string{{"spec.disruption.budgets", "[{nodes: '1', reasons: [Bored]}]"}},
		field: "spec.disruption.budgets[0].reasons[0]", msg: `Unsupported value: "Bored"`},
	{name: "empty nodeClassRef", base: validNodePool, edits: [][2]string{{"spec.template.spec.nodeClassRef", "{}"}},
		field: "spec.template.spec.nodeClassRef.name", msg: "Required value"},
	{name: "nodeClassRef with an empty name", base: validNodePool, edits: [][2]string{{"spec.template.spec.nodeClassRef.name", "''"}},
		field: "spec.template.spec.nodeClassRef.name", msg: "name may not be empty"},
	{name: "no nodeClassRef", base: validNodePool, edits: [][2]string{{"spec.template.spec.nodeClassRef", ""}},
		field: "spec.template.spec.nodeClassRef", msg: "Required value"},
	{name: "taint with an unknown effect", base: validNodePool, edits: [][2]string{{"spec.template.spec.taints", "[{key: dedicated, value: gpu, effect: Sometimes}]"}},
		field: "spec.template.spec.taints[0].effect", msg: `Unsupported value: "Sometimes"`},
	{name: "startup taint without a key", base: validNodePool, edits: [][2]string{{"spec.template.spec.startupTaints", "[{effect: NoSchedule}]"}},
		field: "spec.template.spec.startupTaints[0].key", msg: "Required value"},
	{name: "limit that is not a quantity", base: validNodePool, edits: [][2]string{{"spec.limits.cpu", "lots"}},
		field: "spec.limits.cpu", msg: "should match"},
	{name: "static NodePool with a cpu limit", base: validNodePool, edits: [][2]string{{"spec.replicas", "3"}},
		field: "spec", msg: "only 'limits.nodes' is supported on static NodePools"},
	{name: "static NodePool with a weight", base: validNodePool, edits: [][2]string{{"spec.replicas", "3"}, {"spec.limits", ""}, {"spec.weight", "10"}},
		field: "spec", msg: "'weight' is not supported on static NodePools"},
	{name: "negative replicas", base: validNodePool, edits: [][2]string{{"spec.replicas", "-1"}, {"spec.limits", ""}},
		field: "spec.replicas", msg: "should be greater than or equal to 0"},

	// EC2NodeClass
	{name: "role and instanceProfile both set", base: validEC2NodeClass, edits: [][2]string{{"spec.instanceProfile", "KarpenterNodeInstanceProfile"}},
		field: "spec", msg: "must specify exactly one of ['role', 'instanceProfile']"},
	{name: "neither role nor instanceProfile", base: validEC2NodeClass, edits: [][2]string{{"spec.role", ""}},
		field: "spec", msg: "must specify exactly one of ['role', 'instanceProfile']"},
	{name: "empty role", base: validEC2NodeClass, edits: [][2]string{{"spec.role", "''"}},
		field: "spec.role", msg: "role cannot be empty"},
	{name: "alias without a version", base: validEC2NodeClass, edits: [][2]string{{"spec.amiSelectorTerms.0.alias", "al2023"}},
		field: "spec.amiSelectorTerms[0].alias", msg: "'alias' is improperly formatted, must match the format 'family@version'"},
	{name: "alias of an unknown family", base: validEC2NodeClass, edits: [][2]string{{"spec.amiSelectorTerms.0.alias", "ubuntu@latest"}},
		field: "spec.amiSelectorTerms[0].alias", msg: "family is not supported"},
	{name: "windows alias pinned to a version", base: validEC2NodeClass, edits: [][2]string{{"spec.amiSelectorTerms.0.alias", "windows2022@v20240101"}},
		field: "spec.amiSelectorTerms[0].alias", msg: "windows families may only specify version 'latest'"},
	{name: "alias with another AMI term", base: validEC2NodeClass, edits: [][2]string{{"spec.amiSelectorTerms", "[{alias: al2023@latest}, {id: ami-0123456789abcdef0}]"}},
		field: "spec.amiSelectorTerms", msg: "'alias' is mutually exclusive"},
	{name: "no AMI selector terms", base: validEC2NodeClass, edits: [][2]string{{"spec.amiSelectorTerms", "[]"}},
		field: "spec.amiSelectorTerms", msg: "should have at least 1 items"},
	{name: "AMI terms without an alias and no amiFamily", base: validEC2NodeClass, edits: [][2]string{{"spec.amiSelectorTerms", "[{tags: {team: batch}}]"}},
		field: "spec", msg: "must specify amiFamily if amiSelectorTerms does not contain an alias"},
	{name: "amiFamily that contradicts the alias", base: validEC2NodeClass, edits: [][2]string{{"spec.amiFamily", "Bottlerocket"}},
		field: "spec", msg: "amiFamily must be 'AL2023' or 'Custom' when using an AL2023 alias"},
	{name: "subnet selector term with no field", base: validEC2NodeClass, edits: [][2]string{{"spec.subnetSelectorTerms", "[{}]"}},
		field: "spec.subnetSelectorTerms", msg: "expected at least one, got none, ['tags', 'id']"},
	{name: "no subnet selector terms", base: validEC2NodeClass, edits: [][2]string{{"spec.subnetSelectorTerms", "[]"}},
		field: "spec.subnetSelectorTerms", msg: "subnetSelectorTerms cannot be empty"},
	{name: "security group term with id and name", base: validEC2NodeClass, edits: [][2]string{{"spec.securityGroupSelectorTerms", "[{id: sg-0123, name: nodes}]"}},
		field: "spec.securityGroupSelectorTerms", msg: "'id' is mutually exclusive"},
	{name: "subnet tag with an empty value", base: validEC2NodeClass, edits: [][2]string{{"spec.subnetSelectorTerms", "[{tags: {Tier: ''}}]"}},
		field: "spec.subnetSelectorTerms[0].tags", msg: "empty tag keys or values aren't supported"},
	{name: "restricted tag kubernetes.io/cluster", base: validEC2NodeClass, edits: [][2]string{{"spec.tags", "{kubernetes.io/cluster/other: owned}"}},
		field: "spec.tags", msg: "tag contains a restricted tag matching kubernetes.io/cluster/"},
	{name: "IMDS hop limit 0", base: validEC2NodeClass, edits: [][2]string{{"spec.metadataOptions", "{httpPutResponseHopLimit: 0}"}},
		field: "spec.metadataOptions.httpPutResponseHopLimit", msg: "should be greater than or equal to 1"},
	{name: "two root volumes", base: validEC2NodeClass, edits: [][2]string{{"spec.blockDeviceMappings", "[{deviceName: /dev/xvda, rootVolume: true, ebs: {volumeSize: 20Gi}}, {deviceName: /dev/xvdb, rootVolume: true, ebs: {volumeSize: 20Gi}}]"}},
		field: "spec.blockDeviceMappings", msg: "must have only one blockDeviceMappings with rootVolume"},
	{name: "volume size in terabytes as TB", base: validEC2NodeClass, edits: [][2]string{{"spec.blockDeviceMappings", "[{deviceName: /dev/xvda, ebs: {volumeSize: 100TB}}]"}},
		field: "spec.blockDeviceMappings[0].ebs.volumeSize", msg: "should match"},
	{name: "EBS volume with neither size nor snapshot", base: validEC2NodeClass, edits: [][2]string{{"spec.blockDeviceMappings", "[{deviceName: /dev/xvda, ebs: {volumeType: gp3}}]"}},
		field: "spec.blockDeviceMappings[0].ebs", msg: "snapshotID or volumeSize must be defined"},

	// NodeClaim
	{name: "NodeClaim requirement In with no values", base: validNodeClaim, edits: [][2]string{{"spec.requirements.0.values", "[]"}},
		field: "spec.requirements", msg: "requirements with operator 'In' must have a value defined"},
	{name: "NodeClaim without a nodeClassRef", base: validNodeClaim, edits: [][2]string{{"spec.nodeClassRef", ""}},
		field: "spec.nodeClassRef", msg: "Required value"},
}

// TestInvalidManifestsAreRejected applies each invalid manifest and checks the
// apiserver refuses it, names the field, explains why, and stores nothing.
func TestInvalidManifestsAreRejected(t *testing.T) {
	if len(invalidCases) < 25 {
		t.Fatalf("the table holds %d invalid manifests; keep at least 25", len(invalidCases))
	}
	for _, tc := range invalidCases {
		t.Run(tc.name, func(t *testing.T) {
			obj := object(t, tc.base)
			for _, e := range tc.edits {
				set(t, obj, e[0], e[1])
			}
			err := cp.Client.Create(context.Background(), obj)
			if err == nil {
				t.Fatalf("the apiserver accepted an invalid %s (%s)", obj.GetKind(), tc.name)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.field+":") {
				t.Errorf("error does not name the field %s:\n%v", tc.field, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error does not say %q:\n%v", tc.msg, err)
			}
			stored := &unstructured.Unstructured{}
			stored.SetGroupVersionKind(obj.GroupVersionKind())
			if err := cp.Client.Get(context.Background(), clientKey(obj), stored); !apierrors.IsNotFound(err) {
				t.Errorf("a rejected %s was stored (get: %v)", obj.GetKind(), err)
			}
		})
	}
}
