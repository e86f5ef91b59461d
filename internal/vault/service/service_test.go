package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/retention"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

var ctx = context.Background()

type env struct {
	svc    *service.Service
	st     store.Store
	runner *jobs.Runner
	clk    *clock.Fake
	jobs   []*store.Job // OnJob calls
}

func setup(t *testing.T) *env {
	t.Helper()
	return setupOn(t, func(now func() time.Time) (store.Store, error) {
		return sqlite.Open(ctx, filepath.Join(t.TempDir(), "vault.db"), now)
	})
}

// setupOn is setup on the store open returns (guard_test.go runs the
// protection scenarios on PostgreSQL too).
func setupOn(t *testing.T, open func(now func() time.Time) (store.Store, error)) *env {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC))
	st, err := open(clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ret := &retention.Engine{Store: st, Clock: clk}
	e := &env{st: st, clk: clk, runner: &jobs.Runner{Store: st, Clock: clk, Retention: ret, Drivers: jobs.DriverMap{}}}
	e.svc = &service.Service{Store: st, Clock: clk, Retention: ret, Runner: e.runner,
		OnJob: func(j *store.Job) { e.jobs = append(e.jobs, j) }}
	return e
}

// trust gives the identities acting for vault v and in its clusters what
// backups and restores need (authz_test.go tests them without).
func (e *env) trust(t *testing.T) {
	t.Helper()
	for _, a := range [][2]string{{"vault:v", "Reader"}, {"extension:prod", "Storage Contributor"}, {"extension:dr", "Storage Contributor"}} {
		if _, err := e.svc.AssignRole(ctx, "admin", a[0], a[1], "/"); err != nil {
			t.Fatal(err)
		}
	}
}

// wantKind checks that err is an operation error of kind and code.
func wantKind(t *testing.T, err error, kind service.Kind, code string) *service.Error {
	t.Helper()
	e := service.Classify(err)
	if e == nil || e.Kind != kind || e.Code != code {
		t.Fatalf("want %s/%s, got %#v (%v)", kind, code, e, err)
	}
	return e
}

func daily() service.PolicySpec {
	return service.PolicySpec{Name: "daily", Schedule: "R/2026-01-01T02:00:00+00:00/P1D",
		Retention: policy.RetentionSpec{Default: &policy.RuleSpec{Duration: "P7D"}}}
}

func instance(name string) service.InstanceSpec {
	return service.InstanceSpec{Name: name, Cluster: "prod", Policy: "daily", StorageLocation: "file:///backups"}
}

// withInstance makes vault v, policy daily and a protected instance shop.
func withInstance(t *testing.T, e *env) *store.Instance {
	t.Helper()
	e.trust(t)
	if _, err := e.svc.CreateVault(ctx, "v", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreatePolicy(ctx, "v", daily()); err != nil {
		t.Fatal(err)
	}
	in, err := e.svc.CreateInstance(ctx, "", "v", instance("shop"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func addPoints(t *testing.T, e *env, n int) {
	t.Helper()
	for i := range n {
		rp := &store.RecoveryPoint{Vault: "v", ID: "rp-" + string(rune('a'+i)), Instance: "shop", Time: e.clk.Now().Add(-time.Duration(i) * time.Hour),
			Tag: "default", Datastore: policy.Operational, State: store.RPAvailable}
		if err := e.st.CreateRecoveryPoint(ctx, rp); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVaultErrors(t *testing.T) {
	e := setup(t)
	_, err := e.svc.GetVault(ctx, "nope")
	wantKind(t, err, service.NotFound, "NotFound")
	_, err = e.svc.CreateVault(ctx, "Bad_Name", "")
	if ie := wantKind(t, err, service.Invalid, "InvalidName"); ie.Field != "name" || ie.Fix == "" || len(ie.Fields()) != 1 {
		t.Fatalf("invalid name names no field and fix: %+v", ie)
	}
	_, err = e.svc.CreateVault(ctx, "v", strings.Repeat("x", 1025))
	wantKind(t, err, service.Invalid, "InvalidValue")
	v, err := e.svc.CreateVault(ctx, "v", "first")
	if err != nil || v.Version != 1 {
		t.Fatal(v, err)
	}
	_, err = e.svc.CreateVault(ctx, "v", "")
	wantKind(t, err, service.Conflict, "AlreadyExists")
	if v, err = e.svc.UpdateVault(ctx, "v", 1, service.VaultUpdate{Description: ptr("second")}); err != nil || v.Version != 2 || v.Description != "second" {
		t.Fatal(v, err)
	}
	_, err = e.svc.UpdateVault(ctx, "v", 1, service.VaultUpdate{Description: ptr("third")})
	wantKind(t, err, service.PreconditionFailed, "PreconditionFailed")
	_, err = e.svc.UpdateVault(ctx, "v", 0, service.VaultUpdate{Name: "w"})
	wantKind(t, err, service.Invalid, "ImmutableField")
	if _, err := e.svc.CreatePolicy(ctx, "v", daily()); err != nil {
		t.Fatal(err)
	}
	wantKind(t, e.svc.DeleteVault(ctx, "v", 0), service.Conflict, "VaultNotEmpty")
	if err := e.svc.DeletePolicy(ctx, "v", "daily", 0); err != nil {
		t.Fatal(err)
	}
	// A stale version named by the caller fails in the store too.
	wantKind(t, e.svc.DeleteVault(ctx, "v", 1), service.PreconditionFailed, "PreconditionFailed")
	if err := e.svc.DeleteVault(ctx, "v", 2); err != nil {
		t.Fatal(err)
	}
}

func TestPolicyAndInstanceRules(t *testing.T) {
	e := setup(t)
	withInstance(t, e)
	bad := daily()
	bad.Name, bad.Schedule = "bad", "every day"
	_, err := e.svc.CreatePolicy(ctx, "v", bad)
	if ie := wantKind(t, err, service.Invalid, "InvalidPolicy"); len(ie.Fields()) == 0 {
		t.Fatalf("policy error names no field: %+v", ie)
	}
	wantKind(t, e.svc.DeletePolicy(ctx, "v", "daily", 0), service.Conflict, "PolicyInUse")

	in := instance("other")
	in.Policy = "missing"
	_, err = e.svc.CreateInstance(ctx, "", "v", in, nil)
	if ie := wantKind(t, err, service.Invalid, "UnknownReference"); ie.Field != "policy" {
		t.Fatalf("unknown policy: %+v", ie)
	}
	in = instance("other")
	in.StorageLocation = "ftp://x"
	_, err = e.svc.CreateInstance(ctx, "", "v", in, nil)
	wantKind(t, err, service.Invalid, "InvalidStorageLocation")

	// Prerequisites refuse creation: nothing is stored.
	refused := &service.Error{Kind: service.ChecksFailed, Code: "ValidationFailed", Report: "report"}
	_, err = e.svc.CreateInstance(ctx, "", "v", instance("other"), func(context.Context, *store.Instance) error { return refused })
	if ce := wantKind(t, err, service.ChecksFailed, "ValidationFailed"); ce.Report != "report" {
		t.Fatal("report lost")
	}
	_, err = e.svc.GetInstance(ctx, "v", "other")
	wantKind(t, err, service.NotFound, "NotFound")

	// Created instances are protected: their schedule is armed.
	if _, err := e.st.GetTrigger(ctx, "v", "shop"); err != nil {
		t.Fatalf("no trigger for a new instance: %v", err)
	}
	wantKind(t, e.svc.DeleteInstance(ctx, "v", "shop", 0), service.Conflict, "ProtectionActive")
	_, err = e.svc.UpdateInstance(ctx, "", "v", "shop", 0, service.InstanceSpec{Cluster: "elsewhere", Policy: "daily", StorageLocation: "file:///b"})
	wantKind(t, err, service.Invalid, "ImmutableField")
	_, err = e.svc.ResumeProtection(ctx, "v", "shop", 0)
	wantKind(t, err, service.Conflict, "NotStopped")
}

func TestBackupNowAndRestore(t *testing.T) {
	e := setup(t)
	withInstance(t, e)
	_, err := e.svc.BackupNow(ctx, "", "v", "shop", jobs.BackupParams{Retention: "P1H"})
	if ie := wantKind(t, err, service.Invalid, "InvalidValue"); ie.Field != "retention" {
		t.Fatalf("retention: %+v", ie)
	}
	j, err := e.svc.BackupNow(ctx, "", "v", "shop", jobs.BackupParams{Retention: "P30D"})
	if err != nil || j.State != store.JobQueued || j.Type != store.JobOnDemandBackup || len(e.jobs) != 1 {
		t.Fatal(j, err, e.jobs)
	}
	_, err = e.svc.StartRestore(ctx, "", "v", jobs.RestoreParams{RecoveryPoint: "nope", TargetCluster: "dr"})
	if ie := wantKind(t, err, service.Invalid, "UnknownReference"); ie.Field != "recoveryPoint" {
		t.Fatalf("unknown point: %+v", ie)
	}
	addPoints(t, e, 1)
	_, err = e.svc.StartRestore(ctx, "", "v", jobs.RestoreParams{RecoveryPoint: "rp-a", TargetCluster: "dr", Criteria: json.RawMessage(`{"bogus":1}`)})
	wantKind(t, err, service.Invalid, "InvalidRestoreCriteria")
	if j, err = e.svc.StartRestore(ctx, "", "v", jobs.RestoreParams{RecoveryPoint: "rp-a", TargetCluster: "dr"}); err != nil || j.Type != store.JobRestore {
		t.Fatal(j, err)
	}
	_, err = e.svc.ListJobs(ctx, store.JobFilter{Vault: "v"}, "0")
	wantKind(t, err, service.Invalid, "InvalidValue")
	if js, err := e.svc.ListJobs(ctx, store.JobFilter{Vault: "v"}, "1"); err != nil || len(js) != 1 {
		t.Fatal(js, err)
	}
	if _, err := e.svc.CancelJob(ctx, "v", j.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.CancelJob(ctx, "v", j.ID)
	wantKind(t, err, service.Conflict, "JobFinished")

	if _, _, err := e.svc.StopProtection(ctx, "v", "shop", 0, store.StopRetainPerPolicy); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.BackupNow(ctx, "", "v", "shop", jobs.BackupParams{})
	wantKind(t, err, service.Conflict, "ProtectionStopped")
	_, _, err = e.svc.StopProtection(ctx, "v", "shop", 0, store.StopRetainPerPolicy)
	wantKind(t, err, service.Conflict, "AlreadyStopped")
	_, _, err = e.svc.StopProtection(ctx, "v", "shop", 0, "pause")
	wantKind(t, err, service.Invalid, "InvalidStopMode")
}

// Stop protection with delete-data returns a queued job and deletes
// nothing itself; the job runner deletes every point.
func TestDeleteDataIsAJob(t *testing.T) {
	e := setup(t)
	withInstance(t, e)
	noSoftDelete(t, e) // the deletion job at once; guard_test.go tests soft delete
	addPoints(t, e, 3)
	in, j, err := e.svc.StopProtection(ctx, "v", "shop", 0, store.StopDeleteData)
	if err != nil || j == nil || j.State != store.JobQueued || j.Type != store.JobRetention || in.StopMode != store.StopDeleteData {
		t.Fatal(in, j, err)
	}
	if _, err := e.st.GetTrigger(ctx, "v", "shop"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("trigger kept after stop: %v", err)
	}
	if rps, _ := e.svc.ListRecoveryPoints(ctx, "v", "shop"); len(rps) != 3 {
		t.Fatalf("the operation deleted %d points itself", 3-len(rps))
	}
	wantKind(t, e.svc.DeleteInstance(ctx, "v", "shop", 0), service.Conflict, "RecoveryPointsRemain")
	if err := e.runner.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	done, err := e.svc.GetJob(ctx, "v", j.ID)
	if err != nil || done.State != store.JobCompleted {
		t.Fatal(done, err)
	}
	var res retention.Result
	if err := json.Unmarshal(done.Params, &res); err != nil || len(res.Deleted) != 3 {
		t.Fatalf("job result: %s %v", done.Params, err)
	}
	if rps, _ := e.svc.ListRecoveryPoints(ctx, "v", "shop"); len(rps) != 0 {
		t.Fatalf("%d points left", len(rps))
	}
	if err := e.svc.DeleteInstance(ctx, "v", "shop", 0); err != nil {
		t.Fatal(err)
	}
}

// A delete-data job that finds protection resumed deletes nothing.
func TestDeleteDataCancelledByResume(t *testing.T) {
	e := setup(t)
	withInstance(t, e)
	noSoftDelete(t, e) // the deletion job at once; guard_test.go tests soft delete
	addPoints(t, e, 2)
	_, j, err := e.svc.StopProtection(ctx, "v", "shop", 0, store.StopDeleteData)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ResumeProtection(ctx, "v", "shop", 0); err != nil {
		t.Fatal(err)
	}
	if err := e.runner.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	done, _ := e.svc.GetJob(ctx, "v", j.ID)
	if done.State != store.JobCancelled || len(done.Warnings) != 1 || done.Warnings[0].Code != "ProtectionChanged" {
		t.Fatalf("job: %+v", done)
	}
	if rps, _ := e.svc.ListRecoveryPoints(ctx, "v", "shop"); len(rps) != 2 {
		t.Fatalf("a cancelled delete-data removed points: %d left", len(rps))
	}
}

func TestSync(t *testing.T) {
	e := setup(t)
	withInstance(t, e)
	_, err := e.svc.SyncRecoveryPoints(ctx, "v", "shop", service.SyncRequest{RecoveryPoints: make([]service.SyncPoint, service.MaxSyncPoints+1)})
	wantKind(t, err, service.TooLarge, "TooManyRecoveryPoints")
	// Recovery points are named by full repository ID only, and only
	// those tagged with the vault and instance synced are taken: nothing
	// else is created.
	r1, r2 := strings.Repeat("1", 64), strings.Repeat("2", 64)
	for _, bad := range []string{"abc", "latest", r1[:12], strings.Repeat("AB", 32)} {
		_, err = e.svc.SyncRecoveryPoints(ctx, "v", "shop", service.SyncRequest{RecoveryPoints: []service.SyncPoint{
			{RepositoryID: bad, Vault: "v", Instance: "shop", Time: e.clk.Now()}}})
		if ie := wantKind(t, err, service.Invalid, "InvalidRecoveryPointID"); ie.Field != "recoveryPoints[0].repositoryId" ||
			!strings.Contains(ie.Message, "64 lowercase hex characters") || !strings.Contains(ie.Message, "latest and prefixes are not accepted") {
			t.Fatalf("sync of %q: %+v", bad, ie)
		}
	}
	_, err = e.svc.SyncRecoveryPoints(ctx, "v", "shop", service.SyncRequest{RecoveryPoints: []service.SyncPoint{
		{RepositoryID: r1, Vault: "v", Instance: "web", Time: e.clk.Now()}}})
	if ie := wantKind(t, err, service.Invalid, "RecoveryPointOfAnotherInstance"); !strings.Contains(ie.Message, `instance "web", not vault "v", instance "shop"`) {
		t.Fatalf("another instance's point: %+v", ie)
	}
	if rps, _ := e.svc.ListRecoveryPoints(ctx, "v", "shop"); len(rps) != 0 {
		t.Fatalf("refused syncs created points: %+v", rps)
	}
	pts := []service.SyncPoint{{RepositoryID: r2, Vault: "v", Instance: "shop", Time: e.clk.Now()},
		{RepositoryID: r1, Vault: "v", Instance: "shop", Time: e.clk.Now().Add(-time.Hour), JobID: "j1"}}
	res, err := e.svc.SyncRecoveryPoints(ctx, "v", "shop", service.SyncRequest{RecoveryPoints: pts})
	if err != nil || len(res.Created) != 2 || res.Created[0].ID != jobs.RecoveryPointID("j1") || res.Created[0].ExpiresAt == nil {
		t.Fatalf("sync: %+v %v", res, err)
	}
	if res, err = e.svc.SyncRecoveryPoints(ctx, "v", "shop", service.SyncRequest{RecoveryPoints: pts}); err != nil || res.Existing != 2 || len(res.Created) != 0 {
		t.Fatalf("second sync: %+v %v", res, err)
	}
	// Two points whose repository IDs share a long prefix keep their
	// whole IDs: a truncated ID would make the second one collide with
	// the first and be counted as existing.
	long := strings.Repeat("ab", 32) // a 64-hex repository ID
	pts = []service.SyncPoint{{RepositoryID: long, Vault: "v", Instance: "shop", Time: e.clk.Now().Add(time.Hour)},
		{RepositoryID: long[:40] + strings.Repeat("cd", 12), Vault: "v", Instance: "shop", Time: e.clk.Now().Add(2 * time.Hour)}}
	res, err = e.svc.SyncRecoveryPoints(ctx, "v", "shop", service.SyncRequest{RecoveryPoints: pts})
	if err != nil || len(res.Created) != 2 || res.Created[0].ID != "rp-repo-"+long || res.Created[1].ID != "rp-repo-"+pts[1].RepositoryID {
		t.Fatalf("sync of long IDs: %+v %v; want both created with IDs rp-repo-<whole repository ID>", res, err)
	}
	if rp, err := e.st.GetRecoveryPoint(ctx, "v", "rp-repo-"+long); err != nil || rp.RepoID != long {
		t.Fatalf("point by full ID: %+v %v", rp, err)
	}
}

// Every token expires: without a lifetime it gets the vault's default,
// and one over the vault's maximum is refused with the limit and the fix.
func TestTokenLifetimes(t *testing.T) {
	e := setup(t)
	now := e.clk.Now()
	_, def, err := e.svc.CreateToken(ctx, "ci", "", "")
	if err != nil || def.ExpiresAt == nil || !def.ExpiresAt.Equal(now.AddDate(0, 0, 30)) {
		t.Fatalf("token without a lifetime: %+v %v; want it to expire after the default P30D", def, err)
	}
	_, _, err = e.svc.CreateToken(ctx, "forever", "", "P2Y")
	ie := wantKind(t, err, service.Invalid, "TokenLifetimeTooLong")
	if ie.Field != "expiresIn" || !strings.Contains(ie.Message, "P1Y") || !strings.Contains(ie.Message, "--token-max-lifetime") {
		t.Fatalf("too long a lifetime: %+v; want the field, the maximum and the flag that raises it", ie)
	}
	if ts, _ := e.st.ListTokens(ctx); len(ts) != 1 {
		t.Fatalf("a refused token was stored: %d tokens", len(ts))
	}
	// A vault with other limits.
	e.svc.TokenLifetime, e.svc.TokenMaxLifetime = policy.Duration{Days: 7}, policy.Duration{Days: 90}
	_, short, err := e.svc.CreateToken(ctx, "short", "", "")
	if err != nil || !short.ExpiresAt.Equal(now.AddDate(0, 0, 7)) {
		t.Fatalf("default under --token-lifetime P7D: %+v %v", short, err)
	}
	_, _, err2 := e.svc.CreateToken(ctx, "long", "", "P91D")
	wantKind(t, err2, service.Invalid, "TokenLifetimeTooLong")
	if _, max, err := e.svc.CreateToken(ctx, "max", "", "P90D"); err != nil || !max.ExpiresAt.Equal(now.AddDate(0, 0, 90)) {
		t.Fatalf("the maximum itself: %+v %v", max, err)
	}
	if err := service.CheckTokenLifetimes(policy.Duration{Days: 60}, policy.Duration{Days: 30}); err == nil || !strings.Contains(err.Error(), "--token-max-lifetime") {
		t.Fatalf("default over maximum: %v", err)
	}
}

// Classify keeps every kind of error an operation meets apart.
func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		kind service.Kind
		code string
	}{
		{store.ErrNotFound, service.NotFound, "NotFound"},
		{store.ErrAlreadyExists, service.Conflict, "AlreadyExists"},
		{&store.ConflictError{Kind: "vault", Key: "v", Expected: 1}, service.Conflict, "ConcurrentModification"},
		{&policy.FieldError{Field: "f", Reason: "r"}, service.Invalid, "InvalidValue"},
		{errors.New("disk on fire"), service.Internal, "InternalError"},
		{service.ForbiddenTo("vaults/write", "/vaults/v", "no"), service.Forbidden, "Forbidden"},
	}
	for _, c := range cases {
		wantKind(t, c.err, c.kind, c.code)
	}
	if e := service.Classify(errors.New("disk on fire")); strings.Contains(e.Message, "disk") || e.Err == nil {
		t.Fatalf("an internal error shows its cause or loses it: %+v", e)
	}
}

// The last Owner at / with a usable token can lose neither the
// assignment nor the token.
func TestAccessKeepsARootOwner(t *testing.T) {
	e := setup(t)
	_, err := e.svc.AssignRole(ctx, "admin", "user:ann", "Owner", "/nowhere")
	wantKind(t, err, service.Invalid, "InvalidScope")
	_, err = e.svc.AssignRole(ctx, "admin", "user:ann", "Boss", "/")
	wantKind(t, err, service.Invalid, "UnknownRole")
	_, err = e.svc.AssignRole(ctx, "admin", "user ann", "Owner", "/")
	wantKind(t, err, service.Invalid, "InvalidPrincipal")
	a, err := e.svc.AssignRole(ctx, "admin", "user:ann", "Owner", "/")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.AssignRole(ctx, "admin", "user:ann", "Owner", "/")
	wantKind(t, err, service.Conflict, "AlreadyExists")
	// Owner at / may do anything below it.
	if ok, err := e.svc.Can(ctx, "user:ann", "vaults/write", "/vaults/v"); err != nil || !ok {
		t.Fatalf("Owner at / cannot write a vault: %v %v", ok, err)
	}
	tok, tk, err := e.svc.CreateToken(ctx, "ann", "user:ann", "P1D")
	if err != nil || !strings.HasPrefix(tok, service.TokenPrefix) || tk.Hash != service.HashToken(tok) || tk.ExpiresAt == nil {
		t.Fatal(tok, tk, err)
	}
	_, _, err = e.svc.CreateToken(ctx, "x", "", "soon")
	wantKind(t, err, service.Invalid, "InvalidValue")
	_, err = e.svc.DeleteToken(ctx, tk.ID)
	wantKind(t, err, service.Conflict, "LastAdminToken")
	wantKind(t, e.svc.RemoveRoleAssignment(ctx, a), service.Conflict, "LastRootOwner")
	// Another Owner at / with a token: ann's token and assignment may go.
	if _, err := e.svc.AssignRole(ctx, "admin", "user:bob", "Owner", "/"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.CreateToken(ctx, "bob", "user:bob", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.DeleteToken(ctx, tk.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RemoveRoleAssignment(ctx, a); err != nil {
		t.Fatal(err)
	}
	if as, err := e.svc.ListRoleAssignments(ctx, "", "/"); err != nil || len(as) != 1 || as[0].Principal != "user:bob" {
		t.Fatal(as, err)
	}
	if _, err := e.svc.Permissions(ctx, "user:ann", "bad"); err == nil {
		t.Fatal("bad scope accepted")
	}
	if err := service.Refused("user:bob", "vaults/read", "/vaults/v"); err.Kind != service.Forbidden || err.Action != "vaults/read" || err.Scope != "/vaults/v" {
		t.Fatalf("refusal: %+v", err)
	}
}

// Deleting an instance with its data is a job: the points go, then the
// instance.
func TestDeleteInstanceWithData(t *testing.T) {
	e := setup(t)
	withInstance(t, e)
	noSoftDelete(t, e) // the deletion job at once; guard_test.go tests soft delete
	addPoints(t, e, 2)
	_, err := e.svc.DeleteInstanceWithData(ctx, "v", "shop", 0)
	wantKind(t, err, service.Conflict, "ProtectionActive")
	if _, _, err := e.svc.StopProtection(ctx, "v", "shop", 0, store.StopRetainForever); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.DeleteInstanceWithData(ctx, "v", "shop", 1)
	wantKind(t, err, service.PreconditionFailed, "PreconditionFailed")
	j, err := e.svc.DeleteInstanceWithData(ctx, "v", "shop", 0)
	if err != nil || j.State != store.JobQueued || j.Type != store.JobRetention {
		t.Fatal(j, err)
	}
	if in, err := e.svc.GetInstance(ctx, "v", "shop"); err != nil || in.StopMode != store.StopDeleteData {
		t.Fatalf("instance before the job: %+v %v", in, err)
	}
	if err := e.runner.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if done, _ := e.svc.GetJob(ctx, "v", j.ID); done.State != store.JobCompleted {
		t.Fatalf("job: %+v", done)
	}
	_, err = e.svc.GetInstance(ctx, "v", "shop")
	wantKind(t, err, service.NotFound, "NotFound")
	if rps, _ := e.st.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: "v"}); len(rps) != 0 {
		t.Fatalf("%d points left", len(rps))
	}
}

func TestClusters(t *testing.T) {
	e := setup(t)
	reg := service.ClusterRegistration{Name: "prod", Server: "https://10.0.0.1:6443", Namespace: "arca-system", ServiceAccount: "arca-vault", Token: "t"}
	bad := reg
	bad.Server = "http://insecure"
	_, err := e.svc.RegisterCluster(ctx, bad)
	if ie := wantKind(t, err, service.Invalid, "InvalidValue"); ie.Field != "server" {
		t.Fatalf("server: %+v", ie)
	}
	bad = reg
	bad.Token = ""
	_, err = e.svc.RegisterCluster(ctx, bad)
	wantKind(t, err, service.Invalid, "MissingField")
	c, err := e.svc.RegisterCluster(ctx, reg)
	if err != nil || c.State != store.ClusterConnected {
		t.Fatal(c, err)
	}
	if !c.RegisteredAt.Equal(e.clk.Now()) || c.Renewals != 0 {
		t.Fatalf("registered at %v with %d renewals", c.RegisteredAt, c.Renewals)
	}
	c.State, c.Renewals = store.ClusterExpired, 7
	if err := e.st.UpdateCluster(ctx, c); err != nil {
		t.Fatal(err)
	}
	renamed := reg
	renamed.Name = "other"
	_, err = e.svc.UpdateCluster(ctx, "prod", 0, renamed)
	wantKind(t, err, service.Invalid, "ImmutableField")
	_, err = e.svc.UpdateCluster(ctx, "prod", 1, reg)
	wantKind(t, err, service.PreconditionFailed, "PreconditionFailed")
	e.clk.Advance(time.Hour)
	if c, err = e.svc.UpdateCluster(ctx, "prod", 2, reg); err != nil || c.State != store.ClusterConnected {
		t.Fatalf("renewal did not reconnect: %+v %v", c, err)
	}
	// The owner's new credential starts its bounded renewal over.
	if c, _ = e.st.GetCluster(ctx, "prod"); !c.RegisteredAt.Equal(e.clk.Now()) || c.Renewals != 0 {
		t.Fatalf("re-enabled: registered at %v with %d renewals; want now and none", c.RegisteredAt, c.Renewals)
	}
	if err := e.svc.DeleteCluster(ctx, "prod", 0); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.GetCluster(ctx, "prod")
	wantKind(t, err, service.NotFound, "NotFound")
}
