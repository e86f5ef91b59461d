package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/arca-backup/arca/internal/storage"
)

// ErrLocked is matched (errors.Is) by a *LockedError.
var ErrLocked = errors.New("repository is locked")

// LockedError names the lock that conflicts.
type LockedError struct {
	Lock   LockInfo
	Waited time.Duration // how long the request waited before giving up
}

func (e *LockedError) Error() string {
	kind := "shared"
	if e.Lock.Exclusive {
		kind = "exclusive"
	}
	waited := ""
	if e.Waited > 0 {
		waited = fmt.Sprintf(" (waited %s, the limit)", e.Waited.Round(time.Second))
	}
	return fmt.Sprintf("repository is locked%s: %s lock %s held by %s (pid %d) since %s; if that process is gone, run `arca repo unlock` once the lock is stale (%s without refresh by the storage's clock)",
		waited, kind, e.Lock.ID.Short(), e.Lock.Hostname, e.Lock.PID, e.Lock.Time.Format(time.RFC3339), staleAfterText)
}
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// staleAfterText is the default stale time, for messages.
const staleAfterText = "30 minutes"

// ErrFutureLock is matched by a *FutureLockError.
var ErrFutureLock = errors.New("a lock is dated in the future")

// FutureLockError: an exclusive request (prune, rebuild-index) found a lock
// dated well after the storage's time of writing it: the clock of the host
// that wrote it is ahead. Prune does not run past such a lock.
type FutureLockError struct {
	Lock LockInfo
	Skew time.Duration // lock time minus the storage's time of writing
}

func (e *FutureLockError) Error() string {
	return fmt.Sprintf("refusing to run past lock %s held by %s (pid %d): it is dated %s, %s ahead of the storage's clock when it was written, so the clock on %s is wrong; "+
		"correct that clock; if that process is gone, `arca repo unlock` removes the lock once it is stale (%s without refresh by the storage's clock), or `arca repo unlock --remove-all` at once",
		e.Lock.ID.Short(), e.Lock.Hostname, e.Lock.PID, e.Lock.Time.Format(time.RFC3339), e.Skew.Round(time.Second), e.Lock.Hostname, staleAfterText)
}
func (e *FutureLockError) Is(target error) bool { return target == ErrFutureLock }

// maxClockSkew: a lock dated more than this after the storage's time of
// writing it is future-dated.
const maxClockSkew = 5 * time.Minute

// LockWait is reported while a lock request waits for another process's
// conflicting lock.
type LockWait struct {
	Holder LockInfo      // the conflicting lock
	Waited time.Duration // so far
	Next   time.Duration // until the next attempt
	Max    time.Duration // the limit
}

// lockJSON is the (encrypted) body of a lock file.
type lockJSON struct {
	Version   int       `json:"version"`
	Exclusive bool      `json:"exclusive"`
	Time      time.Time `json:"time"`
	Hostname  string    `json:"hostname"`
	PID       int       `json:"pid"`
}

// LockInfo describes a lock file.
type LockInfo struct {
	ID        ID        `json:"id"`
	Exclusive bool      `json:"exclusive"`
	Time      time.Time `json:"time"` // by the writer's clock
	// Written is when the storage stored the lock file, by its own clock
	// (zero if the backend cannot tell). Staleness is judged with it.
	Written  time.Time `json:"written,omitzero"`
	Hostname string    `json:"hostname"`
	PID      int       `json:"pid"`
	Stale    bool      `json:"stale"`
	// FutureDated: Time is more than 5 minutes after Written: the writer's
	// clock is ahead. Prune refuses to run past such a lock.
	FutureDated bool `json:"futureDated,omitempty"`
	Damaged     bool `json:"damaged,omitempty"` // unreadable lock file
}

func decodeLock(b []byte) (*lockJSON, error) {
	var l lockJSON
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if l.Version != 1 {
		return nil, fmt.Errorf("lock: unsupported version %d", l.Version)
	}
	return &l, nil
}

// storageNow returns the storage's current time: it writes a probe file
// (locks/probe-…, a name readers ignore), reads its modification time and
// removes it. Without modification times it falls back to the local clock.
func (r *Repository) storageNow(ctx context.Context) (time.Time, error) {
	h := storage.Handle{Type: storage.LockFile, Name: fmt.Sprintf("probe-%x", randomBytes(8))}
	if err := r.be.Save(ctx, h, 5, newBytesReader([]byte("probe"))); err != nil {
		return time.Time{}, fmt.Errorf("probe the storage's clock: %w", err)
	}
	fi, err := r.be.Stat(ctx, h)
	_ = r.be.Remove(context.WithoutCancel(ctx), h)
	if err != nil {
		return time.Time{}, fmt.Errorf("probe the storage's clock: %w", err)
	}
	if fi.ModTime.IsZero() {
		return r.opts.clock.Now(), nil
	}
	return fi.ModTime, nil
}

// Locks lists the lock files. Staleness is judged by the storage's clock,
// which it reads by writing (and removing) a probe file.
func (r *Repository) Locks(ctx context.Context) ([]LockInfo, error) {
	now, err := r.storageNow(ctx)
	if err != nil {
		return nil, err
	}
	return r.locksAt(ctx, now)
}

// locksAt lists the lock files and judges them at now, the storage's time:
// a lock is stale when the storage stored it more than the stale time
// before now (by the lock's own time and the local clock if the backend
// has no modification times).
func (r *Repository) locksAt(ctx context.Context, now time.Time) ([]LockInfo, error) {
	files := map[ID]time.Time{}
	if err := r.be.List(ctx, storage.LockFile, func(fi storage.FileInfo) error {
		if id, err := ParseID(fi.Name); err == nil {
			files[id] = fi.ModTime
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list %s: %w", storage.LockFile, err)
	}
	var out []LockInfo
	for id, written := range files {
		body, err := r.loadSealed(ctx, storage.LockFile, id)
		if storage.IsNotExist(err) {
			continue
		}
		if err != nil {
			if !isDamage(err) {
				return nil, err
			}
			out = append(out, LockInfo{ID: id, Damaged: true, Stale: true})
			continue
		}
		l, err := decodeLock(body)
		if err != nil {
			out = append(out, LockInfo{ID: id, Damaged: true, Stale: true})
			continue
		}
		li := LockInfo{ID: id, Exclusive: l.Exclusive, Time: l.Time, Written: written, Hostname: l.Hostname, PID: l.PID}
		ref := written
		if ref.IsZero() { // the backend keeps no times: the writer's clock against ours
			ref = l.Time
		}
		li.Stale = now.Sub(ref) > r.opts.staleAfter
		if !written.IsZero() {
			li.FutureDated = l.Time.Sub(written) > maxClockSkew
		} else {
			li.FutureDated = l.Time.Sub(now) > maxClockSkew
		}
		out = append(out, li)
	}
	return out, nil
}

// Unlock reports stale (and unreadable) locks and, if removeStale is set,
// removes them. Live locks are never removed.
func (r *Repository) Unlock(ctx context.Context, removeStale bool) ([]LockInfo, error) {
	locks, err := r.Locks(ctx)
	if err != nil {
		return nil, err
	}
	var stale []LockInfo
	for _, l := range locks {
		if !l.Stale {
			continue
		}
		stale = append(stale, l)
		if removeStale {
			err := r.be.Remove(ctx, storage.Handle{Type: storage.LockFile, Name: l.ID.String()})
			if err != nil && !storage.IsNotExist(err) {
				return stale, fmt.Errorf("remove lock %s: %w", l.ID.Short(), err)
			}
		}
	}
	return stale, nil
}

// RemoveAllLocks removes every lock, live or not. Only for an operator who
// knows no other process uses the repository.
func (r *Repository) RemoveAllLocks(ctx context.Context) (int, error) {
	ids, err := r.listIDs(ctx, storage.LockFile)
	if err != nil {
		return 0, err
	}
	n := 0
	for id := range ids {
		if err := r.be.Remove(ctx, storage.Handle{Type: storage.LockFile, Name: id.String()}); err != nil && !storage.IsNotExist(err) {
			return n, err
		}
		n++
	}
	return n, nil
}

// heldLock is a lock this process holds; it refreshes itself until released.
type heldLock struct {
	r         *Repository
	exclusive bool
	mu        sync.Mutex
	id        ID
	stop      chan struct{}
	done      chan struct{}
	refreshed time.Time // when the current lock file was written
}

// ErrLockLost: a held lock went stale or was removed.
var ErrLockLost = errors.New("lock lost: it was removed or not refreshed in time; another process may have pruned")

// check verifies that the lock is still in force: refreshed within the
// stale time and its file still present. A nil lock is always in force.
func (hl *heldLock) check(ctx context.Context) error {
	if hl == nil {
		return nil
	}
	hl.mu.Lock()
	defer hl.mu.Unlock()
	if hl.r.opts.clock.Now().Sub(hl.refreshed) > hl.r.opts.staleAfter {
		return ErrLockLost
	}
	_, err := hl.r.be.Stat(ctx, storage.Handle{Type: storage.LockFile, Name: hl.id.String()})
	if storage.IsNotExist(err) {
		return ErrLockLost
	}
	return err
}

func (r *Repository) writeLock(ctx context.Context, exclusive bool, now time.Time) (ID, error) {
	host, _ := os.Hostname()
	b, err := json.Marshal(lockJSON{Version: 1, Exclusive: exclusive, Time: now.UTC(), Hostname: host, PID: os.Getpid()})
	if err != nil {
		return ID{}, err
	}
	id, _, err := r.saveSealed(ctx, storage.LockFile, b, false)
	return id, err
}

// lock takes a shared or exclusive lock: it writes its lock file first, then
// looks for conflicting live locks, and withdraws if it finds one. Two
// processes racing both withdraw rather than both proceed. A shared request
// (a writer, a restore) that meets an exclusive lock (a prune) withdraws and
// tries again with backoff, reporting each wait, until the lock wait limit;
// an exclusive request fails at once. An exclusive request also refuses to
// run past a future-dated lock.
func (r *Repository) lock(ctx context.Context, exclusive bool) (*heldLock, error) {
	start := time.Now()
	interval := min(2*time.Second, max(r.opts.lockWait/10, 10*time.Millisecond))
	for {
		hl, conflict, err := r.tryLock(ctx, exclusive)
		if err != nil || conflict == nil {
			return hl, err
		}
		waited := time.Since(start)
		if exclusive || waited+interval > r.opts.lockWait {
			return nil, &LockedError{Lock: *conflict, Waited: waited.Round(time.Millisecond)}
		}
		if r.opts.lockReport != nil {
			r.opts.lockReport(LockWait{Holder: *conflict, Waited: waited, Next: interval, Max: r.opts.lockWait})
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("waiting for %w: %w", &LockedError{Lock: *conflict, Waited: waited}, ctx.Err())
		case <-t.C:
		}
		interval = min(2*interval, time.Minute)
	}
}

// tryLock makes one attempt: the lock, or the conflicting lock.
func (r *Repository) tryLock(ctx context.Context, exclusive bool) (*heldLock, *LockInfo, error) {
	now := r.opts.clock.Now()
	id, err := r.writeLock(ctx, exclusive, now)
	if err != nil {
		if storage.IsPermanent(err) && ctx.Err() == nil && !storage.IsExist(err) {
			return nil, nil, fmt.Errorf("create lock: %w: %w", ErrLockNotWritable, err)
		}
		return nil, nil, fmt.Errorf("create lock: %w", err)
	}
	own := storage.Handle{Type: storage.LockFile, Name: id.String()}
	withdraw := func() { _ = r.be.Remove(context.WithoutCancel(ctx), own) }
	// The storage's time, from the lock file just written.
	fi, err := r.be.Stat(ctx, own)
	if err != nil {
		withdraw()
		return nil, nil, fmt.Errorf("check locks: %w", err)
	}
	storageNow := fi.ModTime
	if storageNow.IsZero() {
		storageNow = now
	}
	locks, err := r.locksAt(ctx, storageNow)
	if err != nil {
		withdraw()
		return nil, nil, fmt.Errorf("check locks: %w", err)
	}
	for _, l := range locks {
		if l.ID == id {
			continue
		}
		if exclusive && l.FutureDated && !l.Damaged {
			withdraw()
			return nil, nil, &FutureLockError{Lock: l, Skew: l.Time.Sub(l.Written)}
		}
	}
	for _, l := range locks {
		if l.ID == id || l.Stale {
			continue
		}
		if exclusive || l.Exclusive {
			withdraw()
			return nil, &l, nil
		}
	}
	hl := &heldLock{r: r, exclusive: exclusive, id: id, stop: make(chan struct{}), done: make(chan struct{}), refreshed: now}
	go hl.refreshLoop()
	return hl, nil, nil
}

// ErrLockNotWritable: the storage refused to store a lock file for good
// (read-only credentials, an immutable or read-only location). A reader may
// go on without a lock: reads are verified, so a prune running meanwhile
// makes it fail on missing data, never return wrong data.
var ErrLockNotWritable = errors.New("the storage refuses lock files (read-only credentials or storage)")

// SharedLock is a shared lock a reader holds (a restore): prune cannot run
// while it is held. It refreshes itself until released.
type SharedLock struct{ hl *heldLock }

// LockShared takes a shared lock, waiting (with backoff, reported, up to
// the lock wait limit: WithLockWait) while a prune holds the exclusive one.
func (r *Repository) LockShared(ctx context.Context) (*SharedLock, error) {
	hl, err := r.lock(ctx, false)
	if err != nil {
		return nil, err
	}
	return &SharedLock{hl: hl}, nil
}

// Release stops refreshing and removes the lock file. Safe to call twice.
func (l *SharedLock) Release(ctx context.Context) error {
	if l == nil {
		return nil
	}
	return l.hl.release(ctx)
}

func (hl *heldLock) refreshLoop() {
	defer close(hl.done)
	t := time.NewTicker(hl.r.opts.refreshEvery)
	defer t.Stop()
	for {
		select {
		case <-hl.stop:
			return
		case <-t.C:
			_ = hl.refresh(context.Background())
		}
	}
}

// refresh replaces the lock file by one with the current time.
func (hl *heldLock) refresh(ctx context.Context) error {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	now := hl.r.opts.clock.Now()
	nid, err := hl.r.writeLock(ctx, hl.exclusive, now)
	if err != nil {
		return err
	}
	old := hl.id
	hl.id, hl.refreshed = nid, now
	_ = hl.r.be.Remove(ctx, storage.Handle{Type: storage.LockFile, Name: old.String()})
	return nil
}

// release stops refreshing and removes the lock file.
func (hl *heldLock) release(ctx context.Context) error {
	if hl == nil {
		return nil
	}
	select {
	case <-hl.stop:
		return nil
	default:
	}
	close(hl.stop)
	<-hl.done
	hl.mu.Lock()
	defer hl.mu.Unlock()
	err := hl.r.be.Remove(context.WithoutCancel(ctx), storage.Handle{Type: storage.LockFile, Name: hl.id.String()})
	if storage.IsNotExist(err) {
		err = nil
	}
	return err
}
