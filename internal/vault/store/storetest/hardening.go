package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Deleting a vault, policy, instance or cluster removes the role
// assignments at its scope and below, and no others (not those of a
// sibling whose name shares a prefix).
func testRoleAssignmentsCascade(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	must(t, s.CreateVault(ctx, &store.Vault{Name: "a"}))
	must(t, s.CreateVault(ctx, &store.Vault{Name: "ab"}))
	must(t, s.CreatePolicy(ctx, &store.Policy{Vault: "a", Name: "p", Schedule: "R/2026-01-01T00:00:00Z/P1D", Retention: []byte(`{}`)}))
	must(t, s.CreateInstance(ctx, &store.Instance{Vault: "a", Name: "shop", Cluster: "prod", Policy: "p", StorageLocation: "file:///r"}))
	must(t, s.CreateCluster(ctx, &store.Cluster{Name: "prod", Server: "https://x", Namespace: "n", ServiceAccount: "sa", Token: "t", State: store.ClusterConnected}))
	must(t, s.CreateCluster(ctx, &store.Cluster{Name: "prod-2", Server: "https://y", Namespace: "n", ServiceAccount: "sa", Token: "t", State: store.ClusterConnected}))
	grant := func(principal, scope string) {
		must(t, s.CreateRoleAssignment(ctx, &store.RoleAssignment{Principal: principal, Role: "Reader", Scope: scope}))
	}
	grant("root", rbac.Root())
	grant("va", rbac.VaultScope("a"))
	grant("vab", rbac.VaultScope("ab"))
	grant("pol", rbac.PolicyScope("a", "p"))
	grant("shop", rbac.InstanceScope("a", "shop"))
	grant("shop2", rbac.InstanceScope("a", "shop2")) // an instance that does not exist (yet)
	grant("prod", rbac.ClusterScope("prod"))
	grant("prod2", rbac.ClusterScope("prod-2"))
	left := func() []string {
		t.Helper()
		as, err := s.ListRoleAssignments(ctx, store.RoleAssignmentFilter{})
		must(t, err)
		var out []string
		for _, a := range as {
			out = append(out, a.Principal)
		}
		slices.Sort(out)
		return out
	}
	want := func(step string, principals ...string) {
		t.Helper()
		slices.Sort(principals)
		if got := left(); !slices.Equal(got, principals) {
			t.Fatalf("after %s the assignments of %v remain, want %v", step, got, principals)
		}
	}
	// A refused delete (stale version) removes nothing.
	wantErr(t, s.DeleteInstance(ctx, "a", "shop", 99), store.ErrConflict)
	want("a refused delete", "root", "va", "vab", "pol", "shop", "shop2", "prod", "prod2")
	must(t, s.DeleteInstance(ctx, "a", "shop", 0))
	want("deleting instance a/shop", "root", "va", "vab", "pol", "shop2", "prod", "prod2")
	must(t, s.DeletePolicy(ctx, "a", "p", 0))
	want("deleting policy a/p", "root", "va", "vab", "shop2", "prod", "prod2")
	must(t, s.DeleteCluster(ctx, "prod", 0))
	want("deleting cluster prod", "root", "va", "vab", "shop2", "prod2")
	must(t, s.DeleteVault(ctx, "a", 0))
	want("deleting vault a (and what was under it)", "root", "vab", "prod2")
}

// One holder at a time; the lease passes on when it expires or is
// released, and extending keeps it.
func testLeases(t *testing.T, s store.Store, reopen func(*testing.T) store.Store) {
	other := s
	if reopen != nil {
		other = reopen(t) // another replica's connection pool
	}
	ok, err := s.AcquireLease(ctx, "retention", "r1", 300*time.Millisecond)
	if err != nil || !ok {
		t.Fatalf("first acquire: %v %v", ok, err)
	}
	if ok, err := other.AcquireLease(ctx, "retention", "r2", time.Minute); err != nil || ok {
		t.Fatalf("a second holder took a live lease: %v %v", ok, err)
	}
	if ok, err := s.AcquireLease(ctx, "retention", "r1", 300*time.Millisecond); err != nil || !ok {
		t.Fatalf("the holder could not extend: %v %v", ok, err)
	}
	if ok, err := other.AcquireLease(ctx, "scheduler", "r2", time.Minute); err != nil || !ok {
		t.Fatalf("another lease name: %v %v", ok, err)
	}
	time.Sleep(350 * time.Millisecond)
	if ok, err := other.AcquireLease(ctx, "retention", "r2", time.Minute); err != nil || !ok {
		t.Fatalf("an expired lease was not taken over: %v %v", ok, err)
	}
	if ok, _ := s.AcquireLease(ctx, "retention", "r1", time.Minute); ok {
		t.Fatal("the old holder took the lease back while the new one holds it")
	}
	must(t, s.ReleaseLease(ctx, "retention", "r1")) // not its lease: nothing
	if ok, _ := s.AcquireLease(ctx, "retention", "r1", time.Minute); ok {
		t.Fatal("a release by a non-holder freed the lease")
	}
	must(t, other.ReleaseLease(ctx, "retention", "r2"))
	if ok, err := s.AcquireLease(ctx, "retention", "r1", time.Minute); err != nil || !ok {
		t.Fatalf("after release: %v %v", ok, err)
	}
	// Racing replicas: exactly one of them wins a free lease.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var winners []string
	for i, st := range []store.Store{s, other, s, other, s, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := string(rune('a' + i))
			if ok, err := st.AcquireLease(ctx, "race", h, time.Minute); err != nil {
				t.Error(err)
			} else if ok {
				mu.Lock()
				winners = append(winners, h)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("holders of one lease: %v, want exactly one", winners)
	}
}

// sealer is what a SQL store offers for sealed credentials.
type sealer interface {
	UseCredentialKey(ctx context.Context, key []byte) error
	DB() *sql.DB
}

func rawToken(t *testing.T, s sealer, name string) string {
	t.Helper()
	var tok string
	// The only statement of the suite not written through the store: what
	// is on disk.
	q := "SELECT token FROM clusters WHERE name = '" + name + "'"
	if err := s.DB().QueryRowContext(ctx, q).Scan(&tok); err != nil {
		t.Fatal(err)
	}
	return tok
}

func key(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// Cluster credentials are sealed at rest with a key that is not in the
// database: the raw row does not hold the token; plaintext rows of an
// older vault are sealed when a key is given; a handle without the key,
// or with another key, cannot read them and says why and what to do.
func testSealedCredentials(t *testing.T, s store.Store, reopen func(*testing.T) store.Store) {
	sl, ok := s.(sealer)
	if !ok {
		t.Fatalf("%T does not seal cluster credentials (UseCredentialKey)", s)
	}
	const secret = "eyJhbGciOiJSUzI1NiJ9.the-cluster-token"
	// An older vault stored this one in plaintext.
	must(t, s.CreateCluster(ctx, &store.Cluster{Name: "old", Server: "https://x", Namespace: "n", ServiceAccount: "sa", Token: secret + "-old", State: store.ClusterConnected}))
	if raw := rawToken(t, sl, "old"); raw != secret+"-old" {
		t.Fatalf("without a key the token is stored as given, got %q", raw)
	}
	k := key(t)
	must(t, sl.UseCredentialKey(ctx, k))
	if raw := rawToken(t, sl, "old"); strings.Contains(raw, secret) {
		t.Fatalf("the plaintext credential was not sealed when the key was given: %q", raw)
	}
	must(t, s.CreateCluster(ctx, &store.Cluster{Name: "prod", Server: "https://x", Namespace: "n", ServiceAccount: "sa", Token: secret, State: store.ClusterConnected}))
	if raw := rawToken(t, sl, "prod"); strings.Contains(raw, secret) || !strings.HasPrefix(raw, "sealed:") {
		t.Fatalf("raw row holds %q", raw)
	}
	c, err := s.GetCluster(ctx, "prod")
	must(t, err)
	if c.Token != secret {
		t.Fatalf("read back %q", c.Token)
	}
	c.Token = secret + "-renewed"
	must(t, s.UpdateCluster(ctx, c))
	if raw := rawToken(t, sl, "prod"); strings.Contains(raw, secret) {
		t.Fatalf("an update stored the token in the clear: %q", raw)
	}
	if cs, err := s.ListClusters(ctx); err != nil || len(cs) != 2 || cs[0].Token != secret+"-old" || cs[1].Token != secret+"-renewed" {
		t.Fatalf("list: %v", err)
	}
	// A sealed token moved to another cluster's row does not open.
	if _, err := sl.DB().ExecContext(ctx, "UPDATE clusters SET token = '"+rawToken(t, sl, "prod")+"' WHERE name = 'old'"); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetCluster(ctx, "old")
	if !errors.Is(err, store.ErrCredentialKey) || !strings.Contains(err.Error(), `cluster "old"`) || !strings.Contains(err.Error(), "trusted-access enable") {
		t.Fatalf("a moved sealed token: %v", err)
	}
	if reopen == nil {
		return
	}
	// Another process without the key: refused, naming the flag.
	noKey := reopen(t)
	_, err = noKey.GetCluster(ctx, "prod")
	if !errors.Is(err, store.ErrCredentialKey) || !strings.Contains(err.Error(), "--credential-key-file") {
		t.Fatalf("reading a sealed credential without the key: %v", err)
	}
	// With another key: refused at once, naming both fingerprints.
	wrong := reopen(t).(sealer)
	err = wrong.UseCredentialKey(ctx, key(t))
	if !errors.Is(err, store.ErrCredentialKey) || !strings.Contains(err.Error(), "same --credential-key-file") {
		t.Fatalf("another key: %v", err)
	}
	// With the key: it reads what the first wrote.
	same := reopen(t)
	must(t, same.(sealer).UseCredentialKey(ctx, k))
	if c, err := same.GetCluster(ctx, "prod"); err != nil || c.Token != secret+"-renewed" {
		t.Fatalf("second replica with the key: %v", err)
	}
	if err := sl.UseCredentialKey(ctx, k[:16]); !errors.Is(err, store.ErrCredentialKey) {
		t.Fatalf("a short key: %v", err)
	}
}

// The bulk expiry writes of stop and resume protection: one instance's
// points only, versions moved on, all or none.
func testRecoveryPointExpiries(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	exp := t0.AddDate(0, 0, 7)
	for i, in := range []string{"shop", "shop", "shop", "web"} {
		must(t, s.CreateRecoveryPoint(ctx, &store.RecoveryPoint{Vault: "v", ID: fmt.Sprintf("rp-%d", i), Instance: in,
			Time: t0.Add(time.Duration(i) * time.Hour), Tag: "default", Datastore: "operational", ExpiresAt: &exp}))
	}
	n, err := s.ClearRecoveryPointExpiries(ctx, "v", "shop")
	if err != nil || n != 3 {
		t.Fatalf("clear: %d %v, want 3 points", n, err)
	}
	rps, err := s.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: "v"})
	must(t, err)
	for _, rp := range rps {
		if (rp.Instance == "shop") != (rp.ExpiresAt == nil) || (rp.Instance == "shop") != (rp.Version == 2) {
			t.Fatalf("after clearing shop's expiries: %s of %s expires %v, version %d", rp.ID, rp.Instance, rp.ExpiresAt, rp.Version)
		}
	}
	later := t0.AddDate(0, 1, 0)
	must(t, s.SetRecoveryPointExpiries(ctx, "v", map[string]*time.Time{"rp-0": &later, "rp-1": &exp}))
	// A missing point: nothing of the batch is written.
	err = s.SetRecoveryPointExpiries(ctx, "v", map[string]*time.Time{"rp-2": &later, "rp-missing": &later})
	wantErr(t, err, store.ErrNotFound)
	for id, want := range map[string]*time.Time{"rp-0": &later, "rp-1": &exp, "rp-2": nil, "rp-3": &exp} {
		rp, err := s.GetRecoveryPoint(ctx, "v", id)
		must(t, err)
		if (rp.ExpiresAt == nil) != (want == nil) || (want != nil && !rp.ExpiresAt.Equal(*want)) {
			t.Fatalf("%s expires %v, want %v", id, rp.ExpiresAt, want)
		}
	}
}

// Tokens made without an expiry get one; tokens with one keep theirs.
func testBoundTokens(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	own := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	must(t, s.CreateToken(ctx, &store.Token{Name: "old", Hash: "h1", Principal: "admin"}))
	must(t, s.CreateToken(ctx, &store.Token{Name: "new", Hash: "h2", Principal: "ci", ExpiresAt: &own}))
	at := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	n, err := s.BoundTokens(ctx, at)
	if err != nil || n != 1 {
		t.Fatalf("bound: %d %v, want the one token without expiry", n, err)
	}
	for hash, want := range map[string]time.Time{"h1": at, "h2": own} {
		tk, err := s.GetTokenByHash(ctx, hash)
		must(t, err)
		if tk.ExpiresAt == nil || !tk.ExpiresAt.Equal(want) {
			t.Fatalf("token %s expires %v, want %v", tk.Name, tk.ExpiresAt, want)
		}
	}
	if n, _ := s.BoundTokens(ctx, at); n != 0 {
		t.Fatalf("a second pass changed %d tokens", n)
	}
}
