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
type LockedError struct{ Lock LockInfo }

func (e *LockedError) Error() string {
	kind := "shared"
	if e.Lock.Exclusive {
		kind = "exclusive"
	}
	return fmt.Sprintf("repository is locked: %s lock %s held by %s (pid %d) since %s; if that process is gone, run `arca repo unlock` once the lock is stale",
		kind, e.Lock.ID.Short(), e.Lock.Hostname, e.Lock.PID, e.Lock.Time.Format(time.RFC3339))
}
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

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
	Time      time.Time `json:"time"`
	Hostname  string    `json:"hostname"`
	PID       int       `json:"pid"`
	Stale     bool      `json:"stale"`
	Damaged   bool      `json:"damaged,omitempty"` // unreadable lock file
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

// Locks lists the lock files.
func (r *Repository) Locks(ctx context.Context) ([]LockInfo, error) {
	ids, err := r.listIDs(ctx, storage.LockFile)
	if err != nil {
		return nil, err
	}
	now := r.opts.clock.Now()
	var out []LockInfo
	for id := range ids {
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
		out = append(out, LockInfo{
			ID: id, Exclusive: l.Exclusive, Time: l.Time, Hostname: l.Hostname, PID: l.PID,
			Stale: now.Sub(l.Time) > r.opts.staleAfter,
		})
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
// processes racing both withdraw rather than both proceed.
func (r *Repository) lock(ctx context.Context, exclusive bool) (*heldLock, error) {
	now := r.opts.clock.Now()
	id, err := r.writeLock(ctx, exclusive, now)
	if err != nil {
		return nil, fmt.Errorf("create lock: %w", err)
	}
	locks, err := r.Locks(ctx)
	if err != nil {
		_ = r.be.Remove(context.WithoutCancel(ctx), storage.Handle{Type: storage.LockFile, Name: id.String()})
		return nil, fmt.Errorf("check locks: %w", err)
	}
	for _, l := range locks {
		if l.ID == id || l.Stale {
			continue
		}
		if exclusive || l.Exclusive {
			_ = r.be.Remove(context.WithoutCancel(ctx), storage.Handle{Type: storage.LockFile, Name: id.String()})
			return nil, &LockedError{Lock: l}
		}
	}
	hl := &heldLock{r: r, exclusive: exclusive, id: id, stop: make(chan struct{}), done: make(chan struct{}), refreshed: now}
	go hl.refreshLoop()
	return hl, nil
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
