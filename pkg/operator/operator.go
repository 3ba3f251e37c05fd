package operator

import (
	"context"
	"fmt"
	"net/http"

	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/config"

	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/nodewright/nodewright/pkg/scheme"
)

// Operator is a configured manager, ready to run.
type Operator struct {
	manager.Manager
	Options Options
}

// New builds the manager. Controllers are registered on it by their packages'
// Register functions before Start.
func New(cfg *rest.Config, opts Options) (*Operator, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("invalid options: %w", err)
	}
	logOpts := []zap.Opts{zap.UseDevMode(false), zap.Level(logLevel(opts.LogLevel))}
	if opts.LogWriter != nil {
		logOpts = append(logOpts, zap.WriteTo(opts.LogWriter))
	}
	ctrl.SetLogger(zap.New(logOpts...))
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme.New(),
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:        opts.HealthProbeAddr,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              leaderElectionID,
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		// A reconciler's panic fails that reconcile (retried with back-off)
		// instead of the process; runnables are wrapped by supervise.
		Controller: config.Controller{RecoverPanic: ptr.To(true)},
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding health check: %w", err)
	}
	// Ready once the informer caches have synced: before that the controller
	// would decide from an empty view of the cluster.
	if err := mgr.AddReadyzCheck("informers", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return fmt.Errorf("informer caches not synced")
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("adding readiness check: %w", err)
	}
	return &Operator{Manager: mgr, Options: opts}, nil
}

// Run starts the manager and blocks until ctx ends.
func (o *Operator) Run(ctx context.Context) error {
	logger := ctrl.Log.WithName("operator")
	for _, g := range o.Options.IgnoredFeatureGates {
		logger.Info("feature gate ignored: it switches nothing in nodewright", "gate", g.Name, "value", g.Value, "reason", g.Reason)
	}
	logger.Info("starting", "cluster", o.Options.ClusterName, "leaderElection", o.Options.LeaderElection, "featureGates", o.Options.FeatureGates.String())
	if err := o.Start(ctx); err != nil {
		return fmt.Errorf("running manager: %w", err)
	}
	return nil
}

func logLevel(level string) zapcore.Level {
	switch level {
	case "debug":
		return zapcore.DebugLevel
	case "error":
		return zapcore.ErrorLevel
	default:
		return zapcore.InfoLevel
	}
}
