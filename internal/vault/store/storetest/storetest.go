// Package storetest is the conformance suite every store.Store
// implementation passes. Implementations call Run with a constructor that
// returns a fresh, empty store; reopen (optional) must return a second
// handle on the same database, to prove persistence and concurrency across
// processes.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/store"
)

// Factory creates a fresh empty store, and a function opening another
// handle on the same database.
type Factory func(t *testing.T) (s store.Store, reopen func(t *testing.T) store.Store)

// Run runs the suite.
func Run(t *testing.T, newStore Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store, reopen func(*testing.T) store.Store)
	}{
		{"Vaults", testVaults},
		{"Policies", testPolicies},
		{"Instances", testInstances},
		{"RecoveryPoints", testRecoveryPoints},
		{"Pages", testPages},
		{"Jobs", testJobs},
		{"JobsOfAnInstance", testJobsOfAnInstance},
		{"Tokens", testTokens},
		{"Triggers", testTriggers},
		{"RoleAssignments", testRoleAssignments},
		{"Clusters", testClusters},
		{"ConcurrentClaims", testConcurrentClaims},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"Persistence", testPersistence},
		{"RoleAssignmentsCascade", testRoleAssignmentsCascade},
		{"Leases", testLeases},
		{"SealedCredentials", testSealedCredentials},
		{"RecoveryPointExpiries", testRecoveryPointExpiries},
		{"BoundTokens", testBoundTokens},
		{"VaultSettings", testVaultSettings},
		{"SoftDelete", testSoftDelete},
		{"Approvals", testApprovals},
		{"Notifications", testNotifications},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, reopen := newStore(t)
			tc.fn(t, s, reopen)
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
}

func wantConflict(t *testing.T, err error) {
	t.Helper()
	var ce *store.ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, store.ErrConflict) {
		t.Fatalf("got error %v, want *store.ConflictError", err)
	}
}

var ctx = context.Background()

func testVaults(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	v := &store.Vault{Name: "v1", Description: "first"}
	must(t, s.CreateVault(ctx, v))
	if v.Version != 1 || v.CreatedAt.IsZero() {
		t.Fatalf("create did not fill meta: %+v", v)
	}
	wantErr(t, s.CreateVault(ctx, &store.Vault{Name: "v1"}), store.ErrAlreadyExists)
	must(t, s.CreateVault(ctx, &store.Vault{Name: "a0"}))

	got, err := s.GetVault(ctx, "v1")
	must(t, err)
	if got.Description != "first" || got.Version != 1 || !got.CreatedAt.Equal(v.CreatedAt) {
		t.Fatalf("get: %+v, want %+v", got, v)
	}
	_, err = s.GetVault(ctx, "nope")
	wantErr(t, err, store.ErrNotFound)

	list, err := s.ListVaults(ctx)
	must(t, err)
	if len(list) != 2 || list[0].Name != "a0" || list[1].Name != "v1" {
		t.Fatalf("list not sorted by name: %v", names(list, func(v *store.Vault) string { return v.Name }))
	}

	stale := *got
	got.Description = "second"
	must(t, s.UpdateVault(ctx, got))
	if got.Version != 2 {
		t.Fatalf("version after update = %d, want 2", got.Version)
	}
	stale.Description = "lost update"
	wantConflict(t, s.UpdateVault(ctx, &stale))
	again, _ := s.GetVault(ctx, "v1")
	if again.Description != "second" {
		t.Fatalf("stale update changed the record: %q", again.Description)
	}
	wantErr(t, s.UpdateVault(ctx, &store.Vault{Name: "nope", Meta: store.Meta{Version: 1}}), store.ErrNotFound)

	wantConflict(t, s.DeleteVault(ctx, "v1", 1))
	must(t, s.DeleteVault(ctx, "v1", 2))
	wantErr(t, s.DeleteVault(ctx, "v1", 0), store.ErrNotFound)
	must(t, s.DeleteVault(ctx, "a0", 0))
}

func names[T any](xs []*T, f func(*T) string) []string {
	var out []string
	for _, x := range xs {
		out = append(out, f(x))
	}
	return out
}

func testPolicies(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ret := json.RawMessage(`{"default":{"duration":"P7D","datastore":"operational"}}`)
	p := &store.Policy{Vault: "v", Name: "p1", Schedule: "R/2026-01-01T00:00:00Z/PT4H", Retention: ret}
	must(t, s.CreatePolicy(ctx, p))
	must(t, s.CreatePolicy(ctx, &store.Policy{Vault: "other", Name: "p1", Schedule: "0 2 * * *", Retention: ret}))
	wantErr(t, s.CreatePolicy(ctx, &store.Policy{Vault: "v", Name: "p1", Retention: ret}), store.ErrAlreadyExists)
	got, err := s.GetPolicy(ctx, "v", "p1")
	must(t, err)
	var a, b any
	must(t, json.Unmarshal(got.Retention, &a))
	must(t, json.Unmarshal(ret, &b))
	if fmt.Sprint(a) != fmt.Sprint(b) || got.Schedule != p.Schedule {
		t.Fatalf("get: %+v", got)
	}
	list, err := s.ListPolicies(ctx, "v")
	must(t, err)
	if len(list) != 1 {
		t.Fatalf("list scoped to vault: got %d", len(list))
	}
	stale := *got
	got.Schedule, got.CopyTo = "R/2026-01-01T00:00:00Z/PT6H", "s3://b/second"
	must(t, s.UpdatePolicy(ctx, got))
	wantConflict(t, s.UpdatePolicy(ctx, &stale))
	if back, err := s.GetPolicy(ctx, "v", "p1"); err != nil || back.CopyTo != "s3://b/second" {
		t.Fatalf("copyTo not stored: %+v %v", back, err)
	}
	wantConflict(t, s.DeletePolicy(ctx, "v", "p1", 1))
	must(t, s.DeletePolicy(ctx, "v", "p1", got.Version))
	_, err = s.GetPolicy(ctx, "v", "p1")
	wantErr(t, err, store.ErrNotFound)
}

func testInstances(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	in := &store.Instance{Vault: "v", Name: "i1", Cluster: "c1", Policy: "p1",
		Config: json.RawMessage(`{"includedNamespaces":["a"]}`), StorageLocation: "file:///tmp/r", SnapshotLocation: "csi"}
	must(t, s.CreateInstance(ctx, in))
	if in.ProtectionState != store.ProtectionConfigured {
		t.Fatalf("default protection state = %q", in.ProtectionState)
	}
	must(t, s.CreateInstance(ctx, &store.Instance{Vault: "v", Name: "i2", Cluster: "c2", Policy: "p2"}))
	wantErr(t, s.CreateInstance(ctx, &store.Instance{Vault: "v", Name: "i1"}), store.ErrAlreadyExists)
	all, err := s.ListInstances(ctx, "v", "")
	must(t, err)
	byPolicy, err := s.ListInstances(ctx, "v", "p1")
	must(t, err)
	if len(all) != 2 || len(byPolicy) != 1 || byPolicy[0].Name != "i1" {
		t.Fatalf("list: all=%d byPolicy=%d", len(all), len(byPolicy))
	}
	got, err := s.GetInstance(ctx, "v", "i1")
	must(t, err)
	if string(got.Config) != string(in.Config) || got.SnapshotLocation != "csi" {
		t.Fatalf("get: %+v", got)
	}
	stale := *got
	got.ProtectionState, got.StopMode = store.ProtectionStopped, store.StopRetainForever
	must(t, s.UpdateInstance(ctx, got))
	wantConflict(t, s.UpdateInstance(ctx, &stale))
	got2, _ := s.GetInstance(ctx, "v", "i1")
	if got2.ProtectionState != store.ProtectionStopped || got2.StopMode != store.StopRetainForever {
		t.Fatalf("update lost: %+v", got2)
	}
	must(t, s.DeleteInstance(ctx, "v", "i1", 0))
	wantErr(t, s.DeleteInstance(ctx, "v", "i1", 0), store.ErrNotFound)
}

func testRecoveryPoints(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	base := time.Date(2026, 1, 1, 2, 0, 0, 123456789, time.UTC)
	var ids []string
	for i := 4; i >= 0; i-- { // inserted newest first; listed oldest first
		exp := base.Add(time.Duration(i)*time.Hour + 7*24*time.Hour)
		rp := &store.RecoveryPoint{Vault: "v", Instance: "i1", Time: base.Add(time.Duration(i) * time.Hour),
			Tag: "default", Datastore: "operational", ExpiresAt: &exp, Items: int64(i), Bytes: 100}
		must(t, s.CreateRecoveryPoint(ctx, rp))
		if rp.ID == "" || rp.State != store.RPAvailable {
			t.Fatalf("create did not fill id/state: %+v", rp)
		}
		ids = append(ids, rp.ID)
	}
	must(t, s.CreateRecoveryPoint(ctx, &store.RecoveryPoint{Vault: "v", Instance: "i2", Time: base, Tag: "ondemand"}))
	list, err := s.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: "v", Instance: "i1"})
	must(t, err)
	if len(list) != 5 {
		t.Fatalf("list: %d", len(list))
	}
	for i, rp := range list {
		if want := base.Add(time.Duration(i) * time.Hour).Truncate(time.Microsecond); !rp.Time.Equal(want) {
			t.Fatalf("rp %d time %v, want %v (oldest first, µs precision)", i, rp.Time, want)
		}
		if rp.ExpiresAt == nil || rp.Items != int64(i) {
			t.Fatalf("rp %d: %+v", i, rp)
		}
	}
	all, err := s.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: "v"})
	must(t, err)
	if len(all) != 6 {
		t.Fatalf("list vault: %d", len(all))
	}
	rp, err := s.GetRecoveryPoint(ctx, "v", ids[0])
	must(t, err)
	stale := *rp
	rp.ExpiresAt, rp.Tag = nil, "retain-forever"
	must(t, s.UpdateRecoveryPoint(ctx, rp))
	wantConflict(t, s.UpdateRecoveryPoint(ctx, &stale))
	rp2, _ := s.GetRecoveryPoint(ctx, "v", ids[0])
	if rp2.ExpiresAt != nil || rp2.Tag != "retain-forever" {
		t.Fatalf("update lost: %+v", rp2)
	}
	// Tiers (retention per datastore) and copies round-trip, and an
	// update changes them.
	opExp, vExp := base.Add(7*24*time.Hour).Truncate(time.Microsecond), base.Add(30*24*time.Hour).Truncate(time.Microsecond)
	tiered := &store.RecoveryPoint{Vault: "v", ID: "tiered", Instance: "i2", Time: base, Tag: "daily", Datastore: "vault", ExpiresAt: &vExp,
		Tiers: store.Tiers{Operational: &store.Tier{Rule: "default", ExpiresAt: &opExp, State: store.TierAvailable},
			Vault: &store.Tier{Rule: "daily", ExpiresAt: &vExp, State: store.TierAvailable}},
		Copies: []store.Copy{{StorageLocation: "s3://b/second", RepoID: "c0ffee"}}, Bytes: 5000, StoredBytes: 1234}
	must(t, s.CreateRecoveryPoint(ctx, tiered))
	got, err := s.GetRecoveryPoint(ctx, "v", "tiered")
	must(t, err)
	if got.Tiers.Operational == nil || !got.Tiers.Operational.ExpiresAt.Equal(opExp) || got.Tiers.Operational.Rule != "default" ||
		got.Tiers.Vault == nil || !got.Tiers.Vault.ExpiresAt.Equal(vExp) || got.Tiers.Vault.State != store.TierAvailable ||
		len(got.Copies) != 1 || got.Copies[0] != tiered.Copies[0] || got.StoredBytes != 1234 || got.Bytes != 5000 {
		t.Fatalf("tiers read back: %+v %+v %+v, stored bytes %d", got.Tiers.Operational, got.Tiers.Vault, got.Copies, got.StoredBytes)
	}
	got.Tiers.Operational.State = store.TierDeleted
	must(t, s.UpdateRecoveryPoint(ctx, got))
	got, err = s.GetRecoveryPoint(ctx, "v", "tiered")
	must(t, err)
	if got.Tiers.Operational.State != store.TierDeleted || got.Tiers.Vault.State != store.TierAvailable || got.StoredBytes != 1234 {
		t.Fatalf("tier update lost: %+v %+v", got.Tiers.Operational, got.Tiers.Vault)
	}
	if plain, _ := s.GetRecoveryPoint(ctx, "v", ids[1]); plain.Tiers.Operational != nil || plain.Tiers.Vault != nil || plain.Copies != nil {
		t.Fatalf("a point recorded without tiers reads back with some: %+v", plain.Tiers)
	}
	must(t, s.DeleteRecoveryPoint(ctx, "v", ids[0], rp2.Version))
	_, err = s.GetRecoveryPoint(ctx, "v", ids[0])
	wantErr(t, err, store.ErrNotFound)
}

func testJobs(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	var ids []string
	for i := 0; i < 3; i++ {
		j := &store.Job{Vault: "v", Type: store.JobOnDemandBackup, Instance: fmt.Sprintf("i%d", i%2),
			Params: json.RawMessage(`{"retention":"P30D"}`)}
		must(t, s.CreateJob(ctx, j))
		if j.State != store.JobQueued || j.ID == "" {
			t.Fatalf("create job: %+v", j)
		}
		ids = append(ids, j.ID)
	}
	must(t, s.CreateJob(ctx, &store.Job{Vault: "v", Type: store.JobScheduledBackup, Instance: "i0", DedupKey: "v/i0@1"}))
	wantErr(t, s.CreateJob(ctx, &store.Job{Vault: "v", Type: store.JobScheduledBackup, Instance: "i0", DedupKey: "v/i0@1"}), store.ErrAlreadyExists)

	list, err := s.ListJobs(ctx, store.JobFilter{Vault: "v", Instance: "i0"})
	must(t, err)
	if len(list) != 3 {
		t.Fatalf("filter by instance: %d", len(list))
	}
	list, err = s.ListJobs(ctx, store.JobFilter{Vault: "v", Type: store.JobOnDemandBackup, Limit: 2})
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("limit: %d", len(list))
	}
	j, err := s.GetJob(ctx, "v", ids[1])
	must(t, err)
	stale := *j
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	j.State, j.StartedAt, j.ExternalRef = store.JobInProgress, &start, "arca-system/backup-1"
	j.SubTasks = []store.SubTask{{Name: "resources", State: "InProgress"}}
	j.Warnings = []store.Issue{{Code: "VolumeSkipped", Message: "in-tree volume", Object: "ns/pvc"}}
	j.Progress = &store.JobProgress{ItemsDone: 7, ItemsTotal: 9, BytesDone: 100, BytesTotal: 300, Counts: map[string]int64{"configmaps": 2}}
	must(t, s.UpdateJob(ctx, j))
	wantConflict(t, s.UpdateJob(ctx, &stale))
	got, err := s.GetJob(ctx, "v", ids[1])
	must(t, err)
	if got.State != store.JobInProgress || got.StartedAt == nil || !got.StartedAt.Equal(start) ||
		len(got.SubTasks) != 1 || len(got.Warnings) != 1 || got.Warnings[0].Code != "VolumeSkipped" || got.ExternalRef == "" {
		t.Fatalf("job round trip: %+v", got)
	}
	if p := got.Progress; p == nil || p.ItemsDone != 7 || p.ItemsTotal != 9 || p.BytesDone != 100 || p.BytesTotal != 300 || p.Counts["configmaps"] != 2 {
		t.Fatalf("job progress round trip: %+v", got.Progress)
	}
	if q, err := s.GetJob(ctx, "v", ids[0]); err != nil || q.Progress != nil {
		t.Fatalf("job without progress: %+v, %v", q, err)
	}
	queued, err := s.ListJobs(ctx, store.JobFilter{State: store.JobQueued})
	must(t, err)
	if len(queued) != 3 {
		t.Fatalf("queued across vaults: %d", len(queued))
	}
	_, err = s.GetJob(ctx, "v", "nope")
	wantErr(t, err, store.ErrNotFound)
}

func testTokens(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	tok := &store.Token{Name: "admin", Hash: "h1", Principal: "admin"}
	must(t, s.CreateToken(ctx, tok))
	wantErr(t, s.CreateToken(ctx, &store.Token{Name: "dup", Hash: "h1"}), store.ErrAlreadyExists)
	got, err := s.GetTokenByHash(ctx, "h1")
	must(t, err)
	if got.ID != tok.ID || got.Principal != "admin" {
		t.Fatalf("token: %+v", got)
	}
	_, err = s.GetTokenByHash(ctx, "h2")
	wantErr(t, err, store.ErrNotFound)
	list, err := s.ListTokens(ctx)
	must(t, err)
	if len(list) != 1 {
		t.Fatalf("tokens: %d", len(list))
	}
	must(t, s.DeleteToken(ctx, tok.ID))
	wantErr(t, s.DeleteToken(ctx, tok.ID), store.ErrNotFound)
}

func testTriggers(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := &store.Trigger{Vault: "v", Instance: "i1", Schedule: "R/2026-01-01T00:00:00Z/PT4H", NextRun: t0}
	must(t, s.PutTrigger(ctx, tr))
	must(t, s.PutTrigger(ctx, &store.Trigger{Vault: "v", Instance: "i2", Schedule: "x", NextRun: t0.Add(time.Hour)}))
	due, err := s.DueTriggers(ctx, t0.Add(-time.Second))
	must(t, err)
	if len(due) != 0 {
		t.Fatalf("due before time: %d", len(due))
	}
	due, err = s.DueTriggers(ctx, t0)
	must(t, err)
	if len(due) != 1 || due[0].Instance != "i1" {
		t.Fatalf("due at time: %v", due)
	}
	cur := due[0]
	ok, err := s.ClaimTrigger(ctx, cur, t0.Add(4*time.Hour), &store.Job{Vault: "v", Type: store.JobScheduledBackup, Instance: "i1", TriggerTime: &t0, DedupKey: "v/i1@" + t0.String()})
	must(t, err)
	if !ok || !cur.NextRun.Equal(t0.Add(4*time.Hour)) || cur.LastRun == nil || !cur.LastRun.Equal(t0) {
		t.Fatalf("claim: ok=%v %+v", ok, cur)
	}
	// A second claim based on the old NextRun loses and creates no job.
	old := *due[0]
	old.NextRun = t0
	ok, err = s.ClaimTrigger(ctx, &old, t0.Add(4*time.Hour), &store.Job{Vault: "v", Type: store.JobScheduledBackup, Instance: "i1"})
	must(t, err)
	if ok {
		t.Fatal("stale claim succeeded")
	}
	jobs, err := s.ListJobs(ctx, store.JobFilter{Vault: "v"})
	must(t, err)
	if len(jobs) != 1 {
		t.Fatalf("jobs after claims: %d, want 1", len(jobs))
	}
	if jobs[0].TriggerTime == nil || !jobs[0].TriggerTime.Equal(t0) {
		t.Fatalf("job trigger time: %v", jobs[0].TriggerTime)
	}
	got, err := s.GetTrigger(ctx, "v", "i1")
	must(t, err)
	if !got.NextRun.Equal(t0.Add(4 * time.Hour)) {
		t.Fatalf("stored next run %v", got.NextRun)
	}
	// A claim whose job's dedup key exists advances the trigger anyway.
	ok, err = s.ClaimTrigger(ctx, got, t0.Add(8*time.Hour), &store.Job{Vault: "v", Type: store.JobScheduledBackup, Instance: "i1", DedupKey: "v/i1@" + t0.String()})
	must(t, err)
	if ok {
		t.Fatal("claim with used dedup key reported a new job")
	}
	got, _ = s.GetTrigger(ctx, "v", "i1")
	if !got.NextRun.Equal(t0.Add(8 * time.Hour)) {
		t.Fatalf("trigger not advanced past spent slot: %v", got.NextRun)
	}
	// Put replaces.
	must(t, s.PutTrigger(ctx, &store.Trigger{Vault: "v", Instance: "i1", Schedule: "y", NextRun: t0}))
	got, _ = s.GetTrigger(ctx, "v", "i1")
	if got.Schedule != "y" || !got.NextRun.Equal(t0) {
		t.Fatalf("put did not replace: %+v", got)
	}
	must(t, s.DeleteTrigger(ctx, "v", "i1"))
	_, err = s.GetTrigger(ctx, "v", "i1")
	wantErr(t, err, store.ErrNotFound)
}

// testConcurrentClaims races many claimers, on two handles, for the same
// slots: every slot must yield exactly one job.
func testConcurrentClaims(t *testing.T, s store.Store, reopen func(*testing.T) store.Store) {
	handles := []store.Store{s}
	if reopen != nil {
		handles = append(handles, reopen(t))
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	must(t, s.PutTrigger(ctx, &store.Trigger{Vault: "v", Instance: "i", Schedule: "s", NextRun: t0}))
	const slots, workers = 10, 6
	var wins atomic.Int64
	for slot := 0; slot < slots; slot++ {
		at := t0.Add(time.Duration(slot) * time.Hour)
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(h store.Store) {
				defer wg.Done()
				tr := &store.Trigger{Vault: "v", Instance: "i", NextRun: at}
				ok, err := h.ClaimTrigger(ctx, tr, at.Add(time.Hour), &store.Job{Vault: "v", Type: store.JobScheduledBackup, Instance: "i", TriggerTime: &at})
				if err != nil {
					t.Errorf("claim: %v", err)
				}
				if ok {
					wins.Add(1)
				}
			}(handles[w%len(handles)])
		}
		wg.Wait()
	}
	if wins.Load() != slots {
		t.Fatalf("%d successful claims for %d slots", wins.Load(), slots)
	}
	jobs, err := s.ListJobs(ctx, store.JobFilter{Vault: "v"})
	must(t, err)
	if len(jobs) != slots {
		t.Fatalf("%d jobs for %d slots", len(jobs), slots)
	}
}

// testConcurrentUpdates: of N writers starting from one version, one wins.
func testConcurrentUpdates(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	v := &store.Vault{Name: "race"}
	must(t, s.CreateVault(ctx, v))
	var wg sync.WaitGroup
	var ok, conflicts atomic.Int64
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := *v
			c.Description = fmt.Sprint(i)
			err := s.UpdateVault(ctx, &c)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrConflict):
				conflicts.Add(1)
			default:
				t.Errorf("update: %v", err)
			}
		}(i)
	}
	wg.Wait()
	if ok.Load() != 1 || conflicts.Load() != 7 {
		t.Fatalf("ok=%d conflicts=%d, want 1 and 7", ok.Load(), conflicts.Load())
	}
}

func testPersistence(t *testing.T, s store.Store, reopen func(*testing.T) store.Store) {
	if reopen == nil {
		t.Skip("implementation has no second handle")
	}
	must(t, s.CreateVault(ctx, &store.Vault{Name: "kept"}))
	s2 := reopen(t)
	if _, err := s2.GetVault(ctx, "kept"); err != nil {
		t.Fatalf("second handle: %v", err)
	}
}

func testRoleAssignments(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	a := &store.RoleAssignment{Principal: "alice", Role: "Reader", Scope: "/vaults/v", CreatedBy: "admin"}
	must(t, s.CreateRoleAssignment(ctx, a))
	if a.ID == "" || a.CreatedAt.IsZero() {
		t.Fatalf("assignment not filled: %+v", a)
	}
	wantErr(t, s.CreateRoleAssignment(ctx, &store.RoleAssignment{Principal: "alice", Role: "Reader", Scope: "/vaults/v"}), store.ErrAlreadyExists)
	must(t, s.CreateRoleAssignment(ctx, &store.RoleAssignment{Principal: "alice", Role: "Owner", Scope: "/"}))
	must(t, s.CreateRoleAssignment(ctx, &store.RoleAssignment{Principal: "bob", Role: "Reader", Scope: "/vaults/v"}))
	all, err := s.ListRoleAssignments(ctx, store.RoleAssignmentFilter{})
	must(t, err)
	mine, err := s.ListRoleAssignments(ctx, store.RoleAssignmentFilter{Principal: "alice"})
	must(t, err)
	here, err := s.ListRoleAssignments(ctx, store.RoleAssignmentFilter{Scope: "/vaults/v"})
	must(t, err)
	if len(all) != 3 || len(mine) != 2 || len(here) != 2 {
		t.Fatalf("list: all %d, alice %d, /vaults/v %d", len(all), len(mine), len(here))
	}
	got, err := s.GetRoleAssignment(ctx, a.ID)
	must(t, err)
	if got.Principal != "alice" || got.Role != "Reader" || got.Scope != "/vaults/v" || got.CreatedBy != "admin" {
		t.Fatalf("get: %+v", got)
	}
	must(t, s.DeleteRoleAssignment(ctx, a.ID))
	wantErr(t, s.DeleteRoleAssignment(ctx, a.ID), store.ErrNotFound)
	_, err = s.GetRoleAssignment(ctx, a.ID)
	wantErr(t, err, store.ErrNotFound)
}

func testClusters(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	exp := time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)
	c := &store.Cluster{Name: "prod-1", Server: "https://10.0.0.1:6443", CAData: []byte("-----BEGIN CERTIFICATE-----\n"),
		Namespace: "arca-system", ServiceAccount: "arca-vault-v", Token: "tok1", TokenExpiresAt: &exp, State: store.ClusterConnected}
	must(t, s.CreateCluster(ctx, c))
	wantErr(t, s.CreateCluster(ctx, &store.Cluster{Name: "prod-1"}), store.ErrAlreadyExists)
	got, err := s.GetCluster(ctx, "prod-1")
	must(t, err)
	if string(got.CAData) != string(c.CAData) || got.Token != "tok1" || !got.TokenExpiresAt.Equal(exp) || got.Version != 1 {
		t.Fatalf("get: %+v", got)
	}
	got.Token, got.State = "tok2", store.ClusterRevoked
	must(t, s.UpdateCluster(ctx, got))
	stale := *c
	stale.Token = "old"
	wantErr(t, s.UpdateCluster(ctx, &stale), store.ErrConflict)
	list, err := s.ListClusters(ctx)
	must(t, err)
	if len(list) != 1 || list[0].Token != "tok2" || list[0].State != store.ClusterRevoked || list[0].Version != 2 {
		t.Fatalf("list: %+v", list)
	}
	wantErr(t, s.DeleteCluster(ctx, "prod-1", 1), store.ErrConflict)
	must(t, s.DeleteCluster(ctx, "prod-1", 0))
	_, err = s.GetCluster(ctx, "prod-1")
	wantErr(t, err, store.ErrNotFound)
}

// testPages walks policies and instances page by page: every record once,
// in name order, other vaults and (for instances) other policies left out.
func testPages(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ret := json.RawMessage(`{"default":{"duration":"P7D","datastore":"operational"}}`)
	var want []string
	for i := 0; i < 7; i++ {
		// Created out of order: pages follow names, not insertion.
		name := fmt.Sprintf("p%d", (i*3)%7)
		want = append(want, name)
		must(t, s.CreatePolicy(ctx, &store.Policy{Vault: "v", Name: name, Schedule: "0 2 * * *", Retention: ret}))
		must(t, s.CreateInstance(ctx, &store.Instance{Vault: "v", Name: "i-" + name, Cluster: "c", Policy: []string{"a", "b"}[i%2]}))
	}
	must(t, s.CreatePolicy(ctx, &store.Policy{Vault: "other", Name: "p0x", Schedule: "0 2 * * *", Retention: ret}))
	must(t, s.CreateInstance(ctx, &store.Instance{Vault: "other", Name: "i-p0x", Cluster: "c", Policy: "a"}))
	slices.Sort(want)

	var got []string
	var pages int
	for p := (store.Page{Limit: 3}); ; pages++ {
		ps, err := s.ListPoliciesPage(ctx, "v", p)
		must(t, err)
		for _, x := range ps {
			got = append(got, x.Name)
		}
		if len(ps) < p.Limit {
			break
		}
		p.After = ps[len(ps)-1].Name
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || pages != 2 {
		t.Fatalf("policies by pages of 3: %v in %d full pages, want %v in 2", got, pages, want)
	}
	all, err := s.ListPoliciesPage(ctx, "v", store.Page{})
	must(t, err)
	if len(all) != 7 {
		t.Fatalf("zero page: %d policies, want all 7", len(all))
	}
	rest, err := s.ListPoliciesPage(ctx, "v", store.Page{After: want[4]})
	must(t, err)
	if len(rest) != 2 || rest[0].Name != want[5] {
		t.Fatalf("after %s without limit: %d policies", want[4], len(rest))
	}

	got = nil
	for p := (store.Page{Limit: 2}); ; {
		ins, err := s.ListInstancesPage(ctx, "v", "a", p)
		must(t, err)
		for _, x := range ins {
			if x.Policy != "a" || x.Vault != "v" {
				t.Fatalf("instance page holds %+v", x)
			}
			got = append(got, x.Name)
		}
		if len(ins) < p.Limit {
			break
		}
		p.After = ins[len(ins)-1].Name
	}
	byPolicy, err := s.ListInstances(ctx, "v", "a")
	must(t, err)
	var names []string
	for _, x := range byPolicy {
		names = append(names, x.Name)
	}
	if len(got) != 4 || fmt.Sprint(got) != fmt.Sprint(names) {
		t.Fatalf("instances of policy a by pages of 2: %v, want %v", got, names)
	}
}

// testJobsOfAnInstance: the newest jobs of one instance among many
// interleaved ones (the query index jobs_instance serves) are that
// instance's and no other's, newest first, the limit honoured.
func testJobsOfAnInstance(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	for i := 0; i < 60; i++ {
		vault := "v"
		if i%10 == 9 {
			vault = "other"
		}
		must(t, s.CreateJob(ctx, &store.Job{Vault: vault, Type: store.JobScheduledBackup, Instance: fmt.Sprintf("i%d", i%4)}))
	}
	all, err := s.ListJobs(ctx, store.JobFilter{Vault: "v", Instance: "i1"})
	must(t, err)
	// i%4 == 1 for 15 of the 60; i%10 == 9 sends i = 9, 29, 49 to "other".
	if len(all) != 12 {
		t.Fatalf("jobs of v/i1: %d, want 12", len(all))
	}
	for k, j := range all {
		if j.Vault != "v" || j.Instance != "i1" {
			t.Fatalf("jobs of v/i1 hold %s/%s", j.Vault, j.Instance)
		}
		if k > 0 && j.CreatedAt.After(all[k-1].CreatedAt) {
			t.Fatalf("jobs of v/i1 not newest first: %v after %v", j.CreatedAt, all[k-1].CreatedAt)
		}
	}
	newest, err := s.ListJobs(ctx, store.JobFilter{Vault: "v", Instance: "i1", Limit: 5})
	must(t, err)
	if len(newest) != 5 {
		t.Fatalf("limit 5: %d jobs", len(newest))
	}
	for k := range newest {
		if newest[k].ID != all[k].ID {
			t.Fatalf("newest 5 of v/i1: job %d is %s, want %s", k, newest[k].ID, all[k].ID)
		}
	}
}
