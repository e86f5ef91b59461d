// Package extension is Arca's in-cluster agent: a controller-runtime
// manager that reconciles BackupJob, RestoreJob and StorageLocation
// resources (api/v1alpha1) by running the backup and restore engines
// against the cluster it runs in. The same manager runs in the cluster as a
// Deployment and out of the cluster against a kubeconfig (`arca extension
// run`). Behaviour, codes and RBAC: docs/extension.md.
package extension

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/arca-backup/arca/api/v1alpha1"
)

// Options configure the extension.
type Options struct {
	// Namespace holds jobs and storage locations (default arca-system).
	Namespace string
	// MaxConcurrentJobs is how many backup and restore jobs run at once in
	// the cluster (default 1).
	MaxConcurrentJobs int
	// StatusInterval is how often a running job's status is written (default 2 s).
	StatusInterval time.Duration
	// ProbeInterval is how often storage locations are probed again (default 5 min).
	ProbeInterval time.Duration
	// MetricsAddr serves /metrics (default ":8080"; "0" disables).
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz (default ":8081"; "0" disables).
	ProbeAddr string
	// LeaderElection makes replicas take turns; off by default for
	// out-of-cluster runs, on in the installed Deployment.
	LeaderElection bool
	// Executor runs hook commands in pods (default: the pods/exec API).
	Executor Executor
	// BackupWorkers and RestoreWorkers tune the engines (0: their defaults).
	BackupWorkers, RestoreWorkers int
	Clock                         clock.WithTicker
	Log                           logr.Logger
	// Version is reported in the heartbeat.
	Version string
	// PodName and PodNamespace name the extension's own pod (in the
	// cluster, from the downward API): on start it reads why its previous
	// container ended, so that jobs an OOM kill interrupted fail with
	// ExtensionOOMKilled.
	PodName, PodNamespace string
	// DataMoverImage is the image of the pods that move volume data (the
	// restore pods of vault-tier data); default: the image of the
	// extension's own pod (PodName/PodNamespace).
	DataMoverImage string
	// RestorePodTimeout bounds one vault-tier restore pod (default 1 h).
	RestorePodTimeout time.Duration
	// The vault tier's backups (a BackupJob's spec.vaultTier):
	// MaxConcurrentMovers data-mover pods at once (default 2), from
	// DataMoverImage, each with MoverMemoryLimit (default 256Mi).
	MaxConcurrentMovers int
	MoverMemoryLimit    string
	// StorageRetry bounds how long one storage call is retried before the
	// repository counts as unreachable (RepositoryUnavailable): for the
	// extension's own access and, as `--storage-retry`, for its data-mover
	// and restore pods. Zero: the storage's default (10 attempts, about
	// 3 minutes, at most 15 minutes).
	StorageRetry time.Duration
}

func (o *Options) defaults() {
	if o.Namespace == "" {
		o.Namespace = v1alpha1.ExtensionNamespace
	}
	if o.MaxConcurrentJobs <= 0 {
		o.MaxConcurrentJobs = 1
	}
	if o.StatusInterval <= 0 {
		o.StatusInterval = 2 * time.Second
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = 5 * time.Minute
	}
	if o.MetricsAddr == "" {
		o.MetricsAddr = ":8080"
	}
	if o.ProbeAddr == "" {
		o.ProbeAddr = ":8081"
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Log.GetSink() == nil {
		o.Log = logr.Discard()
	}
}

// Scheme returns a scheme with the Kubernetes built-in types, CRDs and Arca's.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// NewManager builds the extension's manager against cfg: the job and
// storage location controllers, metrics and health probes. Start it with
// mgr.Start(ctx).
func NewManager(cfg *rest.Config, opts Options) (manager.Manager, error) {
	opts.defaults()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: Scheme(),
		Logger: opts.Log,
		// Jobs, storage locations and hooks live in one namespace; Secrets and
		// pods are read uncached (APIReader), so no cluster-wide informers.
		Cache:                         cache.Options{DefaultNamespaces: map[string]cache.Config{opts.Namespace: {}}},
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:        opts.ProbeAddr,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              v1alpha1.ExtensionName,
		LeaderElectionNamespace:       opts.Namespace,
		LeaderElectionReleaseOnCancel: true,
		// Tests run several managers in one process.
		Controller:              config.Controller{SkipNameValidation: ptr.To(true)},
		GracefulShutdownTimeout: ptr.To(time.Minute),
	})
	if err != nil {
		return nil, fmt.Errorf("new manager: %w", err)
	}
	if opts.Executor == nil {
		ex, err := NewPodExecutor(cfg)
		if err != nil {
			return nil, err
		}
		opts.Executor = ex
	}
	x := &Extension{
		client: mgr.GetClient(), api: mgr.GetAPIReader(), cfg: cfg, opts: opts, clock: opts.Clock, log: opts.Log,
		slots: make(chan struct{}, opts.MaxConcurrentJobs), running: map[jobKey]*runningJob{}, started: make(chan struct{}),
	}
	if err := mgr.Add(x); err != nil {
		return nil, err
	}
	if err := x.setupControllers(mgr); err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("ready", func(_ *http.Request) error {
		select {
		case <-x.started:
			return nil
		default:
			return errors.New("job runner not started (not the leader yet)")
		}
	}); err != nil {
		return nil, err
	}
	return mgr, nil
}

// Run builds the manager and runs it until ctx ends.
func Run(ctx context.Context, cfg *rest.Config, opts Options) error {
	mgr, err := NewManager(cfg, opts)
	if err != nil {
		return err
	}
	return mgr.Start(ctx)
}
