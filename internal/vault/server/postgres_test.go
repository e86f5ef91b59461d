package server_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/server"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
)

// TestServeOnPostgres runs `vault init` and `vault serve --db postgres://…`
// against a real PostgreSQL, twice (two replicas on one database), and
// checks both serve the same data, that exactly one of them runs
// retention (the other takes over when it stops), that cluster
// credentials are sealed in the database, and that a replica given
// another credential key is refused at start.
func TestServeOnPostgres(t *testing.T) {
	pg := testenv.StartPostgres(t)
	base := server.Options{DataDir: t.TempDir(), DB: pg.DSN(), Listen: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler),
		RetentionInterval: 50 * time.Millisecond, LeaseTTL: 600 * time.Millisecond}
	res, err := server.Init(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	type replica struct {
		c      *client.Client
		log    *syncBuf
		cancel func()
		done   chan error
	}
	start := func(i int, opts server.Options) *replica {
		r := &replica{log: &syncBuf{}, done: make(chan error, 1)}
		opts.Log = slog.New(slog.NewJSONHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
		addr := make(chan string, 1)
		opts.Ready = func(a string) { addr <- a }
		runCtx, cancel := context.WithCancel(ctx)
		r.cancel = cancel
		go func() { r.done <- server.Run(runCtx, opts) }()
		t.Cleanup(func() {
			cancel()
			if err := <-r.done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("replica %d: %v", i, err)
			}
			r.done <- nil // for a second wait
		})
		select {
		case a := <-addr:
			c, err := client.New("https://"+a, res.Token, client.TLSOptions{CAFile: res.CertFile})
			if err != nil {
				t.Fatal(err)
			}
			r.c = c
		case err := <-r.done:
			t.Fatalf("replica %d: %v", i, err)
		case <-time.After(30 * time.Second):
			t.Fatalf("replica %d did not start", i)
		}
		return r
	}
	reps := []*replica{start(0, base), start(1, base)}
	if _, err := reps[0].c.CreateVault(ctx, "shared", "on postgres"); err != nil {
		t.Fatal(err)
	}
	v, err := reps[1].c.GetVault(ctx, "shared")
	if err != nil || v.Description != "on postgres" {
		t.Fatalf("second replica: %+v %v", v, err)
	}

	// Exactly one replica runs retention.
	passes := func(r *replica) int { return strings.Count(r.log.String(), `"msg":"retention pass started"`) }
	time.Sleep(time.Second)
	p0, p1 := passes(reps[0]), passes(reps[1])
	if (p0 == 0) == (p1 == 0) {
		t.Fatalf("retention passes: replica 0 ran %d, replica 1 ran %d; want exactly one of them running it", p0, p1)
	}
	holder, other := reps[0], reps[1]
	if p1 > 0 {
		holder, other = reps[1], reps[0]
	}
	before := passes(other)
	holder.cancel()
	if err := <-holder.done; err != nil {
		t.Fatalf("stopping the holder: %v", err)
	}
	holder.done <- nil
	deadline := time.Now().Add(5 * time.Second)
	for passes(other) == before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if passes(other) == before {
		t.Fatal("the other replica did not take retention over after the holder stopped")
	}

	// A cluster's credential is sealed in the database.
	const secret = "eyJhbGciOiJSUzI1NiJ9.cluster-token-on-postgres"
	if _, err := other.c.RegisterCluster(ctx, service.ClusterRegistration{Name: "prod", Server: "https://10.0.0.1:6443",
		Namespace: "arca-system", ServiceAccount: "arca-vault", Token: secret}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var raw string
	if err := db.QueryRowContext(ctx, `SELECT token FROM clusters WHERE name = 'prod'`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(raw, secret) || !strings.HasPrefix(raw, "sealed:") {
		t.Fatalf("the cluster token is stored as %q", raw)
	}
	var keyText string
	if err := db.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = 'credential-key-id'`).Scan(&keyText); err != nil {
		t.Fatal(err)
	}
	st, err := server.OpenStore(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	c, err := st.GetCluster(ctx, "prod")
	st.Close()
	if err != nil || c.Token != secret {
		t.Fatalf("the store with the key reads %v", err)
	}

	// A replica with another key (its own data directory) is refused at
	// start, naming the fix; it writes nothing.
	stranger := base
	stranger.DataDir = t.TempDir()
	err = server.Run(ctx, stranger)
	if !errors.Is(err, store.ErrCredentialKey) || !strings.Contains(err.Error(), "same --credential-key-file") || !strings.Contains(err.Error(), keyText) {
		t.Fatalf("a replica with another credential key: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(stranger.DataDir, "credential.key")); len(m) != 0 {
		t.Fatal("the refused replica kept the key it generated")
	}
}
