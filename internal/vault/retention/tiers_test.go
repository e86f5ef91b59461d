package retention_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/retention"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/postgres"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

// tierPolicy: snapshots (operational) kept 7 days; the first backup of a
// day goes to the vault tier for 30 days, of an ISO week for 12 weeks.
func tierPolicy(t *testing.T) *policy.Policy {
	return mustPolicy(t, policy.RetentionSpec{Default: &policy.RuleSpec{Duration: "P7D"},
		Daily: &policy.RuleSpec{Duration: "P30D", Datastore: "vault"}, Weekly: &policy.RuleSpec{Duration: "P12W", Datastore: "vault"}})
}

func times(ss ...string) []time.Time {
	var out []time.Time
	for _, s := range ss {
		out = append(out, at(s))
	}
	return out
}

// TestVaultTierClassification: the first backup of a day or week per the
// vault rules goes to the vault tier, judged against the points that
// reached it (a day whose first backup failed takes the next one); the
// operational tier follows the operational rules alone.
func TestVaultTierClassification(t *testing.T) {
	p := tierPolicy(t)
	mixed := mustPolicy(t, policy.RetentionSpec{Default: &policy.RuleSpec{Duration: "P2D"}, Daily: &policy.RuleSpec{Duration: "P7D"},
		Monthly: &policy.RuleSpec{Duration: "P12M", Datastore: "vault"}})
	cases := []struct {
		p            *policy.Policy
		t            string
		earlierVault []time.Time
		want         string // vault rule, "" none
	}{
		{p, "2026-01-01T02:00:00Z", nil, "weekly"},                                // Thursday, first ever: first of its ISO week
		{p, "2026-01-01T06:00:00Z", times("2026-01-01T02:00:00Z"), ""},            // second of the day
		{p, "2026-01-01T06:00:00Z", nil, "weekly"},                                // the 02:00 backup failed: this one is first
		{p, "2026-01-02T02:00:00Z", times("2026-01-01T02:00:00Z"), "daily"},       // Friday: same week
		{p, "2026-01-05T02:00:00Z", times("2026-01-04T02:00:00Z"), "weekly"},      // Monday
		{mixed, "2026-01-02T02:00:00Z", times("2026-01-01T02:00:00Z"), ""},        // only a monthly vault rule
		{mixed, "2026-02-01T02:00:00Z", times("2026-01-31T02:00:00Z"), "monthly"}, // first of February
		{mixed, "2026-01-02T02:00:00Z", times("2026-01-03T02:00:00Z"), "monthly"}, // later points do not count
	}
	for _, c := range cases {
		r, ok := retention.VaultRule(c.p, at(c.t), c.earlierVault)
		got := ""
		if ok {
			got = r.Name
		}
		if got != c.want {
			t.Errorf("VaultRule(%s after %v) = %q, want %q", c.t, c.earlierVault, got, c.want)
		}
	}
	// The operational tier ignores the vault rules.
	if r := retention.ClassifyOperational(p, at("2026-01-05T02:00:00Z"), nil); r.Name != "default" {
		t.Errorf("operational rule under p: %s, want default", r.Name)
	}
	if r := retention.ClassifyOperational(mixed, at("2026-02-01T02:00:00Z"), times("2026-01-31T02:00:00Z")); r.Name != "daily" {
		t.Errorf("operational rule under mixed: %s, want daily (monthly is a vault rule)", r.Name)
	}
}

// tierRemover records what the engine asked to remove.
type tierRemover struct {
	mu               sync.Mutex
	points, snapshot []string
	failSnapshots    bool
}

func (r *tierRemover) RemoveRecoveryPoint(_ context.Context, rp *store.RecoveryPoint) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.points = append(r.points, rp.ID)
	return nil
}

func (r *tierRemover) RemoveSnapshots(_ context.Context, rp *store.RecoveryPoint) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failSnapshots {
		return fmt.Errorf("cluster unreachable")
	}
	r.snapshot = append(r.snapshot, rp.ID)
	return nil
}

// TestTiersExpireIndependently runs on SQLite and on PostgreSQL.
func TestTiersExpireIndependently(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "v.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		testTiersExpire(t, st)
	})
	t.Run("postgres", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts PostgreSQL")
		}
		pg := testenv.StartPostgres(t)
		admin, err := sql.Open("pgx", pg.DSN())
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		if _, err := admin.Exec("CREATE DATABASE arca_tiers"); err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(pg.DSN())
		u.Path = "/arca_tiers"
		st, err := postgres.Open(ctx, u.String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		testTiersExpire(t, st)
	})
}

// testTiersExpire: three scheduled backups under tierPolicy —
//
//	a  Thu 1 Jan 02:00  vault (weekly, P12W → 26 Mar), snapshots P7D → 8 Jan
//	b  Thu 1 Jan 06:00  snapshots only, → 8 Jan
//	c  Fri 2 Jan 02:00  vault (daily, P30D → 1 Feb), snapshots → 9 Jan
//
// On 8 Jan 12:00 a's snapshots expire (a is kept, restorable from the
// vault tier) and b expires as a whole (forgotten and pruned: it has no
// vault data). On 10 Jan c's snapshots go too. On 2 Feb c's vault tier
// has expired but c is the newest point: kept. On 27 Mar a goes.
func testTiersExpire(t *testing.T, st store.Store) {
	if err := st.CreateVault(ctx, &store.Vault{Name: "v"}); err != nil {
		t.Fatal(err)
	}
	p := tierPolicy(t)
	clk := clock.NewFake(at("2026-01-01T00:00:00Z"))
	rm := &tierRemover{}
	eng := &retention.Engine{Store: st, Clock: clk, Remover: rm}
	record := func(id, ts string) *store.RecoveryPoint {
		t.Helper()
		rp := &store.RecoveryPoint{Vault: "v", ID: id, Instance: "i", Time: at(ts), RepoID: "repo-" + id}
		rps, err := st.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: "v", Instance: "i"})
		if err != nil {
			t.Fatal(err)
		}
		var vr *policy.Rule
		if r, ok := retention.VaultRule(p, rp.Time, retention.VaultTimes(rps)); ok {
			vr = &r
		}
		if err := eng.ApplyTiers(ctx, p, rp, vr); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateRecoveryPoint(ctx, rp); err != nil {
			t.Fatal(err)
		}
		return rp
	}
	a := record("a", "2026-01-01T02:00:00Z")
	b := record("b", "2026-01-01T06:00:00Z")
	c := record("c", "2026-01-02T02:00:00Z")
	if a.Tiers.Vault == nil || a.Tiers.Vault.Rule != "weekly" || !a.ExpiresAt.Equal(at("2026-03-26T02:00:00Z")) || a.Tag != "weekly" || a.Datastore != "vault" {
		t.Fatalf("a: %+v %+v", a, a.Tiers.Vault)
	}
	if b.Tiers.Vault != nil || b.Tiers.Operational.Rule != "default" || !b.ExpiresAt.Equal(at("2026-01-08T06:00:00Z")) || b.Datastore != "operational" {
		t.Fatalf("b: %+v", b)
	}
	if c.Tiers.Vault == nil || c.Tiers.Vault.Rule != "daily" || !c.Tiers.Operational.ExpiresAt.Equal(at("2026-01-09T02:00:00Z")) {
		t.Fatalf("c: %+v", c)
	}
	get := func(id string) *store.RecoveryPoint {
		t.Helper()
		rp, err := st.GetRecoveryPoint(ctx, "v", id)
		if err != nil {
			t.Fatalf("recovery point %s: %v", id, err)
		}
		return rp
	}
	// Stored and read back with both tiers.
	if got := get("a"); got.Tiers.Operational == nil || got.Tiers.Operational.State != store.TierAvailable ||
		got.Tiers.Vault == nil || !got.Tiers.Vault.ExpiresAt.Equal(at("2026-03-26T02:00:00Z")) {
		t.Fatalf("a read back: %+v", got.Tiers)
	}

	expire := func(now string) *retention.Result {
		t.Helper()
		clk.Set(at(now))
		res, err := eng.ExpireInstance(ctx, "v", "i")
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := expire("2026-01-08T12:00:00Z")
	if !slices.Equal(res.Deleted, []string{"b"}) || !slices.Equal(res.SnapshotsExpired, []string{"a"}) || len(res.Errors) != 0 {
		t.Fatalf("8 Jan: %+v", res)
	}
	if !slices.Equal(rm.points, []string{"b"}) || !slices.Equal(rm.snapshot, []string{"a"}) {
		t.Fatalf("8 Jan removals: points %v snapshots %v", rm.points, rm.snapshot)
	}
	if _, err := st.GetRecoveryPoint(ctx, "v", "b"); err == nil {
		t.Fatal("b (no vault data) still in the catalog after its expiry")
	}
	if got := get("a"); got.Tiers.Operational.State != store.TierDeleted || got.Tiers.Vault.State != store.TierAvailable || got.ExpiresAt == nil {
		t.Fatalf("a after its snapshots expired: %+v %+v", got.Tiers.Operational, got.Tiers.Vault)
	}
	// Once is enough: the deleted tier is not expired again.
	if res := expire("2026-01-08T13:00:00Z"); len(res.Deleted)+len(res.SnapshotsExpired)+len(res.Errors) != 0 || len(rm.snapshot) != 1 {
		t.Fatalf("second run: %+v, snapshots %v", res, rm.snapshot)
	}

	// A failed snapshot removal keeps the tier, to be retried.
	rm.failSnapshots = true
	res = expire("2026-01-10T00:00:00Z")
	if len(res.Errors) != 1 || res.Errors[0].Code != retention.CodeSnapshotsNotRemoved || res.Errors[0].Object != "c" {
		t.Fatalf("failed removal: %+v", res)
	}
	if got := get("c"); got.Tiers.Operational.State != store.TierAvailable {
		t.Fatalf("c's operational tier marked deleted though its snapshots were not: %+v", got.Tiers.Operational)
	}
	rm.failSnapshots = false
	if res := expire("2026-01-10T01:00:00Z"); !slices.Equal(res.SnapshotsExpired, []string{"c"}) {
		t.Fatalf("retry: %+v", res)
	}

	// c's vault tier expired, but c is the newest point: kept.
	if res := expire("2026-02-02T00:00:00Z"); len(res.Deleted) != 0 {
		t.Fatalf("2 Feb: %+v", res)
	}
	// a's vault tier expires: a is forgotten (the remover forgets and prunes).
	if res := expire("2026-03-27T00:00:00Z"); !slices.Equal(res.Deleted, []string{"a"}) {
		t.Fatalf("27 Mar: %+v", res)
	}
	if !slices.Equal(rm.points, []string{"b", "a"}) {
		t.Fatalf("points removed: %v", rm.points)
	}

	// Retain-forever stops every tier's expiry; resume brings the tiers'
	// own expiries back.
	d := record("d", "2026-03-28T02:00:00Z")
	record("e", "2026-03-29T02:00:00Z")
	if err := eng.RetainForever(ctx, "v", "i"); err != nil {
		t.Fatal(err)
	}
	if res := expire("2027-01-01T00:00:00Z"); len(res.Deleted)+len(res.SnapshotsExpired) != 0 {
		t.Fatalf("retain-forever points expired: %+v", res)
	}
	if err := eng.Reapply(ctx, p, "v", "i"); err != nil {
		t.Fatal(err)
	}
	if got := get("d"); got.ExpiresAt == nil || !got.ExpiresAt.Equal(*d.Tiers.Vault.ExpiresAt) {
		t.Fatalf("d after resume: expiry %v, want its vault tier's %v", got.ExpiresAt, d.Tiers.Vault.ExpiresAt)
	}
}
