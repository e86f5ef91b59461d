package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/mem"
)

var testKDF = KDFParams{N: 1 << 10, R: 8, P: 1}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
}
func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testOpts(clk Clock, extra ...Option) []Option {
	// Lock conflicts fail at once unless a test asks to wait.
	return append([]Option{WithKDF(testKDF), WithClock(clk), WithPackSize(64 << 10), WithLockWait(0, nil)}, extra...)
}

func newTestRepo(t *testing.T, extra ...Option) (*Repository, storage.Backend, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	// The storage stamps files with the same clock as the repository's
	// (lock staleness is judged by the storage's clock); clockskew_test.go
	// sets them apart.
	be := mem.NewWithClock(clk.Now)
	r, err := Init(context.Background(), be, "secret", testOpts(clk, extra...)...)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return r, be, clk
}

func reopen(t *testing.T, be storage.Backend, clk Clock) *Repository {
	t.Helper()
	r, err := Open(context.Background(), be, "secret", testOpts(clk)...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return r
}

// object returns deterministic pseudo-random test content.
func object(seed, size int) []byte {
	rnd := rand.New(rand.NewSource(int64(seed)))
	b := make([]byte, size)
	// Half random, half text, so that compression has something to do.
	rnd.Read(b[:size/2])
	copy(b[size/2:], bytes.Repeat([]byte(fmt.Sprintf("object-%d ", seed)), size))
	return b
}

type backupSpec struct {
	types   int
	objects int // per type
	seed    int // changes content
}

// writeBackup writes a recovery point of spec and returns it with the
// objects' content by name.
func writeBackup(t *testing.T, r *Repository, s backupSpec, name string) (*RecoveryPoint, map[string][]byte, WriterStats) {
	t.Helper()
	ctx := context.Background()
	w, err := r.NewWriter(ctx)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	content := map[string][]byte{}
	rp := &RecoveryPoint{Name: name, Started: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	for ti := 0; ti < s.types; ti++ {
		tw := w.NewTree()
		for i := 0; i < s.objects; i++ {
			n := fmt.Sprintf("t%d/obj-%05d", ti, i)
			data := object(ti*1_000_000+i+s.seed, 1000+i%700)
			id, err := w.PutBlob(ctx, data)
			if err != nil {
				t.Fatalf("PutBlob: %v", err)
			}
			content[n] = data
			if err := tw.Add(ctx, TreeEntry{Group: "apps", Version: "v1", Resource: fmt.Sprintf("r%d", ti), Kind: "K", Namespace: "ns", Name: n, Blobs: []ID{id}, Size: int64(len(data))}); err != nil {
				t.Fatalf("Add: %v", err)
			}
		}
		tree, err := tw.Close(ctx)
		if err != nil {
			t.Fatalf("tree Close: %v", err)
		}
		rp.Resources = append(rp.Resources, ResourceTree{Group: "apps", Version: "v1", Resource: fmt.Sprintf("r%d", ti), Kind: "K", Namespaced: true, Tree: tree})
		rp.Summary.Items += s.objects
	}
	if _, err := w.Commit(ctx, rp); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return rp, content, w.Stats()
}

func verifyBackup(t *testing.T, r *Repository, rp *RecoveryPoint, content map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	n := 0
	for _, rt := range rp.Resources {
		err := r.WalkTree(ctx, rt.Tree, func(e TreeEntry) error {
			want, ok := content[e.Name]
			if !ok {
				return fmt.Errorf("unexpected entry %q", e.Name)
			}
			got, err := r.LoadBlob(ctx, e.Blobs[0])
			if err != nil {
				return err
			}
			if !bytes.Equal(got, want) {
				return fmt.Errorf("%s: content differs", e.Name)
			}
			n++
			return nil
		})
		if err != nil {
			t.Fatalf("WalkTree: %v", err)
		}
	}
	if n != len(content) {
		t.Fatalf("walked %d entries, want %d", n, len(content))
	}
}

func TestRoundTrip(t *testing.T) {
	r, be, clk := newTestRepo(t)
	rp, content, st := writeBackup(t, r, backupSpec{types: 3, objects: 500}, "first")
	if st.NewBlobs == 0 || st.Packs < 2 {
		t.Fatalf("stats: %+v", st)
	}
	verifyBackup(t, r, rp, content)
	// Through a fresh Open.
	r2 := reopen(t, be, clk)
	got, err := r2.FindRecoveryPoint(context.Background(), "latest")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != rp.ID || got.Name != "first" || len(got.Resources) != 3 {
		t.Fatalf("FindRecoveryPoint latest: %+v", got)
	}
	verifyBackup(t, r2, got, content)
	for _, ref := range []string{rp.ID.String(), rp.ID.String()[:8]} {
		if got, err := r2.FindRecoveryPoint(context.Background(), ref); err != nil || got.ID != rp.ID {
			t.Fatalf("Find %q: %v", ref, err)
		}
	}
	if _, err := r2.FindRecoveryPoint(context.Background(), "ffffffff"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Find unknown: %v", err)
	}
	// No locks left behind.
	if locks, _ := r2.Locks(context.Background()); len(locks) != 0 {
		t.Fatalf("locks left: %v", locks)
	}
}

func TestDedupAcrossRecoveryPoints(t *testing.T) {
	r, be, clk := newTestRepo(t)
	_, _, first := writeBackup(t, r, backupSpec{types: 4, objects: 1000}, "a")
	r2 := reopen(t, be, clk)
	rp, content, second := writeBackup(t, r2, backupSpec{types: 4, objects: 1000}, "b")
	if second.NewBlobs != 0 {
		t.Fatalf("unchanged re-backup stored %d new blobs", second.NewBlobs)
	}
	if ratio := float64(second.StoredBytes) / float64(first.StoredBytes); ratio >= 0.01 {
		t.Fatalf("unchanged re-backup wrote %d bytes = %.2f%% of the first (%d)", second.StoredBytes, 100*ratio, first.StoredBytes)
	}
	verifyBackup(t, r2, rp, content)
	rps, err := r2.ListRecoveryPoints(context.Background())
	if err != nil || len(rps) != 2 {
		t.Fatalf("list: %d %v", len(rps), err)
	}
}

func TestWrongPassword(t *testing.T) {
	_, be, clk := newTestRepo(t)
	before := snapshotFiles(t, be)
	_, err := Open(context.Background(), be, "nope", testOpts(clk)...)
	if !errors.Is(err, ErrWrongPassword) || err.Error() != "wrong password or no key for this repository" {
		t.Fatalf("Open with wrong password: %v", err)
	}
	_, _, err = OpenOrInit(context.Background(), be, "nope", testOpts(clk)...)
	if !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("OpenOrInit with wrong password: %v", err)
	}
	if after := snapshotFiles(t, be); !equalSets(before, after) {
		t.Fatalf("wrong password wrote files: before %v after %v", before, after)
	}
}

func TestNoRepository(t *testing.T) {
	_, err := Open(context.Background(), mem.New(), "x", WithKDF(testKDF))
	if !errors.Is(err, ErrNoRepository) {
		t.Fatalf("Open empty: %v", err)
	}
	be := mem.New()
	r, created, err := OpenOrInit(context.Background(), be, "x", WithKDF(testKDF))
	if err != nil || !created || r == nil {
		t.Fatalf("OpenOrInit: %v %v", created, err)
	}
	_, created, err = OpenOrInit(context.Background(), be, "x", WithKDF(testKDF))
	if err != nil || created {
		t.Fatalf("OpenOrInit second: %v %v", created, err)
	}
	if _, err := Init(context.Background(), be, "x", WithKDF(testKDF)); !errors.Is(err, ErrRepositoryExists) {
		t.Fatalf("Init twice: %v", err)
	}
}

func snapshotFiles(t *testing.T, be storage.Backend) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, ft := range storage.FileTypes {
		err := be.List(context.Background(), ft, func(fi storage.FileInfo) error {
			out[storage.Handle{Type: ft, Name: fi.Name}.String()] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func equalSets(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// TestUnchangedRebackup100k: the architecture target — re-backing up an
// unchanged cluster of 100,000 objects writes under 1% of the first backup.
func TestUnchangedRebackup100k(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 objects")
	}
	r, _, _ := newTestRepo(t, WithPackSize(4<<20))
	spec := backupSpec{types: 20, objects: 5000}
	_, _, first := writeBackup(t, r, spec, "first")
	_, _, second := writeBackup(t, r, spec, "second")
	if second.NewBlobs != 0 || float64(second.StoredBytes) >= 0.01*float64(first.StoredBytes) {
		t.Fatalf("re-backup wrote %d bytes (%d new blobs); first wrote %d", second.StoredBytes, second.NewBlobs, first.StoredBytes)
	}
	t.Logf("first %d bytes, unchanged re-backup %d bytes (%.4f%%)", first.StoredBytes, second.StoredBytes, 100*float64(second.StoredBytes)/float64(first.StoredBytes))
}

func TestDamagedConfig(t *testing.T) {
	_, be, clk := newTestRepo(t)
	rewrite(t, be, storage.Handle{Type: storage.ConfigFile}, func(b []byte) []byte { b[len(b)-1] ^= 1; return b })
	if _, err := Open(context.Background(), be, "secret", testOpts(clk)...); !errors.Is(err, ErrConfigDamaged) {
		t.Fatalf("open with damaged config: %v", err)
	}
	if _, err := Open(context.Background(), be, "other", testOpts(clk)...); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password with damaged config: %v", err)
	}
}
