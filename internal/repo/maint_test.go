package repo

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/faulty"
	"github.com/arca-backup/arca/internal/storage/mem"
	"github.com/arca-backup/arca/internal/storage/retry"
)

func TestPrune(t *testing.T) {
	r, be, clk := newTestRepo(t)
	ctx := context.Background()
	// a and b share types 0–1 (same seed); b has a type of its own; c is
	// independent. Forget b: its own blobs go, shared ones stay.
	a, ca, _ := writeBackup(t, r, backupSpec{types: 2, objects: 300}, "a")
	b, _, _ := writeBackup(t, r, backupSpec{types: 3, objects: 300, seed: 0}, "b")
	_ = b
	c, cc, _ := writeBackup(t, r, backupSpec{types: 1, objects: 200, seed: 9_000_000}, "c")
	// An aborted writer leaves an orphan pack.
	w, _ := r.NewWriter(ctx)
	for i := 0; i < 100; i++ {
		if _, err := w.PutBlob(ctx, object(42_000_000+i, 1500)); err != nil {
			t.Fatal(err)
		}
	}
	_ = w.Abort(ctx)
	before, _ := r.Stats(ctx)
	if err := r.Forget(ctx, []ID{b.ID}); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Prune(ctx, PruneOptions{})
	if err != nil {
		t.Fatalf("prune: %v", err)
	}
	if rep.PacksRemoved == 0 || rep.BytesAfter >= rep.BytesBefore || rep.BlobsRemoved < 300 {
		t.Fatalf("prune reclaimed nothing: %+v", rep)
	}
	after, _ := r.Stats(ctx)
	if after.StoredBytes >= before.StoredBytes {
		t.Fatalf("stored bytes %d → %d", before.StoredBytes, after.StoredBytes)
	}
	// Every referenced blob is still there, in this and a fresh repository.
	verifyBackup(t, r, a, ca)
	verifyBackup(t, r, c, cc)
	r2 := reopen(t, be, clk)
	verifyBackup(t, r2, a, ca)
	verifyBackup(t, r2, c, cc)
	chk, err := r2.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || !chk.OK() || chk.UnreferencedPacks != 0 {
		t.Fatalf("check after prune: %+v %v", chk, err)
	}
	// A second prune finds nothing to do.
	rep2, err := r2.Prune(ctx, PruneOptions{})
	if err != nil || rep2.PacksRemoved != 0 || rep2.PacksRepacked != 0 {
		t.Fatalf("second prune: %+v %v", rep2, err)
	}
	// New backups still dedup against the pruned repository.
	_, _, st := writeBackup(t, r2, backupSpec{types: 2, objects: 300}, "a2")
	if st.NewBlobs != 0 {
		t.Fatalf("after prune, re-backup stored %d new blobs", st.NewBlobs)
	}
}

// TestPruneCrash stops prune at each storage write or removal in turn and
// checks that the repository is valid and complete every time. The setup
// makes prune remove packs, repack a partly used one and replace the index.
func TestPruneCrash(t *testing.T) {
	for step := 1; ; step++ {
		fb := faulty.New(mem.New())
		clk := newFakeClock()
		r, err := Init(context.Background(), fb, "secret", testOpts(clk)...)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		// c holds types 0 and 1 in shared packs; d references type 0 only.
		c, _, _ := writeBackup(t, r, backupSpec{types: 2, objects: 150}, "c")
		d, cd, _ := writeBackup(t, r, backupSpec{types: 1, objects: 150}, "d")
		e, _, _ := writeBackup(t, r, backupSpec{types: 1, objects: 100, seed: 3_000_000}, "e")
		if err := r.Forget(ctx, []ID{c.ID, e.ID}); err != nil {
			t.Fatal(err)
		}
		fb.Add(faulty.Fault{Op: faulty.OpRemove, Nth: step, Count: -1, Kind: faulty.Permanent},
			faulty.Fault{Op: faulty.OpSave, Type: storage.PackFile, Nth: step, Count: -1, Kind: faulty.Permanent},
			faulty.Fault{Op: faulty.OpSave, Type: storage.IndexFile, Nth: step, Count: -1, Kind: faulty.Permanent})
		rep, perr := r.Prune(ctx, PruneOptions{})
		fb.Clear()
		r2 := reopen(t, fb, clk)
		if _, err := r2.Unlock(ctx, true); err != nil {
			t.Fatal(err)
		}
		verifyBackup(t, r2, d, cd)
		chk, err := r2.Check(ctx, CheckOptions{ReadData: true})
		if err != nil || !chk.OK() {
			t.Fatalf("step %d: check after interrupted prune (%v): %+v %v", step, perr, chk, err)
		}
		if perr == nil {
			if step < 4 || rep.PacksRepacked == 0 || rep.PacksRemoved == 0 {
				t.Fatalf("prune completed at step %d: %+v", step, rep)
			}
			t.Logf("prune interrupted at steps 1..%d; complete run: %+v", step-1, rep)
			return
		}
		if step > 500 {
			t.Fatal("too many steps")
		}
	}
}

func TestRetention(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	// One point every 6 hours for 60 days.
	var pts []*RecoveryPoint
	for i := 0; i < 60*4; i++ {
		rp := &RecoveryPoint{Started: now.Add(-time.Duration(i) * 6 * time.Hour)}
		rp.ID = Hash([]byte(fmt.Sprint(i)))
		pts = append(pts, rp)
	}
	kept := func(p RetentionPolicy) int {
		n := 0
		for _, d := range ApplyRetention(pts, p, now) {
			if d.Keep {
				n++
			}
		}
		return n
	}
	cases := []struct {
		name string
		p    RetentionPolicy
		want int
	}{
		{"empty keeps all", RetentionPolicy{}, 240},
		{"last 5", RetentionPolicy{KeepLast: 5}, 5},
		{"daily 7", RetentionPolicy{KeepDaily: 7}, 7},
		{"weekly 4", RetentionPolicy{KeepWeekly: 4}, 4},
		{"monthly 12 (3 months exist)", RetentionPolicy{KeepMonthly: 12}, 3},
		{"within 48h", RetentionPolicy{KeepWithin: 48 * time.Hour}, 9},
		{"daily 7 + weekly 4 overlap (2 weeks covered by daily)", RetentionPolicy{KeepDaily: 7, KeepWeekly: 4}, 9},
		{"hourly 3", RetentionPolicy{KeepHourly: 3}, 3},
		{"yearly 1", RetentionPolicy{KeepYearly: 1}, 1},
		{"within 0 still keeps newest", RetentionPolicy{KeepWithin: time.Nanosecond}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := kept(tc.p); got != tc.want {
				t.Fatalf("kept %d, want %d", got, tc.want)
			}
		})
	}
	ds := ApplyRetention(pts, RetentionPolicy{KeepDaily: 2}, now)
	if !ds[0].Keep || ds[0].ID != pts[0].ID {
		t.Fatal("newest not kept first")
	}
}

func TestLocks(t *testing.T) {
	r, _, clk := newTestRepo(t)
	ctx := context.Background()
	w, err := r.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Shared locks coexist.
	w2, err := r.NewWriter(ctx)
	if err != nil {
		t.Fatalf("second shared lock: %v", err)
	}
	_ = w2.Abort(ctx)
	// Prune needs an exclusive lock.
	if _, err := r.Prune(ctx, PruneOptions{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("prune while a writer runs: %v", err)
	}
	if _, err := w.Commit(ctx, &RecoveryPoint{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Prune(ctx, PruneOptions{}); err != nil {
		t.Fatalf("prune after commit: %v", err)
	}
	// An exclusive lock blocks writers.
	hl, err := r.lock(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.NewWriter(ctx); !errors.Is(err, ErrLocked) {
		t.Fatalf("writer during exclusive lock: %v", err)
	}
	// A crashed process's lock becomes stale and removable.
	close(hl.stop) // stop refreshing without removing: simulates a crash
	<-hl.done
	if stale, _ := r.Unlock(ctx, true); len(stale) != 0 {
		t.Fatalf("fresh lock reported stale: %v", stale)
	}
	clk.Advance(31 * time.Minute)
	if w, err := r.NewWriter(ctx); err != nil {
		t.Fatalf("stale lock still blocks: %v", err)
	} else {
		_ = w.Abort(ctx)
	}
	stale, err := r.Unlock(ctx, false)
	if err != nil || len(stale) != 1 || !stale[0].Exclusive {
		t.Fatalf("Unlock(dry): %v %v", stale, err)
	}
	if _, err := r.Unlock(ctx, true); err != nil {
		t.Fatal(err)
	}
	if locks, _ := r.Locks(ctx); len(locks) != 0 {
		t.Fatalf("locks left: %v", locks)
	}
}

func TestLockRefresh(t *testing.T) {
	r, _, clk := newTestRepo(t, WithLockTimes(30*time.Minute, 10*time.Millisecond))
	ctx := context.Background()
	w, err := r.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort(ctx)
	clk.Advance(20 * time.Minute)
	time.Sleep(100 * time.Millisecond) // several refreshes
	clk.Advance(20 * time.Minute)
	locks, _ := r.Locks(ctx)
	if len(locks) != 1 || locks[0].Stale {
		t.Fatalf("refreshed lock: %+v", locks)
	}
}

func TestTransientErrorsRetried(t *testing.T) {
	fb := faulty.New(mem.New())
	be := retry.New(fb, retry.Options{Sleep: func(context.Context, time.Duration) error { return nil }})
	clk := newFakeClock()
	r, err := Init(context.Background(), be, "secret", testOpts(clk)...)
	if err != nil {
		t.Fatal(err)
	}
	fb.Add(faulty.Fault{Op: faulty.OpAny, Probability: 0.2, Kind: faulty.Transient},
		faulty.Fault{Op: faulty.OpSave, Probability: 0.1, Kind: faulty.LostResponse},
		faulty.Fault{Op: faulty.OpLoad, Probability: 0.1, Kind: faulty.BrokenRead})
	rp, content, _ := writeBackup(t, r, backupSpec{types: 3, objects: 200}, "a")
	r2, err := Open(context.Background(), be, "secret", testOpts(clk)...)
	if err != nil {
		t.Fatal(err)
	}
	verifyBackup(t, r2, rp, content)
	if len(fb.Injected()) == 0 {
		t.Fatal("no faults injected")
	}
}

func TestCorruptReadNeverReturnsWrongData(t *testing.T) {
	fb := faulty.New(mem.New())
	clk := newFakeClock()
	r, err := Init(context.Background(), fb, "secret", testOpts(clk, WithCacheSize(0))...)
	if err != nil {
		t.Fatal(err)
	}
	rp, _, _ := writeBackup(t, r, backupSpec{types: 1, objects: 50}, "a")
	id := firstBlob(t, r, rp)
	fb.Add(faulty.Fault{Op: faulty.OpLoad, Type: storage.PackFile, Probability: 1, Kind: faulty.Corrupt})
	if data, err := r.LoadBlob(context.Background(), id); err == nil || !errors.Is(err, ErrBlobDamaged) {
		t.Fatalf("corrupted read: %d bytes, %v", len(data), err)
	}
}

func TestPermanentErrorDuringCommit(t *testing.T) {
	cases := []struct {
		name  string
		fault faulty.Fault
	}{
		{"pack upload", faulty.Fault{Op: faulty.OpSave, Type: storage.PackFile, Nth: 2, Kind: faulty.Permanent}},
		{"index", faulty.Fault{Op: faulty.OpSave, Type: storage.IndexFile, Nth: 1, Kind: faulty.Permanent}},
		{"manifest", faulty.Fault{Op: faulty.OpSave, Type: storage.RecoveryPointFile, Nth: 1, Kind: faulty.Permanent}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fb := faulty.New(mem.New())
			clk := newFakeClock()
			r, err := Init(context.Background(), fb, "secret", testOpts(clk)...)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			fb.Add(tc.fault)
			w, err := r.NewWriter(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var putErr error
			for i := 0; i < 300 && putErr == nil; i++ {
				_, putErr = w.PutBlob(ctx, object(i, 1500))
			}
			_, err = w.Commit(ctx, &RecoveryPoint{Name: "x"})
			if err == nil {
				t.Fatal("commit succeeded despite a permanent error")
			}
			_ = w.Abort(ctx)
			rps, lerr := r.ListRecoveryPoints(ctx)
			if lerr != nil || len(rps) != 0 {
				t.Fatalf("manifest visible after failed commit: %d %v", len(rps), lerr)
			}
			if locks, _ := r.Locks(ctx); len(locks) != 0 {
				t.Fatalf("lock left after failed commit: %v", locks)
			}
			chk, err := r.Check(ctx, CheckOptions{ReadData: true})
			if err != nil || !chk.OK() {
				t.Fatalf("check: %+v %v", chk, err)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	r, be, clk := newTestRepo(t)
	ctx := context.Background()
	if err := r.RemoveKey(ctx, r.keyID); !errors.Is(err, ErrLastKey) {
		t.Fatalf("remove last key: %v", err)
	}
	id2, err := r.AddKey(ctx, "second")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Open(ctx, be, "second", testOpts(clk)...)
	if err != nil {
		t.Fatalf("open with new key: %v", err)
	}
	if r2.keyID != id2 || r2.cfg.ID != r.cfg.ID {
		t.Fatal("opened with the wrong key")
	}
	if err := r2.RemoveKey(ctx, id2); !errors.Is(err, ErrCurrentKey) {
		t.Fatalf("remove current key: %v", err)
	}
	if err := r2.RemoveKey(ctx, r.keyID); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, be, "secret", testOpts(clk)...); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("removed password still opens: %v", err)
	}
	keys, _ := r2.ListKeys(ctx)
	if len(keys) != 1 || !keys[0].Current {
		t.Fatalf("keys: %+v", keys)
	}
}

func TestCommitAfterLockLost(t *testing.T) {
	r, _, clk := newTestRepo(t)
	ctx := context.Background()
	w, err := r.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.PutBlob(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(31 * time.Minute) // no refresh happened (every 5 real minutes)
	if _, err := w.Commit(ctx, &RecoveryPoint{}); !errors.Is(err, ErrLockLost) {
		t.Fatalf("commit with a stale lock: %v", err)
	}
	if rps, _ := r.ListRecoveryPoints(ctx); len(rps) != 0 {
		t.Fatal("manifest written under a lost lock")
	}
}

// TestPruneByAnotherProcess: a long-lived Repository (the extension) must
// not deduplicate against blobs another process pruned meanwhile.
func TestPruneByAnotherProcess(t *testing.T) {
	r1, be, clk := newTestRepo(t)
	ctx := context.Background()
	a, _, _ := writeBackup(t, r1, backupSpec{types: 1, objects: 100}, "a")
	r2 := reopen(t, be, clk)
	if err := r2.Forget(ctx, []ID{a.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Prune(ctx, PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	b, cb, st := writeBackup(t, r1, backupSpec{types: 1, objects: 100}, "b")
	if st.NewBlobs == 0 {
		t.Fatal("writer deduplicated against pruned blobs")
	}
	verifyBackup(t, reopen(t, be, clk), b, cb)
	verifyBackup(t, r1, b, cb)
}

// TestAbortWhileUploadsHang: Abort returns promptly even when uploads hang
// and PutBlob is blocked on them.
func TestAbortWhileUploadsHang(t *testing.T) {
	fb := faulty.New(mem.New())
	clk := newFakeClock()
	r, err := Init(context.Background(), fb, "secret", testOpts(clk)...)
	if err != nil {
		t.Fatal(err)
	}
	fb.Add(faulty.Fault{Op: faulty.OpSave, Type: storage.PackFile, Probability: 1, Kind: faulty.Timeout, Delay: time.Hour})
	ctx := context.Background()
	w, err := r.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	putDone := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < 2000 && err == nil; i++ {
			_, err = w.PutBlob(ctx, object(i, 1500))
		}
		putDone <- err
	}()
	time.Sleep(100 * time.Millisecond) // let the uploaders hang and PutBlob block
	aborted := make(chan error, 1)
	go func() { aborted <- w.Abort(ctx) }()
	select {
	case <-aborted:
	case <-time.After(10 * time.Second):
		t.Fatal("Abort hangs")
	}
	if err := <-putDone; err == nil {
		t.Fatal("PutBlob succeeded after Abort")
	}
	fb.Clear()
	if locks, _ := r.Locks(ctx); len(locks) != 0 {
		t.Fatalf("lock left: %v", locks)
	}
}

func TestCorruptionInTransitIsReread(t *testing.T) {
	fb := faulty.New(mem.New())
	clk := newFakeClock()
	r, err := Init(context.Background(), fb, "secret", testOpts(clk)...)
	if err != nil {
		t.Fatal(err)
	}
	rp, content, _ := writeBackup(t, r, backupSpec{types: 1, objects: 50}, "a")
	// The first pack read returns flipped bits; the re-read is clean.
	fb.Add(faulty.Fault{Op: faulty.OpLoad, Type: storage.PackFile, Nth: 1, Kind: faulty.Corrupt})
	verifyBackup(t, r, rp, content)
}
