// Package operations is Arca's one path for the operations that work on a
// cluster and a repository:
//
//   - Backup: the cluster's objects into a recovery point, with CSI
//     snapshots of the included claims (their records in the recovery
//     point) and the application hooks around the snapshots;
//   - Restore: a recovery point's objects, then its volumes from their
//     snapshots, with hooks before and after;
//   - Forget: a recovery point's retained snapshots deleted, then the
//     recovery point forgotten in the repository.
//
// `arca local` (internal/cli), the extension's jobs (internal/extension) and
// the data mover (issue 15) call it. They only turn their input (flags, a
// job's spec) into options and present the result; the order of the steps,
// what happens on failure and what is cleaned up live here.
//
// The boundaries are small: a Progress callback, the hooks interfaces
// (BackupHooks, RestoreHooks) that the extension implements, the
// SnapshotCleaner that deletes snapshots, and VolumeMover, where the data
// mover plugs into a backup.
package operations

import (
	"fmt"
	"time"
)

// Progress is how far a running operation is; a count not known yet is 0.
// It maps one to one onto a job's status.progress.
type Progress struct {
	ItemsDone, ItemsTotal int64
	BytesDone, BytesTotal int64
	// BytesPerSecond and ETA, when known (a restore's restore pods):
	// the rate of the bytes and the time left.
	BytesPerSecond float64
	ETA            time.Duration
}

// ProgressFunc receives progress; it may be called from several
// goroutines, but not concurrently.
type ProgressFunc func(Progress)

func (f ProgressFunc) report(p Progress) {
	if f != nil {
		f(p)
	}
}

// PreHookError is a pre hook (or the lookup of its pods) that failed
// before anything was written: no recovery point for a backup, no object
// for a restore.
type PreHookError struct {
	// Op is "backup" or "restore".
	Op  string
	Err error
}

func (e *PreHookError) Error() string {
	nothing := "nothing backed up"
	if e.Op == "restore" {
		nothing = "nothing restored"
	}
	return fmt.Sprintf("pre hook failed, %s: %v", nothing, e.Err)
}

func (e *PreHookError) Unwrap() error { return e.Err }
