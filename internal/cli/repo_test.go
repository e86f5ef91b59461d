package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/local"
)

func TestRepoCLI(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(PasswordEnv, "")
	common := RepoCommonOptions{RepoOptions: RepoOptions{Repo: "file://" + filepath.Join(dir, "repo")}, Output: "table"}

	// No password anywhere: a usage error naming both ways.
	err := RunRepoInit(ctx, &common, &bytes.Buffer{})
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--password-file") || !strings.Contains(err.Error(), PasswordEnv) {
		t.Fatalf("init without password: %v", err)
	}
	common.PasswordFile = pwFile
	var out bytes.Buffer
	if err := RunRepoInit(ctx, &common, &out); err != nil {
		t.Fatalf("init: %v", err)
	}

	// Write a recovery point through the library.
	be, _ := local.Open(filepath.Join(dir, "repo"))
	r, err := repo.Open(ctx, be, "pw")
	if err != nil {
		t.Fatal(err)
	}
	w, _ := r.NewWriter(ctx)
	tw := w.NewTree()
	for i := 0; i < 50; i++ {
		data := bytes.Repeat([]byte{byte(i)}, 1000)
		id, err := w.PutBlob(ctx, data)
		if err != nil {
			t.Fatal(err)
		}
		_ = tw.Add(ctx, repo.TreeEntry{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Name: string(rune('a' + i)), Blobs: []repo.ID{id}, Size: 1000})
	}
	tree, _ := tw.Close(ctx)
	rpID, err := w.Commit(ctx, &repo.RecoveryPoint{Name: "one", Resources: []repo.ResourceTree{{Version: "v1", Resource: "configmaps", Tree: tree}}})
	if err != nil {
		t.Fatal(err)
	}

	// Wrong password.
	t.Setenv(PasswordEnv, "wrong")
	bad := common
	bad.PasswordFile = ""
	if err := RunRepoStats(ctx, &bad, &bytes.Buffer{}); !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("stats with wrong password: %v", err)
	}

	// Healthy check, JSON stats.
	if err := RunRepoCheck(ctx, &RepoCheckOptions{RepoCommonOptions: common, ReadData: true}, &out); err != nil {
		t.Fatalf("check: %v\n%s", err, out.String())
	}
	js := common
	js.Output = "json"
	out.Reset()
	if err := RunRepoStats(ctx, &js, &out); err != nil {
		t.Fatal(err)
	}
	var st repo.RepoStats
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || st.RecoveryPoints != 1 || st.DataBlobs != 50 {
		t.Fatalf("stats json: %+v %v", st, err)
	}

	// Damage a pack: check fails and names it with the recovery point.
	var pack string
	_ = be.List(ctx, storage.PackFile, func(fi storage.FileInfo) error { pack = fi.Name; return nil })
	p, _ := be.Path(storage.Handle{Type: storage.PackFile, Name: pack})
	b, _ := os.ReadFile(p)
	b[100] ^= 0xff
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = RunRepoCheck(ctx, &RepoCheckOptions{RepoCommonOptions: common, ReadData: true}, &out)
	if !errors.Is(err, ErrRepoDamaged) || !strings.Contains(out.String(), "data/"+pack) || !strings.Contains(out.String(), rpID.Short()) {
		t.Fatalf("check of damaged repo: %v\n%s", err, out.String())
	}

	// forget by ID, then prune.
	out.Reset()
	if err := RunRepoForget(ctx, &RepoForgetOptions{RepoCommonOptions: common}, []string{rpID.String()[:10]}, &out); err != nil {
		t.Fatalf("forget: %v", err)
	}
	if err := RunRepoPrune(ctx, &RepoPruneOptions{RepoCommonOptions: common}, &out); err != nil {
		t.Fatalf("prune: %v\n%s", err, out.String())
	}
	if err := RunRepoCheck(ctx, &RepoCheckOptions{RepoCommonOptions: common, ReadData: true}, &out); err != nil {
		t.Fatalf("check after prune: %v\n%s", err, out.String())
	}
	if err := RunRepoForget(ctx, &RepoForgetOptions{RepoCommonOptions: common}, nil, &out); !errors.As(err, &ue) {
		t.Fatalf("forget without arguments: %v", err)
	}
}
