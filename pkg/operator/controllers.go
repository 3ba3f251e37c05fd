package operator

import (
	"context"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/samber/lo"

	"github.com/nodewright/nodewright/pkg/cloudprovider"
	"github.com/nodewright/nodewright/pkg/controllers"
	"github.com/nodewright/nodewright/pkg/controllers/disruption"
	nodetermination "github.com/nodewright/nodewright/pkg/controllers/node/termination"
	"github.com/nodewright/nodewright/pkg/controllers/nodeclaim/drift"
	"github.com/nodewright/nodewright/pkg/controllers/nodeclaim/expiration"
	"github.com/nodewright/nodewright/pkg/controllers/nodeclaim/garbagecollection"
	"github.com/nodewright/nodewright/pkg/controllers/nodeclaim/lifecycle"
	"github.com/nodewright/nodewright/pkg/controllers/nodeclaim/podevents"
	claimtermination "github.com/nodewright/nodewright/pkg/controllers/nodeclaim/termination"
	"github.com/nodewright/nodewright/pkg/controllers/nodepool/counter"
	"github.com/nodewright/nodewright/pkg/controllers/nodepool/readiness"
	"github.com/nodewright/nodewright/pkg/controllers/nodepool/static"
	"github.com/nodewright/nodewright/pkg/controllers/provisioning"
	"github.com/nodewright/nodewright/pkg/state"
)

// RegisterControllers adds the cloud-independent controllers to the
// manager, driving cloud.
func (o *Operator) RegisterControllers(ctx context.Context, cloud cloudprovider.CloudProvider) error {
	mgr := o.Manager
	if err := controllers.SetupIndexes(ctx, mgr); err != nil {
		return err
	}
	kube := mgr.GetClient()
	recorder := mgr.GetEventRecorder("nodewright")
	batcher := provisioning.NewBatcher(o.Options.BatchIdleDuration, o.Options.BatchMaxDuration)
	cluster := state.NewCluster(kube)
	provisioner := provisioning.New(kube, cluster, cloud, batcher, recorder, provisioning.Options{SpotRiskWeight: -1})
	if err := mgr.Add(supervise("provisioner", provisioner)); err != nil {
		return fmt.Errorf("adding provisioner: %w", err)
	}
	if err := mgr.Add(supervise("disruption", &disruption.Controller{Kube: kube, Recorder: recorder, Cluster: cluster, Planner: provisioner, Health: cloud,
		MinSavings: o.Options.ConsolidationMinSavings, Methods: disruptionMethods(o.Options.FeatureGates),
		NoSpotToSpot: !o.Options.FeatureGates.SpotToSpotConsolidation})); err != nil {
		return fmt.Errorf("adding disruption: %w", err)
	}
	if err := mgr.Add(supervise("garbage collection", &garbagecollection.Controller{Kube: kube, Cloud: cloud})); err != nil {
		return fmt.Errorf("adding garbage collection: %w", err)
	}
	for name, c := range map[string]interface {
		SetupWithManager(ctrl.Manager) error
	}{
		"provisioning trigger":  &provisioning.PodTrigger{Reader: kube, Batcher: batcher, NodeClass: cloud.NodeClass()},
		"nodeclaim lifecycle":   &lifecycle.Controller{Kube: kube, Cloud: cloud, Recorder: recorder},
		"nodeclaim termination": &claimtermination.Controller{Kube: kube, Cloud: cloud, Recorder: recorder, Room: cluster},
		"nodeclaim expiration":  &expiration.Controller{Kube: kube, Recorder: recorder},
		"nodeclaim drift":       &drift.Controller{Kube: kube, Cloud: cloud, Recorder: recorder, NodeClass: cloud.NodeClass()},
		"nodeclaim pod events":  &podevents.Controller{Kube: kube},
		"node termination":      &nodetermination.Controller{Kube: kube},
		"nodepool counter":      &counter.Controller{Kube: kube, Prices: cloud},
		"nodepool readiness":    &readiness.Controller{Kube: kube, Recorder: recorder, NodeClass: cloud.NodeClass()},
		"static nodepool":       &static.Controller{Kube: kube, Claims: mgr.GetAPIReader(), Cloud: cloud, Recorder: recorder},
	} {
		if err := c.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up %s controller: %w", name, err)
		}
	}
	return nil
}

// disruptionMethods are disruption's default methods less Repair when the
// NodeRepair gate is off.
func disruptionMethods(g FeatureGates) []disruption.Method {
	return lo.Reject(disruption.DefaultMethods(), func(m disruption.Method, _ int) bool {
		_, repair := m.(disruption.Repair)
		return repair && !g.NodeRepair
	})
}
