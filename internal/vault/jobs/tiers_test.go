package jobs_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/store"
)

// TestVaultTierBackups: under a policy whose daily rule targets the vault
// datastore, with a secondary storage location, the first scheduled backup
// of a day asks the cluster for the vault tier and a copy; a second one
// that day does not; a day whose first backup failed sends its next one.
// The recorded points carry their tiers, expiries and copy, and a restore
// of a copied point names the copy's location as its fallback.
func TestVaultTierBackups(t *testing.T) {
	e := setup(t)
	pol, err := e.st.GetPolicy(ctx, "v", "p")
	must(t, err)
	pol.Retention = json.RawMessage(`{"default":{"duration":"P7D","datastore":"operational"},"daily":{"duration":"P30D","datastore":"vault"}}`)
	pol.CopyTo = "s3://secondary/arca"
	must(t, e.st.UpdatePolicy(ctx, pol))

	// run starts a scheduled backup at the clock's time and ends it in
	// state; it returns the request the cluster got.
	run := func(state string, copyID string) (*store.Job, jobs.BackupRequest) {
		t.Helper()
		j := &store.Job{Vault: "v", Type: store.JobScheduledBackup, Instance: "connected"}
		must(t, e.st.CreateJob(ctx, j))
		must(t, e.r.Tick(ctx))
		got := e.job(t, j.ID)
		req := e.drv.backups[len(e.drv.backups)-1]
		st := &jobs.Status{State: state}
		if state == store.JobCompleted {
			st.RecoveryPoint = &jobs.RecoveryPointInfo{RepoID: "repo-" + j.ID, Time: e.clk.Now(), CopyRepoID: copyID}
		}
		e.drv.finish(got.ExternalRef, st)
		must(t, e.r.Tick(ctx))
		if got := e.job(t, j.ID); got.State != state {
			t.Fatalf("job %s: %s, want %s", j.ID, got.State, state)
		}
		return j, req
	}

	// Thu 1 Jan 02:00: first of the day.
	j1, req := run(store.JobCompleted, "copy-1")
	if !req.VaultTier || req.CopyTo != "s3://secondary/arca" {
		t.Fatalf("first backup of the day: %+v", req)
	}
	rp, err := e.st.GetRecoveryPoint(ctx, "v", jobs.RecoveryPointID(j1.ID))
	must(t, err)
	taken := time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)
	if rp.Tiers.Vault == nil || rp.Tiers.Vault.Rule != "daily" || !rp.Tiers.Vault.ExpiresAt.Equal(taken.AddDate(0, 0, 30)) ||
		rp.Tiers.Operational == nil || !rp.Tiers.Operational.ExpiresAt.Equal(taken.AddDate(0, 0, 7)) || !rp.ExpiresAt.Equal(taken.AddDate(0, 0, 30)) {
		t.Fatalf("first point's tiers: %+v %+v, expiry %v", rp.Tiers.Operational, rp.Tiers.Vault, rp.ExpiresAt)
	}
	if len(rp.Copies) != 1 || rp.Copies[0].StorageLocation != "s3://secondary/arca" || rp.Copies[0].RepoID != "copy-1" {
		t.Fatalf("copies: %+v", rp.Copies)
	}

	// 06:00 the same day: snapshots only, no copy.
	e.clk.Set(taken.Add(4 * time.Hour))
	j2, req := run(store.JobCompleted, "")
	if req.VaultTier || req.CopyTo != "" {
		t.Fatalf("second backup of the day: %+v", req)
	}
	rp2, err := e.st.GetRecoveryPoint(ctx, "v", jobs.RecoveryPointID(j2.ID))
	must(t, err)
	if rp2.Tiers.Vault != nil || len(rp2.Copies) != 0 || !rp2.ExpiresAt.Equal(taken.Add(4*time.Hour).AddDate(0, 0, 7)) {
		t.Fatalf("second point: %+v", rp2)
	}

	// Sat 3 Jan 02:00: a vault-tier backup starts and is still running at
	// 03:00, when another backup of the day starts: that one is not sent
	// to the vault tier too.
	e.clk.Set(taken.AddDate(0, 0, 2))
	long := &store.Job{Vault: "v", Type: store.JobScheduledBackup, Instance: "connected"}
	must(t, e.st.CreateJob(ctx, long))
	must(t, e.r.Tick(ctx))
	if req := e.drv.backups[len(e.drv.backups)-1]; !req.VaultTier {
		t.Fatalf("first of 3 Jan: %+v", req)
	}
	e.clk.Set(taken.AddDate(0, 0, 2).Add(time.Hour))
	second := &store.Job{Vault: "v", Type: store.JobScheduledBackup, Instance: "connected"}
	must(t, e.st.CreateJob(ctx, second))
	must(t, e.r.Tick(ctx))
	if req := e.drv.backups[len(e.drv.backups)-1]; req.VaultTier {
		t.Fatalf("second of 3 Jan, while the first still runs: %+v", req)
	}
	for _, j := range []*store.Job{long, second} {
		e.drv.finish(e.job(t, j.ID).ExternalRef, &jobs.Status{State: store.JobFailed})
	}
	must(t, e.r.Tick(ctx))

	// Fri 2 Jan: the 02:00 backup fails, so the 06:00 one is the first.
	e.clk.Set(taken.AddDate(0, 0, 1))
	if _, req := run(store.JobFailed, ""); !req.VaultTier {
		t.Fatalf("first attempt of 2 Jan: %+v", req)
	}
	e.clk.Set(taken.AddDate(0, 0, 1).Add(4 * time.Hour))
	if _, req := run(store.JobCompleted, ""); !req.VaultTier {
		t.Fatalf("the backup after a failed first one did not go to the vault tier: %+v", req)
	}

	// An on-demand backup asking for the vault tier gets it (and the copy).
	j := &store.Job{Vault: "v", Type: store.JobOnDemandBackup, Instance: "connected", Params: json.RawMessage(`{"vaultTier":true,"retention":"P90D"}`)}
	must(t, e.st.CreateJob(ctx, j))
	must(t, e.r.Tick(ctx))
	if req := e.drv.backups[len(e.drv.backups)-1]; !req.VaultTier || req.CopyTo == "" {
		t.Fatalf("on-demand to the vault tier: %+v", req)
	}
	e.drv.finish(e.job(t, j.ID).ExternalRef, &jobs.Status{State: store.JobCompleted, RecoveryPoint: &jobs.RecoveryPointInfo{RepoID: "od", Time: e.clk.Now()}})
	must(t, e.r.Tick(ctx))
	od, err := e.st.GetRecoveryPoint(ctx, "v", jobs.RecoveryPointID(j.ID))
	must(t, err)
	if od.Tiers.Vault == nil || od.Tag != "ondemand" || !od.Tiers.Vault.ExpiresAt.Equal(e.clk.Now().AddDate(0, 0, 90)) {
		t.Fatalf("on-demand point: %+v %+v", od, od.Tiers.Vault)
	}

	// A restore of the copied point names the copy's location as fallback.
	rj := &store.Job{Vault: "v", Type: store.JobRestore, Params: json.RawMessage(`{"recoveryPoint":"` + rp.ID + `","targetCluster":"c1"}`)}
	must(t, e.st.CreateJob(ctx, rj))
	must(t, e.r.Tick(ctx))
	if len(e.drv.restores) != 1 || e.drv.restores[0].FallbackStorageLocation != "s3://secondary/arca" || e.drv.restores[0].StorageLocation != "file:///r" {
		t.Fatalf("restore requests %+v", e.drv.restores)
	}
}

// TestClusterRemoverSnapshotsOnly: the operational tier's expiry asks the
// cluster to delete the point's snapshots alone: no forget, no prune.
func TestClusterRemoverSnapshotsOnly(t *testing.T) {
	e := setup(t)
	fd := &forgetDriver{fakeDriver: e.drv, end: &jobs.Status{State: store.JobCompleted}}
	rm := &jobs.ClusterRemover{Store: e.st, Drivers: jobs.DriverMap{"c1": fd}, Wait: 5 * time.Second, Poll: 10 * time.Millisecond}
	must(t, rm.RemoveSnapshots(ctx, &store.RecoveryPoint{Vault: "v", ID: "rp-1", Instance: "connected", RepoID: "abc"}))
	if len(fd.requests) != 1 || !fd.requests[0].SnapshotsOnly || fd.requests[0].Prune || fd.requests[0].Key != "v/rp-1+snapshots" {
		t.Fatalf("snapshot expiry requests %+v", fd.requests)
	}
	// The point's own expiry later still prunes (the first of the day).
	must(t, rm.RemoveRecoveryPoint(ctx, &store.RecoveryPoint{Vault: "v", ID: "rp-1", Instance: "connected", RepoID: "abc"}))
	if len(fd.requests) != 2 || fd.requests[1].SnapshotsOnly || !fd.requests[1].Prune {
		t.Fatalf("point expiry after snapshots: %+v", fd.requests[1])
	}
}
