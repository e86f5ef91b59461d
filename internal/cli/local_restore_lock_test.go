package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/faulty"
	"github.com/arca-backup/arca/internal/storage/local"
)

// `arca local restore` holds a shared lock for the whole restore: while a
// prune holds the exclusive lock it fails at once with --lock-wait 0, and
// with a wait it reports the wait on stderr and goes ahead once the prune
// is done. (Before, restores took no lock and read while prune deleted.)
// The recovery point is empty, so the restore needs no cluster once it has
// its lock.
func TestLocalRestoreHoldsSharedLock(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(PasswordEnv, "")
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	be, err := local.Create(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	kdf := repo.WithKDF(repo.KDFParams{N: 1 << 10, R: 8, P: 1})
	r, err := repo.Init(ctx, be, "pw", kdf)
	if err != nil {
		t.Fatal(err)
	}
	w, err := r.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC)
	if _, err := w.Commit(ctx, &repo.RecoveryPoint{Name: "one", Started: started, Finished: started}); err != nil {
		t.Fatal(err)
	}

	// A prune that holds its exclusive lock for 8 s: its listing of index
	// files hangs, then fails, and it releases the lock.
	fb := faulty.New(be)
	pr, err := repo.Open(ctx, fb, "pw", kdf)
	if err != nil {
		t.Fatal(err)
	}
	fb.Add(faulty.Fault{Op: faulty.OpList, Type: storage.IndexFile, Nth: 1, Kind: faulty.Timeout, Delay: 8 * time.Second})
	pruned := make(chan error, 1)
	go func() {
		_, err := pr.Prune(ctx, repo.PruneOptions{})
		pruned <- err
	}()
	deadline := time.Now().Add(3 * time.Second)
	for {
		locks, _ := os.ReadDir(filepath.Join(repoDir, "locks"))
		if len(locks) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the prune took no lock")
		}
		time.Sleep(10 * time.Millisecond)
	}

	restore := func(wait string) (string, error) {
		root := NewRootCommand()
		var out, errOut bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errOut)
		root.SetArgs([]string{"local", "restore", "--repo", repoDir, "--password-file", pw, "--recovery-point", "latest",
			"--kubeconfig", kc, "--lock-wait", wait})
		err := root.ExecuteContext(ctx)
		return errOut.String(), err
	}
	_, err = restore("0")
	if !errors.Is(err, repo.ErrLocked) || !strings.Contains(err.Error(), "for the restore") || !strings.Contains(err.Error(), "exclusive lock") {
		t.Fatalf("restore during a prune with --lock-wait 0: %v, want ErrLocked naming the prune's exclusive lock", err)
	}
	stderr, err := restore("30s")
	if errors.Is(err, repo.ErrLocked) {
		t.Fatalf("restore with --lock-wait 30s did not wait for the prune: %v", err)
	}
	if !strings.Contains(stderr, "waiting for the repository: exclusive lock") || !strings.Contains(stderr, "--lock-wait") {
		t.Errorf("restore did not report its wait on stderr:\n%s", stderr)
	}
	if err != nil {
		t.Errorf("restore of an empty recovery point after the prune: %v", err)
	}
	if perr := <-pruned; perr == nil {
		t.Fatal("the prune was meant to fail after holding its lock")
	}
	if locks, _ := os.ReadDir(filepath.Join(repoDir, "locks")); len(locks) != 0 {
		t.Errorf("locks left behind: %v", locks)
	}
}
