package server_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/server"
)

// TestServeOnPostgres runs `vault init` and `vault serve --db postgres://…`
// against a real PostgreSQL, twice (two replicas on one database), and
// checks both serve the same data.
func TestServeOnPostgres(t *testing.T) {
	pg := testenv.StartPostgres(t)
	base := server.Options{DataDir: t.TempDir(), DB: pg.DSN(), Listen: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)}
	res, err := server.Init(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	var clients []*client.Client
	for i := 0; i < 2; i++ {
		opts := base
		addr := make(chan string, 1)
		opts.Ready = func(a string) { addr <- a }
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- server.Run(runCtx, opts) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("replica %d: %v", i, err)
			}
		})
		select {
		case a := <-addr:
			c, err := client.New("https://"+a, res.Token, client.TLSOptions{CAFile: res.CertFile})
			if err != nil {
				t.Fatal(err)
			}
			clients = append(clients, c)
		case err := <-done:
			t.Fatalf("replica %d: %v", i, err)
		case <-time.After(30 * time.Second):
			t.Fatalf("replica %d did not start", i)
		}
	}
	if _, err := clients[0].CreateVault(ctx, "shared", "on postgres"); err != nil {
		t.Fatal(err)
	}
	v, err := clients[1].GetVault(ctx, "shared")
	if err != nil || v.Description != "on postgres" {
		t.Fatalf("second replica: %+v %v", v, err)
	}
}
