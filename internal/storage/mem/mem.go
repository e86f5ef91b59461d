// Package mem is an in-memory storage.Backend for tests. It implements every
// semantic of the interface, including write-once and atomic Save, so code
// tested against it behaves the same on real storage.
package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/arca-backup/arca/internal/storage"
)

var _ storage.Backend = (*Backend)(nil)

// Backend keeps files in a map. The zero value is not usable; call New.
type Backend struct {
	mu    sync.RWMutex
	files map[storage.Handle][]byte
	mod   map[storage.Handle]time.Time
	clock func() time.Time
}

// New returns an empty in-memory backend whose clock is time.Now.
func New() *Backend {
	return NewWithClock(time.Now)
}

// NewWithClock returns an empty in-memory backend that stamps files with
// clock (the storage's own clock, as a file system or object store does),
// so tests can set it apart from the clocks of its clients.
func NewWithClock(clock func() time.Time) *Backend {
	return &Backend{files: make(map[storage.Handle][]byte), mod: make(map[storage.Handle]time.Time), clock: clock}
}

func (b *Backend) Location() string { return "mem:" }

func (b *Backend) Save(ctx context.Context, h storage.Handle, size int64, rd io.Reader) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	b.mu.RLock()
	_, exists := b.files[h]
	b.mu.RUnlock()
	if exists {
		return fmt.Errorf("save %s: %w", h, storage.ErrExist)
	}
	var buf bytes.Buffer
	if size > 0 {
		buf.Grow(int(size))
	}
	if _, err := io.Copy(&buf, ctxReader{ctx, rd}); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	if size >= 0 && int64(buf.Len()) != size {
		return fmt.Errorf("save %s: read %d bytes, expected %d: %w", h, buf.Len(), size, storage.ErrPermanent)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, exists := b.files[h]; exists {
		return fmt.Errorf("save %s: %w", h, storage.ErrExist)
	}
	b.files[h] = buf.Bytes()
	b.mod[h] = b.clock()
	return nil
}

func (b *Backend) Load(ctx context.Context, h storage.Handle, length int, offset int64, fn func(rd io.Reader) error) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if length < 0 || offset < 0 {
		return fmt.Errorf("load %s: negative length %d or offset %d: %w", h, length, offset, storage.ErrPermanent)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	b.mu.RLock()
	data, ok := b.files[h]
	b.mu.RUnlock()
	if !ok {
		return fmt.Errorf("load %s: %w", h, storage.ErrNotExist)
	}
	if offset > int64(len(data)) {
		return fmt.Errorf("load %s: offset %d beyond the end of the %d-byte file: %w", h, offset, len(data), storage.ErrPermanent)
	}
	data = data[offset:]
	if length > 0 && length < len(data) {
		data = data[:length]
	}
	// The stored slice is never modified, so readers need no copy.
	return fn(bytes.NewReader(data))
}

func (b *Backend) Stat(ctx context.Context, h storage.Handle) (storage.FileInfo, error) {
	if err := h.Valid(); err != nil {
		return storage.FileInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.FileInfo{}, fmt.Errorf("stat %s: %w", h, err)
	}
	b.mu.RLock()
	data, ok := b.files[h]
	mod := b.mod[h]
	b.mu.RUnlock()
	if !ok {
		return storage.FileInfo{}, fmt.Errorf("stat %s: %w", h, storage.ErrNotExist)
	}
	return storage.FileInfo{Name: h.Name, Size: int64(len(data)), ModTime: mod}, nil
}

func (b *Backend) Remove(ctx context.Context, h storage.Handle) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove %s: %w", h, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.files[h]; !ok {
		return fmt.Errorf("remove %s: %w", h, storage.ErrNotExist)
	}
	delete(b.files, h)
	delete(b.mod, h)
	return nil
}

func (b *Backend) List(ctx context.Context, t storage.FileType, fn func(storage.FileInfo) error) error {
	if err := t.Valid(); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", t, err)
	}
	// Snapshot the listing so fn may call back into the backend.
	b.mu.RLock()
	var infos []storage.FileInfo
	for h, data := range b.files {
		if h.Type == t {
			infos = append(infos, storage.FileInfo{Name: h.Name, Size: int64(len(data)), ModTime: b.mod[h]})
		}
	}
	b.mu.RUnlock()
	for _, fi := range infos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %s: %w", t, err)
		}
		if err := fn(fi); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) Close() error { return nil }

// ctxReader stops a copy once ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	rd  io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.rd.Read(p)
}
