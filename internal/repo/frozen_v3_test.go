package repo_test

// testdata/v3/repo: the frozen repository of format v3 (the gear chunker
// with a secret table, S2-compressed data blobs), beside v1 and v2. To make
// it again (only when its frozen content must change, which should be
// never):
//
//	go test ./internal/repo -run TestFrozenRepoGenerateV3 -args -regenerate-v3
//
// then update the file IDs in frozenV3 below from the test's log.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"lukechampine.com/blake3"

	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/local"
)

var regenerateV3 = flag.Bool("regenerate-v3", false, "rewrite internal/repo/testdata/v3/repo (TestFrozenRepoGenerateV3); never needed unless the frozen content changes")

const (
	frozenV3Dir       = "testdata/v3/repo"
	frozenV3Password1 = "frozen-v3 first password"
	frozenV3Password2 = "frozen-v3 second password"
)

// frozenV3 holds the same recovery points as frozenV1 and frozenV2, written
// by the format-v3 code.
var frozenV3 = func() frozenRepo {
	v := frozenV1
	v.Version, v.Dir = 3, frozenV3Dir
	v.Passwords = [2]string{frozenV3Password1, frozenV3Password2}
	v.KeyIDs = [2]string{
		"75cd0b3e6812d1b631005af40447b850f1dd1687764ee22af0803c5d65bf673c",
		"554e7a54ca9d524af50861e6220b33c2d2d29827042730f39022b9aeb1ecdde6",
	}
	ids := []string{
		"42cdc5a114cd79ab71fac6eb8012e48a4ed1bed76ccd06d9b83d61e8b2111361",
		"304038f64ef8463ca21d3d3e93b7dcedeec8ab018be424c98aac35a2e5094337",
		"12fb21876771ffe654ecf79a407d3b4ce27e34daa90fd3856fefde1ef0c24f4b",
	}
	v.Points = make([]frozenPoint, len(frozenV1.Points))
	for i, p := range frozenV1.Points {
		p.ID = ids[i]
		v.Points[i] = p
	}
	v.IndexFiles, v.Packs, v.Blobs = 3, 11, 23
	return v
}()

// TestFrozenRepoGenerateV3 writes testdata/v3/repo. It runs only with
// -regenerate-v3; see testdata/v3/README.md.
func TestFrozenRepoGenerateV3(t *testing.T) {
	if !*regenerateV3 {
		t.Skip("run with -args -regenerate-v3 to rewrite testdata/v3/repo")
	}
	if repo.FormatVersion != frozenV3.Version {
		t.Fatalf("this code writes format v%d: it cannot regenerate testdata/v3; testdata/v3 stays as committed", repo.FormatVersion)
	}
	generateFrozen(t, frozenV3)
}

// TestFrozenRepoV3 is the compatibility test of format v3: every later
// version must pass it unchanged. It also shows that testdata/v3 really is
// format v3: its config is bound (as v2's), names a gear seed and no
// polynomial, its data blobs are S2 (flag 2) or raw, never zstd, its
// tree blobs zstd or raw, and its packs are named by BLAKE3-256.
func TestFrozenRepoV3(t *testing.T) {
	ctx := context.Background()
	for _, pw := range frozenV3.Passwords {
		if err := verifyFrozen(ctx, frozenV3Dir, pw, frozenV3); err != nil {
			t.Fatal(err)
		}
	}
	be, err := local.Open(frozenV3Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Open(ctx, be, frozenV2Password1); !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("open v3 with the v2 password: %v, want %v", err, repo.ErrWrongPassword)
	}
	if err := repo.FrozenConfigIsBound(ctx, be, frozenV3Password1); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, frozenV3Password1)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := r.Config(); cfg.GearSeed == nil || cfg.ChunkerPolynomial != 0 {
		t.Fatalf("config %+v: want a gear seed and no chunker polynomial", cfg)
	}
	flags, err := repo.BlobFlags(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("envelope flags by blob type: %v", flags)
	data, tree := flags[repo.DataBlob], flags[repo.TreeBlob]
	if data[2] == 0 || data[1] != 0 {
		t.Errorf("data blobs by flag %v: want some S2 (2) and no zstd (1)", data)
	}
	if tree[1] == 0 || tree[2] != 0 {
		t.Errorf("tree blobs by flag %v: want some zstd (1) and no S2 (2)", tree)
	}
	// Packs are named by the BLAKE3-256 of their bytes, other files by
	// SHA-256 as in v2.
	for _, sub := range []string{"data", "index", "points", "keys"} {
		err := filepath.WalkDir(filepath.Join(frozenV3Dir, sub), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			want := sha256.Sum256(b)
			if sub == "data" {
				want = blake3.Sum256(b)
			}
			if d.Name() != hex.EncodeToString(want[:]) {
				t.Errorf("%s/%s is not named by the %s of its bytes", sub, d.Name(), map[bool]string{true: "BLAKE3-256", false: "SHA-256"}[sub == "data"])
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
