package repo

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"testing"
	"time"
	"unsafe"

	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/faulty"
	"github.com/arca-backup/arca/internal/storage/mem"
)

// within reports whether p's bytes lie inside buf's storage.
func within(p, buf []byte) bool {
	if len(p) == 0 || cap(buf) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	at := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	return at >= lo && at+uintptr(len(p)) <= lo+uintptr(cap(buf))
}

// LoadBlobTo reads and decrypts into the caller's buffer, through the
// block cache (small blobs) and around it (large ones), raw and
// compressed, and a dirty recycled buffer gives the same plaintext.
func TestLoadBlobToRecyclesBuffers(t *testing.T) {
	ctx := context.Background()
	r, _, _ := newTestRepo(t, WithPackSize(4<<20))
	rnd := rand.New(rand.NewSource(5))
	random := func(n int) []byte { b := make([]byte, n); rnd.Read(b); return b }
	blobs := map[string][]byte{
		"small random":     random(3000),
		"large random":     random(700 << 10),
		"large repetitive": bytes.Repeat([]byte("arca restores "), 50<<10),
	}
	w, err := r.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]ID{}
	for name, b := range blobs {
		if ids[name], err = w.PutBlob(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Commit(ctx, &RecoveryPoint{Name: "loadto", Started: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	for name, want := range blobs {
		var buf []byte
		alloc := func(n int) []byte {
			if cap(buf) < n {
				buf = make([]byte, n)
			}
			for i := range buf[:cap(buf)] { // dirty, as a recycled buffer is
				buf[:cap(buf)][i] = 0xa5
			}
			return buf[:n]
		}
		for round := 0; round < 2; round++ {
			got, err := r.LoadBlobTo(ctx, ids[name], alloc)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s, round %d: plaintext differs", name, round)
			}
			if compressed := name == "large repetitive"; within(got, buf) == compressed {
				t.Errorf("%s: plaintext inside the caller's buffer: %v, want %v", name, compressed, !compressed)
			}
		}
	}
}

// A damaged read through LoadBlobTo fails as LoadBlob does, after reading
// once more into a new buffer.
func TestLoadBlobToDamaged(t *testing.T) {
	fb := faulty.New(mem.New())
	r, err := Init(context.Background(), fb, "secret", testOpts(newFakeClock(), WithCacheSize(0))...)
	if err != nil {
		t.Fatal(err)
	}
	rp, _, _ := writeBackup(t, r, backupSpec{types: 1, objects: 20}, "a")
	id := firstBlob(t, r, rp)
	fb.Add(faulty.Fault{Op: faulty.OpLoad, Type: storage.PackFile, Probability: 1, Kind: faulty.Corrupt})
	allocs := 0
	data, err := r.LoadBlobTo(context.Background(), id, func(n int) []byte { allocs++; return make([]byte, n) })
	if err == nil || !errors.Is(err, ErrBlobDamaged) {
		t.Fatalf("corrupted read: %d bytes, %v", len(data), err)
	}
	if allocs != 2 {
		t.Errorf("%d buffers asked for, want 2 (the read and the direct re-read)", allocs)
	}
}
