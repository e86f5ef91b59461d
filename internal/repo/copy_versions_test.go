package repo_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/local"
)

// writableFrozen copies a frozen repository into a temporary directory
// (copying, taking locks and forgetting write into it).
func writableFrozen(t *testing.T, dir, password string) *repo.Repository {
	t.Helper()
	tmp := filepath.Join(t.TempDir(), "repo")
	if err := os.CopyFS(tmp, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(tmp, "locks"), 0o700); err != nil {
		t.Fatal(err)
	}
	be, err := local.Open(tmp)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(context.Background(), be, password, repo.WithKDF(frozenKDF))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// `repo copy` between format versions copies blobs: a blob ID is the
// SHA-256 of the plaintext in v2 and v3 alike, so each blob is read,
// verified and sealed again under the target's key and with the target's
// envelope rules (a v3 target stores data blobs S2 or raw, a v2 target
// zstd or raw), keeping the source's chunk boundaries. The copies read back
// byte for byte, and each target stays in its own format.
func TestCopyBetweenFormatVersions(t *testing.T) {
	ctx := context.Background()
	v2 := writableFrozen(t, frozenV2Dir, frozenV2Password1)
	be3, err := local.Create(filepath.Join(t.TempDir(), "v3"))
	if err != nil {
		t.Fatal(err)
	}
	v3, err := repo.Init(ctx, be3, "v3 password", repo.WithKDF(frozenKDF))
	if err != nil {
		t.Fatal(err)
	}
	var ids []repo.ID
	for _, p := range frozenV2.Points {
		id, err := repo.ParseID(p.ID)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// verify finds each point in to by its origin and compares it with the
	// frozen content, origin tag added.
	verify := func(to *repo.Repository, version int) {
		t.Helper()
		if v := to.Config().Version; v != version {
			t.Fatalf("target is format v%d, want v%d", v, version)
		}
		for i, p := range frozenV2.Points {
			got, err := repo.FindOrigin(ctx, to.ReadOnly(), ids[i])
			if err != nil {
				t.Fatalf("v%d target: point %s: %v", version, p.Name, err)
			}
			want := p
			want.Tags = map[string]string{"arca.io/origin": p.ID}
			for k, v := range p.Tags {
				want.Tags[k] = v
			}
			if err := comparePoint(ctx, to, got, want); err != nil {
				t.Fatalf("v%d target: point %s: %v", version, p.Name, err)
			}
		}
		rep, err := to.Check(ctx, repo.CheckOptions{ReadData: true})
		if err != nil || len(rep.Damaged) > 0 {
			t.Fatalf("v%d target: check: %v, damaged %+v", version, err, rep)
		}
	}

	rep, err := repo.Copy(ctx, v2.ReadOnly(), v3, ids, repo.CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Copied != len(ids) || rep.NewBlobs == 0 {
		t.Fatalf("v2 → v3: %+v: want every point copied with its blobs", rep)
	}
	verify(v3, 3)
	flags, err := repo.BlobFlags(ctx, v3)
	if err != nil {
		t.Fatal(err)
	}
	if d := flags[repo.DataBlob]; d[1] != 0 || d[2] == 0 {
		t.Fatalf("v3 target's data blobs by envelope flag %v: want S2 (2) and raw, no zstd", d)
	}

	// Back into a v2 repository that no longer holds the points.
	v2b := writableFrozen(t, frozenV2Dir, frozenV2Password1)
	if err := v2b.Forget(ctx, ids); err != nil {
		t.Fatal(err)
	}
	if _, err := v2b.Prune(ctx, repo.PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	var copies []repo.ID
	for _, id := range ids {
		c, err := repo.FindOrigin(ctx, v3.ReadOnly(), id)
		if err != nil {
			t.Fatal(err)
		}
		copies = append(copies, c.ID)
	}
	rep, err = repo.Copy(ctx, v3.ReadOnly(), v2b, copies, repo.CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Copied != len(ids) || rep.NewBlobs == 0 {
		t.Fatalf("v3 → v2: %+v: want every point copied with its blobs", rep)
	}
	verify(v2b, 2)
	if flags, err = repo.BlobFlags(ctx, v2b); err != nil {
		t.Fatal(err)
	}
	if d := flags[repo.DataBlob]; d[2] != 0 {
		t.Fatalf("v2 target holds S2 envelopes (flag 2): %v", d)
	}
}
