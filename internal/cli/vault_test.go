package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/clusterdriver"
	"github.com/arca-backup/arca/internal/vault/server"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

// vaultCLI runs `arca <args>` against a vault on a real HTTPS listener.
func startTestVault(t *testing.T) (run func(args ...string) (string, error)) {
	t.Helper()
	run, _ = startTestVaultStore(t)
	return run
}

// startTestVaultStore is startTestVault that also returns the vault's store.
func startTestVaultStore(t *testing.T) (run func(args ...string) (string, error), st store.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "vault.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv, _ := server.New(st, server.Options{Log: slog.New(slog.DiscardHandler), Clusters: clusterdriver.NewTrustedAccess})
	ts := httptest.NewTLSServer(srv.Handler())
	t.Cleanup(ts.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, _, err := server.CreateAdminToken(context.Background(), st, "admin", "admin")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Runner.Run(runCtx, 20*time.Millisecond); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	vaultPollInterval = 20 * time.Millisecond
	return func(args ...string) (string, error) {
		root := NewRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		full := append(args, "--vault-url", ts.URL, "--ca-cert", ca)
		if !slices.Contains(args, "--token") { // a test acting as another principal passes its own
			full = append(full, "--token", tok)
		}
		root.SetArgs(full)
		err := root.ExecuteContext(context.Background())
		return out.String(), err
	}, st
}

func TestVaultAndPolicyCommands(t *testing.T) {
	run := startTestVault(t)
	out, err := run("vault", "create", "prod", "--description", "production clusters")
	if err != nil || !strings.Contains(out, "prod") || !strings.Contains(out, "production clusters") {
		t.Fatalf("vault create: %v\n%s", err, out)
	}
	out, err = run("vault", "list", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var l struct{ Items []map[string]any }
	if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Items) != 1 || l.Items[0]["name"] != "prod" {
		t.Fatalf("vault list json: %v\n%s", err, out)
	}
	if _, err := run("vault", "list", "-o", "xml"); ExitCode(err) != 2 {
		t.Fatalf("bad --output must be a usage error: %v", err)
	}

	// Invalid policy: rejected locally with the field named, exit code 2.
	_, err = run("policy", "create", "p", "--vault", "prod", "--schedule", "R/2026-01-01T00:00:00Z/PT30M", "--retain-default", "P7D")
	if ExitCode(err) != 2 || !strings.Contains(err.Error(), "schedule") || !strings.Contains(err.Error(), "PT1H to PT24H") {
		t.Fatalf("invalid schedule: %v", err)
	}
	_, err = run("policy", "create", "p", "--vault", "prod", "--schedule", "0 2 * * *")
	if ExitCode(err) != 2 || !strings.Contains(err.Error(), "retention.default") {
		t.Fatalf("missing default retention: %v", err)
	}
	out, err = run("policy", "create", "p4h", "--vault", "prod", "--schedule", "R/2026-01-01T02:00:00Z/PT4H",
		"--retain-default", "P7D", "--retain-weekly", "P12W", "--retain-yearly", "P10Y:vault", "--datastore", "operational")
	if err != nil || !strings.Contains(out, "default=P7D weekly=P12W yearly=P10Y(vault)") {
		t.Fatalf("policy create: %v\n%s", err, out)
	}
	out, err = run("policy", "show", "p4h", "--vault", "prod", "-o", "yaml")
	if err != nil || !strings.Contains(out, "schedule: R/2026-01-01T02:00:00Z/PT4H") || !strings.Contains(out, "datastore: vault") {
		t.Fatalf("policy show yaml: %v\n%s", err, out)
	}
	out, err = run("policy", "list", "--vault", "prod")
	if err != nil || !strings.HasPrefix(out, "NAME") || !strings.Contains(out, "p4h") {
		t.Fatalf("policy list: %v\n%s", err, out)
	}
	if _, err := run("vault", "delete", "prod"); err == nil || !strings.Contains(err.Error(), "VaultNotEmpty") {
		t.Fatalf("deleting a vault with policies: %v", err)
	}
	if _, err := run("policy", "delete", "p4h", "--vault", "prod"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("policy", "show", "p4h", "--vault", "prod"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("show deleted policy: %v", err)
	}
	if out, err := run("vault", "delete", "prod"); err != nil || !strings.Contains(out, "deleted") {
		t.Fatalf("vault delete: %v %s", err, out)
	}
}

func TestInstanceBackupJobAndRestoreCommands(t *testing.T) {
	run := startTestVault(t)
	must := func(out string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return out
	}
	must(run("vault", "create", "default"))
	must(run("policy", "create", "daily", "--schedule", "0 2 * * *", "--retain-default", "P7D"))
	// What the vault enforces of the identities acting for it.
	must(run("role", "assign", "--principal", "vault:default", "--role", "Reader", "--scope", "/clusters/prod-1"))
	must(run("role", "assign", "--principal", "extension:prod-1", "--role", "Storage Contributor", "--scope", "/"))
	if _, err := run("instance", "create", "shop", "--cluster", "prod-1"); ExitCode(err) != 2 {
		t.Fatalf("missing flags: %v", err)
	}
	out := must(run("instance", "create", "shop", "--cluster", "prod-1", "--policy", "daily", "--storage", "file:///srv/repo",
		"--include-namespaces", "shop,payments"))
	if !strings.Contains(out, "ProtectionConfigured") {
		t.Fatalf("instance create:\n%s", out)
	}
	out = must(run("instance", "show", "shop", "-o", "json"))
	if !strings.Contains(out, `"payments"`) {
		t.Fatalf("backup configuration not sent:\n%s", out)
	}
	out = must(run("instance", "update", "shop", "--storage", "s3://bucket/arca?endpoint=127.0.0.1:9000"))
	if !strings.Contains(out, "s3://bucket") {
		t.Fatalf("instance update:\n%s", out)
	}
	must(run("instance", "list"))

	// No cluster driver exists yet: the job fails with ClusterNotConnected.
	out, err := run("backup", "now", "shop", "--retention", "P30D", "--wait")
	if err == nil || ExitCode(err) != 1 || !strings.Contains(err.Error(), "ClusterNotConnected") || !strings.Contains(out, "Failed") {
		t.Fatalf("backup now --wait: %v\n%s", err, out)
	}
	out = must(run("job", "list", "--instance", "shop", "-o", "json"))
	var jobs struct{ Items []store.Job }
	if err := json.Unmarshal([]byte(out), &jobs); err != nil || len(jobs.Items) != 1 || jobs.Items[0].Type != store.JobOnDemandBackup {
		t.Fatalf("job list: %v\n%s", err, out)
	}
	// --to vault asks for the vault tier (the job's parameters carry it to
	// the cluster driver: TestDriver); another datastore is refused.
	if _, err := run("backup", "now", "shop", "--to", "tape"); ExitCode(err) != 2 || !strings.Contains(err.Error(), "want snapshot") {
		t.Fatalf("backup now --to tape: %v", err)
	}
	out = must(run("backup", "now", "shop", "--to", "vault", "-o", "json"))
	var vj store.Job
	if err := json.Unmarshal([]byte(out), &vj); err != nil {
		t.Fatalf("backup now --to vault: %v\n%s", err, out)
	}
	var params struct{ VaultTier bool }
	if err := json.Unmarshal(vj.Params, &params); err != nil || !params.VaultTier {
		t.Errorf("backup now --to vault: parameters %s", vj.Params)
	}
	out = must(run("job", "show", jobs.Items[0].ID))
	if !strings.Contains(out, "error ClusterNotConnected") {
		t.Fatalf("job show:\n%s", out)
	}
	if _, err := run("job", "cancel", jobs.Items[0].ID); err == nil || !strings.Contains(err.Error(), "JobFinished") {
		t.Fatalf("cancel finished job: %v", err)
	}
	out = must(run("recovery-point", "list", "--instance", "shop"))
	if !strings.HasPrefix(out, "ID") {
		t.Fatalf("recovery-point list:\n%s", out)
	}
	if _, err := run("restore", "start", "--recovery-point", "nope", "--target-cluster", "dr", "--conflict", "merge"); ExitCode(err) != 2 {
		t.Fatalf("bad --conflict: %v", err)
	}
	if _, err := run("restore", "start", "--recovery-point", "nope", "--target-cluster", "dr", "--namespace-mapping", "shop=shop2"); err == nil || !strings.Contains(err.Error(), "UnknownReference") {
		t.Fatalf("restore of unknown recovery point: %v", err)
	}
	if _, err := run("instance", "stop", "shop", "--mode", "pause"); ExitCode(err) != 2 {
		t.Fatalf("bad --mode: %v", err)
	}
	// With soft delete (the default) delete-data keeps the instance
	// and its points, undeletable; resume needs undelete first.
	if out := must(run("instance", "stop", "shop", "--mode", "delete-data")); !strings.Contains(out, "soft-deleted") {
		t.Fatalf("stop delete-data:\n%s", out)
	}
	if _, err := run("instance", "resume", "shop"); err == nil || !strings.Contains(err.Error(), "InstanceSoftDeleted") {
		t.Fatalf("resume of a soft-deleted instance: %v", err)
	}
	if out := must(run("instance", "list", "--deleted", "only")); !strings.Contains(out, "shop") {
		t.Fatalf("instance list --deleted only:\n%s", out)
	}
	must(run("instance", "undelete", "shop"))
	must(run("instance", "resume", "shop"))
	must(run("instance", "stop", "shop", "--mode", "retain-per-policy"))
	out = must(run("instance", "delete", "shop"))
	if !strings.Contains(out, "deleted") {
		t.Fatalf("instance delete:\n%s", out)
	}
}
