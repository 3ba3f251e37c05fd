package aws

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	corev1 "k8s.io/api/core/v1"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/pkg/scheduling/requirements"
)

// AMI families, as spec.amiFamily spells them.
const (
	amiFamilyAL2          = "AL2"
	amiFamilyAL2023       = "AL2023"
	amiFamilyBottlerocket = "Bottlerocket"
	amiFamilyCustom       = "Custom"
	amiFamilyWindows2019  = "Windows2019"
	amiFamilyWindows2022  = "Windows2022"
	amiFamilyWindows2025  = "Windows2025"
)

// aliasFamilies maps an alias's family to spec.amiFamily's spelling.
var aliasFamilies = map[string]string{
	"al2": amiFamilyAL2, "al2023": amiFamilyAL2023, "bottlerocket": amiFamilyBottlerocket,
	"windows2019": amiFamilyWindows2019, "windows2022": amiFamilyWindows2022, "windows2025": amiFamilyWindows2025,
}

// AMIFamily is the family that decides nc's user data format:
// spec.amiFamily when set (the CRD allows only the alias's family or Custom
// beside an alias), else the alias's.
func AMIFamily(nc *awsv1.EC2NodeClass) string {
	if f := aws.ToString(nc.Spec.AMIFamily); f != "" {
		return f
	}
	family, _, _ := strings.Cut(amiAlias(nc), "@")
	if f, ok := aliasFamilies[family]; ok {
		return f
	}
	return family
}

// unsupportedFamily says which AMI families nodewright writes user data for,
// in every message refusing another.
const unsupportedFamily = "nodewright supports the AL2, AL2023, Bottlerocket and Windows2019/2022/2025 families (aliases al2@, al2023@, bottlerocket@ and windows2019@latest, windows2022@latest, windows2025@latest) and Custom, which passes spec.userData through unchanged"

func amiAlias(nc *awsv1.EC2NodeClass) string {
	for _, term := range nc.Spec.AMISelectorTerms {
		if term.Alias != "" {
			return term.Alias
		}
	}
	return ""
}

// aliasVariant is one flavour of an EKS-optimized AMI family and the instance
// types it is for: the standard image has no GPU drivers, the nvidia (and for
// AL2023 the neuron) ones are only worth their larger size on such types.
// variant names the image (standard, nvidia, neuron), not the types.
type aliasVariant struct {
	family, arch, variant string
	requirements          []corev1.NodeSelectorRequirement
}

func archRequirement(a string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: v1.LabelArchStable, Operator: corev1.NodeSelectorOpIn, Values: []string{a}}
}

func hasLabel(key string, op corev1.NodeSelectorOperator) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: op}
}

var aliasArchitectures = []struct{ ec2, k8s string }{{"x86_64", v1.ArchitectureAmd64}, {"arm64", v1.ArchitectureArm64}}

// familyVariants are a family's variants per architecture: standard for
// types without accelerators, nvidia for GPU types, and for Neuron types the
// image neuronImage names. AL2023 publishes a neuron image; Bottlerocket's
// aws-k8s (standard) image carries the Neuron driver, so Karpenter uses it
// there, and one image may appear twice with other requirements.
func familyVariants(family, neuronImage string) []aliasVariant {
	var out []aliasVariant
	for _, a := range aliasArchitectures {
		out = append(out,
			aliasVariant{family, a.ec2, "standard", []corev1.NodeSelectorRequirement{archRequirement(a.k8s),
				hasLabel(awsv1.LabelInstanceGPUCount, corev1.NodeSelectorOpDoesNotExist), hasLabel(awsv1.LabelInstanceAcceleratorCount, corev1.NodeSelectorOpDoesNotExist)}},
			aliasVariant{family, a.ec2, "nvidia", []corev1.NodeSelectorRequirement{archRequirement(a.k8s), hasLabel(awsv1.LabelInstanceGPUCount, corev1.NodeSelectorOpExists)}},
			aliasVariant{family, a.ec2, neuronImage, []corev1.NodeSelectorRequirement{archRequirement(a.k8s), hasLabel(awsv1.LabelInstanceAcceleratorCount, corev1.NodeSelectorOpExists)}},
		)
	}
	return out
}

// al2Variants are the EKS AL2 images: standard for x86 and Arm types
// without accelerators, and one x86 GPU image (NVIDIA and Neuron drivers
// both) for GPU and for Neuron types. EKS publishes no Arm GPU image for AL2.
func al2Variants() []aliasVariant {
	amd64, arm64 := archRequirement(v1.ArchitectureAmd64), archRequirement(v1.ArchitectureArm64)
	noAccelerator := []corev1.NodeSelectorRequirement{hasLabel(awsv1.LabelInstanceGPUCount, corev1.NodeSelectorOpDoesNotExist), hasLabel(awsv1.LabelInstanceAcceleratorCount, corev1.NodeSelectorOpDoesNotExist)}
	return []aliasVariant{
		{"al2", "x86_64", "standard", append([]corev1.NodeSelectorRequirement{amd64}, noAccelerator...)},
		{"al2", "x86_64", "gpu", []corev1.NodeSelectorRequirement{amd64, hasLabel(awsv1.LabelInstanceGPUCount, corev1.NodeSelectorOpExists)}},
		{"al2", "x86_64", "gpu", []corev1.NodeSelectorRequirement{amd64, hasLabel(awsv1.LabelInstanceAcceleratorCount, corev1.NodeSelectorOpExists)}},
		{"al2", "arm64", "standard", append([]corev1.NodeSelectorRequirement{arm64}, noAccelerator...)},
	}
}

// aliasVariants are the variants of an alias's family, nil for a family
// whose aliases nodewright does not resolve.
func aliasVariants(family string) []aliasVariant {
	switch family {
	case "al2":
		return al2Variants()
	case "al2023":
		return familyVariants(family, "neuron")
	case "bottlerocket":
		return familyVariants(family, "standard")
	case "windows2019", "windows2022", "windows2025":
		return []aliasVariant{windowsVariant(family)}
	}
	return nil
}

// windowsVariant is the one EKS-optimized Windows Server Core image of a
// Windows family: x86 only (no Windows for Graviton), for the family's
// Windows build, as Karpenter's requirements put it. The os and build keys
// match the Windows class's own catalog (see restrictCatalog).
func windowsVariant(family string) aliasVariant {
	build := windowsBuilds[aliasFamilies[family]]
	return aliasVariant{family, "x86_64", "standard", []corev1.NodeSelectorRequirement{
		archRequirement(v1.ArchitectureAmd64),
		{Key: v1.LabelOSStable, Operator: corev1.NodeSelectorOpIn, Values: []string{string(corev1.Windows)}},
		{Key: v1.LabelWindowsBuild, Operator: corev1.NodeSelectorOpIn, Values: []string{build}},
	}}
}

// imageName is the EKS AMI's name for a pinned AL2023 or AL2 release, e.g.
// amazon-eks-node-al2023-x86_64-standard-1.37-v20261101 or
// amazon-eks-arm64-node-1.32-v20251112, looked up when SSM no longer has the
// release's parameter; "" for Bottlerocket, whose image names carry a build
// commit nodewright cannot know.
func (v aliasVariant) imageName(k8sVersion, release string) string {
	switch v.family {
	case "al2023":
		return fmt.Sprintf("amazon-eks-node-al2023-%s-%s-%s-%s", v.arch, v.variant, k8sVersion, release)
	case "al2":
		kind := "node"
		switch {
		case v.variant == "gpu":
			kind = "gpu-node"
		case v.arch == "arm64":
			kind = "arm64-node"
		}
		return fmt.Sprintf("amazon-eks-%s-%s-%s", kind, k8sVersion, release)
	}
	return ""
}

// parameter is the public SSM parameter holding the variant's AMI id: the
// recommended (AL2023, AL2) or latest (Bottlerocket, Windows) one for "latest", else
// the pinned release's. Bottlerocket releases are tagged v1.x.y but published in
// SSM without the v, so both spellings are accepted, as Karpenter does.
func (v aliasVariant) parameter(k8sVersion, release string) string {
	if year, ok := strings.CutPrefix(v.family, "windows"); ok {
		// Only latest: the CRD allows no other Windows version.
		return fmt.Sprintf("/aws/service/ami-windows-latest/Windows_Server-%s-English-Core-EKS_Optimized-%s/image_id", year, k8sVersion)
	}
	if v.family == "bottlerocket" {
		image := "aws-k8s-" + k8sVersion
		if v.variant == "nvidia" {
			image += "-nvidia"
		}
		return fmt.Sprintf("/aws/service/bottlerocket/%s/%s/%s/image_id", image, v.arch, strings.TrimPrefix(release, "v"))
	}
	base := fmt.Sprintf("/aws/service/eks/optimized-ami/%s/amazon-linux-2023/%s/%s", k8sVersion, v.arch, v.variant)
	if v.family == "al2" {
		// amazon-linux-2, amazon-linux-2-arm64, amazon-linux-2-gpu
		dir := "amazon-linux-2"
		switch {
		case v.variant == "gpu":
			dir += "-gpu"
		case v.arch == "arm64":
			dir += "-arm64"
		}
		base = fmt.Sprintf("/aws/service/eks/optimized-ami/%s/%s", k8sVersion, dir)
	}
	if release == "latest" {
		return base + "/recommended/image_id"
	}
	return base + "/" + v.imageName(k8sVersion, release) + "/image_id"
}

// amis resolves amiSelectorTerms: an alias to the EKS-optimized images of
// every architecture and accelerator variant that exists, other terms
// (ORed) to the newest image per architecture.
func (r *NodeClassResolver) amis(ctx context.Context, nc *awsv1.EC2NodeClass) ([]awsv1.AMI, []string, error) {
	if alias := amiAlias(nc); alias != "" {
		return r.aliasAMIs(ctx, alias)
	}
	var images []ec2types.Image
	var unmatched []string
	for i, term := range nc.Spec.AMISelectorTerms {
		desc := describeTerm("amiSelectorTerms", i, term)
		found, err := r.termImages(ctx, term)
		if err != nil {
			return nil, nil, fmt.Errorf("describing images for %s: %w", desc, err)
		}
		if len(found) == 0 {
			unmatched = append(unmatched, desc)
		}
		images = append(images, found...)
	}
	// Newest first; keep the newest image of each architecture, the one
	// instances of that architecture launch with.
	slices.SortFunc(images, func(a, b ec2types.Image) int {
		return cmp.Or(cmp.Compare(aws.ToString(b.CreationDate), aws.ToString(a.CreationDate)), cmp.Compare(aws.ToString(a.ImageId), aws.ToString(b.ImageId)))
	})
	var out []awsv1.AMI
	seen := map[string]bool{}
	for _, img := range images {
		arch, ok := kubernetesArch(img.Architecture)
		if !ok || seen[arch] {
			continue
		}
		seen[arch] = true
		out = append(out, r.ami(img, []corev1.NodeSelectorRequirement{{Key: v1.LabelArchStable, Operator: corev1.NodeSelectorOpIn, Values: []string{arch}}}))
	}
	return out, unmatched, nil
}

func (r *NodeClassResolver) ami(img ec2types.Image, reqs []corev1.NodeSelectorRequirement) awsv1.AMI {
	deprecated := false
	if t, err := time.Parse(time.RFC3339, aws.ToString(img.DeprecationTime)); err == nil {
		deprecated = !t.After(r.opts.Clock.Now())
	}
	return awsv1.AMI{ID: aws.ToString(img.ImageId), Name: aws.ToString(img.Name), Deprecated: deprecated, Requirements: reqs}
}

func kubernetesArch(a ec2types.ArchitectureValues) (string, bool) {
	switch a {
	case ec2types.ArchitectureValuesX8664:
		return v1.ArchitectureAmd64, true
	case ec2types.ArchitectureValuesArm64:
		return v1.ArchitectureArm64, true
	}
	return "", false
}

// aliasAMIs resolves family@version for al2023, al2, bottlerocket and
// windows2019/2022/2025 (latest only); their
// images are found through the public SSM parameters AWS publishes, as
// Karpenter does, and a pinned AL2023 or AL2 release missing from SSM is
// looked up by its image name. EKS publishes AL2 images for Kubernetes 1.32
// and earlier only, so on a newer cluster an al2 alias matches nothing and
// the message says why.
func (r *NodeClassResolver) aliasAMIs(ctx context.Context, alias string) ([]awsv1.AMI, []string, error) {
	family, release, _ := strings.Cut(alias, "@")
	desc := fmt.Sprintf("amiSelectorTerms[0] alias %s", alias)
	variants := aliasVariants(family)
	if variants == nil {
		return nil, []string{desc + " (" + unsupportedFamily + ")"}, nil
	}
	var out []awsv1.AMI
	for _, v := range variants {
		img, err := r.variantImage(ctx, v, release)
		if err != nil {
			return nil, nil, fmt.Errorf("resolving %s (%s %s): %w", desc, v.arch, v.variant, err)
		}
		if img != nil {
			out = append(out, r.ami(*img, v.requirements))
		}
	}
	if len(out) == 0 {
		if family == "al2" {
			desc += " (EKS publishes AL2 images for Kubernetes 1.32 and earlier only; use al2023@ on a newer cluster)"
		}
		return nil, []string{desc}, nil
	}
	return out, nil, nil
}

// variantImage returns the variant's image, or nil when EKS publishes none
// (no arm64 Neuron image, say).
func (r *NodeClassResolver) variantImage(ctx context.Context, v aliasVariant, release string) (*ec2types.Image, error) {
	version, err := r.kubernetesVersion(ctx)
	if err != nil {
		return nil, err
	}
	id, err := r.parameter(ctx, v.parameter(version, release))
	if err != nil {
		return nil, err
	}
	in := &ec2.DescribeImagesInput{Filters: []ec2types.Filter{filter("image-id", id)}}
	if id == "" {
		name := v.imageName(version, release)
		if release == "latest" || name == "" {
			return nil, nil
		}
		in = &ec2.DescribeImagesInput{Owners: []string{"amazon"}, Filters: []ec2types.Filter{filter("name", name)}}
	}
	images, err := describeImages(ctx, r.ec2, in)
	if err != nil || len(images) == 0 {
		return nil, err
	}
	return &images[0], nil
}

// parameter reads an SSM parameter, "" when it does not exist.
func (r *NodeClassResolver) parameter(ctx context.Context, name string) (string, error) {
	out, err := r.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name)})
	var notFound *ssmtypes.ParameterNotFound
	if errors.As(err, &notFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("getting SSM parameter %s: %w", name, err)
	}
	if out.Parameter == nil {
		return "", nil
	}
	return aws.ToString(out.Parameter.Value), nil
}

// termImages returns the available images one (non-alias) term selects.
func (r *NodeClassResolver) termImages(ctx context.Context, term awsv1.AMISelectorTerm) ([]ec2types.Image, error) {
	in := &ec2.DescribeImagesInput{Filters: tagFilters(term.Tags)}
	id := term.ID
	if term.SSMParameter != "" {
		var err error
		if id, err = r.parameter(ctx, term.SSMParameter); err != nil || id == "" {
			return nil, err
		}
	}
	if id != "" {
		in.Filters = append(in.Filters, filter("image-id", id))
	}
	if term.Name != "" {
		in.Filters = append(in.Filters, filter("name", term.Name))
	}
	switch {
	case term.Owner != "":
		in.Owners = strings.Split(term.Owner, ",")
	case term.Name != "":
		// A name alone would match anyone's public image of that name.
		in.Owners = []string{"self", "amazon"}
	}
	if len(in.Filters) == 0 && len(in.Owners) == 0 {
		return nil, nil // an empty term would select every public image
	}
	images, err := describeImages(ctx, r.ec2, in)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(images, func(img ec2types.Image) bool { return !hasTags(img.Tags, term.Tags) }), nil
}

// describeImages pages through DescribeImages, keeping available images.
func describeImages(ctx context.Context, client ec2.DescribeImagesAPIClient, in *ec2.DescribeImagesInput) ([]ec2types.Image, error) {
	var out []ec2types.Image
	pages := ec2.NewDescribeImagesPaginator(client, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, img := range page.Images {
			if img.State == "" || img.State == ec2types.ImageStateAvailable {
				out = append(out, img)
			}
		}
	}
	return out, nil
}

// amiFor returns the first of amis whose requirements the instance type's
// labels satisfy: the status lists them so that the first match is the one
// to use.
func amiFor(amis []awsv1.AMI, labels map[string]string) (awsv1.AMI, bool) {
	for _, ami := range amis {
		if amiRequirements(ami).Matches(labels) {
			return ami, true
		}
	}
	return awsv1.AMI{}, false
}

// amiRequirements converts an AMI's requirements to the algebra; a
// requirement the algebra rejects (status written by something else) makes
// the AMI match nothing rather than everything.
func amiRequirements(ami awsv1.AMI) requirements.Requirements {
	reqs := requirements.Requirements{}
	for _, r := range ami.Requirements {
		req, err := requirements.New(r.Key, r.Operator, r.Values...)
		if err != nil {
			return requirements.Requirements{"": requirements.MustNew("", corev1.NodeSelectorOpIn)}
		}
		reqs.Add(req)
	}
	return reqs
}

// kubernetesVersion is the control plane's version now: Options.Version's
// answer, or the version given at start without one.
func (r *NodeClassResolver) kubernetesVersion(ctx context.Context) (string, error) {
	if r.opts.Version == nil {
		return r.opts.KubernetesVersion, nil
	}
	v, err := r.opts.Version.KubernetesVersion(ctx)
	if err != nil {
		return "", fmt.Errorf("reading the Kubernetes version: %w", err)
	}
	return v, nil
}
