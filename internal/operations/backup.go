package operations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/backup"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/restore"
	"github.com/arca-backup/arca/internal/volume"
)

// BackupOptions configure one backup.
type BackupOptions struct {
	Config v1alpha1.BackupConfiguration
	// Name and Tags are stored with the recovery point.
	Name string
	Tags map[string]string
	// Workers: resource types listed at once (engine default when 0).
	Workers int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// SnapshotClasses are the snapshot location (volume.SnapshotOptions.Classes);
	// SnapshotTimeout bounds the wait for all snapshots (default 10 min).
	SnapshotClasses []string
	SnapshotTimeout time.Duration
	// Logf, when set, receives one line per volume snapshot taken.
	Logf func(format string, args ...any)
	// Hooks, when set, run the application hooks around the snapshots.
	Hooks BackupHooks
	// Mover, when set, moves the snapshotted volumes' data into the
	// repository before the recovery point is written (issue 15).
	Mover    VolumeMover
	Progress ProgressFunc
	// AllowNamespace, when set, leaves out every namespace it refuses
	// (backup.Options.AllowNamespace: the cluster owner's trust policy).
	AllowNamespace func(ns string) bool
}

// BackupHooks are a backup's application hooks. They run around the volume
// snapshots (volume.SnapshotHooks): a pod is frozen just before the
// snapshots of its claims are cut and thawed as soon as they are. When the
// configuration takes no snapshots, BeforeSnapshots is called with no
// claims before the objects are scanned. Finish is called once the backup
// has ended, whatever the outcome, for the post hooks still owed.
type BackupHooks interface {
	volume.SnapshotHooks
	Finish()
}

// VolumeMover is where the data mover (issue 15) plugs into a backup: it
// copies the data of the snapshotted volumes into the repository. It runs
// once every snapshot is cut (and the hooks have thawed the pods), before
// the recovery point is written, so that a recovery point never names
// volume data the repository does not hold. It gets the snapshot records
// and returns them with what it moved, and warnings for volumes it could
// not move; an error fails the backup, and the snapshots are deleted as
// for any backup that writes no recovery point.
//
// Not built yet: with no mover, volumes are protected by their retained
// snapshots only.
type VolumeMover interface {
	MoveVolumes(ctx context.Context, records *volume.Records) (*volume.Records, []repo.Warning, error)
}

// OpenRepository opens the repository a backup writes to, creating it when
// the caller wants that. Backup calls it only once the configuration is
// known to work, so that a typo never creates a repository, and closes it.
type OpenRepository func(ctx context.Context) (*repo.Repository, error)

// BackupResult is a written recovery point.
type BackupResult struct {
	*backup.Result
	// Volumes are the snapshot records of the recovery point.
	Volumes *volume.Records
	// Warnings arose after the recovery point was written (its retained
	// snapshot contents could not be labelled with it); they are not in
	// the recovery point's summary.
	Warnings []repo.Warning
}

// Backup backs up the cluster of cfg: it prepares the backup (a
// configuration that cannot work fails with *backup.ConfigError before the
// repository is opened), opens the repository, stores the objects, takes
// the volume snapshots with the hooks around them, moves the volume data
// (Mover), writes the recovery point and labels the retained snapshot
// contents with it. A pre hook that fails gives *PreHookError. On any
// error no recovery point is written and the snapshots taken are deleted.
func Backup(ctx context.Context, cfg *rest.Config, open OpenRepository, opts BackupOptions) (*BackupResult, error) {
	var hooks volume.SnapshotHooks
	if opts.Hooks != nil {
		hooks = preHookMarker{opts.Hooks}
	}
	snaps, err := volume.NewSnapshotter(cfg, volume.SnapshotOptions{Classes: opts.SnapshotClasses, Timeout: opts.SnapshotTimeout,
		Hooks: hooks, Logf: opts.Logf})
	if err != nil {
		return nil, fmt.Errorf("volume snapshotter: %w", err)
	}
	prep, err := backup.Prepare(ctx, cfg, backup.Options{Config: opts.Config, Name: opts.Name, Tags: opts.Tags, Workers: opts.Workers, Now: opts.Now,
		Volumes: &snapshotStep{snaps: snaps, mover: opts.Mover}, AllowNamespace: opts.AllowNamespace,
		Progress: func(p backup.Progress) { opts.Progress.report(Progress{ItemsDone: p.Items, BytesDone: p.Bytes}) }})
	if err != nil {
		var ce *backup.ConfigError
		if errors.As(err, &ce) {
			return nil, err
		}
		return nil, fmt.Errorf("prepare backup: %w", err)
	}
	r, err := open(ctx)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if opts.Hooks != nil {
		defer opts.Hooks.Finish()
		if !opts.Config.Snapshots() {
			// No snapshots to hold the pods still for: each pod's pre and
			// post commands run back to back, before the scan.
			if err := opts.Hooks.BeforeSnapshots(ctx, nil); err != nil {
				return nil, &PreHookError{Op: "backup", Err: err}
			}
		}
	}
	res, err := prep.Run(ctx, r)
	if err != nil {
		var pre preHookFailure
		if errors.As(err, &pre) {
			return nil, &PreHookError{Op: "backup", Err: err}
		}
		return nil, fmt.Errorf("backup failed, no recovery point written: %w", err)
	}
	rp := res.RecoveryPoint
	sum := rp.Summary
	opts.Progress.report(Progress{ItemsDone: int64(sum.Items), ItemsTotal: int64(sum.Items), BytesDone: sum.Bytes, BytesTotal: sum.Bytes})
	out := &BackupResult{Result: res}
	if out.Volumes, err = volume.Decode(rp.Volumes); err != nil {
		return nil, fmt.Errorf("recovery point %s written, but its volume records do not read back: %w", res.ID.Short(), err)
	}
	if len(out.Volumes.Snapshots) > 0 {
		// A label that cannot be set is only reported: the records name the contents.
		if err := snaps.LabelRecoveryPoint(ctx, rp.Volumes, restore.RecoveryPointLabel(res.ID.String())); err != nil {
			out.Warnings = append(out.Warnings, repo.Warning{Code: volume.WarnContentLabelFailed, Message: err.Error()})
		}
	}
	return out, nil
}

// preHookFailure marks an error of the hooks' BeforeSnapshots as it travels
// through the volume layer and the engine, so that Backup can tell a pre
// hook's failure from the backup's own.
type preHookFailure struct{ err error }

func (e preHookFailure) Error() string { return e.err.Error() }
func (e preHookFailure) Unwrap() error { return e.err }

type preHookMarker struct{ BackupHooks }

func (m preHookMarker) BeforeSnapshots(ctx context.Context, claims []types.NamespacedName) error {
	if err := m.BackupHooks.BeforeSnapshots(ctx, claims); err != nil {
		return preHookFailure{err}
	}
	return nil
}

// snapshotStep is the backup engine's volume step: the CSI snapshots, then
// the data mover when there is one.
type snapshotStep struct {
	snaps *volume.Snapshotter
	mover VolumeMover
}

var _ backup.VolumeSnapshotter = (*snapshotStep)(nil)

func (s *snapshotStep) SnapshotVolumes(ctx context.Context, claims []types.NamespacedName) (json.RawMessage, []repo.Warning, error) {
	records, warnings, err := s.snaps.SnapshotVolumes(ctx, claims)
	if err != nil || s.mover == nil {
		return records, warnings, err
	}
	moved, moveWarnings, err := s.move(ctx, records)
	if err != nil {
		// The engine has no records to discard: delete the snapshots here.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		if derr := s.snaps.DiscardSnapshots(dctx, records); derr != nil {
			err = errors.Join(err, fmt.Errorf("delete the volume snapshots of the unwritten recovery point: %w", derr))
		}
		return nil, warnings, err
	}
	return moved, append(warnings, moveWarnings...), nil
}

func (s *snapshotStep) move(ctx context.Context, records json.RawMessage) (json.RawMessage, []repo.Warning, error) {
	recs, err := volume.Decode(records)
	if err != nil {
		return nil, nil, err
	}
	recs, warnings, err := s.mover.MoveVolumes(ctx, recs)
	if err != nil {
		return nil, nil, fmt.Errorf("move volume data: %w", err)
	}
	data, err := json.Marshal(recs)
	return data, warnings, err
}

func (s *snapshotStep) DiscardSnapshots(ctx context.Context, records json.RawMessage) error {
	return s.snaps.DiscardSnapshots(ctx, records)
}
