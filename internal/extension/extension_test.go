package extension_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/local"
)

func recoveryPoints(t *testing.T, dir string) []*repo.RecoveryPoint {
	t.Helper()
	be, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(context.Background(), be, password)
	if errors.Is(err, repo.ErrNoRepository) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	rps, err := r.ListRecoveryPoints(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rps
}

// TestBackupRestoreAlternateCluster: a BackupJob from YAML with hooks, its
// progress and recovery point; a RestoreJob into another namespace; the
// same recovery point restored on a second API server through a read-only
// storage location there.
func TestBackupRestoreAlternateCluster(t *testing.T) {
	a := newCluster(t, cpA, "arca-e2e")
	dir := filepath.Join(t.TempDir(), "repo")
	url := "file://" + dir
	a.storageLocation("default", url, false)
	a.namespace("shop")
	a.configMaps("shop", 600)
	a.pod("shop", "db-0", map[string]string{"app": "db"})

	// The post hook holds the job (InProgress, progress written) until the
	// test has seen that status; the pre hook checks nothing was committed yet.
	seen := make(chan struct{})
	var preSawPoints int
	rec := &recorder{block: func(ctx context.Context, call string) error {
		switch {
		case strings.HasSuffix(call, "freeze"):
			preSawPoints = len(recoveryPoints(t, dir))
		case strings.HasSuffix(call, "thaw"):
			select {
			case <-seen:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}}
	ext := a.startExtension(extension.Options{Executor: rec})
	waitFor(t, "storage location available", 30*time.Second, func() bool {
		l := &v1alpha1.StorageLocation{}
		_ = a.c.Get(context.Background(), types.NamespacedName{Namespace: a.ns, Name: "default"}, l)
		return l.Status.Phase == v1alpha1.StorageAvailable
	})

	a.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupHook
metadata: {name: db-freeze, namespace: arca-e2e}
spec:
  labelSelector: app=db
  pre:
  - command: [fsfreeze, freeze]
    onError: Fail
  post:
  - command: [fsfreeze, thaw]
    timeout: 1m
`)
	a.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: nightly-1, namespace: arca-e2e}
spec:
  storageLocation: default
  includedNamespaces: [shop]
  recoveryPointName: nightly
  tags: {env: test}
  backupHookReferences: [{namespace: arca-e2e, name: db-freeze}]
`)
	waitFor(t, "InProgress with progress", 60*time.Second, func() bool {
		j := a.backupJob("nightly-1")
		if j.Status.Phase.Terminal() {
			t.Fatalf("finished before progress was seen: %+v", j.Status)
		}
		return j.Status.Phase == v1alpha1.JobInProgress && j.Status.Progress != nil && j.Status.Progress.ItemsDone >= 600
	})
	close(seen)
	j := a.waitBackup("nightly-1", time.Minute)
	if j.Status.Phase != v1alpha1.JobCompleted {
		t.Fatalf("phase %s: %s %+v", j.Status.Phase, j.Status.Message, j.Status.Errors)
	}
	if j.Status.RecoveryPointID == "" || j.Status.StartTime == nil || j.Status.CompletionTime == nil {
		t.Fatalf("incomplete status: %+v", j.Status)
	}
	if got := j.Status.Counts["configmaps"]; got < 600 {
		t.Errorf("counts[configmaps] = %d, want >= 600", got)
	}
	if p := j.Status.Progress; p.ItemsTotal != p.ItemsDone || p.BytesDone == 0 {
		t.Errorf("final progress %+v", p)
	}
	// What the backup added to the repository: >600 objects compress and
	// the packs carry overhead, so it is neither 0 nor the logical bytes.
	if stored, logical := j.Status.Counts[v1alpha1.CountStoredBytes], j.Status.Counts[v1alpha1.CountLogicalBytes]; stored <= 0 || logical != j.Status.Progress.BytesDone || stored == logical {
		t.Errorf("counts storedBytes %d, logicalBytes %d (progress %d bytes)", stored, logical, j.Status.Progress.BytesDone)
	}
	if preSawPoints != 0 {
		t.Errorf("pre hook ran after a recovery point existed")
	}
	if calls := rec.Calls(); strings.Join(calls, "|") != "shop/db-0 fsfreeze freeze|shop/db-0 fsfreeze thaw" {
		t.Errorf("hook calls %q", calls)
	}
	rps := recoveryPoints(t, dir)
	if len(rps) != 1 || rps[0].ID.String() != j.Status.RecoveryPointID || rps[0].Name != "nightly" || rps[0].Tags["env"] != "test" {
		t.Fatalf("recovery points %+v", rps)
	}

	// Restore into another namespace of the same cluster.
	a.mustApply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: to-copy, namespace: arca-e2e}
spec:
  recoveryPoint: %s
  storageLocation: default
  includedNamespaces: [shop]
  excludedResourceTypes: [pods]
  namespaceMappings: {shop: shop-copy}
`, j.Status.RecoveryPointID[:16]))
	r := a.waitRestore("to-copy", time.Minute)
	if r.Status.Phase != v1alpha1.JobCompleted && r.Status.Phase != v1alpha1.JobCompletedWithWarnings {
		t.Fatalf("restore phase %s: %s %+v", r.Status.Phase, r.Status.Message, r.Status.Errors)
	}
	if r.Status.RecoveryPointID != j.Status.RecoveryPointID || r.Status.Results["Created"] < 600 {
		t.Errorf("restore status %+v", r.Status)
	}
	if _, err := a.cs.CoreV1().ConfigMaps("shop-copy").Get(context.Background(), "cm-599", metav1.GetOptions{}); err != nil {
		t.Errorf("restored config map: %v", err)
	}

	metrics := ext.scrape(t)
	for _, want := range []string{`arca_extension_jobs_total{kind="backup",phase="Completed"}`, `arca_extension_jobs_total{kind="restore",phase="Completed`,
		"arca_extension_job_duration_seconds_bucket", `arca_extension_job_items_total{kind="backup"}`, "arca_extension_jobs_running 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// The alternate cluster: the extension installed there (the install
	// library `arca extension install` uses) with the repository read-only,
	// and run out of cluster.
	b := newCluster(t, cpB, "arca-e2e")
	objs, err := extension.Manifests(extension.InstallOptions{Namespace: "arca-e2e", StorageURL: url, ReadOnly: true, StorageHostPath: dir,
		SecretData: map[string]string{v1alpha1.SecretKeyPassword: password}})
	if err != nil {
		t.Fatal(err)
	}
	if err := extension.Apply(context.Background(), b.cfg, objs); err != nil {
		t.Fatal(err)
	}
	b.startExtension(extension.Options{})
	b.mustApply(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: from-a, namespace: arca-e2e}
spec:
  recoveryPoint: latest
  storageLocation: default
  includedNamespaces: [shop]
  excludedResourceTypes: [pods]
`)
	rb := b.waitRestore("from-a", time.Minute)
	if rb.Status.Phase != v1alpha1.JobCompleted && rb.Status.Phase != v1alpha1.JobCompletedWithWarnings {
		t.Fatalf("restore on B: %s: %s %+v", rb.Status.Phase, rb.Status.Message, rb.Status.Errors)
	}
	if _, err := b.cs.CoreV1().ConfigMaps("shop").Get(context.Background(), "cm-000", metav1.GetOptions{}); err != nil {
		t.Errorf("restored on B: %v", err)
	}
	// A read-only location takes no backups.
	b.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: into-ro, namespace: arca-e2e}
spec: {storageLocation: default}
`)
	if j := b.waitBackup("into-ro", time.Minute); j.Status.Phase != v1alpha1.JobFailed || !hasCode(j.Status.Errors, v1alpha1.CodeStorageLocationReadOnly) {
		t.Errorf("backup into read-only location: %+v", j.Status)
	}
}

// TestRestartMidJob stops the extension while a backup runs (held in its
// pre hook): the next extension marks it Failed with its code, no recovery
// point exists, and a new job succeeds. A RestoreJob left InProgress is
// marked with the restore code.
func TestRestartMidJob(t *testing.T) {
	a := newCluster(t, cpA, "arca-restart")
	dir := filepath.Join(t.TempDir(), "repo")
	a.storageLocation("default", "file://"+dir, false)
	a.namespace("restart-app")
	a.configMaps("restart-app", 20)
	a.pod("restart-app", "p", map[string]string{"app": "p"})
	started := make(chan struct{}, 1)
	hold := &recorder{block: func(ctx context.Context, call string) error {
		if strings.HasSuffix(call, "hold") {
			started <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}}
	ext1 := a.startExtension(extension.Options{Executor: hold})
	a.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupHook
metadata: {name: hold, namespace: arca-restart}
spec:
  includedNamespaces: [restart-app]
  pre: [{command: [hold], timeout: 10m}]
`)
	a.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: interrupted, namespace: arca-restart}
spec:
  storageLocation: default
  includedNamespaces: [restart-app]
  backupHookReferences: [{namespace: arca-restart, name: hold}]
`)
	select {
	case <-started:
	case <-time.After(time.Minute):
		t.Fatal("job did not start")
	}
	if p := a.backupJob("interrupted").Status.Phase; p != v1alpha1.JobInProgress {
		t.Fatalf("phase %s, want InProgress", p)
	}
	ext1.stop()
	if p := a.backupJob("interrupted").Status.Phase; p != v1alpha1.JobInProgress {
		t.Fatalf("after stop: phase %s, want InProgress (a crash writes nothing)", p)
	}

	// A restore that was running too.
	a.mustApply(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: restore-interrupted, namespace: arca-restart}
spec: {recoveryPoint: latest, storageLocation: default}
`)
	rj := a.restoreJob("restore-interrupted")
	rj.Status.Phase = v1alpha1.JobInProgress
	if err := a.c.Status().Update(context.Background(), rj); err != nil {
		t.Fatal(err)
	}

	a.startExtension(extension.Options{})
	j := a.waitBackup("interrupted", time.Minute)
	if j.Status.Phase != v1alpha1.JobFailed || !hasCode(j.Status.Errors, v1alpha1.CodeExtensionRestartedDuringBackup) {
		t.Fatalf("status after restart: %+v", j.Status)
	}
	t.Logf("message: %s", j.Status.Message)
	if r := a.waitRestore("restore-interrupted", time.Minute); r.Status.Phase != v1alpha1.JobFailed || !hasCode(r.Status.Errors, v1alpha1.CodeExtensionRestartedDuringRestore) {
		t.Fatalf("restore status after restart: %+v", r.Status)
	}
	if rps := recoveryPoints(t, dir); len(rps) != 0 {
		t.Fatalf("%d recovery points after an interrupted backup", len(rps))
	}
	// Retry: a new job.
	a.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: retry, namespace: arca-restart}
spec:
  storageLocation: default
  includedNamespaces: [restart-app]
`)
	if j := a.waitBackup("retry", time.Minute); j.Status.Phase != v1alpha1.JobCompleted {
		t.Fatalf("retry: %+v", j.Status)
	}
	if rps := recoveryPoints(t, dir); len(rps) != 1 {
		t.Fatalf("%d recovery points after the retry", len(rps))
	}
}

// TestBadSpec: unknown fields and invalid enums are rejected by the API
// server; an invalid selector and a missing storage location fail the job
// with a clear message, and the extension goes on with the next job.
func TestBadSpec(t *testing.T) {
	a := newCluster(t, cpA, "arca-bad")
	a.storageLocation("default", "file://"+filepath.Join(t.TempDir(), "repo"), false)
	a.namespace("bad-app")
	a.startExtension(extension.Options{})

	err := a.apply(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: typo, namespace: arca-bad}
spec: {storageLocation: default, includeNamespaces: [x]}
`)
	if err == nil || !strings.Contains(err.Error(), `unknown field "spec.includeNamespaces"`) {
		t.Errorf("unknown field: %v", err)
	}
	err = a.apply(`
apiVersion: arca.io/v1alpha1
kind: BackupHook
metadata: {name: bad-hook, namespace: arca-bad}
spec: {pre: [{command: [x], onError: Sometimes}]}
`)
	if err == nil || !strings.Contains(err.Error(), "Unsupported value") {
		t.Errorf("bad enum: %v", err)
	}
	err = a.apply(`
apiVersion: arca.io/v1alpha1
kind: StorageLocation
metadata: {name: bad-url, namespace: arca-bad}
spec: {url: "ftp://x", credentialsSecret: s}
`)
	if err == nil || !strings.Contains(err.Error(), "spec.url") {
		t.Errorf("bad url: %v", err)
	}

	a.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupHook
metadata: {name: waits, namespace: arca-bad}
spec: {post: [{command: ["true"], waitTimeout: 1m}]}
`)
	for _, tc := range []struct{ name, spec, code, msg string }{
		{"hookwait", `{storageLocation: default, backupHookReferences: [{namespace: arca-bad, name: waits}]}`, v1alpha1.CodeInvalidSpec,
			"hook arca-bad/waits: post[0].waitTimeout: only restore post hooks wait for their pods; remove it"},
		{"selector", `{storageLocation: default, labelSelectors: ["app in (a"]}`, v1alpha1.CodeInvalidSpec, "labelSelectors"},
		{"nolocation", `{storageLocation: nowhere}`, v1alpha1.CodeStorageLocationNotFound, `storage location "nowhere" not found`},
		{"unknowntype", `{storageLocation: default, includedResourceTypes: [gizmos.example.com]}`, v1alpha1.CodeInvalidSpec, "gizmos"},
		{"nohook", `{storageLocation: default, backupHookReferences: [{namespace: arca-bad, name: nope}]}`, v1alpha1.CodeHookNotFound, "arca-bad/nope"},
	} {
		a.mustApply(fmt.Sprintf("apiVersion: arca.io/v1alpha1\nkind: BackupJob\nmetadata: {name: %s, namespace: arca-bad}\nspec: %s\n", tc.name, tc.spec))
		j := a.waitBackup(tc.name, time.Minute)
		if j.Status.Phase != v1alpha1.JobFailed || !hasCode(j.Status.Errors, tc.code) || !strings.Contains(j.Status.Message, tc.msg) {
			t.Errorf("%s: phase %s, errors %+v, message %q; want Failed, %s, %q", tc.name, j.Status.Phase, j.Status.Errors, j.Status.Message, tc.code, tc.msg)
		}
	}
	a.mustApply(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: norp, namespace: arca-bad}
spec: {recoveryPoint: latest, storageLocation: default, namespaceMappings: {a: B_}}
`)
	if j := a.waitRestore("norp", time.Minute); j.Status.Phase != v1alpha1.JobFailed || !hasCode(j.Status.Errors, v1alpha1.CodeInvalidSpec) {
		t.Errorf("bad mapping: %+v", j.Status)
	}
	a.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: good, namespace: arca-bad}
spec: {storageLocation: default, includedNamespaces: [bad-app]}
`)
	if j := a.waitBackup("good", time.Minute); j.Status.Phase != v1alpha1.JobCompleted {
		t.Errorf("good job after bad ones: %+v", j.Status)
	}
}

// TestOneJobAtATime: with the default limit a second job waits Queued
// while the first runs, then runs; cancelling a running job ends it
// Cancelled without a recovery point.
func TestOneJobAtATime(t *testing.T) {
	a := newCluster(t, cpA, "arca-limit")
	dir := filepath.Join(t.TempDir(), "repo")
	a.storageLocation("default", "file://"+dir, false)
	a.namespace("limit-app")
	a.pod("limit-app", "p", map[string]string{"app": "p"})
	release := make(chan struct{})
	rec := &recorder{block: func(ctx context.Context, call string) error {
		if strings.HasSuffix(call, "wait") {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}}
	a.startExtension(extension.Options{Executor: rec})
	a.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupHook
metadata: {name: wait, namespace: arca-limit}
spec: {includedNamespaces: [limit-app], pre: [{command: [wait], timeout: 5m}]}
`)
	job := func(name string) string {
		return fmt.Sprintf("apiVersion: arca.io/v1alpha1\nkind: BackupJob\nmetadata: {name: %s, namespace: arca-limit}\n"+
			"spec: {storageLocation: default, includedNamespaces: [limit-app], backupHookReferences: [{namespace: arca-limit, name: wait}]}\n", name)
	}
	a.mustApply(job("first"))
	waitFor(t, "first InProgress", time.Minute, func() bool { return a.backupJob("first").Status.Phase == v1alpha1.JobInProgress })
	a.mustApply(job("second"))
	waitFor(t, "second Queued", time.Minute, func() bool { return a.backupJob("second").Status.Phase == v1alpha1.JobQueued })
	time.Sleep(time.Second)
	if p := a.backupJob("second").Status.Phase; p != v1alpha1.JobQueued {
		t.Fatalf("second job %s while the first runs", p)
	}
	// Cancel the first: the second starts.
	first := a.backupJob("first")
	first.Spec.Cancel = true
	if err := a.c.Update(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	if j := a.waitBackup("first", time.Minute); j.Status.Phase != v1alpha1.JobCancelled || !hasCode(j.Status.Errors, v1alpha1.CodeCancelled) {
		t.Fatalf("cancelled job: %+v", j.Status)
	}
	waitFor(t, "second InProgress", time.Minute, func() bool { return a.backupJob("second").Status.Phase == v1alpha1.JobInProgress })
	close(release)
	if j := a.waitBackup("second", time.Minute); j.Status.Phase != v1alpha1.JobCompleted {
		t.Fatalf("second: %+v", j.Status)
	}
	if rps := recoveryPoints(t, dir); len(rps) != 1 {
		t.Fatalf("%d recovery points, want 1 (the cancelled job wrote none)", len(rps))
	}
}

// TestPodExecutorPodNotRunning: the real exec client against the API
// server: pods stay Pending without a kubelet, and exec says so.
func TestPodExecutorPodNotRunning(t *testing.T) {
	a := newCluster(t, cpA, "arca-exec")
	a.pod("arca-exec", "pending", nil)
	ex, err := extension.NewPodExecutor(a.cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = ex.Exec(context.Background(), types.NamespacedName{Namespace: "arca-exec", Name: "pending"}, "", []string{"true"})
	if !errors.Is(err, extension.ErrPodNotRunning) || !strings.Contains(err.Error(), "Pending") {
		t.Fatalf("exec in a pending pod: %v", err)
	}
	t.Logf("error: %v", err)
	_, _, err = ex.Exec(context.Background(), types.NamespacedName{Namespace: "arca-exec", Name: "pending"}, "sidecar", []string{"true"})
	if err == nil || !strings.Contains(err.Error(), `no container "sidecar"`) {
		t.Fatalf("exec in a missing container: %v", err)
	}
	_, _, err = ex.Exec(context.Background(), types.NamespacedName{Namespace: "arca-exec", Name: "absent"}, "", []string{"true"})
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("exec in a missing pod: %v", err)
	}
}

// TestBackupCopyTo: a BackupJob with spec.copyTo writes its recovery point
// and then copies it into a second storage location with its own
// password: the copy opens only with that password and holds every object
// byte for byte. Then the primary becomes unreachable: a RestoreJob
// without spec.fallbackStorageLocation fails (RepositoryUnavailable), one
// with it restores every object from the copy with warning
// RestoredFromSecondary. A copyTo naming no storage location leaves the
// backup done with warning CopyFailed naming both locations.
func TestBackupCopyTo(t *testing.T) {
	ctx := context.Background()
	a := newCluster(t, cpA, "arca-copyto")
	dir, drDir := filepath.Join(t.TempDir(), "repo"), filepath.Join(t.TempDir(), "dr")
	a.storageLocation("default", "file://"+dir, false)
	const drPassword = "the-dr-location-has-its-own-password"
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "dr-creds", Namespace: a.ns}, StringData: map[string]string{v1alpha1.SecretKeyPassword: drPassword}}
	if err := a.c.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Create(ctx, &v1alpha1.StorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "dr", Namespace: a.ns},
		Spec: v1alpha1.StorageLocationSpec{URL: "file://" + drDir, CredentialsSecret: sec.Name}}); err != nil {
		t.Fatal(err)
	}
	a.namespace("copied")
	a.configMaps("copied", 50)
	a.startExtension(extension.Options{})

	a.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: with-copy, namespace: arca-copyto}
spec:
  storageLocation: default
  copyTo: dr
  includedNamespaces: [copied]
`)
	j := a.waitBackup("with-copy", 2*time.Minute)
	if j.Status.Phase != v1alpha1.JobCompleted || j.Status.CopiedRecoveryPointID == "" {
		t.Fatalf("phase %s, copy %q: %s %+v %+v", j.Status.Phase, j.Status.CopiedRecoveryPointID, j.Status.Message, j.Status.Warnings, j.Status.Errors)
	}
	if !strings.Contains(j.Status.Message, `copied to "dr"`) {
		t.Errorf("message %q does not report the copy", j.Status.Message)
	}
	be, err := local.Open(drDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Open(ctx, be, password); !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("the copy opened with the primary's password: %v", err)
	}
	dr, err := repo.OpenReader(ctx, be, drPassword)
	if err != nil {
		t.Fatal(err)
	}
	origID, _ := repo.ParseID(j.Status.RecoveryPointID)
	cp, err := repo.FindOrigin(ctx, dr, origID)
	if err != nil || cp.ID.String() != j.Status.CopiedRecoveryPointID {
		t.Fatalf("copy of %s in dr: %v (%v), status says %s", origID.Short(), cp, err, j.Status.CopiedRecoveryPointID)
	}
	pbe, _ := local.Open(dir)
	primary, err := repo.OpenReader(ctx, pbe, password)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := primary.LoadRecoveryPoint(ctx, origID)
	if err != nil {
		t.Fatal(err)
	}
	objects := 0
	for i, rt := range orig.Resources {
		var want [][]byte
		if err := primary.WalkTree(ctx, rt.Tree, func(e repo.TreeEntry) error {
			b, err := primary.LoadBlob(ctx, e.Blobs[0])
			want = append(want, b)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		k := 0
		if err := dr.WalkTree(ctx, cp.Resources[i].Tree, func(e repo.TreeEntry) error {
			b, err := dr.LoadBlob(ctx, e.Blobs[0])
			if err != nil {
				return err
			}
			if !bytes.Equal(b, want[k]) {
				return fmt.Errorf("%s %s/%s differs in the copy", rt.Resource, e.Namespace, e.Name)
			}
			k++
			objects++
			return nil
		}); err != nil || k != len(want) {
			t.Fatalf("%s: %v (%d of %d objects)", rt.Resource, err, k, len(want))
		}
	}
	if objects < 50 {
		t.Fatalf("compared %d objects", objects)
	}

	// The primary becomes unreachable (its directory is gone) and the
	// objects are lost. A RestoreJob without a fallback fails, naming the
	// repository; with spec.fallbackStorageLocation it restores the copy
	// (found by the original's ID) and warns RestoredFromSecondary.
	if err := os.Rename(dir, dir+".away"); err != nil {
		t.Fatal(err)
	}
	if err := a.cs.CoreV1().ConfigMaps("copied").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "app=shop"}); err != nil {
		t.Fatal(err)
	}
	a.mustApply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: no-fallback, namespace: arca-copyto}
spec:
  recoveryPoint: %s
  storageLocation: default
  includedNamespaces: [copied]
`, j.Status.RecoveryPointID))
	if rj := a.waitRestore("no-fallback", 2*time.Minute); rj.Status.Phase != v1alpha1.JobFailed || !hasCode(rj.Status.Errors, v1alpha1.CodeRepositoryUnavailable) {
		t.Fatalf("restore from an unreachable primary without fallback: %s %s %+v", rj.Status.Phase, rj.Status.Message, rj.Status.Errors)
	}
	a.mustApply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: from-secondary, namespace: arca-copyto}
spec:
  recoveryPoint: %s
  storageLocation: default
  fallbackStorageLocation: dr
  includedNamespaces: [copied]
`, j.Status.RecoveryPointID))
	rj := a.waitRestore("from-secondary", 2*time.Minute)
	if rj.Status.Phase != v1alpha1.JobCompletedWithWarnings || rj.Status.RecoveryPointID != j.Status.CopiedRecoveryPointID ||
		!hasCode(rj.Status.Warnings, v1alpha1.CodeRestoredFromSecondary) {
		t.Fatalf("restore with fallback: %s, point %s (copy %s): %s %+v %+v", rj.Status.Phase, rj.Status.RecoveryPointID,
			j.Status.CopiedRecoveryPointID, rj.Status.Message, rj.Status.Warnings, rj.Status.Errors)
	}
	for _, w := range rj.Status.Warnings {
		if w.Code == v1alpha1.CodeRestoredFromSecondary && (!strings.Contains(w.Message, `"default"`) || !strings.Contains(w.Message, `"dr"`)) {
			t.Errorf("warning does not name both locations: %s", w.Message)
		}
	}
	cms, err := a.cs.CoreV1().ConfigMaps("copied").List(ctx, metav1.ListOptions{LabelSelector: "app=shop"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cms.Items) != 50 {
		t.Fatalf("%d config maps restored from the secondary, want 50", len(cms.Items))
	}
	for _, cm := range cms.Items {
		if cm.Data["k"] != strings.Repeat("v", 100) {
			t.Fatalf("config map %s restored with data %q", cm.Name, cm.Data)
		}
	}
	if err := os.Rename(dir+".away", dir); err != nil {
		t.Fatal(err)
	}

	a.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: copy-nowhere, namespace: arca-copyto}
spec:
  storageLocation: default
  copyTo: nowhere
  includedNamespaces: [copied]
`)
	j = a.waitBackup("copy-nowhere", 2*time.Minute)
	if j.Status.Phase != v1alpha1.JobCompletedWithWarnings || j.Status.RecoveryPointID == "" || j.Status.CopiedRecoveryPointID != "" {
		t.Fatalf("copy to a missing location: phase %s, point %q, copy %q", j.Status.Phase, j.Status.RecoveryPointID, j.Status.CopiedRecoveryPointID)
	}
	found := false
	for _, w := range j.Status.Warnings {
		if w.Code == v1alpha1.CodeCopyFailed && strings.Contains(w.Message, `"nowhere"`) && strings.Contains(w.Message, `"default"`) && strings.Contains(w.Message, "arca repo copy") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no CopyFailed warning naming both locations and the fix: %+v", j.Status.Warnings)
	}
}
