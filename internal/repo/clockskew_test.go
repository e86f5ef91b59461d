package repo

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/faulty"
	"github.com/arca-backup/arca/internal/storage/mem"
)

// skewed sets up one repository on storage with its own clock, opened by
// two processes: a (whose clock is off by skewA) and b (whose clock is the
// storage's).
func skewed(t *testing.T, skewA time.Duration, extra ...Option) (a, b *Repository, storageClock *fakeClock) {
	t.Helper()
	ctx := context.Background()
	sc := newFakeClock()
	be := mem.NewWithClock(sc.Now)
	clkB := ClockFunc(sc.Now)
	clkA := ClockFunc(func() time.Time { return sc.Now().Add(skewA) })
	b, err := Init(ctx, be, "secret", testOpts(clkB, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	a, err = Open(ctx, be, "secret", testOpts(clkA, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return a, b, sc
}

// A writer whose clock is two hours behind holds a live lock: prune, on a
// host with the right clock, must not judge it stale (it did, comparing the
// writer's clock with its own, and would have removed the writer's packs).
// Staleness is judged by the storage's clock: once the writer stops
// refreshing for the stale time, by the storage's clock, its lock is stale.
func TestLockStalenessByStorageClock(t *testing.T) {
	ctx := context.Background()
	a, b, sc := skewed(t, -2*time.Hour)
	w, err := a.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Prune(ctx, PruneOptions{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("prune past a live writer whose clock is 2h behind: %v, want ErrLocked", err)
	}
	locks, err := b.Locks(ctx)
	if err != nil || len(locks) != 1 || locks[0].Stale || !locks[0].Written.Equal(sc.Now()) {
		t.Fatalf("locks seen by b: %+v (%v); want one live lock written at the storage's %v", locks, err, sc.Now())
	}
	// The writer crashes: no more refreshes. After the stale time by the
	// storage's clock, its lock is stale and prune runs.
	close(w.lock.stop)
	<-w.lock.done
	sc.Advance(29 * time.Minute)
	if _, err := b.Prune(ctx, PruneOptions{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("prune 29 minutes after the writer's last refresh: %v, want ErrLocked", err)
	}
	sc.Advance(2 * time.Minute)
	if _, err := b.Prune(ctx, PruneOptions{}); err != nil {
		t.Fatalf("prune 31 minutes after the writer's last refresh: %v", err)
	}
}

// A lock dated in the future (its writer's clock is 3 hours ahead) used to
// never go stale. Now prune refuses to run past it with an error that says
// what is wrong and what to do; once it is stale by the storage's clock,
// unlock removes it and prune runs.
func TestPruneRefusesFutureDatedLock(t *testing.T) {
	ctx := context.Background()
	a, b, sc := skewed(t, 3*time.Hour)
	w, err := a.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Prune(ctx, PruneOptions{})
	var fe *FutureLockError
	if !errors.As(err, &fe) || !errors.Is(err, ErrFutureLock) {
		t.Fatalf("prune past a lock dated 3h ahead: %v, want a *FutureLockError", err)
	}
	for _, s := range []string{"3h0m0s ahead of the storage's clock", "clock on " + fe.Lock.Hostname + " is wrong", "arca repo unlock"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	// Writers are not held up by it: it is a shared lock.
	w2, err := b.NewWriter(ctx)
	if err != nil {
		t.Fatalf("a writer beside a future-dated shared lock: %v", err)
	}
	_ = w2.Abort(ctx)

	// The writer crashes; 31 minutes later (storage clock) the lock is
	// stale although its own time is still hours ahead.
	close(w.lock.stop)
	<-w.lock.done
	sc.Advance(31 * time.Minute)
	stale, err := b.Unlock(ctx, true)
	if err != nil || len(stale) != 1 || !stale[0].FutureDated {
		t.Fatalf("unlock: %+v %v; want the future-dated lock removed as stale", stale, err)
	}
	if _, err := b.Prune(ctx, PruneOptions{}); err != nil {
		t.Fatalf("prune after the future-dated lock was removed: %v", err)
	}
}

// A writer (or a restore) that meets a prune's exclusive lock waits with
// backoff, reporting each wait, and goes ahead once the prune is done.
func TestWriterWaitsForExclusiveLock(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var waits []LockWait
	first := make(chan struct{})
	report := func(w LockWait) {
		mu.Lock()
		defer mu.Unlock()
		if len(waits) == 0 {
			close(first)
		}
		waits = append(waits, w)
	}
	a, b, _ := skewed(t, 0, WithLockWait(20*time.Second, report))
	prune, err := b.lock(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		w   *Writer
		err error
	}
	done := make(chan result, 1)
	go func() {
		w, err := a.NewWriter(ctx)
		done <- result{w, err}
	}()
	select {
	case <-first:
	case r := <-done:
		t.Fatalf("NewWriter returned at once during a prune: %v", r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("no wait reported")
	}
	if err := prune.release(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("NewWriter after the prune released its lock: %v", r.err)
	}
	_ = r.w.Abort(ctx)
	mu.Lock()
	defer mu.Unlock()
	if !waits[0].Holder.Exclusive || waits[0].Holder.ID != prune.id || waits[0].Max != 20*time.Second || waits[0].Next <= 0 {
		t.Errorf("first wait reported %+v, want the prune's exclusive lock and the limit", waits[0])
	}
}

// The wait is bounded: past the limit the writer fails naming the lock and
// how long it waited.
func TestWriterLockWaitBounded(t *testing.T) {
	ctx := context.Background()
	n := 0
	a, b, _ := skewed(t, 0, WithLockWait(300*time.Millisecond, func(LockWait) { n++ }))
	prune, err := b.lock(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	defer prune.release(ctx)
	start := time.Now()
	_, err = a.NewWriter(ctx)
	var le *LockedError
	if !errors.As(err, &le) || !le.Lock.Exclusive || le.Waited <= 0 || !strings.Contains(err.Error(), "waited") {
		t.Fatalf("NewWriter past the wait limit: %v, want a *LockedError that says it waited", err)
	}
	if took := time.Since(start); took < 150*time.Millisecond || took > 5*time.Second || n == 0 {
		t.Errorf("gave up after %s with %d reported waits, want about the 300ms limit and at least one report", took, n)
	}
}

// A restore holds a shared lock through the read-only handle: prune cannot
// run while it reads, and runs once it is released.
func TestReaderSharedLockBlocksPrune(t *testing.T) {
	ctx := context.Background()
	w, be, clk := newTestRepo(t)
	writeBackup(t, w, backupSpec{types: 1, objects: 2}, "a")
	rd, err := OpenReader(ctx, be, "secret", testOpts(clk)...)
	if err != nil {
		t.Fatal(err)
	}
	lk, err := rd.LockShared(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Prune(ctx, PruneOptions{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("prune during a restore: %v, want ErrLocked", err)
	}
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lk.Release(ctx); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if _, err := w.Prune(ctx, PruneOptions{}); err != nil {
		t.Fatalf("prune after the restore: %v", err)
	}
}

// A storage that refuses lock files for good (read-only credentials) gives
// ErrLockNotWritable, which a restore may go on without; a transient
// failure does not.
func TestSharedLockOnReadOnlyStorage(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	fb := faulty.New(mem.NewWithClock(clk.Now))
	r, err := Init(ctx, fb, "secret", testOpts(clk)...)
	if err != nil {
		t.Fatal(err)
	}
	fb.Add(faulty.Fault{Op: faulty.OpSave, Type: storage.LockFile, Nth: 1, Count: -1, Kind: faulty.Permanent})
	if _, err := r.ReadOnly().LockShared(ctx); !errors.Is(err, ErrLockNotWritable) {
		t.Fatalf("shared lock on storage that refuses writes: %v, want ErrLockNotWritable", err)
	}
	fb.Clear()
	fb.Add(faulty.Fault{Op: faulty.OpSave, Type: storage.LockFile, Nth: 1, Count: -1, Kind: faulty.Transient})
	if _, err := r.LockShared(ctx); err == nil || errors.Is(err, ErrLockNotWritable) {
		t.Fatalf("shared lock on unreachable storage: %v, want an error that is not ErrLockNotWritable", err)
	}
}
