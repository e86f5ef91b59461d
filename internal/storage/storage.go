// Package storage defines the small blob-storage interface that a backup
// repository is written to, and the error classification its callers rely on.
//
// Backends (filesystem, Azure Blob, S3) live in sub-packages; retry and fault
// injection are decorators that wrap any Backend. Every backend passes the
// conformance suite in package storagetest.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// FileType names the kind of file stored. Each type lives in its own
// namespace (a directory or key prefix) so that listing one type is cheap.
type FileType string

const (
	ConfigFile        FileType = "config" // the single repository config file
	KeyFile           FileType = "keys"   // password-wrapped master keys
	PackFile          FileType = "data"   // packs of blobs
	IndexFile         FileType = "index"  // blob → pack location maps
	RecoveryPointFile FileType = "points" // recovery-point manifests
	LockFile          FileType = "locks"  // exclusive and shared locks
)

// Handle addresses one stored file. For ConfigFile the Name is empty.
type Handle struct {
	Type FileType
	Name string
}

func (h Handle) String() string {
	if h.Name == "" {
		return string(h.Type)
	}
	return string(h.Type) + "/" + h.Name
}

// FileInfo is what List and Stat report of a stored file.
type FileInfo struct {
	Name string
	Size int64
	// ModTime is when the file was written, by the storage's own clock
	// (file system mtime, blob or object Last-Modified); zero if the
	// backend cannot tell. The repository judges lock staleness with it,
	// so that a writer's or reader's wrong clock does not matter.
	ModTime time.Time
}

// Backend is the storage a repository lives in. Implementations must be safe
// for concurrent use.
//
// Semantics every implementation guarantees (checked by storagetest):
//   - Names: h must pass h.Valid(); an invalid handle fails with an ErrPermanent
//     error before any I/O. Names are flat (no "/"), so a backend may shard
//     them (the filesystem backend puts packs under data/<first 2 chars>/).
//   - Save writes the whole of rd under h atomically: a reader sees either no
//     file or the complete file, never a partial one. size is the number of
//     bytes rd yields; if it is >= 0 and rd yields a different number, Save
//     fails with a permanent error and stores nothing (size < 0 means
//     unknown). If rd fails, or ctx
//     is cancelled, Save stores nothing. Save of an existing handle fails with
//     an error for which IsExist is true and leaves the existing file as it
//     was; files are write-once. Of concurrent Saves of one handle at most one
//     succeeds on the filesystem, in memory and on Azure; on S3 the check is
//     best-effort (see package s3).
//   - Load calls fn with a reader positioned at offset that yields at most
//     length bytes (length 0 means to the end): exactly min(length,
//     size-offset) bytes of a healthy file. offset == size yields an empty
//     reader; offset > size, or a negative offset or length, is an error. fn
//     may be called more than once if the backend retries, so fn must be
//     idempotent; it must not keep rd after it returns. An error fn returns is
//     returned by Load unchanged (errors.Is works through it). A missing file
//     yields an error for which IsNotExist is true, and fn is not called.
//   - Stat of a missing file yields an IsNotExist error.
//   - Remove of a missing file yields an IsNotExist error. After Remove
//     returns nil the file is gone for Load, Stat and List.
//   - List calls fn, one call at a time, for every file of type t, in no
//     particular order, with the Name a Handle of type t would carry (for
//     ConfigFile: "", if the config exists). Files saved before List starts and not removed before it
//     ends are reported exactly once; a file saved or removed concurrently may
//     or may not be. An error returned by fn stops the listing and is returned
//     unchanged.
//   - Every method respects ctx: once it is cancelled, calls fail with an
//     error that wraps ctx.Err().
//   - Errors are classified for callers: IsNotExist, IsExist, and
//     IsPermanent (retrying cannot help). Anything else is transient and may
//     be retried (see package retry).
type Backend interface {
	// Location is a human-readable, credential-free description of where the
	// data lives, for messages (for example "s3://bucket/prefix").
	Location() string
	Save(ctx context.Context, h Handle, size int64, rd io.Reader) error
	Load(ctx context.Context, h Handle, length int, offset int64, fn func(rd io.Reader) error) error
	Stat(ctx context.Context, h Handle) (FileInfo, error)
	Remove(ctx context.Context, h Handle) error
	List(ctx context.Context, t FileType, fn func(FileInfo) error) error
	Close() error
}

// Sentinel errors. Backends wrap them (fmt.Errorf("...: %w", ErrNotExist)) so
// that callers test with errors.Is or the helpers below.
var (
	ErrNotExist = errors.New("file does not exist")
	ErrExist    = errors.New("file already exists")
	// ErrPermanent marks errors that retrying cannot fix (authentication,
	// authorisation, missing container or bucket, invalid request).
	ErrPermanent = errors.New("permanent storage error")
)

// Valid reports whether h may be stored: a known type, and a Name that is
// empty for ConfigFile and otherwise 1–255 bytes (at least 2 for packs) of
// printable ASCII without "/", "\\", spaces or a leading ".". The error
// wraps ErrPermanent.
func (h Handle) Valid() error {
	switch h.Type {
	case ConfigFile:
		if h.Name != "" {
			return fmt.Errorf("invalid handle %q: the config file has no name: %w", h, ErrPermanent)
		}
		return nil
	case KeyFile, PackFile, IndexFile, RecoveryPointFile, LockFile:
	default:
		return fmt.Errorf("invalid handle %q: unknown file type %q: %w", h, string(h.Type), ErrPermanent)
	}
	if h.Name == "" || len(h.Name) > 255 {
		return fmt.Errorf("invalid handle %q: name must be 1 to 255 bytes long: %w", h, ErrPermanent)
	}
	if h.Type == PackFile && len(h.Name) < 2 {
		return fmt.Errorf("invalid handle %q: pack names need at least 2 characters: %w", h, ErrPermanent)
	}
	if h.Name[0] == '.' {
		return fmt.Errorf("invalid handle %q: name must not start with '.': %w", h, ErrPermanent)
	}
	for i := 0; i < len(h.Name); i++ {
		c := h.Name[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == '\\' {
			return fmt.Errorf("invalid handle %q: name contains %q: %w", h, c, ErrPermanent)
		}
	}
	return nil
}

// Valid reports whether t is a known file type; the error wraps ErrPermanent.
func (t FileType) Valid() error {
	for _, known := range FileTypes {
		if t == known {
			return nil
		}
	}
	return fmt.Errorf("unknown file type %q: %w", string(t), ErrPermanent)
}

// Key is the slash-separated path of h inside a repository, the same on
// every backend so that a repository can be copied between them with plain
// file or object tools: "config", "<type>/<name>", and for packs
// "data/<first 2 characters>/<name>". h must be valid.
func (h Handle) Key() string {
	switch h.Type {
	case ConfigFile:
		return string(ConfigFile)
	case PackFile:
		return string(PackFile) + "/" + h.Name[:2] + "/" + h.Name
	}
	return string(h.Type) + "/" + h.Name
}

// FileTypes lists every FileType, for code that walks a whole repository.
var FileTypes = []FileType{ConfigFile, KeyFile, PackFile, IndexFile, RecoveryPointFile, LockFile}

func IsNotExist(err error) bool { return errors.Is(err, ErrNotExist) }
func IsExist(err error) bool    { return errors.Is(err, ErrExist) }

// IsPermanent reports whether err should not be retried. Not-exist and exist
// errors are permanent; context cancellation is permanent.
func IsPermanent(err error) bool {
	return errors.Is(err, ErrPermanent) || IsNotExist(err) || IsExist(err) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// ReadAll loads the whole file h into memory. For small files (config, keys,
// index, manifests) only; packs are read by range.
func ReadAll(ctx context.Context, be Backend, h Handle) ([]byte, error) {
	var buf []byte
	err := be.Load(ctx, h, 0, 0, func(rd io.Reader) error {
		var err error
		buf, err = io.ReadAll(rd)
		return err
	})
	return buf, err
}

// ErrRetained marks a Remove the storage refused because the file is held
// by a retention lock (S3 Object Lock) that has not yet passed. It is
// permanent: retrying before the date cannot help.
var ErrRetained = errors.New("file is retained by the storage's object lock")

// IsRetained reports whether err is a Remove refused by a retention lock.
func IsRetained(err error) bool { return errors.Is(err, ErrRetained) }

// RetainedError is the error of a Remove refused by a retention lock; it
// matches ErrRetained and ErrPermanent and says until when the file is held.
type RetainedError struct {
	Handle Handle
	Until  time.Time // zero if the storage did not say
}

func (e *RetainedError) Error() string {
	if e.Until.IsZero() {
		return fmt.Sprintf("remove %s: %v", e.Handle, ErrRetained)
	}
	return fmt.Sprintf("remove %s: %v until %s", e.Handle, ErrRetained, e.Until.UTC().Format(time.RFC3339))
}

func (e *RetainedError) Is(target error) bool { return target == ErrRetained || target == ErrPermanent }

// Retainer is implemented by backends that write files under a retention
// lock (S3 Object Lock): until a file's retention date, Remove fails with
// a RetainedError and nobody, with any credentials of the service's users,
// can delete or overwrite it.
type Retainer interface {
	// RetentionPeriod is how long after it is written a new file of type t
	// is retained; 0 means files of that type are not retained (locks, or a
	// backend without object lock configured).
	RetentionPeriod(t FileType) time.Duration
	// RetainUntil extends h's retention to until. A retention is never
	// shortened: if h is already held at least that long nothing changes.
	RetainUntil(ctx context.Context, h Handle, until time.Time) error
}

// RetentionOf returns be's retention period for files of type t, 0 when
// be does not retain files.
func RetentionOf(be Backend, t FileType) time.Duration {
	if r, ok := be.(Retainer); ok {
		return r.RetentionPeriod(t)
	}
	return 0
}
