package repo

import (
	"context"

	"github.com/arca-backup/arca/internal/storage"
)

// The package is built in layers, bottom to top (docs/design.md, "The
// repository in layers"); each file belongs to one:
//
//	envelope   crypto.go, id.go            seal/open one unit; IDs
//	blobs      pack.go, writer.go, reader.go  packs of blobs; PutBlob, PutStream, LoadBlob
//	index      index.go, repair.go         blob ID → (pack, offset, length)
//	trees      tree.go                     TreeWriter, WalkTree
//	points     manifest.go, retention.go   recovery-point manifests, forget
//	keys       keys.go, repository.go      key files, config, Init/Open
//	locks      lock.go                     shared and exclusive locks
//	maintenance check.go, prune.go, stats.go
//
// Consumers see two handles. Reader is the read-only interface: what
// restore, diff, check and listing need. *Repository is the read-write
// handle: it also writes recovery points (NewWriter), forgets, prunes,
// rebuilds the index and adds or removes keys. A consumer that only reads
// takes a Reader; OpenReader and (*Repository).ReadOnly give one that
// cannot be converted back to the writer.

// Reader is the read-only view of a repository. Nothing reachable through
// it removes or rewrites data, manifests or keys.
type Reader interface {
	// Config returns the repository config (ID, format version).
	Config() Config
	// LoadBlob returns the verified plaintext of a blob.
	LoadBlob(ctx context.Context, id ID) ([]byte, error)
	// LoadBlobTo is LoadBlob into a buffer the caller recycles
	// (Repository.LoadBlobTo).
	LoadBlobTo(ctx context.Context, id ID, alloc func(n int) []byte) ([]byte, error)
	// WalkTree calls fn for every entry of a tree, in order.
	WalkTree(ctx context.Context, t Tree, fn func(TreeEntry) error) error
	// WalkFileTree calls fn for every entry of a volume's file tree, in order.
	WalkFileTree(ctx context.Context, t Tree, fn func(FileEntry) error) error
	// LoadRecoveryPoint loads one manifest by its full ID.
	LoadRecoveryPoint(ctx context.Context, id ID) (*RecoveryPoint, error)
	// ListRecoveryPoints loads every manifest, oldest first.
	ListRecoveryPoints(ctx context.Context) ([]*RecoveryPoint, error)
	// FindRecoveryPoint resolves a full ID, a unique prefix or "latest".
	FindRecoveryPoint(ctx context.Context, ref string) (*RecoveryPoint, error)
	// Check verifies the repository; it writes nothing.
	Check(ctx context.Context, opts CheckOptions) (*CheckReport, error)
	// Stats summarises sizes and deduplication.
	Stats(ctx context.Context) (*RepoStats, error)
	// LockShared takes a shared lock (a restore holds one, so that no
	// prune removes data while it reads).
	LockShared(ctx context.Context) (*SharedLock, error)
	// ListKeys lists the key files (not the keys).
	ListKeys(ctx context.Context) ([]KeyInfo, error)
	// Backend returns the storage the repository lives in.
	Backend() storage.Backend
	// Close releases resources; it does not close the backend.
	Close() error
}

// *Repository is the read-write handle: everything a Reader does, and more.
var _ Reader = (*Repository)(nil)

// readOnly hides the writing methods of a *Repository: a consumer given a
// Reader cannot type-assert its way back to NewWriter, Forget or Prune.
type readOnly struct{ r *Repository }

// ReadOnly returns a read-only view of r.
func (r *Repository) ReadOnly() Reader { return readOnly{r} }

// OpenReader opens the repository at be for reading only. It writes nothing.
func OpenReader(ctx context.Context, be storage.Backend, password string, opts ...Option) (Reader, error) {
	r, err := Open(ctx, be, password, opts...)
	if err != nil {
		return nil, err
	}
	return r.ReadOnly(), nil
}

func (v readOnly) Config() Config { return v.r.Config() }
func (v readOnly) LoadBlob(ctx context.Context, id ID) ([]byte, error) {
	return v.r.LoadBlob(ctx, id)
}
func (v readOnly) LoadBlobTo(ctx context.Context, id ID, alloc func(n int) []byte) ([]byte, error) {
	return v.r.LoadBlobTo(ctx, id, alloc)
}
func (v readOnly) WalkTree(ctx context.Context, t Tree, fn func(TreeEntry) error) error {
	return v.r.WalkTree(ctx, t, fn)
}
func (v readOnly) WalkFileTree(ctx context.Context, t Tree, fn func(FileEntry) error) error {
	return v.r.WalkFileTree(ctx, t, fn)
}
func (v readOnly) LoadRecoveryPoint(ctx context.Context, id ID) (*RecoveryPoint, error) {
	return v.r.LoadRecoveryPoint(ctx, id)
}
func (v readOnly) ListRecoveryPoints(ctx context.Context) ([]*RecoveryPoint, error) {
	return v.r.ListRecoveryPoints(ctx)
}
func (v readOnly) FindRecoveryPoint(ctx context.Context, ref string) (*RecoveryPoint, error) {
	return v.r.FindRecoveryPoint(ctx, ref)
}
func (v readOnly) Check(ctx context.Context, opts CheckOptions) (*CheckReport, error) {
	return v.r.Check(ctx, opts)
}
func (v readOnly) Stats(ctx context.Context) (*RepoStats, error) { return v.r.Stats(ctx) }
func (v readOnly) LockShared(ctx context.Context) (*SharedLock, error) {
	return v.r.LockShared(ctx)
}
func (v readOnly) ListKeys(ctx context.Context) ([]KeyInfo, error) { return v.r.ListKeys(ctx) }
func (v readOnly) Backend() storage.Backend                        { return v.r.Backend() }
func (v readOnly) Close() error                                    { return v.r.Close() }
