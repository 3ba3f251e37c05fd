package aws

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/samber/lo"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
)

// Instance profiles for EC2NodeClasses with spec.role, as Karpenter makes
// them: one per node class, named from the cluster, region and class (so a
// cluster moved from Karpenter finds its profiles), tagged as the cluster's
// and the class's, holding the class's role. nodewright creates, repairs and
// deletes only profiles carrying its ownership tags; the chart's IAM policy
// allows nothing else. A class with spec.instanceProfile uses that profile as
// it is: nodewright neither creates nor deletes it.

// iamAPI is what managing instance profiles needs of IAM.
type iamAPI interface {
	GetInstanceProfile(context.Context, *iam.GetInstanceProfileInput, ...func(*iam.Options)) (*iam.GetInstanceProfileOutput, error)
	CreateInstanceProfile(context.Context, *iam.CreateInstanceProfileInput, ...func(*iam.Options)) (*iam.CreateInstanceProfileOutput, error)
	TagInstanceProfile(context.Context, *iam.TagInstanceProfileInput, ...func(*iam.Options)) (*iam.TagInstanceProfileOutput, error)
	AddRoleToInstanceProfile(context.Context, *iam.AddRoleToInstanceProfileInput, ...func(*iam.Options)) (*iam.AddRoleToInstanceProfileOutput, error)
	RemoveRoleFromInstanceProfile(context.Context, *iam.RemoveRoleFromInstanceProfileInput, ...func(*iam.Options)) (*iam.RemoveRoleFromInstanceProfileOutput, error)
	DeleteInstanceProfile(context.Context, *iam.DeleteInstanceProfileInput, ...func(*iam.Options)) (*iam.DeleteInstanceProfileOutput, error)
}

// InstanceProfileName is the instance profile nodewright uses for a node
// class that names a role: "<cluster>_<FNV-1a 64 of region and node class
// name>", the name Karpenter gives it (its hash of the joined string is this
// FNV-1a), so profiles made by Karpenter are found and reused.
func InstanceProfileName(cluster, region, nodeClass string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(region + nodeClass))
	return fmt.Sprintf("%s_%d", cluster, h.Sum64())
}

// profileProblem is a reason the instance profile cannot be ready that the
// user must act on (a role that does not exist, a profile that is not ours);
// retrying does not help until they do.
type profileProblem struct{ message string }

func (p *profileProblem) Error() string { return p.message }

// profileTags are the tags of the instance profile of nc: those of its
// launches without a NodePool, and the region, as Karpenter tags it.
func (r *NodeClassResolver) profileTags(nc *awsv1.EC2NodeClass) map[string]string {
	tags := resourceTags(r.opts.ClusterName, nc, "")
	tags[corev1.LabelTopologyRegion] = r.opts.Region
	return tags
}

// ours reports whether a profile carries the tags that make it this cluster's
// profile of this node class.
func (r *NodeClassResolver) ours(profile *iamtypes.InstanceProfile, nodeClass string) bool {
	tags := lo.SliceToMap(profile.Tags, func(t iamtypes.Tag) (string, string) { return aws.ToString(t.Key), aws.ToString(t.Value) })
	return tags[awsv1.TagClusterPrefix+r.opts.ClusterName] == "owned" && tags[awsv1.TagEC2NodeClass] == nodeClass
}

// roleName is the role's name in spec.role, which may be its ARN (with a
// path): IAM's role calls take the bare name.
func roleName(role string) string {
	if strings.HasPrefix(role, "arn:") {
		return role[strings.LastIndex(role, "/")+1:]
	}
	return role
}

// getProfile returns the profile of that name, nil when there is none.
func (r *NodeClassResolver) getProfile(ctx context.Context, name string) (*iamtypes.InstanceProfile, error) {
	out, err := r.iam.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(name)})
	var missing *iamtypes.NoSuchEntityException
	switch {
	case errors.As(err, &missing):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("getting instance profile %s: %w", name, err)
	}
	return out.InstanceProfile, nil
}

// profileOf finds the instance profile of nc and its name: the one its
// status records when that profile exists and carries this cluster's and
// this class's tags, else InstanceProfileName (profile nil when missing).
// Karpenter releases after v1.0 name the profile with a random part and
// record it in status.instanceProfile; without this, a class adopted from
// one would get a second profile and leave Karpenter's behind when deleted.
// Only "<cluster>_" names are considered: the chart's IAM policy allows no
// other.
func (r *NodeClassResolver) profileOf(ctx context.Context, nc *awsv1.EC2NodeClass) (string, *iamtypes.InstanceProfile, error) {
	name := InstanceProfileName(r.opts.ClusterName, r.opts.Region, nc.Name)
	if recorded := nc.Status.InstanceProfile; recorded != "" && recorded != name && strings.HasPrefix(recorded, r.opts.ClusterName+"_") {
		profile, err := r.getProfile(ctx, recorded)
		if err != nil {
			return recorded, nil, err
		}
		if profile != nil && r.ours(profile, nc.Name) {
			return recorded, profile, nil
		}
	}
	profile, err := r.getProfile(ctx, name)
	return name, profile, err
}

// ensureInstanceProfile makes the instance profile of nc (which has
// spec.role) exist with the role and the tags, and returns its name: it
// creates the profile if missing, reuses it if it is ours, tags it with what
// it lacks, and replaces a role other than spec.role. A *profileProblem error
// is for the user to fix; others are IAM failing and worth a retry.
func (r *NodeClassResolver) ensureInstanceProfile(ctx context.Context, nc *awsv1.EC2NodeClass) (string, error) {
	name, profile, err := r.profileOf(ctx, nc)
	if err != nil {
		return name, err
	}
	role := roleName(nc.Spec.Role)
	tags := r.profileTags(nc)
	if profile == nil {
		out, err := r.iam.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(name), Tags: iamTags(tags)})
		var exists *iamtypes.EntityAlreadyExistsException
		switch {
		case errors.As(err, &exists):
			// Made since we looked (another replica, a retried call): read it.
			if profile, err = r.getProfile(ctx, name); err != nil || profile == nil {
				return name, fmt.Errorf("instance profile %s exists but cannot be read: %w", name, err)
			}
		case err != nil:
			return name, fmt.Errorf("creating instance profile %s for spec.role %s: %w", name, nc.Spec.Role, err)
		default:
			profile = out.InstanceProfile
			log.FromContext(ctx).Info("created instance profile", "instanceProfile", name, "role", role)
		}
	}
	if !r.ours(profile, nc.Name) {
		return name, &profileProblem{fmt.Sprintf("instance profile %s for spec.role %s exists without the tags %s%s=owned and %s=%s, so it is not nodewright's to change; delete it or set spec.instanceProfile",
			name, nc.Spec.Role, awsv1.TagClusterPrefix, r.opts.ClusterName, awsv1.TagEC2NodeClass, nc.Name)}
	}
	have := lo.SliceToMap(profile.Tags, func(t iamtypes.Tag) (string, string) { return aws.ToString(t.Key), aws.ToString(t.Value) })
	// All the tags, not only the missing ones: the chart's IAM policy allows
	// tagging only with the cluster's, the class's and the region's tags in
	// the request, as Karpenter's does.
	if missing := lo.OmitBy(tags, func(k, v string) bool { return have[k] == v }); len(missing) > 0 {
		if _, err := r.iam.TagInstanceProfile(ctx, &iam.TagInstanceProfileInput{InstanceProfileName: aws.String(name), Tags: iamTags(tags)}); err != nil {
			return name, fmt.Errorf("tagging instance profile %s: %w", name, err)
		}
	}
	for _, held := range profile.Roles {
		if aws.ToString(held.RoleName) == role {
			return name, nil
		}
		// A profile holds one role: the old one goes before spec.role can
		// come in. Nodes launched with the profile take the new role's
		// permissions once it is in.
		if _, err := r.iam.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{InstanceProfileName: aws.String(name), RoleName: held.RoleName}); err != nil && !isNoSuchEntity(err) {
			return name, fmt.Errorf("removing role %s from instance profile %s: %w", aws.ToString(held.RoleName), name, err)
		}
		log.FromContext(ctx).Info("removed the previous role from instance profile", "instanceProfile", name, "role", aws.ToString(held.RoleName))
	}
	if _, err := r.iam.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String(name), RoleName: aws.String(role)}); err != nil {
		if isNoSuchEntity(err) {
			return name, &profileProblem{fmt.Sprintf("spec.role %s: IAM has no such role, so instance profile %s has no role; create the role or fix spec.role", nc.Spec.Role, name)}
		}
		return name, fmt.Errorf("adding spec.role %s to instance profile %s: %w", nc.Spec.Role, name, err)
	}
	log.FromContext(ctx).Info("added role to instance profile", "instanceProfile", name, "role", role)
	return name, nil
}

// DeleteInstanceProfile deletes the instance profile nodewright made for the
// node class, roles first (IAM refuses to delete a profile holding one). It
// returns nil once the profile is gone, and when it is not nodewright's
// (a profile it did not tag is left alone).
func (r *NodeClassResolver) DeleteInstanceProfile(ctx context.Context, nc *awsv1.EC2NodeClass) error {
	name, profile, err := r.profileOf(ctx, nc)
	if err != nil || profile == nil {
		return err
	}
	if !r.ours(profile, nc.Name) {
		log.FromContext(ctx).Info("leaving instance profile without nodewright's tags", "instanceProfile", name)
		return nil
	}
	for _, held := range profile.Roles {
		if _, err := r.iam.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{InstanceProfileName: aws.String(name), RoleName: held.RoleName}); err != nil && !isNoSuchEntity(err) {
			return fmt.Errorf("removing role %s from instance profile %s: %w", aws.ToString(held.RoleName), name, err)
		}
	}
	if _, err := r.iam.DeleteInstanceProfile(ctx, &iam.DeleteInstanceProfileInput{InstanceProfileName: aws.String(name)}); err != nil && !isNoSuchEntity(err) {
		return fmt.Errorf("deleting instance profile %s: %w", name, err)
	}
	log.FromContext(ctx).Info("deleted instance profile", "instanceProfile", name)
	return nil
}

func isNoSuchEntity(err error) bool {
	var missing *iamtypes.NoSuchEntityException
	return errors.As(err, &missing)
}

func iamTags(tags map[string]string) []iamtypes.Tag {
	return lo.Map(sortedKeys(tags), func(k string, _ int) iamtypes.Tag {
		return iamtypes.Tag{Key: aws.String(k), Value: aws.String(tags[k])}
	})
}
