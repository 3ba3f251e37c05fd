package aws

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/log"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
)

// Launch templates are deleted when nothing uses them any more: an account
// may have 5,000 per region, and every AMI release, node class change and
// label set makes a new one.

const (
	// defaultLaunchTemplateTTL is Options.LaunchTemplateTTL's default: a
	// template no launch has asked for in 30 minutes is deleted. One launch
	// (ensure, then CreateFleet with the SDK's retries, at most 4 fleets)
	// takes seconds, a minute or two when EC2 throttles; 30 minutes is far
	// beyond that, and a busy template is asked for again by every launch.
	// Deleting one that is merely idle costs its next launch a
	// DescribeLaunchTemplates and a CreateLaunchTemplate.
	defaultLaunchTemplateTTL = 30 * time.Minute
	// defaultLaunchTemplateSweepInterval is LaunchTemplateSweeper.Interval's
	// default.
	defaultLaunchTemplateSweepInterval = 5 * time.Minute
)

// templateQuotaExceededCode is what CreateLaunchTemplate answers when the
// account has all the launch templates its quota allows
// (aws/karpenter-provider-aws#8686).
const templateQuotaExceededCode = "MaxTemplateLimitExceeded"

func isTemplateQuotaExceeded(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == templateQuotaExceededCode
}

// namePrefix starts the name of every template this cluster's nodewright
// makes (see template). Only those are deleted: another tool's templates
// may carry the cluster tag too.
func (l *launchTemplates) namePrefix() string {
	return "nodewright/" + l.opts.ClusterName + "/"
}

// list returns this cluster's templates that match filters, found by the
// tags every one carries. It asks only for templates with a NodePool tag:
// the IAM policy lets nodewright delete no other (TerminateAndCleanUpOnlyOurs),
// and it creates none without one.
func (l *launchTemplates) list(ctx context.Context, filters ...ec2types.Filter) ([]ec2types.LaunchTemplate, error) {
	in := &ec2.DescribeLaunchTemplatesInput{
		Filters: append([]ec2types.Filter{
			{Name: aws.String("tag:" + awsv1.TagClusterPrefix + l.opts.ClusterName), Values: []string{"owned"}},
			{Name: aws.String("tag-key"), Values: []string{awsv1.TagNodePool}},
		}, filters...),
		MaxResults: aws.Int32(200),
	}
	var out []ec2types.LaunchTemplate
	for pages := ec2.NewDescribeLaunchTemplatesPaginator(l.ec2, in); pages.HasMorePages(); {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing launch templates: %w", err)
		}
		for _, lt := range page.LaunchTemplates {
			if strings.HasPrefix(aws.ToString(lt.LaunchTemplateName), l.namePrefix()) {
				out = append(out, lt)
			}
		}
	}
	return out, nil
}

// sweep deletes the cluster's templates that no launch has asked for within
// the TTL and that were not created within it either (after a restart no
// launch has asked for anything yet), then forgets every name unused that
// long, so the bookkeeping stays as small as the set of live templates. It
// reports whether it deleted any.
func (l *launchTemplates) sweep(ctx context.Context) (bool, error) {
	l.sweepMu.Lock()
	defer l.sweepMu.Unlock()
	return l.sweepLocked(ctx)
}

// sweepsDone counts the sweeps finished so far, for sweepSince.
func (l *launchTemplates) sweepsDone() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sweeps
}

// sweepSince sweeps unless a sweep finished after the caller read n from
// sweepsDone: launches that hit the quota together sweep once, and the rest
// try again after it.
func (l *launchTemplates) sweepSince(ctx context.Context, n int) (bool, error) {
	l.sweepMu.Lock()
	defer l.sweepMu.Unlock()
	if l.sweepsDone() != n {
		return true, nil
	}
	return l.sweepLocked(ctx)
}

func (l *launchTemplates) sweepLocked(ctx context.Context) (bool, error) {
	defer func() {
		l.mu.Lock()
		l.sweeps++
		l.mu.Unlock()
	}()
	templates, err := l.list(ctx)
	if err != nil {
		return false, err
	}
	cutoff := l.opts.Clock.Now().Add(-l.opts.LaunchTemplateTTL)
	unused := func(last time.Time, ok bool) bool { return !ok || !last.After(cutoff) }
	freed := false
	var errs []error
	for _, lt := range templates {
		if aws.ToTime(lt.CreateTime).After(cutoff) {
			continue
		}
		deleted, err := l.delete(ctx, lt, unused)
		freed = freed || deleted
		errs = append(errs, err)
	}
	l.mu.Lock()
	for name, last := range l.used {
		if _, busy := l.deleting[name]; !busy && unused(last, true) {
			delete(l.used, name)
			delete(l.known, name)
		}
	}
	l.mu.Unlock()
	return freed, errors.Join(errs...)
}

// deleteNodeClass deletes every template of the node class, however
// recently used: its caller has seen no NodeClaim of the class left, so
// nothing launches from them. It fails while any is left, so the caller
// retries.
func (l *launchTemplates) deleteNodeClass(ctx context.Context, nodeClass string) error {
	templates, err := l.list(ctx, ec2types.Filter{Name: aws.String("tag:" + awsv1.TagEC2NodeClass), Values: []string{nodeClass}})
	if err != nil {
		return err
	}
	var errs []error
	for _, lt := range templates {
		deleted, err := l.delete(ctx, lt, func(time.Time, bool) bool { return true })
		if err == nil && !deleted {
			err = fmt.Errorf("launch template %s is being deleted by a sweep", aws.ToString(lt.LaunchTemplateName))
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// delete deletes lt unless it is being deleted already or unused, given
// when a launch last asked for its name (ok false if none has), says a
// launch may still be using it. The check and the mark that makes launches
// wait (see use) happen under one lock; a launch that asks for the name
// meanwhile waits until it is gone and then creates it again. A template
// already gone counts as deleted.
func (l *launchTemplates) delete(ctx context.Context, lt ec2types.LaunchTemplate, unused func(last time.Time, ok bool) bool) (bool, error) {
	name := aws.ToString(lt.LaunchTemplateName)
	l.mu.Lock()
	last, ok := l.used[name]
	if _, busy := l.deleting[name]; busy || !unused(last, ok) {
		l.mu.Unlock()
		return false, nil
	}
	done := make(chan struct{})
	l.deleting[name] = done
	delete(l.known, name)
	delete(l.used, name)
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.deleting, name)
		close(done)
		l.mu.Unlock()
	}()
	// By id: exactly the template listed, with the tags the listing matched.
	_, err := l.ec2.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateId: lt.LaunchTemplateId})
	if err != nil && !isLaunchTemplateNotFound(err) {
		return false, fmt.Errorf("deleting launch template %s: %w", name, err)
	}
	log.FromContext(ctx).V(1).Info("deleted launch template", "launchTemplate", name, "id", aws.ToString(lt.LaunchTemplateId))
	return true, nil
}

// SweepLaunchTemplates deletes the cluster's launch templates that no launch
// has asked for within Options.LaunchTemplateTTL, found in EC2 by their tags
// (so those of a previous run are found too). A template a launch is about to
// use is never deleted; one deleted while idle is created again by the next
// launch that needs it. Safe to call concurrently with launches.
func (p *CloudProvider) SweepLaunchTemplates(ctx context.Context) error {
	_, err := p.launchTemplates.sweep(ctx)
	return err
}

// DeleteLaunchTemplates deletes every launch template made for the node
// class. Call it only once no NodeClaim of the class is left. It returns nil
// once none is left, an error (to retry) while any is.
func (p *CloudProvider) DeleteLaunchTemplates(ctx context.Context, nodeClass string) error {
	if err := p.launchTemplates.deleteNodeClass(ctx, nodeClass); err != nil {
		return fmt.Errorf("deleting the launch templates of EC2NodeClass %s: %w", nodeClass, err)
	}
	return nil
}

// LaunchTemplateSweeper is the manager runnable that calls the provider's
// SweepLaunchTemplates when it starts and every Interval after. As a
// leader-election runnable it runs on the replica that launches, whose
// record of what launches use is the one that counts.
type LaunchTemplateSweeper struct {
	Provider *CloudProvider
	// Interval between sweeps; default 5 minutes. A template is deleted
	// between Options.LaunchTemplateTTL and TTL + Interval after its last use.
	Interval time.Duration
	// Clock ticks the sweeps; default the real clock.
	Clock clock.WithTicker
}

// Start sweeps until ctx ends; failures are logged and retried next interval.
func (s *LaunchTemplateSweeper) Start(ctx context.Context) error {
	interval, clk := s.Interval, s.Clock
	if interval <= 0 {
		interval = defaultLaunchTemplateSweepInterval
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	logger := log.FromContext(ctx).WithName("launchtemplates")
	sweep := func() {
		if err := s.Provider.SweepLaunchTemplates(log.IntoContext(ctx, logger)); err != nil && ctx.Err() == nil {
			logger.Error(err, "sweeping unused launch templates; retrying next interval")
		}
	}
	sweep()
	ticker := clk.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C():
			sweep()
		}
	}
}
