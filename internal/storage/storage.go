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
	"io"
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

// FileInfo is what List reports of a stored file.
type FileInfo struct {
	Name string
	Size int64
}

// Backend is the storage a repository lives in. Implementations must be safe
// for concurrent use.
//
// Semantics every implementation guarantees (checked by storagetest):
//   - Save writes the whole of rd under h atomically: a reader sees either no
//     file or the complete file, never a partial one. Save of an existing
//     handle fails with an error for which IsExist is true; files are
//     write-once.
//   - Load calls fn with a reader positioned at offset that yields at most
//     length bytes (length 0 means to the end). fn may be called more than
//     once if the backend retries, so fn must be idempotent. A missing file
//     yields an error for which IsNotExist is true.
//   - Stat of a missing file yields an IsNotExist error.
//   - Remove of a missing file yields an IsNotExist error.
//   - List calls fn for every file of type t, in no particular order; an error
//     returned by fn stops the listing and is returned.
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
