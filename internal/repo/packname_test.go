package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	mrand "math/rand"
	"os"
	"path/filepath"
	"testing"

	"lukechampine.com/blake3"

	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/local"
)

// TestPackNamesHashWholePack: a pack's name is the hash of every byte of
// the finished pack, header included: BLAKE3-256 in format v3, SHA-256 in a
// format-v2 repository written by this build (a copy of testdata/v2), with
// several uploaders at once.
func TestPackNamesHashWholePack(t *testing.T) {
	ctx := context.Background()
	v3, _, _ := newTestRepo(t)
	dir := t.TempDir()
	copyTree(t, "testdata/v2/repo", dir)
	be, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := Open(ctx, be, "frozen-v2 first password", WithKDF(testKDF), WithPackSize(64<<10), WithLockWait(0, nil))
	if err != nil {
		t.Fatal(err)
	}
	if v2.cfg.Version != 2 {
		t.Fatalf("testdata/v2 opened as format v%d", v2.cfg.Version)
	}
	for _, tc := range []struct {
		r    *Repository
		name func([]byte) ID
	}{
		{v3, func(b []byte) ID { return blake3.Sum256(b) }},
		{v2, func(b []byte) ID { return sha256.Sum256(b) }},
	} {
		before := map[string]bool{}
		if err := tc.r.be.List(ctx, storage.PackFile, func(fi storage.FileInfo) error { before[fi.Name] = true; return nil }); err != nil {
			t.Fatal(err)
		}
		w, err := tc.r.NewWriter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Blobs of odd sizes, several to a 64 KiB pack, and a stream of
		// chunks larger than a pack.
		rnd := mrand.New(mrand.NewSource(int64(tc.r.cfg.Version)))
		for i := 0; i < 40; i++ {
			b := make([]byte, 1+rnd.Intn(20000))
			rnd.Read(b)
			if _, err := w.PutBlob(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		big := make([]byte, 3<<20)
		rnd.Read(big)
		if _, _, err := w.PutStream(ctx, bytes.NewReader(big)); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Commit(ctx, &RecoveryPoint{Name: "packnames"}); err != nil {
			t.Fatal(err)
		}
		n := 0
		err = tc.r.be.List(ctx, storage.PackFile, func(fi storage.FileInfo) error {
			if before[fi.Name] {
				return nil
			}
			n++
			return tc.r.be.Load(ctx, storage.Handle{Type: storage.PackFile, Name: fi.Name}, 0, 0, func(rd io.Reader) error {
				data, err := io.ReadAll(rd)
				if err != nil {
					return err
				}
				if got := tc.name(data); got.String() != fi.Name {
					t.Errorf("format v%d: pack %s holds bytes hashing to %s", tc.r.cfg.Version, fi.Name, got)
				}
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if n < 5 {
			t.Fatalf("format v%d: %d new packs, want several", tc.r.cfg.Version, n)
		}
	}
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
