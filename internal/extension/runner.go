package extension

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/mover"
	"github.com/arca-backup/arca/internal/operations"
)

// Extension runs jobs for the controllers: at most MaxConcurrentJobs at
// once, oldest first, each in its own goroutine that writes the job's status
// every StatusInterval. It is a manager Runnable that needs leader election:
// jobs run only in the leader and stop with it.
type Extension struct {
	client client.Client
	api    client.Reader
	cfg    *rest.Config
	opts   Options
	clock  clock.WithTicker
	log    logr.Logger

	slots   chan struct{}
	started chan struct{}
	ctx     context.Context // the runner's; cancelled at shutdown

	exitOnce sync.Once
	exit     previousExit

	mu      sync.Mutex
	running map[jobKey]*runningJob
	wg      sync.WaitGroup
	// clusterID is the kube-system namespace's UID, once read (clusterUID).
	clusterID string
}

// jobKey identifies a job across restarts of its goroutine: the UID tells a
// recreated job from the old one.
type jobKey struct {
	kind string
	types.NamespacedName
	uid types.UID
}

type runningJob struct {
	cancel    context.CancelCauseFunc
	cancelled atomic.Bool // by the user (spec.cancel or deletion), not by shutdown
}

var errCancelledByUser = errors.New("cancelled by user")

// Start implements manager.Runnable.
func (x *Extension) Start(ctx context.Context) error {
	x.mu.Lock()
	x.ctx = ctx
	x.mu.Unlock()
	// No job runs here yet: whatever data-mover objects exist, a previous
	// extension left when it stopped mid-move.
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		n, err := mover.Cleanup(cctx, x.cfg, x.opts.Namespace)
		if n > 0 || err != nil {
			x.log.Info("deleted the data mover's leftover objects", "deleted", n, "err", fmt.Sprint(err))
		}
	}()
	close(x.started)
	<-ctx.Done()
	// Running jobs see ctx cancelled; their status stays InProgress, which
	// the next leader turns into Failed (ExtensionRestartedDuring…).
	x.wg.Wait()
	return nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (x *Extension) NeedLeaderElection() bool { return true }

// job is what the runner needs of a BackupJob or RestoreJob.
type job interface {
	client.Object
	JobStatus() *v1alpha1.JobStatusCommon
	CancelRequested() bool
}

// kind describes one kind of job.
type kind struct {
	name        string // "backup" or "restore"
	restartCode string
	newObj      func() job
	list        func(ctx context.Context, c client.Client, ns string) ([]job, error)
	run         func(ctx context.Context, j job, p *progress) result
}

// progress is what a running job reports; the status writer reads it.
type progress struct {
	itemsDone, itemsTotal, bytesDone, bytesTotal atomic.Int64
	// bytesPerSecond and etaSeconds: the vault tier's data movers and
	// restore pods.
	bytesPerSecond, etaSeconds atomic.Int64
}

// reportMover takes the data movers' progress: bytes of volume data moved.
func (p *progress) reportMover(m mover.Progress) {
	p.bytesDone.Store(m.BytesDone)
	p.bytesTotal.Store(m.BytesTotal)
	p.bytesPerSecond.Store(int64(m.BytesPerSecond))
	p.etaSeconds.Store(int64(m.ETA.Seconds()))
}

// report takes an operation's progress (operations.ProgressFunc).
func (p *progress) report(op operations.Progress) {
	p.itemsDone.Store(op.ItemsDone)
	p.itemsTotal.Store(op.ItemsTotal)
	p.bytesDone.Store(op.BytesDone)
	p.bytesTotal.Store(op.BytesTotal)
	if op.BytesPerSecond > 0 {
		// Only what reports a rate (a restore's pods) sets it: a backup's
		// engine does not, and leaves its movers' rate alone.
		p.bytesPerSecond.Store(int64(op.BytesPerSecond))
		p.etaSeconds.Store(int64(op.ETA.Seconds()))
	}
}

func (p *progress) snapshot() *v1alpha1.JobProgress {
	return &v1alpha1.JobProgress{ItemsDone: p.itemsDone.Load(), ItemsTotal: p.itemsTotal.Load(), BytesDone: p.bytesDone.Load(), BytesTotal: p.bytesTotal.Load(),
		BytesPerSecond: p.bytesPerSecond.Load(), ETASeconds: p.etaSeconds.Load()}
}

// result is how a job ended.
type result struct {
	phase    v1alpha1.JobPhase
	message  string
	warnings []v1alpha1.JobIssue
	errors   []v1alpha1.JobIssue
	hooks    []v1alpha1.HookResult
	// apply sets the kind-specific status fields.
	apply func(j job)
}

// withHooks adds the hook runner's warnings and results.
func (r result) withHooks(h *hookRunner) result {
	r.warnings = append(r.warnings, h.warnings...)
	r.hooks = h.results
	return r
}

func failed(code, format string, args ...any) result {
	msg := fmt.Sprintf(format, args...)
	return result{phase: v1alpha1.JobFailed, message: msg, errors: []v1alpha1.JobIssue{{Code: code, Message: msg}}}
}

// reconcileJob is the level-based state machine shared by both kinds:
//
//	""          → Queued
//	Queued      → InProgress when a slot is free and no older job waits (or Cancelled)
//	InProgress  → (running here) cancel on request; (not running here) Failed: the extension restarted
//	terminal    → nothing
func (x *Extension) reconcileJob(ctx context.Context, k *kind, req ctrl.Request) (ctrl.Result, error) {
	j := k.newObj()
	if err := x.client.Get(ctx, req.NamespacedName, j); err != nil {
		if apierrors.IsNotFound(err) {
			x.cancelDeleted(k.name, req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	key := jobKey{kind: k.name, NamespacedName: req.NamespacedName, uid: j.GetUID()}
	st := j.JobStatus()
	if st.Phase.Terminal() {
		return ctrl.Result{}, nil
	}
	x.mu.Lock()
	rj := x.running[key]
	x.mu.Unlock()
	now := metav1.NewTime(x.clock.Now())
	switch {
	case rj != nil:
		if j.CancelRequested() && !rj.cancelled.Swap(true) {
			rj.cancel(errCancelledByUser)
		}
		return ctrl.Result{}, nil
	case st.Phase == v1alpha1.JobInProgress:
		x.finishStatus(st, now, x.interruptedResult(ctx, k))
		recordJob(k.name, v1alpha1.JobFailed, st)
		if err := x.client.Status().Update(ctx, j); err != nil {
			return ctrl.Result{}, err
		}
		if bj, ok := j.(*v1alpha1.BackupJob); ok {
			x.afterInterruptedBackup(bj)
		}
		return ctrl.Result{}, nil
	case j.CancelRequested():
		x.finishStatus(st, now, result{phase: v1alpha1.JobCancelled, message: "cancelled before it started",
			errors: []v1alpha1.JobIssue{{Code: v1alpha1.CodeCancelled, Message: "cancelled before it started"}}})
		recordJob(k.name, v1alpha1.JobCancelled, st)
		return ctrl.Result{}, x.client.Status().Update(ctx, j)
	case st.Phase == "":
		st.Phase = v1alpha1.JobQueued
		st.Message = "waiting for a free job slot"
		st.ObservedGeneration = j.GetGeneration()
		st.UpdateTime = &now
		return ctrl.Result{}, x.client.Status().Update(ctx, j)
	}
	// Queued.
	x.mu.Lock()
	runCtx := x.ctx
	x.mu.Unlock()
	if runCtx == nil || runCtx.Err() != nil {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	older, err := x.olderWaiting(ctx, key, j)
	if err != nil {
		return ctrl.Result{}, err
	}
	if older != "" {
		return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
	}
	select {
	case x.slots <- struct{}{}:
	default:
		return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
	}
	jctx, cancel := context.WithCancelCause(runCtx)
	rj = &runningJob{cancel: cancel}
	x.mu.Lock()
	x.running[key] = rj
	x.mu.Unlock()
	st.Phase = v1alpha1.JobInProgress
	st.StartTime = &now
	st.UpdateTime = &now
	st.Message = k.name + " running"
	st.ObservedGeneration = j.GetGeneration()
	if err := x.client.Status().Update(ctx, j); err != nil {
		x.release(key)
		cancel(nil)
		return ctrl.Result{}, err
	}
	jobsRunning.Inc()
	x.wg.Add(1)
	go x.execute(jctx, k, key, rj, j)
	return ctrl.Result{}, nil
}

// olderWaiting returns the name of a job created before j that still waits,
// so that jobs start in creation order whatever order reconciles come in.
func (x *Extension) olderWaiting(ctx context.Context, self jobKey, j job) (string, error) {
	var all []job
	for _, k := range x.kinds() {
		js, err := k.list(ctx, x.client, j.GetNamespace())
		if err != nil {
			return "", err
		}
		for _, o := range js {
			if p := o.JobStatus().Phase; (p == "" || p == v1alpha1.JobQueued) && !o.CancelRequested() {
				all = append(all, o)
			}
		}
	}
	sort.Slice(all, func(a, b int) bool {
		ta, tb := all[a].GetCreationTimestamp(), all[b].GetCreationTimestamp()
		if !ta.Equal(&tb) {
			return ta.Before(&tb)
		}
		return all[a].GetName() < all[b].GetName()
	})
	if len(all) == 0 || all[0].GetUID() == self.uid {
		return "", nil
	}
	return all[0].GetName(), nil
}

func (x *Extension) release(key jobKey) {
	x.mu.Lock()
	delete(x.running, key)
	x.mu.Unlock()
	<-x.slots
}

func (x *Extension) cancelDeleted(kindName string, nn types.NamespacedName) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for k, rj := range x.running {
		if k.kind == kindName && k.NamespacedName == nn && !rj.cancelled.Swap(true) {
			rj.cancel(errCancelledByUser)
		}
	}
}

// execute runs one job and writes its status while it runs and when it ends.
func (x *Extension) execute(ctx context.Context, k *kind, key jobKey, rj *runningJob, j job) {
	defer x.wg.Done()
	defer x.release(key)
	log := x.log.WithValues("job", key.NamespacedName.String(), "kind", k.name)
	p := &progress{}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- failed(codeFor(k), "internal error: %v", r)
			}
		}()
		done <- k.run(ctx, j, p)
	}()
	tick := x.clock.NewTicker(x.opts.StatusInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C():
			if err := x.patchStatus(ctx, j, func(st *v1alpha1.JobStatusCommon) {
				now := metav1.NewTime(x.clock.Now())
				st.UpdateTime = &now
				st.Progress = p.snapshot()
			}, nil); err != nil && ctx.Err() == nil {
				log.Info("status update failed", "err", err.Error())
			}
		case res := <-done:
			// Not running any more, before the final status says so: a
			// scrape after a job reads Completed never counts it as running.
			jobsRunning.Dec()
			if ctx.Err() != nil && !rj.cancelled.Load() {
				// Shutdown, not a user's cancel: leave InProgress for the next
				// leader to fail with the restart code (it cannot tell a crash
				// from a shutdown, and neither is a result).
				log.Info("stopped by shutdown; the job stays InProgress")
				return
			}
			if rj.cancelled.Load() {
				res = result{phase: v1alpha1.JobCancelled, message: "cancelled while running; nothing was committed",
					errors: []v1alpha1.JobIssue{{Code: v1alpha1.CodeCancelled, Message: "cancelled while running"}}, hooks: res.hooks, apply: res.apply}
				if k.name == "restore" {
					res.message = "cancelled while running; objects written before remain"
				}
			}
			x.finish(k, j, p, res, log)
			// Give the job's memory back to the node: the Go runtime keeps
			// freed heap for reuse, so a pod that ran a large job would
			// otherwise stay at that job's peak until the next one.
			debug.FreeOSMemory()
			return
		}
	}
}

func codeFor(k *kind) string {
	if k.name == "backup" {
		return v1alpha1.CodeBackupFailed
	}
	return v1alpha1.CodeRestoreFailed
}

// finish writes the final status, retrying for a while: a lost final status
// would turn into a restart failure later.
func (x *Extension) finish(k *kind, j job, p *progress, res result, log logr.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := metav1.NewTime(x.clock.Now())
	var final v1alpha1.JobStatusCommon
	for attempt := 0; ; attempt++ {
		err := x.patchStatus(ctx, j, func(st *v1alpha1.JobStatusCommon) {
			st.Progress = p.snapshot()
			x.finishStatus(st, now, res)
			final = *st
		}, res.apply)
		if err == nil || apierrors.IsNotFound(err) {
			break
		}
		if ctx.Err() != nil {
			log.Error(err, "final status not written")
			break
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	recordJob(k.name, res.phase, &final)
	jobItems.WithLabelValues(k.name).Add(float64(final.Progress.ItemsDone))
	jobBytes.WithLabelValues(k.name).Add(float64(final.Progress.BytesDone))
	log.Info("job finished", "phase", res.phase, "message", res.message)
}

func (x *Extension) finishStatus(st *v1alpha1.JobStatusCommon, now metav1.Time, res result) {
	st.Phase = res.phase
	st.Message = res.message
	st.Warnings = res.warnings
	st.Errors = res.errors
	st.Hooks = res.hooks
	st.CompletionTime = &now
	st.UpdateTime = &now
	if st.StartTime == nil {
		st.StartTime = &now
	}
}

// patchStatus applies mutate (and apply, for kind-specific fields) to a
// fresh copy of j's status and writes it with a merge patch; only the
// goroutine running a job writes its status, so no version check is needed.
func (x *Extension) patchStatus(ctx context.Context, j job, mutate func(*v1alpha1.JobStatusCommon), apply func(job)) error {
	cur := j.DeepCopyObject().(job)
	// Uncached: a merge patch computed against a stale copy would leave out
	// fields whose new value happens to equal the stale one.
	if err := x.api.Get(ctx, client.ObjectKeyFromObject(j), cur); err != nil {
		return err
	}
	if cur.GetUID() != j.GetUID() {
		return apierrors.NewNotFound(v1alpha1.GroupVersion.WithResource("jobs").GroupResource(), j.GetName())
	}
	orig := cur.DeepCopyObject().(job)
	mutate(cur.JobStatus())
	if apply != nil {
		apply(cur)
	}
	return x.client.Status().Patch(ctx, cur, client.MergeFrom(orig))
}

var _ reconcile.Reconciler = reconcile.Func(nil)
