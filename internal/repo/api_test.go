package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/storage"
)

// A Reader reads everything a restore needs, and nothing on it writes:
// not even a type assertion reaches the writing methods of *Repository.
func TestReadOnlyViewCannotWrite(t *testing.T) {
	ctx := context.Background()
	w, be, clk := newTestRepo(t)
	rp, objs, _ := writeBackup(t, w, backupSpec{types: 2, objects: 5, seed: 1}, "a")

	rd, err := OpenReader(ctx, be, "secret", testOpts(clk)...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rd.FindRecoveryPoint(ctx, "latest")
	if err != nil || got.ID != rp.ID {
		t.Fatalf("latest = %v, %v; want %s", got, err, rp.ID.Short())
	}
	n := 0
	for _, rt := range got.Resources {
		if err := rd.WalkTree(ctx, rt.Tree, func(e TreeEntry) error {
			b, err := rd.LoadBlob(ctx, e.Blobs[0])
			if err != nil {
				return err
			}
			if string(b) != string(objs[e.Name]) {
				t.Errorf("%s: content differs", e.Name)
			}
			n++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if n != 10 {
		t.Errorf("read %d objects, want 10", n)
	}
	if rep, err := rd.Check(ctx, CheckOptions{}); err != nil || !rep.OK() {
		t.Fatalf("check: %v %+v", err, rep)
	}

	for name, v := range map[string]any{"OpenReader": rd, "ReadOnly": w.ReadOnly()} {
		if _, ok := v.(*Repository); ok {
			t.Errorf("%s: the Reader is a *Repository", name)
		}
		if _, ok := v.(interface {
			NewWriter(context.Context) (*Writer, error)
		}); ok {
			t.Errorf("%s: the Reader has NewWriter", name)
		}
		if _, ok := v.(interface {
			Prune(context.Context, PruneOptions) (*PruneReport, error)
		}); ok {
			t.Errorf("%s: the Reader has Prune", name)
		}
		if _, ok := v.(interface {
			Forget(context.Context, []ID) error
		}); ok {
			t.Errorf("%s: the Reader has Forget", name)
		}
		if _, ok := v.(interface {
			AddKey(context.Context, string) (ID, error)
		}); ok {
			t.Errorf("%s: the Reader has AddKey", name)
		}
	}
}

// A planted key file with scrypt parameters over the caps is refused before
// anything is derived: opening takes no time and no memory, the right
// password still opens through the real key, and a wrong one says which
// key file was refused and how to remove it.
func TestPlantedCostlyKeyRefused(t *testing.T) {
	ctx := context.Background()
	_, be, clk := newTestRepo(t)
	// 2^20 · 8 · 128 bytes = 1 GiB, 32 times the default time: under
	// format v1's limits this was derived.
	kf := keyFile{Version: keyFileVersion, KDF: "scrypt", N: 1 << 20, R: 8, P: 1, Salt: randomBytes(32), Data: randomBytes(80)}
	b, err := json.Marshal(kf)
	if err != nil {
		t.Fatal(err)
	}
	planted := Hash(b)
	if err := be.Save(ctx, storage.Handle{Type: storage.KeyFile, Name: planted.String()}, int64(len(b)), bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err = Open(ctx, be, "wrong password", testOpts(clk)...)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrWrongPassword) || !errors.Is(err, ErrKDFTooCostly) {
		t.Fatalf("open with a wrong password: %v; want ErrWrongPassword and ErrKDFTooCostly", err)
	}
	for _, s := range []string{planted.Short(), "N=1048576 r=8 p=1", "1024 MiB", "arca repo key remove"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	// Deriving would allocate 1 GiB; the bound leaves room for whatever
	// else the test process allocates meanwhile.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 || took > 30*time.Second {
		t.Errorf("open allocated %d MiB in %s: the planted key was derived", alloc>>20, took)
	}
	if _, err := Open(ctx, be, "secret", testOpts(clk)...); err != nil {
		t.Fatalf("the right password no longer opens beside a planted key: %v", err)
	}
}

// A writer that reuses blobs of an earlier recovery point checks, before it
// writes its manifest, that their packs still exist: a pack deleted behind
// its back fails the commit with an error naming it, and no manifest (and
// no index file) is written.
func TestCommitChecksReusedPacksExist(t *testing.T) {
	ctx := context.Background()
	r, be, _ := newTestRepo(t)
	first, _, _ := writeBackup(t, r, backupSpec{types: 1, objects: 3, seed: 7}, "first")
	packs, err := r.listIDs(ctx, storage.PackFile)
	if err != nil {
		t.Fatal(err)
	}
	indexBefore, _ := r.listIDs(ctx, storage.IndexFile)

	w, err := r.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tw := w.NewTree()
	// The same content as the first point: deduplicated, nothing new.
	for i := 0; i < 3; i++ {
		id, err := w.PutBlob(ctx, object(0*1_000_000+i+7, 1000+i%700)) // as writeBackup made them
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.Add(ctx, TreeEntry{Version: "v1", Resource: "things", Kind: "Thing", Name: fmt.Sprint(i), Blobs: []ID{id}, Size: 2000}); err != nil {
			t.Fatal(err)
		}
	}
	if st := w.Stats(); st.DuplicateBlobs == 0 {
		t.Fatalf("nothing was deduplicated (%+v): the test would not test reuse", st)
	}
	tree, err := tw.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for id := range packs {
		if err := be.Remove(ctx, storage.Handle{Type: storage.PackFile, Name: id.String()}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = w.Commit(ctx, &RecoveryPoint{Name: "second", Resources: []ResourceTree{{Version: "v1", Resource: "things", Tree: tree}}})
	if !errors.Is(err, ErrPacksMissing) || !strings.Contains(err.Error(), "no manifest was written") || !strings.Contains(err.Error(), "data/") {
		t.Fatalf("commit over deleted packs: %v, want ErrPacksMissing naming the packs", err)
	}
	rps, err := r.ListRecoveryPoints(ctx)
	if err != nil || len(rps) != 1 || rps[0].ID != first.ID {
		t.Fatalf("recovery points after the failed commit: %v (%v), want only the first", rps, err)
	}
	if indexAfter, _ := r.listIDs(ctx, storage.IndexFile); len(indexAfter) != len(indexBefore) {
		t.Errorf("%d index files after the failed commit, want %d", len(indexAfter), len(indexBefore))
	}
}
