package service_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/retention"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/postgres"
)

func ptr[T any](v T) *T { return &v }

// noSoftDelete turns vault v's soft delete off: deletions queue their
// jobs at once (the behaviour the tests written before soft delete check).
func noSoftDelete(t *testing.T, e *env) {
	t.Helper()
	if _, err := e.svc.UpdateVault(ctx, "v", 0, service.VaultUpdate{SoftDeleteDays: ptr(0)}); err != nil {
		t.Fatal(err)
	}
}

func listed(t *testing.T, e *env, deleted string) []string {
	t.Helper()
	rps, err := e.svc.ListRecoveryPointsWith(ctx, "v", "shop", deleted)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, rp := range rps {
		ids = append(ids, rp.ID)
	}
	return ids
}

// runJobs runs the queued jobs and returns the result of job id.
func runJob(t *testing.T, e *env, id string) (*store.Job, retention.Result) {
	t.Helper()
	if err := e.runner.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	j, err := e.svc.GetJob(ctx, "v", id)
	if err != nil {
		t.Fatal(err)
	}
	var res retention.Result
	_ = json.Unmarshal(j.Params, &res)
	return j, res
}

// A deleted point is soft-deleted: hidden from the list (shown with
// deleted=only), not restorable, still counted in the vault's usage;
// undelete brings it back restorable. After the vault's period the purge
// queues the deletion job, and only then is the point removed.
func TestSoftDeleteAndUndeleteRestoreThePoint(t *testing.T) { softDeleteAndUndelete(t, setup(t)) }

func softDeleteAndUndelete(t *testing.T, e *env) {
	withInstance(t, e)
	for i, id := range []string{"rp-a", "rp-b", "rp-c"} { // newest first
		rp := &store.RecoveryPoint{Vault: "v", ID: id, Instance: "shop", Time: e.clk.Now().Add(-time.Duration(i) * time.Hour), Tag: "default", Bytes: 100}
		if err := e.st.CreateRecoveryPoint(ctx, rp); err != nil {
			t.Fatal(err)
		}
	}
	rp, j, err := e.svc.DeleteRecoveryPoint(ctx, "v", "rp-b", 0)
	if err != nil || j != nil || rp.State != store.RPSoftDeleted || rp.PurgeAt == nil ||
		!rp.PurgeAt.Equal(e.clk.Now().Add(store.DefaultSoftDeleteDays*24*time.Hour)) {
		t.Fatalf("delete in a vault with soft delete: %+v %v %v", rp, j, err)
	}
	if got := listed(t, e, ""); strings.Join(got, ",") != "rp-c,rp-a" {
		t.Fatalf("default list shows %v", got)
	}
	if got := listed(t, e, "only"); strings.Join(got, ",") != "rp-b" {
		t.Fatalf("deleted=only shows %v", got)
	}
	_, err = e.svc.CheckRestore(ctx, "v", jobs.RestoreParams{RecoveryPoint: "rp-b", TargetCluster: "prod"})
	wantKind(t, err, service.Invalid, service.CodeSoftDeleted)
	_, _, err = e.svc.DeleteRecoveryPoint(ctx, "v", "rp-b", 0)
	wantKind(t, err, service.Conflict, service.CodeSoftDeleted)
	u, err := e.svc.VaultUsage(ctx, "v")
	if err != nil || u.Bytes != 300 || u.SoftDeletedBytes != 100 || u.SoftDeletedRecoveryPoints != 1 {
		t.Fatalf("usage does not count the soft-deleted point: %+v %v", u, err)
	}

	back, err := e.svc.UndeleteRecoveryPoint(ctx, "v", "rp-b")
	if err != nil || back.State != store.RPAvailable || back.PurgeAt != nil {
		t.Fatalf("undelete: %+v %v", back, err)
	}
	if _, err := e.svc.CheckRestore(ctx, "v", jobs.RestoreParams{RecoveryPoint: "rp-b", TargetCluster: "prod"}); err != nil {
		t.Fatalf("undeleted point not restorable: %v", err)
	}
	_, err = e.svc.UndeleteRecoveryPoint(ctx, "v", "rp-b")
	wantKind(t, err, service.Conflict, service.CodeNotSoftDeleted)

	// Delete again; nothing is purged before the period is over.
	if _, _, err := e.svc.DeleteRecoveryPoint(ctx, "v", "rp-b", 0); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(store.DefaultSoftDeleteDays*24*time.Hour - time.Minute)
	if js, err := e.svc.PurgeSoftDeleted(ctx); err != nil || len(js) != 0 {
		t.Fatalf("purged before the period: %v %v", js, err)
	}
	e.clk.Advance(time.Minute)
	js, err := e.svc.PurgeSoftDeleted(ctx)
	if err != nil || len(js) != 1 || js[0].State != store.JobQueued {
		t.Fatalf("purge after the period: %v %v", js, err)
	}
	if got, _ := e.st.GetRecoveryPoint(ctx, "v", "rp-b"); got.State != store.RPDeleting {
		t.Fatalf("purged point is %s, want Deleting until its job runs", got.State)
	}
	if js, _ := e.svc.PurgeSoftDeleted(ctx); len(js) != 0 {
		t.Fatalf("a second pass queued %d more jobs", len(js))
	}
	done, res := runJob(t, e, js[0].ID)
	if done.State == store.JobFailed || strings.Join(res.Deleted, ",") != "rp-b" {
		t.Fatalf("purge job: %s %s", done.State, done.Params)
	}
	if got := listed(t, e, "include"); strings.Join(got, ",") != "rp-c,rp-a" {
		t.Fatalf("after the purge: %v", got)
	}
}

// Stopping protection with delete-data soft-deletes the instance and its
// points; undelete brings both back (stopped, kept forever). Deleting it
// with its data and letting the period pass deletes points and instance.
func TestSoftDeletedInstance(t *testing.T) { softDeletedInstance(t, setup(t)) }

func softDeletedInstance(t *testing.T, e *env) {
	withInstance(t, e)
	addPoints(t, e, 2)
	if _, _, err := e.svc.DeleteRecoveryPoint(ctx, "v", "rp-b", 0); err != nil { // deleted on its own first
		t.Fatal(err)
	}
	e.clk.Advance(time.Minute)
	in, j, err := e.svc.StopProtection(ctx, "v", "shop", 0, store.StopDeleteData)
	if err != nil || j != nil || in.ProtectionState != store.ProtectionSoftDeleted {
		t.Fatalf("stop delete-data with soft delete: %+v %v %v", in, j, err)
	}
	ins, _ := e.svc.ListInstances(ctx, "v", "", store.Page{})
	all, _ := e.svc.ListInstancesWith(ctx, "v", "", "include", store.Page{})
	if len(ins) != 0 || len(all) != 1 {
		t.Fatalf("lists: %d by default, %d with deleted=include", len(ins), len(all))
	}
	_, err = e.svc.UndeleteRecoveryPoint(ctx, "v", "rp-a")
	wantKind(t, err, service.Conflict, service.CodeInstanceSoftDeleted)
	_, err = e.svc.ResumeProtection(ctx, "v", "shop", 0)
	wantKind(t, err, service.Conflict, service.CodeInstanceSoftDeleted)
	wantKind(t, e.svc.DeleteVault(ctx, "v", 0), service.Conflict, "VaultNotEmpty")

	in, err = e.svc.UndeleteInstance(ctx, "v", "shop", 0)
	if err != nil || in.ProtectionState != store.ProtectionStopped || in.StopMode != store.StopRetainForever {
		t.Fatalf("undelete instance: %+v %v", in, err)
	}
	if got := listed(t, e, ""); strings.Join(got, ",") != "rp-a" {
		t.Fatalf("after undelete: %v (rp-b was deleted on its own and stays deleted)", got)
	}

	// Deleted with its data; purged after the period.
	j, err = e.svc.DeleteInstanceWithData(ctx, "v", "shop", 0)
	if err != nil || j != nil {
		t.Fatal(j, err)
	}
	e.clk.Advance(store.DefaultSoftDeleteDays * 24 * time.Hour)
	js, err := e.svc.PurgeSoftDeleted(ctx)
	if err != nil || len(js) != 1 {
		t.Fatalf("purge: %v %v", js, err)
	}
	done, res := runJob(t, e, js[0].ID)
	if done.State == store.JobFailed || len(res.Deleted) != 2 {
		t.Fatalf("purge job: %s %s", done.State, done.Params)
	}
	if _, err := e.svc.GetInstance(ctx, "v", "shop"); err == nil {
		t.Fatal("instance deleted with its data still exists after the purge")
	}
}

// An immutable vault refuses deleting points before they expire (on
// their own, with stop delete-data, with the instance) and shortening
// retention; locked, it cannot be disabled.
func TestImmutableVault(t *testing.T) { immutableVault(t, setup(t)) }

func immutableVault(t *testing.T, e *env) {
	withInstance(t, e)
	addPoints(t, e, 2)
	exp := e.clk.Now().Add(48 * time.Hour)
	if err := e.st.SetRecoveryPointExpiries(ctx, "v", map[string]*time.Time{"rp-a": &exp, "rp-b": nil}); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.UpdateVault(ctx, "v", 0, service.VaultUpdate{Immutability: ptr("frozen")})
	wantKind(t, err, service.Invalid, service.CodeInvalidImmutability)
	if v, err := e.svc.UpdateVault(ctx, "v", 0, service.VaultUpdate{Immutability: ptr(store.ImmutabilityUnlocked)}); err != nil || !v.Immutable() {
		t.Fatal(v, err)
	}
	_, _, err = e.svc.DeleteRecoveryPoint(ctx, "v", "rp-a", 0)
	wantKind(t, err, service.Conflict, service.CodeImmutableDelete)
	_, _, err = e.svc.DeleteRecoveryPoint(ctx, "v", "rp-b", 0) // no expiry: never before it
	wantKind(t, err, service.Conflict, service.CodeImmutableDelete)
	_, _, err = e.svc.StopProtection(ctx, "v", "shop", 0, store.StopDeleteData)
	wantKind(t, err, service.Conflict, service.CodeImmutableDelete)
	short := daily()
	short.Retention.Default.Duration = "P3D"
	_, err = e.svc.UpdatePolicy(ctx, "v", "daily", 0, short)
	wantKind(t, err, service.Conflict, service.CodeImmutableRetention)
	longer := daily()
	longer.Retention.Default.Duration = "P30D"
	if _, err := e.svc.UpdatePolicy(ctx, "v", "daily", 0, longer); err != nil {
		t.Fatalf("lengthening retention refused: %v", err)
	}
	// Moving the instance to a policy with shorter rules shortens too.
	weekly := short
	weekly.Name = "short"
	if _, err := e.svc.CreatePolicy(ctx, "v", weekly); err != nil {
		t.Fatal(err)
	}
	moved := instance("shop")
	moved.Policy = "short"
	_, err = e.svc.UpdateInstance(ctx, "", "v", "shop", 0, moved)
	wantKind(t, err, service.Conflict, service.CodeImmutableRetention)

	// Unlocked can be disabled; locked cannot.
	if _, err := e.svc.UpdateVault(ctx, "v", 0, service.VaultUpdate{Immutability: ptr(store.ImmutabilityDisabled)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.UpdateVault(ctx, "v", 0, service.VaultUpdate{Immutability: ptr(store.ImmutabilityLocked)}); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{store.ImmutabilityDisabled, store.ImmutabilityUnlocked} {
		_, err = e.svc.UpdateVault(ctx, "v", 0, service.VaultUpdate{Immutability: ptr(to)})
		wantKind(t, err, service.Conflict, service.CodeImmutabilityLocked)
	}
	// After it expires the point can go.
	e.clk.Advance(49 * time.Hour)
	if _, _, err := e.svc.DeleteRecoveryPoint(ctx, "v", "rp-a", 0); err != nil {
		t.Fatalf("deleting an expired point in an immutable vault: %v", err)
	}
}

// As alice, bob, … : the caller the HTTP server would record.
func as(p string) context.Context { return service.WithCaller(ctx, p) }

// With the resource guard on, a destructive operation is refused with a
// request ID until a second principal holding the Resource Guard
// Approver role (which the requester does not hold) approves it; then it
// passes once. Self-approval is refused, approvals expire, and request,
// approval and use are audited.
func TestResourceGuard(t *testing.T) { resourceGuard(t, setup(t)) }

func resourceGuard(t *testing.T, e *env) {
	var logs bytes.Buffer
	e.svc.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	withInstance(t, e)
	addPoints(t, e, 3)
	for _, a := range [][2]string{{"user:alice", rbac.BackupContributor}, {"user:carol", rbac.ResourceGuardApprover}, {"user:dave", rbac.ResourceGuardApprover}} {
		if _, err := e.svc.AssignRole(ctx, "admin", a[0], a[1], rbac.VaultScope("v")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.UpdateVault(as("user:alice"), "v", 0, service.VaultUpdate{ResourceGuard: ptr(true)}); err != nil {
		t.Fatal(err)
	}

	_, _, err := e.svc.DeleteRecoveryPoint(as("user:alice"), "v", "rp-a", 0)
	req := wantKind(t, err, service.Forbidden, service.CodeApprovalRequired)
	pending, _ := e.svc.ListApprovals(ctx, "v", store.ApprovalFilter{State: store.ApprovalPending})
	if len(pending) != 1 || !strings.Contains(req.Message, pending[0].ID) || pending[0].Requester != "user:alice" || pending[0].Target != "rp-a" {
		t.Fatalf("request: %v; listed %+v", req.Message, pending)
	}
	id := pending[0].ID
	_, _, err = e.svc.DeleteRecoveryPoint(as("user:alice"), "v", "rp-a", 0)
	if e := wantKind(t, err, service.Forbidden, service.CodeApprovalPending); !strings.Contains(e.Message, id) {
		t.Fatalf("pending names no request: %s", e.Message)
	}
	if rp, _ := e.st.GetRecoveryPoint(ctx, "v", "rp-a"); rp.State != store.RPAvailable {
		t.Fatalf("deleted before approval: %s", rp.State)
	}
	_, err = e.svc.DecideApproval(as("user:alice"), "v", id, true, "")
	wantKind(t, err, service.Forbidden, service.CodeSelfApproval)
	_, err = e.svc.DecideApproval(as("admin"), "v", id, true, "") // Owner, but no approver role
	wantKind(t, err, service.Forbidden, "Forbidden")
	a, err := e.svc.DecideApproval(as("user:carol"), "v", id, true, "ticket 42")
	if err != nil || a.State != store.ApprovalApproved || a.Approver != "user:carol" {
		t.Fatal(a, err)
	}
	_, err = e.svc.DecideApproval(as("user:dave"), "v", id, false, "")
	wantKind(t, err, service.Conflict, service.CodeApprovalDecided)

	// The approval lets alice's same operation through once.
	if rp, _, err := e.svc.DeleteRecoveryPoint(as("user:alice"), "v", "rp-a", 0); err != nil || rp.State != store.RPSoftDeleted {
		t.Fatalf("approved delete: %v %v", rp, err)
	}
	if a, _ := e.svc.GetApproval(ctx, "v", id); a.State != store.ApprovalUsed || a.UsedAt == nil {
		t.Fatalf("approval after use: %+v", a)
	}
	// Another point is another request; someone else's approval is not alice's.
	_, _, err = e.svc.DeleteRecoveryPoint(as("user:alice"), "v", "rp-b", 0)
	wantKind(t, err, service.Forbidden, service.CodeApprovalRequired)

	// Approvals expire.
	pending, _ = e.svc.ListApprovals(ctx, "v", store.ApprovalFilter{State: store.ApprovalPending})
	if _, err := e.svc.DecideApproval(as("user:dave"), "v", pending[0].ID, true, ""); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(service.DefaultApprovalLifetime + time.Minute)
	_, _, err = e.svc.DeleteRecoveryPoint(as("user:alice"), "v", "rp-b", 0)
	wantKind(t, err, service.Forbidden, service.CodeApprovalRequired) // a new request
	if a, _ := e.svc.GetApproval(ctx, "v", pending[0].ID); a.State != store.ApprovalExpired {
		t.Fatalf("expired approval shows %s", a.State)
	}
	if rp, _ := e.st.GetRecoveryPoint(ctx, "v", "rp-b"); rp.State != store.RPAvailable {
		t.Fatalf("deleted with an expired approval: %s", rp.State)
	}
	// A pending request expires too.
	pending, _ = e.svc.ListApprovals(ctx, "v", store.ApprovalFilter{State: store.ApprovalPending})
	e.clk.Advance(service.DefaultApprovalLifetime + time.Minute)
	_, err = e.svc.DecideApproval(as("user:carol"), "v", pending[0].ID, true, "")
	wantKind(t, err, service.Conflict, service.CodeApprovalExpired)

	// A requester holding the approver role gets no approval.
	if _, err := e.svc.AssignRole(ctx, "admin", "user:mallory", rbac.Owner, rbac.VaultScope("v")); err != nil {
		t.Fatal(err)
	}
	// A further approver is itself an approved operation: whoever may
	// assign roles could otherwise make an accomplice one.
	_, err = e.svc.AssignRole(as("admin"), "admin", "user:mallory", rbac.ResourceGuardApprover, rbac.VaultScope("v"))
	wantKind(t, err, service.Forbidden, service.CodeApprovalRequired)
	pending, _ = e.svc.ListApprovals(ctx, "v", store.ApprovalFilter{State: store.ApprovalPending, Requester: "admin"})
	if len(pending) != 1 || pending[0].Operation != service.OpAssignApprover || pending[0].Target != "user:mallory" {
		t.Fatalf("approver request: %+v", pending)
	}
	if _, err := e.svc.DecideApproval(as("user:carol"), "v", pending[0].ID, true, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.AssignRole(as("admin"), "admin", "user:mallory", rbac.ResourceGuardApprover, rbac.VaultScope("v")); err != nil {
		t.Fatal(err)
	}
	_, _, err = e.svc.DeleteRecoveryPoint(as("user:mallory"), "v", "rp-c", 0)
	wantKind(t, err, service.Forbidden, service.CodeApprovalRequired)
	pending, _ = e.svc.ListApprovals(ctx, "v", store.ApprovalFilter{State: store.ApprovalPending, Requester: "user:mallory"})
	_, err = e.svc.DecideApproval(as("user:carol"), "v", pending[0].ID, true, "")
	wantKind(t, err, service.Forbidden, service.CodeRequesterIsApprover)

	// The other guarded operations ask for approval too.
	short := daily()
	short.Retention.Default.Duration = "P3D"
	_, err = e.svc.UpdatePolicy(as("user:alice"), "v", "daily", 0, short)
	wantKind(t, err, service.Forbidden, service.CodeApprovalRequired)
	short.Name = "short"
	if _, err := e.svc.CreatePolicy(ctx, "v", short); err != nil {
		t.Fatal(err)
	}
	moved := instance("shop")
	moved.Policy = "short"
	_, err = e.svc.UpdateInstance(as("user:alice"), "", "v", "shop", 0, moved)
	wantKind(t, err, service.Forbidden, service.CodeApprovalRequired)
	for _, u := range []service.VaultUpdate{{SoftDeleteDays: ptr(0)}, {ResourceGuard: ptr(false)}} {
		_, err = e.svc.UpdateVault(as("user:alice"), "v", 0, u)
		wantKind(t, err, service.Forbidden, service.CodeApprovalRequired)
	}
	_, _, err = e.svc.StopProtection(as("user:alice"), "v", "shop", 0, store.StopDeleteData)
	wantKind(t, err, service.Forbidden, service.CodeApprovalRequired)
	wantKind(t, e.svc.DeleteCluster(as("user:alice"), "prod", 0), service.Forbidden, service.CodeApprovalRequired)
	owners, _ := e.st.ListRoleAssignments(ctx, store.RoleAssignmentFilter{Principal: "user:mallory", Scope: rbac.VaultScope("v")})
	for _, o := range owners {
		if o.Role == rbac.Owner {
			wantKind(t, e.svc.RemoveRoleAssignment(as("user:alice"), o), service.Forbidden, service.CodeApprovalRequired)
		}
	}
	// A caller-less operation (no authenticated requester) is refused.
	_, _, err = e.svc.DeleteRecoveryPoint(ctx, "v", "rp-c", 0)
	wantKind(t, err, service.Forbidden, service.CodeApprovalRequired)

	for _, ev := range []string{`"approvalRequested"`, `"approvalApproved"`, `"approvalUsed"`} {
		if !strings.Contains(logs.String(), ev) {
			t.Errorf("audit log has no %s record", ev)
		}
	}
}

// The protection scenarios above, on PostgreSQL (each on a fresh
// database of one server), as the store suite runs on both engines.
func TestProtectionOnPostgres(t *testing.T) {
	pg := testenv.StartPostgres(t)
	admin, err := sql.Open("pgx", pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for i, sc := range []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"SoftDeleteAndUndelete", softDeleteAndUndelete}, {"SoftDeletedInstance", softDeletedInstance},
		{"ImmutableVault", immutableVault}, {"ResourceGuard", resourceGuard}, {"ApprovalUsedOnce", approvalUsedOnce},
	} {
		t.Run(sc.name, func(t *testing.T) {
			db := fmt.Sprintf("arca_guard_%d", i)
			if _, err := admin.Exec("CREATE DATABASE " + db); err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(pg.DSN())
			if err != nil {
				t.Fatal(err)
			}
			u.Path = "/" + db
			sc.fn(t, setupOn(t, func(now func() time.Time) (store.Store, error) { return postgres.Open(ctx, u.String(), now) }))
		})
	}
}

// TestApprovalUsedOnce: one approval, eight concurrent retries of the
// approved delete: exactly one passes.
func TestApprovalUsedOnce(t *testing.T) { approvalUsedOnce(t, setup(t)) }

func approvalUsedOnce(t *testing.T, e *env) {
	withInstance(t, e)
	addPoints(t, e, 1)
	if _, err := e.svc.AssignRole(ctx, "admin", "user:carol", rbac.ResourceGuardApprover, rbac.VaultScope("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.UpdateVault(ctx, "v", 0, service.VaultUpdate{ResourceGuard: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	_, _, err := e.svc.DeleteRecoveryPoint(as("user:alice"), "v", "rp-a", 0)
	wantKind(t, err, service.Forbidden, service.CodeApprovalRequired)
	pending, _ := e.svc.ListApprovals(ctx, "v", store.ApprovalFilter{State: store.ApprovalPending})
	if _, err := e.svc.DecideApproval(as("user:carol"), "v", pending[0].ID, true, ""); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var passed, refused atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := e.svc.DeleteRecoveryPoint(as("user:alice"), "v", "rp-a", 0)
			switch c := service.Classify(err); {
			case err == nil:
				passed.Add(1)
			case c.Code == service.CodeApprovalRequired || c.Code == service.CodeApprovalPending || c.Code == service.CodeSoftDeleted:
				refused.Add(1)
			default:
				t.Errorf("retry: %v", err)
			}
		}()
	}
	wg.Wait()
	if passed.Load() != 1 || refused.Load() != 7 {
		t.Fatalf("%d retries passed, %d refused; want 1 and 7", passed.Load(), refused.Load())
	}
	if a, _ := e.svc.GetApproval(ctx, "v", pending[0].ID); a.State != store.ApprovalUsed {
		t.Fatalf("approval %s", a.State)
	}
}

// failingRemover fails to remove data while fail is set.
type failingRemover struct{ fail bool }

func (f *failingRemover) RemoveRecoveryPoint(context.Context, *store.RecoveryPoint) error {
	if f.fail {
		return errors.New("cluster unreachable")
	}
	return nil
}

// A purge whose deletion job fails to remove the data is queued again by
// a later pass (not while a deletion job is pending), and the point is
// removed once its data is.
func TestPurgeRetriedAfterAFailedJob(t *testing.T) {
	e := setup(t)
	rm := &failingRemover{fail: true}
	e.runner.Retention.Remover = rm
	withInstance(t, e)
	addPoints(t, e, 2)
	if _, _, err := e.svc.DeleteRecoveryPoint(ctx, "v", "rp-b", 0); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(store.DefaultSoftDeleteDays * 24 * time.Hour)
	js, err := e.svc.PurgeSoftDeleted(ctx)
	if err != nil || len(js) != 1 {
		t.Fatal(js, err)
	}
	if j, _ := runJob(t, e, js[0].ID); j.State != store.JobCompletedWithWarnings && j.State != store.JobFailed {
		t.Fatalf("job with a failing remover: %s", j.State)
	}
	if rp, err := e.st.GetRecoveryPoint(ctx, "v", "rp-b"); err != nil || rp.State != store.RPDeleting {
		t.Fatalf("after the failed job: %+v %v", rp, err)
	}
	// Deleting it again while no job is pending queues a new one
	// (not another soft-delete period); while one is pending it is refused.
	_, j, err := e.svc.DeleteRecoveryPoint(ctx, "v", "rp-b", 0)
	if err != nil || j == nil {
		t.Fatalf("delete of a Deleting point: %v %v", j, err)
	}
	_, _, err = e.svc.DeleteRecoveryPoint(ctx, "v", "rp-b", 0)
	wantKind(t, err, service.Conflict, "RecoveryPointDeleting")
	if again, _ := e.svc.PurgeSoftDeleted(ctx); len(again) != 0 {
		t.Fatalf("purge queued again while a deletion job is pending: %v", again)
	}
	runJob(t, e, j.ID) // fails again
	rm.fail = false
	js, err = e.svc.PurgeSoftDeleted(ctx)
	if err != nil || len(js) != 1 {
		t.Fatalf("the next pass queued %v %v", js, err)
	}
	if again, _ := e.svc.PurgeSoftDeleted(ctx); len(again) != 0 {
		t.Fatalf("queued again while the job is pending: %v", again)
	}
	runJob(t, e, js[0].ID)
	if _, err := e.st.GetRecoveryPoint(ctx, "v", "rp-b"); err == nil {
		t.Fatal("rp-b still in the catalog")
	}
}
