package server_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arca-backup/arca/internal/vault/server"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlstore"
)

// Where the credential key comes from, and what a missing or wrong one
// says (SQLite; the PostgreSQL replicas are in TestServeOnPostgres).
func TestCredentialKeySources(t *testing.T) {
	dir := t.TempDir()
	o := server.Options{DataDir: dir, Log: slog.New(slog.DiscardHandler)}
	st, err := server.OpenStore(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "cluster-token-on-sqlite"
	if err := st.CreateCluster(ctx, &store.Cluster{Name: "prod", Server: "https://x", Namespace: "n", ServiceAccount: "sa", Token: secret, State: store.ClusterConnected}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	// First start generated the key file, private to the vault's user.
	keyFile := server.DefaultCredentialKeyFile(dir)
	fi, err := os.Stat(keyFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated key file: %v %v", fi, err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "vault.db*")) // with the WAL, if any
	for _, f := range files {
		db, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(db), secret) {
			t.Fatalf("%s holds the cluster token in the clear", f)
		}
	}
	if len(files) == 0 {
		t.Fatal("no database file")
	}
	keyText, _ := os.ReadFile(keyFile)
	// The same key through the environment works.
	env := o
	env.CredentialKey = strings.TrimSpace(string(keyText))
	st, err = server.OpenStore(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	c, err := st.GetCluster(ctx, "prod")
	st.Close()
	if err != nil || c.Token != secret {
		t.Fatalf("reading with the key from the environment: %v", err)
	}
	// Another key: refused at start, naming the fix.
	other := o
	other.CredentialKey = sqlstore.NewCredentialKey()
	if _, err := server.OpenStore(ctx, other); !errors.Is(err, store.ErrCredentialKey) || !strings.Contains(err.Error(), "ARCA_VAULT_CREDENTIAL_KEY") || !strings.Contains(err.Error(), "same --credential-key-file") {
		t.Fatalf("another key: %v", err)
	}
	// A key file that is not there is not generated when named.
	missing := o
	missing.CredentialKeyFile = filepath.Join(dir, "nope.key")
	if _, err := server.OpenStore(ctx, missing); err == nil || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "head -c 32 /dev/urandom | base64") {
		t.Fatalf("missing key file: %v", err)
	}
	// Not a key.
	bad := o
	bad.CredentialKey = "hunter2"
	if _, err := server.OpenStore(ctx, bad); !errors.Is(err, store.ErrCredentialKey) || !strings.Contains(err.Error(), "base64") {
		t.Fatalf("malformed key: %v", err)
	}
	both := o
	both.CredentialKey, both.CredentialKeyFile = env.CredentialKey, keyFile
	if _, err := server.OpenStore(ctx, both); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("two keys: %v", err)
	}
	// The generated key file gone: the database's credentials cannot be
	// opened, and the vault says so instead of making a new key silently.
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	if _, err := server.OpenStore(ctx, o); !errors.Is(err, store.ErrCredentialKey) {
		t.Fatalf("lost key file: %v", err)
	}
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
		t.Fatal("a refused start left a new key file behind")
	}
}
