package operations_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/backup"
	"github.com/arca-backup/arca/internal/operations"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/restore"
	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/mem"
	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/volume"
)

// One control plane with the CSI snapshot stack (mock driver) for the
// package's tests, set by TestOperations: each works in its own namespaces.
var (
	cp    *testenv.ControlPlane
	csi   *testenv.CSI
	kc    kubernetes.Interface
	snaps snapclient.Interface
)

func TestOperations(t *testing.T) {
	cp = testenv.StartControlPlane(t, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	csi = testenv.StartCSI(t, cp)
	kc = cp.Clientset(t)
	snaps = snapclient.NewForConfigOrDie(cp.Config())
	t.Run("BackupRestoreForget", testBackupRestoreForget)
	t.Run("BackupFailures", testBackupFailures)
	t.Run("RestorePreHookFails", testRestorePreHookFails)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// boundClaim creates namespace ns with the claim "data" and waits until it is bound.
func boundClaim(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	class := csi.StorageClass
	_, err := kc.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pvc, err := kc.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
		return err == nil && pvc.Status.Phase == corev1.ClaimBound, nil
	}); err != nil {
		t.Fatalf("%s/data not bound: %v", ns, err)
	}
}

// store is a repository in memory; open gives a Backup its opener, which
// records that it was called.
type store struct {
	be     storage.Backend
	opened int
}

func newStore(t *testing.T, ctx context.Context) *store {
	t.Helper()
	be := mem.New()
	if _, err := repo.Init(ctx, be, "pw"); err != nil {
		t.Fatal(err)
	}
	return &store{be: be}
}

func (s *store) open(ctx context.Context) (*repo.Repository, error) {
	s.opened++
	return repo.Open(ctx, s.be, "pw")
}

func (s *store) repo(t *testing.T, ctx context.Context) *repo.Repository {
	t.Helper()
	r, err := repo.Open(ctx, s.be, "pw")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (s *store) recoveryPoints(t *testing.T, ctx context.Context) []*repo.RecoveryPoint {
	t.Helper()
	rps, err := s.repo(t, ctx).ListRecoveryPoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return rps
}

// events records what the hooks and the mover were told, in order.
type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) add(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, fmt.Sprintf(format, args...))
}

func (e *events) get() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.list)
}

type backupHooks struct {
	ev     *events
	preErr error
}

func (h *backupHooks) BeforeSnapshots(_ context.Context, claims []types.NamespacedName) error {
	h.ev.add("before %v", claims)
	return h.preErr
}

func (h *backupHooks) SnapshotCut(_ context.Context, claim types.NamespacedName) {
	h.ev.add("cut %s", claim)
}

func (h *backupHooks) Finish() { h.ev.add("finish") }

// mover stands in for the data mover: through its own repository handle
// (as the mover's pods have theirs) it stores a tree for each snapshot and
// commits a holder point, then warns. With err it fails after committing
// the holder, which it returns with the error.
type mover struct {
	ev      *events
	st      *store
	err     error
	seen    *volume.Records
	holders []repo.ID
	// unreported: with err, the holder is committed but not returned (a
	// mover pod deleted after its commit, before its result was read).
	unreported bool
}

const moverCode = "MovedForTest"

func (m *mover) MoveVolumes(ctx context.Context, recs *volume.Records) (*operations.MoveResult, error) {
	m.ev.add("move %d", len(recs.Snapshots))
	m.seen = recs
	r, err := repo.Open(ctx, m.st.be, "pw") // its own handle, not the backup's
	if err != nil {
		return nil, err
	}
	w, err := r.NewWriter(ctx)
	if err != nil {
		return nil, err
	}
	res := &operations.MoveResult{Warnings: []repo.Warning{{Code: moverCode, Message: "moved"}}}
	for _, s := range recs.Snapshots {
		id, err := w.PutBlob(ctx, []byte("tree of "+s.Key()))
		if err != nil {
			return nil, err
		}
		res.Data = append(res.Data, repo.VolumeData{Name: s.Key(), Tree: repo.Tree{Blobs: []repo.ID{id}, Count: 1}, Files: 1})
	}
	hid, err := w.Commit(ctx, &repo.RecoveryPoint{Name: "holder", VolumeData: res.Data, Tags: map[string]string{v1alpha1.TagVolumeHolder: recs.BackupID}})
	if err != nil {
		return nil, err
	}
	res.Holders = []repo.ID{hid}
	m.holders = res.Holders
	if m.err != nil && m.unreported {
		return nil, m.err
	}
	if m.err != nil {
		return &operations.MoveResult{Holders: res.Holders}, m.err
	}
	return res, nil
}

type restoreHooks struct {
	ev     *events
	ns     string // a namespace the restore creates
	preErr error
}

func (h *restoreHooks) BeforeRestore(ctx context.Context) error {
	_, err := kc.CoreV1().Namespaces().Get(ctx, h.ns, metav1.GetOptions{})
	h.ev.add("before-restore %s exists=%v", h.ns, err == nil)
	return h.preErr
}

func (h *restoreHooks) AfterRestore(ctx context.Context, res *restore.Result) {
	_, err := kc.CoreV1().Namespaces().Get(ctx, h.ns, metav1.GetOptions{})
	h.ev.add("after-restore %s exists=%v created=%d", h.ns, err == nil, res.Summary[restore.Created])
}

// failingCleaner deletes nothing and fails, as a snapshot API that is down.
type failingCleaner struct{}

func (failingCleaner) DeleteSnapshots(context.Context, *volume.Records) ([]string, []repo.Warning, error) {
	return nil, []repo.Warning{{Code: volume.WarnContentNotFound, Message: "one was already gone"}}, errors.New("snapshot API unavailable")
}

func contentGone(t *testing.T, ctx context.Context, name string) bool {
	t.Helper()
	_, err := snaps.SnapshotV1().VolumeSnapshotContents().Get(ctx, name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return apierrors.IsNotFound(err)
}

// testBackupRestoreForget runs the one path end to end: a backup with
// hooks and a data mover, a restore into a mapped namespace with hooks, a
// dry run, and forget (first with a snapshot API that fails, then for real).
func testBackupRestoreForget(t *testing.T) {
	ctx := ctxT(t)
	boundClaim(t, ctx, "ops")
	st := newStore(t, ctx)
	ev := &events{}
	var last operations.Progress
	mv := &mover{ev: ev, st: st}
	res, err := operations.Backup(ctx, cp.Config(), st.open, operations.BackupOptions{
		Config: v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"ops"}}, Name: "ops-1", Tags: map[string]string{"k": "v"},
		SnapshotClasses: []string{csi.SnapshotClass}, SnapshotTimeout: time.Minute, Logf: t.Logf,
		Hooks: &backupHooks{ev: ev}, Mover: mv, Progress: func(p operations.Progress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	rp := res.RecoveryPoint
	// Hooks around the snapshot, the mover after it, Finish last.
	if got, want := ev.get(), []string{"before [ops/data]", "cut ops/data", "move 1", "finish"}; !slices.Equal(got, want) {
		t.Errorf("backup events %q, want %q", got, want)
	}
	if st.opened != 1 || rp.Name != "ops-1" || rp.Tags["k"] != "v" {
		t.Errorf("opened %d times, recovery point %q tags %v", st.opened, rp.Name, rp.Tags)
	}
	if last.ItemsDone != int64(rp.Summary.Items) || last.ItemsTotal != last.ItemsDone || last.BytesTotal != rp.Summary.Bytes || last.ItemsDone == 0 {
		t.Errorf("final progress %+v, summary %d items %d bytes", last, rp.Summary.Items, rp.Summary.Bytes)
	}
	// The records in the recovery point are the snapshotter's; the volume
	// data the mover's, and its holder point is forgotten.
	recs, err := volume.Decode(rp.Volumes)
	if err != nil || len(recs.Snapshots) != 1 || recs.Snapshots[0].Key() != "ops/data" {
		t.Fatalf("recorded volumes %+v %v", recs, err)
	}
	if len(rp.VolumeData) != 1 || rp.VolumeData[0].Name != "ops/data" || rp.VolumeData[0].Files != 1 {
		t.Errorf("volume data %+v: want the mover's tree of ops/data", rp.VolumeData)
	}
	if rps := st.recoveryPoints(t, ctx); len(rps) != 1 || rps[0].ID != res.ID || len(mv.holders) != 1 {
		t.Errorf("recovery points after the backup: %d (holders %v), want only %s", len(rps), mv.holders, res.ID.Short())
	}
	if len(res.Volumes.Snapshots) != 1 || mv.seen == nil || mv.seen.Snapshots[0].Content != recs.Snapshots[0].Content {
		t.Errorf("result volumes %+v, mover saw %+v", res.Volumes, mv.seen)
	}
	if !slices.ContainsFunc(rp.Summary.Warnings, func(w repo.Warning) bool { return w.Code == moverCode }) {
		t.Errorf("mover's warning not in the summary: %+v", rp.Summary.Warnings)
	}
	// The retained content is labelled with the recovery point.
	content := recs.Snapshots[0].Content
	c, err := snaps.SnapshotV1().VolumeSnapshotContents().Get(ctx, content, metav1.GetOptions{})
	if err != nil || c.Labels[v1alpha1.LabelRecoveryPoint] != restore.RecoveryPointLabel(res.ID.String()) || len(res.Warnings) != 0 {
		t.Errorf("content %s labels %v (%v), warnings %+v", content, c.Labels, err, res.Warnings)
	}

	// Restore into a mapped namespace: the pre hook runs before anything
	// is written, the post hook after; the claim comes from the snapshot.
	ev = &events{}
	crit := v1alpha1.RestoreCriteria{IncludedNamespaces: []string{"ops"}, NamespaceMappings: map[string]string{"ops": "ops-copy"}}
	var restored operations.Progress
	rr, err := operations.Restore(ctx, cp.Config(), st.repo(t, ctx), rp, operations.RestoreOptions{Criteria: crit, Name: "ops-restore",
		Hooks: &restoreHooks{ev: ev, ns: "ops-copy"}, Progress: func(p operations.Progress) { restored = p }})
	if err != nil {
		t.Fatal(err)
	}
	if got := ev.get(); len(got) != 2 || got[0] != "before-restore ops-copy exists=false" || !strings.HasPrefix(got[1], "after-restore ops-copy exists=true created=") {
		t.Errorf("restore events %q", got)
	}
	if rr.Name != "ops-restore" || restored.ItemsTotal == 0 || restored.ItemsDone != restored.ItemsTotal {
		t.Errorf("restore %q, progress %+v", rr.Name, restored)
	}
	pvc, err := kc.CoreV1().PersistentVolumeClaims("ops-copy").Get(ctx, "data", metav1.GetOptions{})
	if err != nil || pvc.Spec.DataSource == nil || pvc.Spec.DataSource.Kind != "VolumeSnapshot" {
		t.Fatalf("restored claim %+v (%v)", pvc, err)
	}
	// A dry run writes nothing and runs no hook.
	ev = &events{}
	crit.NamespaceMappings = map[string]string{"ops": "ops-dry"}
	crit.DryRun = true
	rr, err = operations.Restore(ctx, cp.Config(), st.repo(t, ctx), rp, operations.RestoreOptions{Criteria: crit, Name: "ops-dry", Hooks: &restoreHooks{ev: ev, ns: "ops-dry"}})
	if err != nil || !rr.DryRun || len(ev.get()) != 0 {
		t.Errorf("dry run: %v, dryRun %v, events %q", err, rr != nil && rr.DryRun, ev.get())
	}
	if _, err := kc.CoreV1().Namespaces().Get(ctx, "ops-dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("dry run created namespace ops-dry: %v", err)
	}

	// Forget: snapshots that cannot be deleted keep the recovery point.
	r := st.repo(t, ctx)
	f, err := operations.Forget(ctx, r, failingCleaner{}, rp)
	if err == nil || !strings.Contains(err.Error(), "not forgotten") || len(f.Warnings) != 1 {
		t.Errorf("forget with a failing snapshot API: %v, %+v", err, f)
	}
	if _, err := r.FindRecoveryPoint(ctx, res.ID.String()); err != nil || contentGone(t, ctx, content) {
		t.Fatalf("recovery point or its content gone after a failed forget: %v", err)
	}
	cleaner, err := operations.ClusterSnapshots(cp.Config())
	if err != nil {
		t.Fatal(err)
	}
	f, err = operations.Forget(ctx, r, cleaner, rp)
	if err != nil || f.ID != rp.ID || !slices.Equal(f.DeletedContents, []string{content}) {
		t.Fatalf("forget: %v, %+v", err, f)
	}
	if !contentGone(t, ctx, content) {
		t.Errorf("content %s still exists", content)
	}
	if _, err := r.FindRecoveryPoint(ctx, res.ID.String()); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("recovery point not forgotten: %v", err)
	}
}

// testBackupFailures: what a backup that writes no recovery point leaves.
func testBackupFailures(t *testing.T) {
	ctx := ctxT(t)
	boundClaim(t, ctx, "ops-fail")
	cfg := v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"ops-fail"}}
	opts := func(o operations.BackupOptions) operations.BackupOptions {
		o.Config.IncludedNamespaces = cfg.IncludedNamespaces
		o.SnapshotClasses, o.SnapshotTimeout, o.Logf = []string{csi.SnapshotClass}, time.Minute, t.Logf
		return o
	}

	t.Run("configuration that cannot work", func(t *testing.T) {
		st := newStore(t, ctx)
		o := opts(operations.BackupOptions{})
		o.Config.IncludedResourceTypes = []string{"nosuchtypes.example.com"}
		_, err := operations.Backup(ctx, cp.Config(), st.open, o)
		var ce *backup.ConfigError
		if !errors.As(err, &ce) || st.opened != 0 {
			t.Errorf("got %v (opened the repository %d times), want a *backup.ConfigError before the repository is opened", err, st.opened)
		}
	})

	t.Run("pre hook fails", func(t *testing.T) {
		st := newStore(t, ctx)
		ev := &events{}
		_, err := operations.Backup(ctx, cp.Config(), st.open, opts(operations.BackupOptions{Hooks: &backupHooks{ev: ev, preErr: errors.New("freeze failed")}}))
		var pre *operations.PreHookError
		if !errors.As(err, &pre) || pre.Op != "backup" || !strings.Contains(err.Error(), "pre hook failed, nothing backed up") || !strings.Contains(err.Error(), "freeze failed") {
			t.Errorf("got %v, want a *PreHookError", err)
		}
		// No snapshot was cut; Finish still ran.
		if got, want := ev.get(), []string{"before [ops-fail/data]", "finish"}; !slices.Equal(got, want) {
			t.Errorf("events %q, want %q", got, want)
		}
		if rps := st.recoveryPoints(t, ctx); len(rps) != 0 {
			t.Errorf("%d recovery points written", len(rps))
		}
	})

	t.Run("no snapshots: hooks before the scan", func(t *testing.T) {
		st := newStore(t, ctx)
		ev := &events{}
		o := opts(operations.BackupOptions{Hooks: &backupHooks{ev: ev, preErr: errors.New("quiesce failed")}})
		o.Config.SnapshotVolumes = v1alpha1.Bool(false)
		var progress []operations.Progress
		o.Progress = func(p operations.Progress) { progress = append(progress, p) }
		_, err := operations.Backup(ctx, cp.Config(), st.open, o)
		var pre *operations.PreHookError
		if !errors.As(err, &pre) || !strings.Contains(err.Error(), "quiesce failed") {
			t.Errorf("got %v, want a *PreHookError", err)
		}
		if got, want := ev.get(), []string{"before []", "finish"}; !slices.Equal(got, want) || len(progress) != 0 {
			t.Errorf("events %q, want %q; progress before the hook failed: %+v", got, want, progress)
		}
		if rps := st.recoveryPoints(t, ctx); len(rps) != 0 {
			t.Errorf("%d recovery points written", len(rps))
		}
	})

	t.Run("mover fails", func(t *testing.T) {
		st := newStore(t, ctx)
		ev := &events{}
		mv := &mover{ev: ev, st: st, err: errors.New("repository unreachable")}
		_, err := operations.Backup(ctx, cp.Config(), st.open, opts(operations.BackupOptions{Mover: mv}))
		if err == nil || !strings.Contains(err.Error(), "move volume data: repository unreachable") || !strings.Contains(err.Error(), "no recovery point written") {
			t.Fatalf("got %v", err)
		}
		// Neither a recovery point nor the mover's holder is left.
		if rps := st.recoveryPoints(t, ctx); len(rps) != 0 || len(mv.holders) != 1 {
			t.Errorf("%d recovery points left (holders %v)", len(rps), mv.holders)
		}
		// The snapshot the mover was given is deleted with the backup.
		if mv.seen == nil || len(mv.seen.Snapshots) != 1 || !contentGone(t, ctx, mv.seen.Snapshots[0].Content) {
			t.Errorf("the snapshot of the failed backup is left: %+v", mv.seen)
		}
	})

	t.Run("mover fails after an unreported commit", func(t *testing.T) {
		st := newStore(t, ctx)
		mv := &mover{ev: &events{}, st: st, err: errors.New("mover pod deleted before it finished"), unreported: true}
		if _, err := operations.Backup(ctx, cp.Config(), st.open, opts(operations.BackupOptions{Mover: mv})); err == nil {
			t.Fatal("backup with a failed mover succeeded")
		}
		// The holder its result never named is found by its tag and forgotten.
		if rps := st.recoveryPoints(t, ctx); len(rps) != 0 || len(mv.holders) != 1 {
			t.Errorf("%d recovery points left (holders %v)", len(rps), mv.holders)
		}
	})
}

// testRestorePreHookFails: a pre hook that fails stops the restore before
// anything is written.
func testRestorePreHookFails(t *testing.T) {
	ctx := ctxT(t)
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ops-pre"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().ConfigMaps("ops-pre").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	st := newStore(t, ctx)
	res, err := operations.Backup(ctx, cp.Config(), st.open, operations.BackupOptions{Config: v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"ops-pre"}}})
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	crit := v1alpha1.RestoreCriteria{NamespaceMappings: map[string]string{"ops-pre": "ops-pre-copy"}}
	_, err = operations.Restore(ctx, cp.Config(), st.repo(t, ctx), res.RecoveryPoint, operations.RestoreOptions{Criteria: crit, Name: "pre",
		Hooks: &restoreHooks{ev: ev, ns: "ops-pre-copy", preErr: errors.New("drain failed")}})
	var pre *operations.PreHookError
	if !errors.As(err, &pre) || pre.Op != "restore" || !strings.Contains(err.Error(), "pre hook failed, nothing restored: drain failed") {
		t.Errorf("got %v, want a *PreHookError", err)
	}
	if got := ev.get(); len(got) != 1 {
		t.Errorf("events %q: want the pre hook only", got)
	}
	if _, err := kc.CoreV1().Namespaces().Get(ctx, "ops-pre-copy", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace ops-pre-copy written after a failed pre hook: %v", err)
	}
	// Criteria that cannot work fail as *restore.CriteriaError.
	_, err = operations.Restore(ctx, cp.Config(), st.repo(t, ctx), res.RecoveryPoint, operations.RestoreOptions{
		Criteria: v1alpha1.RestoreCriteria{IncludedResourceTypes: []string{"nosuchtypes.example.com"}}, Name: "bad"})
	var ce *restore.CriteriaError
	if !errors.As(err, &ce) {
		t.Errorf("got %v, want a *restore.CriteriaError", err)
	}
}
