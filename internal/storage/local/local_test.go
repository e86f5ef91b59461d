package local_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/local"
	"github.com/arca-backup/arca/internal/storage/storagetest"
)

func TestSuite(t *testing.T) {
	storagetest.RunSuite(t, func(t *testing.T) storage.Backend {
		be, err := local.Create(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return be
	})
}

func TestLayout(t *testing.T) {
	dir := t.TempDir()
	be, err := local.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, h := range []storage.Handle{
		{Type: storage.ConfigFile},
		{Type: storage.PackFile, Name: "abcdef"},
		{Type: storage.IndexFile, Name: "0123"},
	} {
		if err := be.Save(ctx, h, 2, strings.NewReader("hi")); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"config", "data/ab/abcdef", "index/0123", "keys", "locks", "points"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("layout: %v", err)
		}
	}
	// No temporary files remain.
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
	if err := be.Save(ctx, storage.Handle{Type: storage.PackFile, Name: "a"}, 1, strings.NewReader("x")); !storage.IsPermanent(err) {
		t.Errorf("pack with a 1-character name: %v, want a permanent error", err)
	}
}

func TestOpenMissing(t *testing.T) {
	_, err := local.Open(filepath.Join(t.TempDir(), "nope"))
	if !storage.IsNotExist(err) {
		t.Fatalf("Open of a missing directory: %v, want IsNotExist", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := local.Open(f); !storage.IsPermanent(err) {
		t.Fatalf("Open of a file: %v, want a permanent error", err)
	}
	be, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Open does not create the layout; Save creates directories on demand.
	if err := be.Save(t.Context(), storage.Handle{Type: storage.PackFile, Name: "ffee"}, 1, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
}
