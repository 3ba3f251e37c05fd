package ec2sim

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

func TestLaunchTemplateKeepsItsData(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	userData := base64.StdEncoding.EncodeToString([]byte("#!/bin/bash\necho hi\n"))
	out, err := e.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("nodewright/default-1234"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{
			ImageId: aws.String(amiX86), UserData: aws.String(userData), SecurityGroupIds: []string{sgNodes, "sg-0b00000000000002"},
			IamInstanceProfile: &ec2types.LaunchTemplateIamInstanceProfileSpecificationRequest{Name: aws.String("nodes")},
			MetadataOptions: &ec2types.LaunchTemplateInstanceMetadataOptionsRequest{
				HttpTokens: ec2types.LaunchTemplateHttpTokensStateRequired, HttpPutResponseHopLimit: aws.Int32(1),
				HttpEndpoint: ec2types.LaunchTemplateInstanceMetadataEndpointStateEnabled,
			},
			BlockDeviceMappings: []ec2types.LaunchTemplateBlockDeviceMappingRequest{{
				DeviceName: aws.String("/dev/xvda"),
				Ebs:        &ec2types.LaunchTemplateEbsBlockDeviceRequest{VolumeSize: aws.Int32(20), VolumeType: ec2types.VolumeTypeGp3, Encrypted: aws.Bool(true)},
			}},
			TagSpecifications: []ec2types.LaunchTemplateTagSpecificationRequest{{
				ResourceType: ec2types.ResourceTypeInstance, Tags: []ec2types.Tag{{Key: aws.String("karpenter.sh/nodepool"), Value: aws.String("default")}},
			}},
		},
		TagSpecifications: []ec2types.TagSpecification{{
			ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: []ec2types.Tag{{Key: aws.String("nodewright.io/cluster"), Value: aws.String("demo")}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	lt := out.LaunchTemplate
	id := aws.ToString(lt.LaunchTemplateId)
	if !launchTemplateIDPattern.MatchString(id) || aws.ToString(lt.LaunchTemplateName) != "nodewright/default-1234" ||
		aws.ToInt64(lt.LatestVersionNumber) != 1 || lt.CreateTime == nil || len(lt.Tags) != 1 {
		t.Errorf("CreateLaunchTemplate answered %+v", lt)
	}
	kept, ok := e.sim.LaunchTemplate("nodewright/default-1234")
	if !ok || kept.ID != id {
		t.Fatalf("LaunchTemplate by name: %+v %v", kept, ok)
	}
	d := kept.Data
	decoded, err := d.DecodedUserData()
	if err != nil || decoded != "#!/bin/bash\necho hi\n" {
		t.Errorf("user data: %q %v", decoded, err)
	}
	if d.ImageID != amiX86 || len(d.SecurityGroupIDs) != 2 || d.IAMInstanceProfile.Name != "nodes" ||
		d.MetadataOptions != (MetadataOptions{HTTPTokens: "required", HTTPEndpoint: "enabled", HTTPPutResponseHopLimit: 1}) ||
		len(d.BlockDeviceMappings) != 1 || d.BlockDeviceMappings[0] != (BlockDeviceMapping{DeviceName: "/dev/xvda", VolumeSize: 20, VolumeType: "gp3", Encrypted: true}) ||
		d.TagSpecifications["instance"]["karpenter.sh/nodepool"] != "default" || kept.Tags["nodewright.io/cluster"] != "demo" {
		t.Errorf("kept data: %+v tags %v", d, kept.Tags)
	}
	// The copy is the caller's.
	kept.Data.SecurityGroupIDs[0] = "sg-changed"
	if again, _ := e.sim.LaunchTemplate(id); again.Data.SecurityGroupIDs[0] != sgNodes {
		t.Error("changing a returned template changed the simulator's")
	}
}

func TestLaunchTemplateNamesAreUnique(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.launchTemplate(t, "nodes", "")
	_, err := e.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("nodes"), LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(amiX86)},
	})
	if code := errorCode(err); code != "InvalidLaunchTemplateName.AlreadyExistsException" {
		t.Errorf("second template named nodes: want InvalidLaunchTemplateName.AlreadyExistsException, got %v", err)
	}
	// A retried request (same client token) gets the first answer, not the
	// duplicate-name error.
	input := &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("retried"), ClientToken: aws.String("token-1"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(amiX86)},
	}
	first, err := e.ec2.CreateLaunchTemplate(ctx, input)
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.ec2.CreateLaunchTemplate(ctx, input)
	if err != nil || aws.ToString(second.LaunchTemplate.LaunchTemplateId) != aws.ToString(first.LaunchTemplate.LaunchTemplateId) {
		t.Errorf("replayed CreateLaunchTemplate: %v %v", second, err)
	}
	for _, bad := range []*ec2.CreateLaunchTemplateInput{
		{LaunchTemplateName: aws.String("x"), LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(amiX86)}},
		{LaunchTemplateName: aws.String("bad-user-data"), LaunchTemplateData: &ec2types.RequestLaunchTemplateData{UserData: aws.String("not base64!")}},
	} {
		if _, err := e.ec2.CreateLaunchTemplate(ctx, bad); err == nil {
			t.Errorf("%s: accepted", aws.ToString(bad.LaunchTemplateName))
		}
	}
	if n := len(e.sim.LaunchTemplates()); n != 2 {
		t.Errorf("%d templates, want nodes and retried", n)
	}
}

func TestDescribeAndDeleteLaunchTemplates(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.launchTemplate(t, "pool-a", "")
	e.launchTemplate(t, "pool-b", "")
	if _, err := e.ec2.CreateTags(ctx, &ec2.CreateTagsInput{
		Resources: []string{a}, Tags: []ec2types.Tag{{Key: aws.String("nodewright.io/nodeclass"), Value: aws.String("default")}},
	}); err != nil {
		t.Fatal(err)
	}

	byName, err := e.ec2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateNames: []string{"pool-b"}})
	if err != nil || len(byName.LaunchTemplates) != 1 || aws.ToString(byName.LaunchTemplates[0].LaunchTemplateName) != "pool-b" {
		t.Errorf("by name: %+v %v", byName, err)
	}
	byID, err := e.ec2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateIds: []string{a}})
	if err != nil || len(byID.LaunchTemplates) != 1 || aws.ToString(byID.LaunchTemplates[0].LaunchTemplateId) != a {
		t.Errorf("by id: %+v %v", byID, err)
	}
	for _, f := range []ec2types.Filter{
		{Name: aws.String("tag:nodewright.io/nodeclass"), Values: []string{"default"}},
		{Name: aws.String("tag-key"), Values: []string{"nodewright.io/*"}},
	} {
		out, err := e.ec2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{Filters: []ec2types.Filter{f}})
		if err != nil || len(out.LaunchTemplates) != 1 || aws.ToString(out.LaunchTemplates[0].LaunchTemplateId) != a {
			t.Errorf("filter %s: %+v %v", aws.ToString(f.Name), out, err)
		}
	}
	all, err := e.ec2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{MaxResults: aws.Int32(1)})
	if err != nil || len(all.LaunchTemplates) != 1 || all.NextToken == nil {
		t.Errorf("first page of one: %+v %v", all, err)
	}

	// EC2 fails a lookup by name that finds nothing, rather than answering an
	// empty list: Karpenter creates a missing template on that error.
	_, err = e.ec2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateNames: []string{"pool-a", "pool-z"}})
	if code := errorCode(err); code != "InvalidLaunchTemplateName.NotFoundException" {
		t.Errorf("missing name: want InvalidLaunchTemplateName.NotFoundException, got %v", err)
	}
	_, err = e.ec2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateIds: []string{"lt-0123456789abcdef0"}})
	if code := errorCode(err); code != "InvalidLaunchTemplateId.NotFound" {
		t.Errorf("missing id: want InvalidLaunchTemplateId.NotFound, got %v", err)
	}

	del, err := e.ec2.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateName: aws.String("pool-a")})
	if err != nil || aws.ToString(del.LaunchTemplate.LaunchTemplateId) != a {
		t.Fatalf("delete: %+v %v", del, err)
	}
	if _, err := e.ec2.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateId: aws.String(a)}); errorCode(err) != "InvalidLaunchTemplateId.NotFound" {
		t.Errorf("deleting twice: want InvalidLaunchTemplateId.NotFound, got %v", err)
	}
	if _, ok := e.sim.LaunchTemplate(a); ok {
		t.Error("deleted template still kept")
	}
}

// TestLaunchTemplateQuota: past the account's quota CreateLaunchTemplate fails
// with EC2's MaxTemplateLimitExceeded, and deleting one makes room again.
// Fails if the quota check in createLaunchTemplate is removed, or if a
// deleted template still counts.
func TestLaunchTemplateQuota(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.sim.SetLaunchTemplateQuota(3)
	first := e.launchTemplate(t, "lt-a", "")
	e.launchTemplate(t, "lt-b", "")
	e.launchTemplate(t, "lt-c", "")
	create := func(name string) error {
		_, err := e.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
			LaunchTemplateName: aws.String(name), LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(amiX86)},
		})
		return err
	}
	if err := create("lt-d"); errorCode(err) != "MaxTemplateLimitExceeded" {
		t.Fatalf("a fourth template with a quota of 3: want MaxTemplateLimitExceeded, got %v", err)
	}
	e.sim.Heal()
	if err := create("lt-d"); errorCode(err) != "MaxTemplateLimitExceeded" {
		t.Errorf("Heal lifted the quota: %v", err)
	}
	if _, err := e.ec2.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateId: aws.String(first)}); err != nil {
		t.Fatal(err)
	}
	if err := create("lt-d"); err != nil {
		t.Errorf("after a delete the quota has room: %v", err)
	}
	e.sim.SetLaunchTemplateQuota(0)
	if err := create("lt-e"); err != nil {
		t.Errorf("quota 0 restores the default of %d: %v", DefaultLaunchTemplateQuota, err)
	}
}

// TestDeletedLaunchTemplate: DeleteLaunchTemplate takes an id or a name, not
// both, and fails as EC2 does for one that does not exist; a fleet naming a
// deleted template fails with the not-found error of how it named it, while
// instances launched from it keep running. Fails if deleteLaunchTemplate
// accepts both parameters or a fleet still finds a deleted template.
func TestDeletedLaunchTemplate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.launchTemplate(t, "nodes", "")
	out, err := e.ec2.CreateFleet(ctx, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("m5.large", "ap-northeast-2a")))
	if err != nil || len(launched(out)) != 1 {
		t.Fatalf("fleet before the delete: %+v %v", out, err)
	}
	for _, c := range []struct {
		in   *ec2.DeleteLaunchTemplateInput
		code string
	}{
		{&ec2.DeleteLaunchTemplateInput{LaunchTemplateId: aws.String(id), LaunchTemplateName: aws.String("nodes")}, "InvalidParameterCombination"},
		{&ec2.DeleteLaunchTemplateInput{}, "MissingParameter"},
		{&ec2.DeleteLaunchTemplateInput{LaunchTemplateId: aws.String("lt-nope")}, "InvalidLaunchTemplateId.Malformed"},
		{&ec2.DeleteLaunchTemplateInput{LaunchTemplateName: aws.String("other")}, "InvalidLaunchTemplateName.NotFoundException"},
	} {
		if _, err := e.ec2.DeleteLaunchTemplate(ctx, c.in); errorCode(err) != c.code {
			t.Errorf("DeleteLaunchTemplate(id %q, name %q): want %s, got %v", aws.ToString(c.in.LaunchTemplateId), aws.ToString(c.in.LaunchTemplateName), c.code, err)
		}
	}
	if _, ok := e.sim.LaunchTemplate(id); !ok {
		t.Fatal("a failed delete deleted the template")
	}
	if _, err := e.ec2.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateName: aws.String("nodes")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ec2.CreateFleet(ctx, fleetInput("nodes", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("m5.large", "ap-northeast-2a"))); errorCode(err) != "InvalidLaunchTemplateName.NotFoundException" {
		t.Errorf("fleet on the deleted template by name: want InvalidLaunchTemplateName.NotFoundException, got %v", err)
	}
	byID := fleetInput("", ec2types.DefaultTargetCapacityTypeOnDemand, 1, override("m5.large", "ap-northeast-2a"))
	byID.LaunchTemplateConfigs[0].LaunchTemplateSpecification = &ec2types.FleetLaunchTemplateSpecificationRequest{LaunchTemplateId: aws.String(id), Version: aws.String("$Latest")}
	if _, err := e.ec2.CreateFleet(ctx, byID); errorCode(err) != "InvalidLaunchTemplateId.NotFound" {
		t.Errorf("fleet on the deleted template by id: want InvalidLaunchTemplateId.NotFound, got %v", err)
	}
	if in, ok := e.sim.Instance(launched(out)[0]); !ok || in.State != StateRunning {
		t.Errorf("the instance launched from the deleted template: %+v %v; want it running", in, ok)
	}
}

// TestLaunchTemplatesByTagsPaged: a cluster finds its own templates by tag
// filters (a tag's value and a tag key), across pages. Fails if the tag
// filters are ignored or NextToken does not advance.
func TestLaunchTemplatesByTagsPaged(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tagged := func(name string, tags map[string]string) {
		in := &ec2.CreateLaunchTemplateInput{
			LaunchTemplateName: aws.String(name), LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(amiX86)},
		}
		spec := ec2types.TagSpecification{ResourceType: ec2types.ResourceTypeLaunchTemplate}
		for k, v := range tags {
			spec.Tags = append(spec.Tags, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		in.TagSpecifications = []ec2types.TagSpecification{spec}
		if _, err := e.ec2.CreateLaunchTemplate(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	ours := map[string]string{"kubernetes.io/cluster/demo": "owned", "karpenter.sh/nodepool": "default"}
	for _, name := range []string{"ours-1", "ours-2", "ours-3"} {
		tagged(name, ours)
	}
	tagged("no-pool", map[string]string{"kubernetes.io/cluster/demo": "owned"})
	tagged("other-cluster", map[string]string{"kubernetes.io/cluster/other": "owned", "karpenter.sh/nodepool": "default"})

	pages := ec2.NewDescribeLaunchTemplatesPaginator(e.ec2, &ec2.DescribeLaunchTemplatesInput{
		MaxResults: aws.Int32(2),
		Filters: []ec2types.Filter{
			{Name: aws.String("tag:kubernetes.io/cluster/demo"), Values: []string{"owned"}},
			{Name: aws.String("tag-key"), Values: []string{"karpenter.sh/nodepool"}},
		},
	})
	var names []string
	n := 0
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n++
		for _, lt := range page.LaunchTemplates {
			names = append(names, aws.ToString(lt.LaunchTemplateName))
		}
	}
	if strings.Join(names, ",") != "ours-1,ours-2,ours-3" || n != 2 {
		t.Errorf("found %v in %d pages, want ours-1..3 in 2", names, n)
	}
}
