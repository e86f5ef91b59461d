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
	Mover VolumeMover
	// StrayHolders, with Mover, is asked which other backups' holder
	// points to forget when this backup forgets its own.
	StrayHolders StrayHolders
	Progress     ProgressFunc
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

// VolumeMover is where the data mover (issue 15, internal/mover) plugs
// into a backup: it copies the data of the snapshotted volumes into the
// repository (the vault tier). It runs once every snapshot is cut (and the
// hooks have thawed the pods), before the recovery point is written, so
// that a recovery point never names volume data the repository does not
// hold. It gets the snapshot records (which it leaves as they are) and
// returns one repo.VolumeData per moved volume, which goes into the
// recovery point's VolumeData. An error fails the backup: no recovery
// point is written and the snapshots are deleted.
type VolumeMover interface {
	MoveVolumes(ctx context.Context, records *volume.Records) (*MoveResult, error)
}

// MoveResult is what a VolumeMover moved.
type MoveResult struct {
	Data     []repo.VolumeData
	Warnings []repo.Warning
	// Holders are recovery points the movers committed to hold each
	// volume's tree until the backup's own recovery point names it (the
	// mover's pods write through their own repository handles). Backup
	// forgets them when it ends, whether its recovery point was written or
	// not; a mover that fails returns those it committed with its error.
	Holders []repo.ID
}

// StrayHolders is given the holder points of other backups (tag
// v1alpha1.TagVolumeHolder), as listed after this backup's movers ended,
// and returns those to forget: holders whose backup has ended without
// forgetting them (an extension that crashed). It must never return the
// holder of a backup still running.
type StrayHolders func(ctx context.Context, holders []*repo.RecoveryPoint) ([]repo.ID, error)

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
func Backup(ctx context.Context, cfg *rest.Config, open OpenRepository, opts BackupOptions) (out *BackupResult, err error) {
	var hooks volume.SnapshotHooks
	if opts.Hooks != nil {
		hooks = preHookMarker{opts.Hooks}
	}
	snaps, err := volume.NewSnapshotter(cfg, volume.SnapshotOptions{Classes: opts.SnapshotClasses, Timeout: opts.SnapshotTimeout,
		Hooks: hooks, Logf: opts.Logf})
	if err != nil {
		return nil, fmt.Errorf("volume snapshotter: %w", err)
	}
	step := &snapshotStep{snaps: snaps, mover: opts.Mover}
	prep, err := backup.Prepare(ctx, cfg, backup.Options{Config: opts.Config, Name: opts.Name, Tags: opts.Tags, Workers: opts.Workers, Now: opts.Now,
		Volumes: step, AllowNamespace: opts.AllowNamespace,
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
	defer func() {
		// The movers' holder points: the recovery point names their trees
		// now, or there is none and their data goes with the next prune.
		if ferr := forgetHolders(ctx, r, step.backupID, step.holders, opts.StrayHolders); ferr != nil {
			if out != nil {
				out.Warnings = append(out.Warnings, repo.Warning{Code: v1alpha1.CodeVolumeHolderNotForgotten, Message: ferr.Error()})
			} else {
				err = errors.Join(err, ferr)
			}
		}
	}()
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
	out = &BackupResult{Result: res}
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
	// moved is the volume data the mover stored; holders its holder points.
	moved   []repo.VolumeData
	holders []repo.ID
	// backupID tags this backup's holder points (volume.Records.BackupID).
	backupID string
}

var (
	_ backup.VolumeSnapshotter = (*snapshotStep)(nil)
	_ backup.VolumeDataMover   = (*snapshotStep)(nil)
)

func (s *snapshotStep) SnapshotVolumes(ctx context.Context, claims []types.NamespacedName) (json.RawMessage, []repo.Warning, error) {
	records, warnings, err := s.snaps.SnapshotVolumes(ctx, claims)
	if err != nil || s.mover == nil {
		return records, warnings, err
	}
	moveWarnings, err := s.move(ctx, records)
	if err != nil {
		// The engine has no records to discard: delete the snapshots here.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		if derr := s.snaps.DiscardSnapshots(dctx, records); derr != nil {
			err = errors.Join(err, fmt.Errorf("delete the volume snapshots of the unwritten recovery point: %w", derr))
		}
		return nil, warnings, err
	}
	return records, append(warnings, moveWarnings...), nil
}

func (s *snapshotStep) move(ctx context.Context, records json.RawMessage) ([]repo.Warning, error) {
	recs, err := volume.Decode(records)
	if err != nil {
		return nil, err
	}
	s.backupID = recs.BackupID
	res, err := s.mover.MoveVolumes(ctx, recs)
	if res != nil {
		s.holders = append(s.holders, res.Holders...)
	}
	if err != nil {
		return nil, fmt.Errorf("move volume data: %w", err)
	}
	s.moved = res.Data
	return res.Warnings, nil
}

// MovedVolumeData implements backup.VolumeDataMover.
func (s *snapshotStep) MovedVolumeData() []repo.VolumeData { return s.moved }

func (s *snapshotStep) DiscardSnapshots(ctx context.Context, records json.RawMessage) error {
	return s.snaps.DiscardSnapshots(ctx, records)
}

// forgetHolders forgets the movers' holder points, also when ctx is
// cancelled: those whose results the mover returned, and every other point
// tagged as a holder of this backup. A mover pod deleted or failed after it
// committed, before its result was read, leaves a holder the results do
// not name; the repository's listing does. With stray set, the other
// backups' holders in that listing go to it, and those it returns are
// forgotten too.
func forgetHolders(ctx context.Context, r *repo.Repository, backupID string, ids []repo.ID, stray StrayHolders) error {
	if backupID == "" && len(ids) == 0 {
		return nil
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if backupID != "" {
		known := map[repo.ID]bool{}
		for _, id := range ids {
			known[id] = true
		}
		rps, err := r.ListRecoveryPoints(fctx)
		if err != nil {
			return fmt.Errorf("list the data mover's holder recovery points (tag %s=%s): %w", v1alpha1.TagVolumeHolder, backupID, err)
		}
		var others []*repo.RecoveryPoint
		for _, rp := range rps {
			switch h, ok := rp.Tags[v1alpha1.TagVolumeHolder]; {
			case h == backupID && !known[rp.ID]:
				ids = append(ids, rp.ID)
				known[rp.ID] = true
			case ok && h != backupID:
				others = append(others, rp)
			}
		}
		if stray != nil && len(others) > 0 {
			more, err := stray(fctx, others)
			if err != nil {
				return fmt.Errorf("judge other backups' holder recovery points: %w", err)
			}
			ids = append(ids, more...)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if err := r.Forget(fctx, ids); err != nil {
		return fmt.Errorf("forget the data mover's holder recovery points (tag %s; `arca local forget --repo URL ID` removes them): %w", v1alpha1.TagVolumeHolder, err)
	}
	return nil
}
