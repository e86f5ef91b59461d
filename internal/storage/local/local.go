// Package local stores a repository in a directory of the local filesystem
// (or any mounted filesystem that supports hard links and rename).
//
// Layout: <dir>/config, <dir>/<type>/<name>, and packs sharded by the first
// two characters of their name, <dir>/data/<xx>/<name>, so that no directory
// grows past a few thousand entries.
//
// Save writes to a temporary file in the target directory, fsyncs it, and
// hard-links it to its final name. link(2) fails if the name exists, which
// gives write-once semantics that hold even between processes; the directory
// is fsynced afterwards so the new name survives a crash. Temporary files
// start with "." and are never listed; a crash can leave one behind, harmless
// and removable. On filesystems without hard links Save falls back to
// check-then-rename, where two concurrent Saves of one name can both succeed
// (the later one wins; content is identical for content-addressed names).
//
// On Linux, what Save wrote (once fsynced) and what Load read is dropped from
// the page cache (cache_linux.go): it would otherwise count against the
// memory of the pod that ran the backup or restore.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/arca-backup/arca/internal/storage"
)

var _ storage.Backend = (*Backend)(nil)

const (
	fileMode = 0o600
	dirMode  = 0o700
)

// Backend is a repository directory.
type Backend struct {
	dir string
}

// Open returns a backend for the existing directory dir. A missing directory
// is an error wrapping storage.ErrNotExist, so that a mistyped path is not
// silently turned into a new, empty repository; use Create for that.
func Open(dir string) (*Backend, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open repository directory %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("open repository directory: %w", mapErr(err))
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open repository directory %s: not a directory: %w", abs, storage.ErrPermanent)
	}
	return &Backend{dir: abs}, nil
}

// Create makes dir and the per-type subdirectories (the data/<xx> shards are
// made on first use) and returns a backend for it. An existing directory is
// fine: Create never removes or overwrites files.
func Create(dir string) (*Backend, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("create repository directory %s: %w", dir, err)
	}
	for _, t := range storage.FileTypes {
		if t == storage.ConfigFile {
			continue
		}
		if err := os.MkdirAll(filepath.Join(abs, string(t)), dirMode); err != nil {
			return nil, fmt.Errorf("create repository directory: %w", mapErr(err))
		}
	}
	return &Backend{dir: abs}, nil
}

// Location is the file URL of the directory.
func (b *Backend) Location() string { return "file://" + filepath.ToSlash(b.dir) }

// Dir is the repository directory.
func (b *Backend) Dir() string { return b.dir }

// Path is where h is stored. Tests use it to damage files on purpose.
func (b *Backend) Path(h storage.Handle) (string, error) {
	if err := h.Valid(); err != nil {
		return "", err
	}
	return filepath.Join(b.dir, filepath.FromSlash(h.Key())), nil
}

func (b *Backend) Save(ctx context.Context, h storage.Handle, size int64, rd io.Reader) (err error) {
	final, err := b.Path(h)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	if _, err := os.Lstat(final); err == nil {
		return fmt.Errorf("save %s: %w", h, storage.ErrExist)
	}
	dir := filepath.Dir(final)
	f, err := createTemp(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(dir, dirMode); err == nil {
			f, err = createTemp(dir)
		}
	}
	if err != nil {
		return fmt.Errorf("save %s: %w", h, mapErr(err))
	}
	tmp := f.Name()
	defer func() {
		// Whatever happened, the temporary name goes; on success the data
		// lives on under its final name.
		if f != nil {
			_ = f.Close()
		}
		_ = os.Remove(tmp)
	}()

	n, err := io.Copy(f, ctxReader{ctx, rd})
	if err != nil {
		return fmt.Errorf("save %s: %w", h, mapErr(err))
	}
	if size >= 0 && n != size {
		return fmt.Errorf("save %s: read %d bytes, expected %d: %w", h, n, size, storage.ErrPermanent)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save %s: fsync: %w", h, mapErr(err))
	}
	dropCache(f, 0, 0)
	err = f.Close()
	f = nil
	if err != nil {
		return fmt.Errorf("save %s: %w", h, mapErr(err))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	if err := publish(tmp, final); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("save %s: fsync directory: %w", h, mapErr(err))
	}
	return nil
}

// publish gives tmp the name final unless final exists.
func publish(tmp, final string) error {
	err := os.Link(tmp, final)
	if err == nil {
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		return storage.ErrExist
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && (errno == syscall.EPERM || errno == syscall.ENOTSUP || errno == syscall.EOPNOTSUPP || errno == syscall.EXDEV || errno == syscall.EMLINK) {
		// No hard links here: check, then rename (racy, see package doc).
		if _, err := os.Lstat(final); err == nil {
			return storage.ErrExist
		}
		return mapErr(os.Rename(tmp, final))
	}
	return mapErr(err)
}

func createTemp(dir string) (*os.File, error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	name := filepath.Join(dir, ".tmp-"+hex.EncodeToString(rnd[:]))
	return os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	// Some filesystems cannot fsync a directory; the data itself is synced.
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		return nil
	}
	return err
}

func (b *Backend) Load(ctx context.Context, h storage.Handle, length int, offset int64, fn func(rd io.Reader) error) error {
	p, err := b.Path(h)
	if err != nil {
		return err
	}
	if length < 0 || offset < 0 {
		return fmt.Errorf("load %s: negative length %d or offset %d: %w", h, length, offset, storage.ErrPermanent)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("load %s: %w", h, mapErr(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("load %s: %w", h, mapErr(err))
	}
	if offset > fi.Size() {
		return fmt.Errorf("load %s: offset %d beyond the end of the %d-byte file: %w", h, offset, fi.Size(), storage.ErrPermanent)
	}
	var rd io.Reader = io.NewSectionReader(f, offset, fi.Size()-offset)
	if length > 0 {
		rd = io.LimitReader(rd, int64(length))
	}
	defer dropCache(f, offset, int64(length))
	return fn(ctxReader{ctx, rd})
}

func (b *Backend) Stat(ctx context.Context, h storage.Handle) (storage.FileInfo, error) {
	p, err := b.Path(h)
	if err != nil {
		return storage.FileInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.FileInfo{}, fmt.Errorf("stat %s: %w", h, err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return storage.FileInfo{}, fmt.Errorf("stat %s: %w", h, mapErr(err))
	}
	return storage.FileInfo{Name: h.Name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

func (b *Backend) Remove(ctx context.Context, h storage.Handle) error {
	p, err := b.Path(h)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove %s: %w", h, err)
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("remove %s: %w", h, mapErr(err))
	}
	return nil
}

func (b *Backend) List(ctx context.Context, t storage.FileType, fn func(storage.FileInfo) error) error {
	if t == storage.ConfigFile {
		fi, err := b.Stat(ctx, storage.Handle{Type: t})
		if storage.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fn(fi)
	}
	if err := t.Valid(); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	dir := filepath.Join(b.dir, string(t))
	if t != storage.PackFile {
		return b.listDir(ctx, dir, fn)
	}
	shards, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", t, mapErr(err))
	}
	for _, s := range shards {
		if !s.IsDir() || s.Name()[0] == '.' {
			continue
		}
		if err := b.listDir(ctx, filepath.Join(dir, s.Name()), fn); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) listDir(ctx context.Context, dir string, fn func(storage.FileInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, mapErr(err))
	}
	for _, e := range entries {
		if e.Name()[0] == '.' || !e.Type().IsRegular() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %s: %w", dir, err)
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed while listing
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", dir, mapErr(err))
		}
		if err := fn(storage.FileInfo{Name: e.Name(), Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) Close() error { return nil }

// mapErr classifies filesystem errors.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w (%v)", storage.ErrNotExist, err)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%v: %w", err, storage.ErrPermanent)
	}
	return err
}

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
