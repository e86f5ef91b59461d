package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/retention"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

var ctx = context.Background()

// fakeDriver stands in for the extension: jobs finish when told to.
type fakeDriver struct {
	mu       sync.Mutex
	status   map[string]*jobs.Status
	backups  []jobs.BackupRequest
	restores []jobs.RestoreRequest
	down     bool
}

func (f *fakeDriver) StartBackup(_ context.Context, req jobs.BackupRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ref := fmt.Sprintf("arca-system/backup-%d", len(f.backups))
	f.backups = append(f.backups, req)
	f.status[ref] = &jobs.Status{State: store.JobInProgress, SubTasks: []store.SubTask{{Name: "resources", State: "InProgress"}}}
	return ref, nil
}

func (f *fakeDriver) StartRestore(_ context.Context, req jobs.RestoreRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ref := fmt.Sprintf("arca-system/restore-%d", len(f.restores))
	f.restores = append(f.restores, req)
	f.status[ref] = &jobs.Status{State: store.JobInProgress}
	return ref, nil
}

func (f *fakeDriver) JobStatus(_ context.Context, ref string) (*jobs.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errors.New("connection refused")
	}
	st := *f.status[ref]
	return &st, nil
}

func (f *fakeDriver) finish(ref string, st *jobs.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status[ref] = st
}

type env struct {
	st  store.Store
	clk *clock.Fake
	r   *jobs.Runner
	drv *fakeDriver
}

func setup(t *testing.T) *env {
	t.Helper()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "v.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := clock.NewFake(time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC))
	drv := &fakeDriver{status: map[string]*jobs.Status{}}
	must(t, st.CreateVault(ctx, &store.Vault{Name: "v"}))
	must(t, st.CreatePolicy(ctx, &store.Policy{Vault: "v", Name: "p", Schedule: "R/2026-01-01T02:00:00Z/PT4H",
		Retention: json.RawMessage(`{"default":{"duration":"P7D"},"daily":{"duration":"P30D"}}`)}))
	must(t, st.CreateInstance(ctx, &store.Instance{Vault: "v", Name: "connected", Cluster: "c1", Policy: "p", StorageLocation: "file:///r"}))
	must(t, st.CreateInstance(ctx, &store.Instance{Vault: "v", Name: "lonely", Cluster: "nowhere", Policy: "p"}))
	r := &jobs.Runner{Store: st, Clock: clk, Drivers: jobs.DriverMap{"c1": drv}, Retention: &retention.Engine{Store: st, Clock: clk},
		UnreachableAfter: 5 * time.Minute}
	return &env{st, clk, r, drv}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) job(t *testing.T, id string) *store.Job {
	t.Helper()
	j, err := e.st.GetJob(ctx, "v", id)
	must(t, err)
	return j
}

func TestBackupLifecycle(t *testing.T) {
	e := setup(t)
	j := &store.Job{Vault: "v", Type: store.JobScheduledBackup, Instance: "connected"}
	must(t, e.st.CreateJob(ctx, j))
	must(t, e.r.Tick(ctx))
	got := e.job(t, j.ID)
	if got.State != store.JobInProgress || got.ExternalRef == "" || len(e.drv.backups) != 1 {
		t.Fatalf("after start: %+v", got)
	}
	if e.drv.backups[0].Cluster != "c1" || e.drv.backups[0].StorageLocation != "file:///r" {
		t.Fatalf("request: %+v", e.drv.backups[0])
	}
	must(t, e.r.Tick(ctx))
	if got := e.job(t, j.ID); len(got.SubTasks) != 1 {
		t.Fatalf("sub-tasks not followed: %+v", got)
	}
	taken := e.clk.Now()
	e.drv.finish(got.ExternalRef, &jobs.Status{State: store.JobCompletedWithWarnings,
		Warnings:      []store.Issue{{Code: "VolumeSkipped", Message: "in-tree"}},
		RecoveryPoint: &jobs.RecoveryPointInfo{RepoID: "abc", Time: taken, Items: 42, Bytes: 1000, StoredBytes: 300}})
	e.clk.Advance(time.Minute)
	must(t, e.r.Tick(ctx))
	got = e.job(t, j.ID)
	if got.State != store.JobCompletedWithWarnings || got.EndedAt == nil || len(got.Warnings) != 1 {
		t.Fatalf("after finish: %+v", got)
	}
	rp, err := e.st.GetRecoveryPoint(ctx, "v", jobs.RecoveryPointID(j.ID))
	must(t, err)
	if rp.Tag != "daily" || rp.Items != 42 || rp.Bytes != 1000 || rp.StoredBytes != 300 || rp.ExpiresAt == nil || !rp.ExpiresAt.Equal(taken.AddDate(0, 0, 30)) {
		t.Fatalf("recovery point: %+v", rp)
	}
	// Another tick changes nothing.
	must(t, e.r.Tick(ctx))
	rps, _ := e.st.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: "v"})
	if len(rps) != 1 {
		t.Fatalf("%d recovery points, want 1", len(rps))
	}
}

func TestOnDemandRetention(t *testing.T) {
	e := setup(t)
	j := &store.Job{Vault: "v", Type: store.JobOnDemandBackup, Instance: "connected", Params: json.RawMessage(`{"retention":"P90D"}`)}
	must(t, e.st.CreateJob(ctx, j))
	must(t, e.r.Tick(ctx))
	taken := e.clk.Now()
	e.drv.finish(e.job(t, j.ID).ExternalRef, &jobs.Status{State: store.JobCompleted, RecoveryPoint: &jobs.RecoveryPointInfo{Time: taken}})
	must(t, e.r.Tick(ctx))
	rp, err := e.st.GetRecoveryPoint(ctx, "v", jobs.RecoveryPointID(j.ID))
	must(t, err)
	if rp.Tag != retention.TagOnDemand || !rp.ExpiresAt.Equal(taken.AddDate(0, 0, 90)) {
		t.Fatalf("on-demand retention: %+v", rp)
	}
}

func TestNoDriverFailsClusterNotConnected(t *testing.T) {
	e := setup(t)
	j := &store.Job{Vault: "v", Type: store.JobOnDemandBackup, Instance: "lonely"}
	must(t, e.st.CreateJob(ctx, j))
	must(t, e.r.Tick(ctx))
	got := e.job(t, j.ID)
	if got.State != store.JobFailed || len(got.Errors) != 1 || got.Errors[0].Code != jobs.CodeClusterNotConnected {
		t.Fatalf("job: %+v", got)
	}
}

func TestUnreachableAfterBoundedWait(t *testing.T) {
	e := setup(t)
	j := &store.Job{Vault: "v", Type: store.JobScheduledBackup, Instance: "connected"}
	must(t, e.st.CreateJob(ctx, j))
	must(t, e.r.Tick(ctx))
	e.drv.down = true
	for i := 0; i < 5; i++ {
		must(t, e.r.Tick(ctx))
		e.clk.Advance(time.Minute)
		if got := e.job(t, j.ID); got.State != store.JobInProgress {
			t.Fatalf("failed too early (after %d min): %+v", i, got)
		}
	}
	must(t, e.r.Tick(ctx))
	got := e.job(t, j.ID)
	if got.State != store.JobFailed || got.Errors[0].Code != jobs.CodeClusterUnreachable {
		t.Fatalf("job: %+v", got)
	}
}

func TestRestoreAndCancel(t *testing.T) {
	e := setup(t)
	rp := &store.RecoveryPoint{Vault: "v", ID: "rp1", Instance: "connected", Time: e.clk.Now(), Tag: "default"}
	must(t, e.st.CreateRecoveryPoint(ctx, rp))
	params, _ := json.Marshal(jobs.RestoreParams{RecoveryPoint: "rp1", TargetCluster: "c1", Criteria: json.RawMessage(`{"conflictPolicy":"Skip"}`)})
	j := &store.Job{Vault: "v", Type: store.JobRestore, Params: params}
	must(t, e.st.CreateJob(ctx, j))
	must(t, e.r.Tick(ctx))
	if len(e.drv.restores) != 1 || e.drv.restores[0].RecoveryPoint.ID != "rp1" || e.drv.restores[0].StorageLocation != "file:///r" {
		t.Fatalf("restore request: %+v", e.drv.restores)
	}
	e.drv.finish(e.job(t, j.ID).ExternalRef, &jobs.Status{State: store.JobCompleted})
	must(t, e.r.Tick(ctx))
	if got := e.job(t, j.ID); got.State != store.JobCompleted {
		t.Fatalf("restore: %+v", got)
	}

	q := &store.Job{Vault: "v", Type: store.JobOnDemandBackup, Instance: "connected"}
	must(t, e.st.CreateJob(ctx, q))
	must(t, e.r.Cancel(ctx, q))
	must(t, e.r.Tick(ctx))
	if got := e.job(t, q.ID); got.State != store.JobCancelled || len(e.drv.backups) != 0 {
		t.Fatalf("cancelled queued job was started: %+v", got)
	}
	if err := e.r.Cancel(ctx, e.job(t, q.ID)); err == nil {
		t.Fatal("cancelling a finished job must fail")
	}
}

func TestScheduledJobOfStoppedInstanceIsCancelled(t *testing.T) {
	e := setup(t)
	in, err := e.st.GetInstance(ctx, "v", "connected")
	must(t, err)
	in.ProtectionState, in.StopMode = store.ProtectionStopped, store.StopRetainPerPolicy
	must(t, e.st.UpdateInstance(ctx, in))
	j := &store.Job{Vault: "v", Type: store.JobScheduledBackup, Instance: "connected"}
	must(t, e.st.CreateJob(ctx, j))
	must(t, e.r.Tick(ctx))
	got := e.job(t, j.ID)
	if got.State != store.JobCancelled || len(e.drv.backups) != 0 || got.Warnings[0].Code != jobs.CodeProtectionStopped {
		t.Fatalf("job: %+v, backups started: %d", got, len(e.drv.backups))
	}
}

// TestTwoRunnersStartEachJobOnce: replicas racing for Queued jobs start
// each exactly once (version-checked Queued → InProgress).
func TestTwoRunnersStartEachJobOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	open := func() store.Store {
		st, err := sqlite.Open(ctx, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	a, b := open(), open()
	must(t, a.CreatePolicy(ctx, &store.Policy{Vault: "v", Name: "p", Schedule: "0 2 * * *", Retention: json.RawMessage(`{"default":{"duration":"P7D"}}`)}))
	must(t, a.CreateInstance(ctx, &store.Instance{Vault: "v", Name: "i", Cluster: "c1", Policy: "p"}))
	for i := 0; i < 20; i++ {
		must(t, a.CreateJob(ctx, &store.Job{Vault: "v", Type: store.JobOnDemandBackup, Instance: "i"}))
	}
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	drv := &fakeDriver{status: map[string]*jobs.Status{}}
	var wg sync.WaitGroup
	for _, st := range []store.Store{a, b} {
		r := &jobs.Runner{Store: st, Clock: clk, Drivers: jobs.DriverMap{"c1": drv}, Retention: &retention.Engine{Store: st, Clock: clk}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 3; k++ {
				if err := r.Tick(ctx); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if len(drv.backups) != 20 {
		t.Fatalf("%d cluster jobs started for 20 queued jobs", len(drv.backups))
	}
	seen := map[string]bool{}
	for _, req := range drv.backups {
		if seen[req.JobID] {
			t.Fatalf("job %s started twice", req.JobID)
		}
		seen[req.JobID] = true
	}
}

func TestStartLostAfterBoundedWait(t *testing.T) {
	e := setup(t)
	start := e.clk.Now()
	// A job another runner took and then died on: InProgress, no cluster job.
	j := &store.Job{Vault: "v", Type: store.JobOnDemandBackup, Instance: "connected", State: store.JobInProgress, StartedAt: &start}
	must(t, e.st.CreateJob(ctx, j))
	must(t, e.r.Tick(ctx))
	if got := e.job(t, j.ID); got.State != store.JobInProgress {
		t.Fatalf("failed before the bounded wait: %+v", got)
	}
	e.clk.Advance(5 * time.Minute)
	must(t, e.r.Tick(ctx))
	if got := e.job(t, j.ID); got.State != store.JobFailed || got.Errors[0].Code != jobs.CodeStartLost {
		t.Fatalf("job: %+v", got)
	}
}
