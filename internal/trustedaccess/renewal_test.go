package trustedaccess_test

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/clusterdriver"
	"github.com/arca-backup/arca/internal/trustedaccess"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// setClock is the vault's clock, moved by the test.
type setClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *setClock) Now() time.Time   { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *setClock) Set(t time.Time)  { c.mu.Lock(); defer c.mu.Unlock(); c.now = t }
func newClock(t time.Time) *setClock { return &setClock{now: t} }

// coded is a job error with a stable code (jobs.CodedError).
type coded interface {
	JobCode() string
	Permanent() bool
}

// Renewal is bounded and audited, and an expired token is told apart from
// a revoked one: against the real API server, with the vault's clock
// moved forward. The renewed token never outlives the bound; past it the
// renewer stops (once, audited) and the token runs out; then the cluster
// is TrustedAccessExpired, not TrustedAccessRevoked, and jobs fail with
// TrustedAccessTokenExpired naming the fix.
func TestRenewalBoundedAuditedExpiry(t *testing.T) {
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "vault.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g, err := trustedaccess.Enable(ctx, cp.Config(), trustedaccess.EnableOptions{Vault: "bound", Cluster: "b1", TokenTTL: 15 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	clk := newClock(start)
	soon := start.Add(2 * time.Minute) // under a third of the TTL left: due
	// Trusted access was enabled 48 minutes ago; renewal is bounded to an
	// hour after that, so at most 12 minutes are left to give.
	c := &store.Cluster{Name: "b1", Server: g.Server, CAData: g.CAData, Namespace: g.Namespace, ServiceAccount: g.ServiceAccount,
		Token: g.Token, TokenExpiresAt: &soon, State: store.ClusterConnected, RegisteredAt: start.Add(-48 * time.Minute)}
	if err := st.CreateCluster(ctx, c); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuf{}
	r := &clusterdriver.Renewer{Store: st, Clock: clk, TTL: 15 * time.Minute, MaxLifetime: time.Hour, Log: slog.New(slog.NewJSONHandler(logs, nil))}
	if renewed, err := r.Tick(ctx); err != nil || len(renewed) != 1 {
		t.Fatalf("renew: %v %v", renewed, err)
	}
	got, _ := st.GetCluster(ctx, "b1")
	until := c.RegisteredAt.Add(time.Hour)
	if got.Token == g.Token || got.Renewals != 1 || got.TokenExpiresAt.After(until.Add(5*time.Second)) || got.TokenExpiresAt.Before(until.Add(-time.Minute)) {
		t.Fatalf("renewed token: renewals %d, expiry %v; want one renewal, expiring at the bound %v", got.Renewals, got.TokenExpiresAt, until)
	}
	if l := logs.String(); !strings.Contains(l, `"event":"clusterTokenRenewed"`) || !strings.Contains(l, `"cluster":"b1"`) || !strings.Contains(l, `"renewals":1`) {
		t.Fatalf("the renewal is not audited:\n%s", l)
	}

	// Eight minutes on, less than a third of the TTL is left, but less
	// than the shortest token remains before the bound: renewal stops,
	// said once.
	clk.Set(start.Add(8 * time.Minute))
	for range 2 {
		if renewed, err := r.Tick(ctx); err != nil || len(renewed) != 0 {
			t.Fatalf("renewed past its bound: %v %v", renewed, err)
		}
	}
	got, _ = st.GetCluster(ctx, "b1")
	if got.State != store.ClusterConnected || got.Renewals != 1 || !strings.Contains(got.Message, "renewal stopped") || !strings.Contains(got.Message, "arca trusted-access enable --cluster-name b1") {
		t.Fatalf("after the bound: state %s, renewals %d, message %q", got.State, got.Renewals, got.Message)
	}
	if n := strings.Count(logs.String(), `"event":"clusterTokenRenewalStopped"`); n != 1 {
		t.Fatalf("renewal stop audited %d times, want once:\n%s", n, logs.String())
	}

	// Past its expiry: expired, not revoked.
	clk.Set(got.TokenExpiresAt.Add(time.Minute))
	if _, err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ = st.GetCluster(ctx, "b1")
	if got.State != store.ClusterExpired || !strings.Contains(got.Message, "expired") || !strings.Contains(got.Message, "not revoked") ||
		!strings.Contains(got.Message, "renewal ended") {
		t.Fatalf("after expiry: state %s message %q; want %s saying why and that nothing was revoked", got.State, got.Message, store.ClusterExpired)
	}
	if !strings.Contains(logs.String(), `"event":"clusterTokenExpired"`) {
		t.Fatalf("the expiry is not audited:\n%s", logs.String())
	}
	// Its jobs fail with the expiry's code and the fix.
	d, ok := (&clusterdriver.Registered{Store: st, Clock: clk}).Driver("b1")
	if !ok {
		t.Fatal("no driver")
	}
	_, err = d.JobStatus(ctx, "any")
	var ce coded
	if !errors.As(err, &ce) || ce.JobCode() != clusterdriver.CodeExpired || !ce.Permanent() || !strings.Contains(err.Error(), "trusted-access enable") {
		t.Fatalf("job on an expired cluster: %v", err)
	}
}

// A token the cluster rejects (401) is expired when past its expiry and
// revoked otherwise; the driver records which (real API server, a token
// it does not know).
func TestRejectedTokenExpiredOrRevoked(t *testing.T) {
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "vault.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g, err := trustedaccess.Enable(ctx, cp.Config(), trustedaccess.EnableOptions{Vault: "rej", Cluster: "x", TokenTTL: 15 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clk := newClock(now)
	past, future := now.Add(-5*time.Minute), now.Add(5*time.Minute)
	for _, c := range []struct {
		name      string
		expiresAt *time.Time
		state     string
		code      string
	}{
		{"lapsed", &past, store.ClusterExpired, clusterdriver.CodeExpired},
		{"rejected", &future, store.ClusterRevoked, clusterdriver.CodeRevoked},
	} {
		if err := st.CreateCluster(ctx, &store.Cluster{Name: c.name, Server: g.Server, CAData: g.CAData, Namespace: g.Namespace,
			ServiceAccount: g.ServiceAccount, Token: "not-a-token-the-cluster-knows", TokenExpiresAt: c.expiresAt, State: store.ClusterConnected}); err != nil {
			t.Fatal(err)
		}
		d, _ := (&clusterdriver.Registered{Store: st, Clock: clk}).Driver(c.name)
		_, err := d.JobStatus(ctx, "backupjob/b-1")
		var ce coded
		if !errors.As(err, &ce) || ce.JobCode() != c.code {
			t.Fatalf("%s: %v, want %s", c.name, err, c.code)
		}
		got, _ := st.GetCluster(ctx, c.name)
		if got.State != c.state {
			t.Fatalf("%s: state %s, want %s", c.name, got.State, c.state)
		}
	}
}
