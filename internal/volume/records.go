// Package volume is Arca's volume layer: CSI snapshots of the persistent
// volume claims a backup includes, the records of those snapshots in the
// recovery point, the restore of claims from them, and the deletion of the
// retained snapshots when recovery points are forgotten.
//
// The engines (internal/backup, internal/restore) call it through small
// hooks (backup.VolumeSnapshotter, restore.VolumeRestorer); the rules and
// warning codes are described in docs/volumes.md.
package volume

import (
	"encoding/json"
	"fmt"
	"time"
)

// Warning codes of the volume layer (backup warnings). They are stable.
const (
	// WarnInTreeVolume: the claim's volume is not a CSI volume.
	WarnInTreeVolume = "InTreeVolumeNotSupported"
	// WarnNoSnapshotClass: no VolumeSnapshotClass serves the volume's driver.
	WarnNoSnapshotClass = "NoSnapshotClassForDriver"
	// WarnNotBound: the claim is not bound to a volume.
	WarnNotBound = "PVCNotBoundToVolume"
	// WarnPVNotFound: the claim names a volume that does not exist.
	WarnPVNotFound = "PVNotFound"
	// WarnTimedOut: the snapshot did not become ready within the timeout.
	WarnTimedOut = "CSISnapshottingTimedOut"
	// WarnExcluded: the claim is annotated arca.io/exclude-from-backup: "true";
	// its object is backed up, its data is not.
	WarnExcluded = "VolumeExcludedFromBackup"
	// WarnSnapshotFailed: creating the VolumeSnapshot or securing its
	// content failed.
	WarnSnapshotFailed = "CSISnapshotFailed"
	// WarnContentNotFound (forget): a recorded snapshot content no longer
	// exists; its driver snapshot cannot be deleted through it.
	WarnContentNotFound = "SnapshotContentNotFound"
	// WarnContentLabelFailed (after a backup): a retained snapshot content
	// could not be labelled with the recovery point it belongs to; the
	// recovery point's records still name it.
	WarnContentLabelFailed = "SnapshotContentLabelFailed"
)

// Warning codes of a restore (restore.Result.Warnings, one per claim). The
// claim is still created: it binds once the cause is fixed, without running
// the restore again. They are stable.
const (
	// WarnCSIDriverNotFound: the claim is restored from a snapshot of a CSI
	// driver that has no CSIDriver object in the target cluster.
	WarnCSIDriverNotFound = "CSIDriverNotFound"
	// WarnStorageClassNotFound: the claim is provisioned anew with a storage
	// class (after storageClassMappings) that the target cluster lacks.
	WarnStorageClassNotFound = "StorageClassNotFound"
)

// Labels and annotations the volume layer puts on the objects it creates.
const (
	// AnnExcludeFromBackup on a claim leaves its volume out of snapshots.
	AnnExcludeFromBackup = "arca.io/exclude-from-backup"
	// LabelBackupID names the backup that created a VolumeSnapshot or
	// VolumeSnapshotContent (the recovery point ID is known only after the
	// manifest is written, so the records name the contents instead).
	LabelBackupID = "arca.io/backup-id"
	// AnnSourceClaim on a retained content: namespace/name of the claim.
	AnnSourceClaim = "arca.io/source-pvc"
	managedBy      = "arca"
)

// RecordsVersion is the version of the Records format.
const RecordsVersion = 1

// Records is what a backup stores in RecoveryPoint.Volumes.
type Records struct {
	Version int `json:"version"`
	// BackupID labels the snapshots and contents the backup created.
	BackupID  string   `json:"backupID"`
	Snapshots []Record `json:"snapshots,omitempty"`
	// FirstSnapshot and LastSnapshot are the earliest and latest snapshot
	// creation times; Spread is the time between them: how close in time
	// the volumes of the recovery point are to one another.
	FirstSnapshot *time.Time `json:"firstSnapshot,omitempty"`
	LastSnapshot  *time.Time `json:"lastSnapshot,omitempty"`
	SpreadMillis  int64      `json:"spreadMillis"`
	// Skipped are the claims whose data was not snapshotted, with the code.
	Skipped []Skipped `json:"skipped,omitempty"`
}

// Record is one volume snapshot.
type Record struct {
	Namespace      string `json:"namespace"`
	PVC            string `json:"pvc"`
	PV             string `json:"pv"`
	Driver         string `json:"driver"`
	SnapshotHandle string `json:"snapshotHandle"`
	// RestoreSize in bytes, as the driver reported it (0 when unknown).
	RestoreSize   int64  `json:"restoreSize"`
	SnapshotClass string `json:"snapshotClass"`
	// VolumeHandle is the source volume's CSI handle.
	VolumeHandle string `json:"volumeHandle"`
	StorageClass string `json:"storageClass,omitempty"`
	VolumeMode   string `json:"volumeMode,omitempty"`
	// Content is the retained VolumeSnapshotContent (deletionPolicy Retain)
	// that keeps the driver snapshot alive; forget deletes it.
	Content string `json:"content"`
	// Snapshot is the name the VolumeSnapshot had in Namespace (deleted once ready).
	Snapshot string    `json:"snapshot"`
	Time     time.Time `json:"time"`
}

// Skipped is a claim whose data is not in the recovery point.
type Skipped struct {
	Namespace string `json:"namespace"`
	PVC       string `json:"pvc"`
	Code      string `json:"code"`
	Message   string `json:"message"`
}

// Key is namespace/pvc.
func (r Record) Key() string { return r.Namespace + "/" + r.PVC }

// Decode reads the records of a recovery point; empty data gives empty records.
func Decode(data json.RawMessage) (*Records, error) {
	recs := &Records{}
	if len(data) == 0 || string(data) == "null" {
		return recs, nil
	}
	if err := json.Unmarshal(data, recs); err != nil {
		return nil, fmt.Errorf("volume records: %w", err)
	}
	if recs.Version > RecordsVersion {
		return nil, fmt.Errorf("volume records: version %d is newer than this arca understands (%d)", recs.Version, RecordsVersion)
	}
	return recs, nil
}
