package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/arca-backup/arca/internal/vault/store"
)

// Lease is a task that one replica runs at a time (retention): the store
// holds the lease (store.LeaseStore), and Hold keeps it extended while
// this replica lives. A replica that dies or loses the database loses the
// lease after TTL and another one takes it. Replicas compare the lease's
// expiry with their own clocks, so TTL must exceed their clock skew.
type Lease struct {
	Store  store.LeaseStore
	Name   string
	Holder string        // this replica
	TTL    time.Duration // lease lifetime; it is extended every TTL/3
	Log    *slog.Logger

	mu   sync.Mutex
	held bool
	lost chan struct{} // closed when a held lease is lost
}

// NewHolder names a replica: host name and a random part (two replicas
// on one host differ).
func NewHolder() string {
	h, _ := os.Hostname()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return h + "-" + hex.EncodeToString(b[:])
}

// Hold keeps trying to take or extend the lease until ctx ends, then
// releases it.
func (l *Lease) Hold(ctx context.Context) {
	t := time.NewTicker(l.TTL / 3)
	defer t.Stop()
	for {
		ok, err := l.Store.AcquireLease(ctx, l.Name, l.Holder, l.TTL)
		if err != nil && ctx.Err() == nil {
			l.Log.Warn("lease", "name", l.Name, "holder", l.Holder, "err", err)
		}
		l.set(ok && err == nil)
		select {
		case <-ctx.Done():
			l.set(false)
			rel, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = l.Store.ReleaseLease(rel, l.Name, l.Holder)
			cancel()
			return
		case <-t.C:
		}
	}
}

func (l *Lease) set(held bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if held == l.held {
		return
	}
	l.held = held
	if held {
		l.lost = make(chan struct{})
		l.Log.Info("lease taken", "name", l.Name, "holder", l.Holder)
	} else {
		close(l.lost)
		l.Log.Info("lease lost or released", "name", l.Name, "holder", l.Holder)
	}
}

// Do runs fn if this replica holds the lease, with a context that ends if
// the lease is lost meanwhile; it reports whether fn ran.
func (l *Lease) Do(ctx context.Context, fn func(context.Context)) bool {
	l.mu.Lock()
	held, lost := l.held, l.lost
	l.mu.Unlock()
	if !held {
		return false
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-lost:
			cancel()
		case <-ctx.Done():
		}
	}()
	fn(ctx)
	return true
}
