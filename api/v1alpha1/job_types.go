package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// JobPhase is the state of a BackupJob or RestoreJob; the vault's job
// states use the same names.
// +kubebuilder:validation:Enum=Queued;InProgress;Completed;CompletedWithWarnings;Failed;Cancelled
type JobPhase string

const (
	JobQueued                JobPhase = "Queued"
	JobInProgress            JobPhase = "InProgress"
	JobCompleted             JobPhase = "Completed"
	JobCompletedWithWarnings JobPhase = "CompletedWithWarnings"
	JobFailed                JobPhase = "Failed"
	JobCancelled             JobPhase = "Cancelled"
)

// Terminal reports whether the phase is final.
func (p JobPhase) Terminal() bool {
	switch p {
	case JobCompleted, JobCompletedWithWarnings, JobFailed, JobCancelled:
		return true
	}
	return false
}

// Stable error codes of the extension's jobs (warning codes come from the
// engines). docs/extension.md lists them all.
const (
	CodeExtensionRestartedDuringBackup  = "ExtensionRestartedDuringBackup"
	CodeExtensionRestartedDuringRestore = "ExtensionRestartedDuringRestore"
	// CodeExtensionOOMKilled: the extension's container was killed for
	// exceeding its memory limit while the job ran (its next start reads
	// the killed container's termination reason from its own pod).
	CodeExtensionOOMKilled      = "ExtensionOOMKilled"
	CodeInvalidSpec             = "InvalidSpec"
	CodeStorageLocationNotFound = "StorageLocationNotFound"
	CodeStorageLocationReadOnly = "StorageLocationReadOnly"
	CodeCredentialsNotFound     = "CredentialsNotFound"
	CodeRepositoryUnavailable   = "RepositoryUnavailable"
	// CodeRepositoryNotLocked (a warning): the storage refused the
	// restore's shared lock (read-only credentials), so it ran without
	// one; a prune running meanwhile would make it fail, not restore wrong
	// data.
	CodeRepositoryNotLocked   = "RepositoryNotLocked"
	CodeRecoveryPointNotFound = "RecoveryPointNotFound"
	CodeHookNotFound          = "HookNotFound"
	CodePreHookFailed         = "PreHookFailed"
	CodePostHookFailed        = "PostHookFailed"
	CodeHookFailed            = "HookFailed"
	CodeHookMatchedNoPod      = "HookMatchedNoPod"
	CodeHookNamespaceRefused  = "HookNamespaceRefused"
	CodeBackupFailed          = "BackupFailed"
	CodeRestoreFailed         = "RestoreFailed"
	CodeItemsFailed           = "ItemsFailed"
	CodeCancelled             = "CancelledByUser"
	CodeForgetFailed          = "ForgetFailed"
	// CodeRecoveryPointRetained: an expiry job could not forget a
	// recovery point because the storage's object lock (an s3:// location
	// with object-lock) still retains its manifest; the message names the
	// date, and the vault's retention retries after it.
	CodeRecoveryPointRetained = "RecoveryPointRetained"
	// CodeCopyFailed: the backup is written but its copy to the second
	// storage location (spec.copyTo) failed; a warning, not an error.
	CodeCopyFailed = "CopyFailed"
	// CodeRestoredFromSecondary: the restore read the recovery point's
	// copy in the secondary storage location (RestoreJob
	// spec.fallbackStorageLocation, `arca local restore --fallback-repo`)
	// because the primary's repository could not be read; a warning.
	CodeRestoredFromSecondary = "RestoredFromSecondary"
	// Vault tier (spec.vaultTier): CodeVaultTierUnavailable, the extension
	// cannot run data movers for this job (no image to run them from, a
	// file:// storage location, snapshots turned off); CodeVolumeMoverFailed,
	// a data-mover pod failed, was deleted or never ran;
	// CodeVolumeMoverOOMKilled, it exceeded its memory limit;
	// CodeVolumeMoverEvicted, the node evicted it. Each fails the backup and
	// no recovery point is written. CodeVolumeHolderNotForgotten (a
	// warning): a mover's holder point (tag arca.io/volume-holder) could not
	// be forgotten.
	CodeVaultTierUnavailable     = "VaultTierUnavailable"
	CodeVolumeMoverFailed        = "VolumeMoverFailed"
	CodeVolumeMoverOOMKilled     = "VolumeMoverOOMKilled"
	CodeVolumeMoverEvicted       = "VolumeMoverEvicted"
	CodeVolumeHolderNotForgotten = "VolumeHolderNotForgotten"
)

// JobIssue is a warning or error with a stable code.
type JobIssue struct {
	// Code is stable: scripts and the vault match on it.
	Code    string `json:"code"`
	Message string `json:"message"`
	// Object names the object or resource type concerned, if any.
	// +optional
	Object string `json:"object,omitempty"`
}

// JobProgress counts the work of a running job. Totals are zero while
// unknown (a backup learns its total only when listing ends).
type JobProgress struct {
	ItemsDone  int64 `json:"itemsDone"`
	ItemsTotal int64 `json:"itemsTotal,omitempty"`
	BytesDone  int64 `json:"bytesDone"`
	BytesTotal int64 `json:"bytesTotal,omitempty"`
	// BytesPerSecond is the recent transfer rate (volume data moved to or
	// from the vault tier; 0 when unknown).
	// +optional
	BytesPerSecond int64 `json:"bytesPerSecond,omitempty"`
	// ETASeconds is the estimated time left, from BytesTotal and the rate
	// (0 when unknown).
	// +optional
	ETASeconds int64 `json:"etaSeconds,omitempty"`
}

// JobStatusCommon is the part of the status BackupJob and RestoreJob share.
type JobStatusCommon struct {
	// +optional
	Phase JobPhase `json:"phase,omitempty"`
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// UpdateTime is when the running extension last wrote this status; it
	// advances every few seconds while the job is InProgress.
	// +optional
	UpdateTime *metav1.Time `json:"updateTime,omitempty"`
	// +optional
	Progress *JobProgress `json:"progress,omitempty"`
	// +optional
	Warnings []JobIssue `json:"warnings,omitempty"`
	// +optional
	Errors []JobIssue `json:"errors,omitempty"`
	// Hooks are the hook commands run, in order, with their output (at
	// most MaxHookResults).
	// +optional
	Hooks []HookResult `json:"hooks,omitempty"`
	// Message says in one line what happened.
	// +optional
	Message string `json:"message,omitempty"`
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// BackupJobSpec is one backup: the backup configuration (inline, the same
// fields as everywhere else in Arca) written into a storage location.
type BackupJobSpec struct {
	BackupConfiguration `json:",inline"`
	// StorageLocation names a StorageLocation in the job's namespace.
	// +kubebuilder:validation:MinLength=1
	StorageLocation string `json:"storageLocation"`
	// RecoveryPointName is stored with the recovery point (default: the job name).
	// +optional
	RecoveryPointName string `json:"recoveryPointName,omitempty"`
	// Tags are stored with the recovery point.
	// +optional
	Tags map[string]string `json:"tags,omitempty"`
	// SnapshotClasses are the snapshot location: the VolumeSnapshotClasses
	// used for the included claims' volumes, the first one of a volume's
	// driver wins (default: the class annotated as the driver's default).
	// +optional
	SnapshotClasses []string `json:"snapshotClasses,omitempty"`
	// Cancel stops a queued or running job (phase Cancelled, no recovery point).
	// +optional
	Cancel bool `json:"cancel,omitempty"`
	// ForgetRecoveryPoints turns the job into an expiry: instead of backing
	// up, it deletes the retained VolumeSnapshotContents of these recovery
	// points (full IDs) and forgets them in the storage location's
	// repository. IDs the repository no longer has are skipped. The vault's
	// retention uses it; the backup configuration is then ignored.
	// +optional
	// +kubebuilder:validation:MaxItems=100
	ForgetRecoveryPoints []string `json:"forgetRecoveryPoints,omitempty"`
	// Prune, with forgetRecoveryPoints, prunes the repository after
	// forgetting: data no recovery point references is deleted (under the
	// repository's exclusive lock). The vault sets it at most once a day
	// per storage location.
	// +optional
	Prune bool `json:"prune,omitempty"`
	// ExpireSnapshotsOf turns the job into the expiry of the operational
	// tier of these recovery points (full IDs): their retained
	// VolumeSnapshotContents are deleted and the points are kept, with
	// their volumes' data in the vault tier. The vault's retention per
	// datastore uses it; the backup configuration is then ignored.
	// +optional
	// +kubebuilder:validation:MaxItems=100
	ExpireSnapshotsOf []string `json:"expireSnapshotsOf,omitempty"`
	// CopyTo names a second StorageLocation in the job's namespace (another
	// region, account or provider, with its own password): once the
	// recovery point is written it is copied there, sending only the data
	// that location's repository lacks (as `arca repo copy`). A failed copy
	// leaves the backup done with warning CopyFailed; the copy can be
	// repeated with `arca repo copy`.
	// +optional
	CopyTo string `json:"copyTo,omitempty"`
	// VaultTier moves the data of the snapshotted volumes into the
	// repository (the vault tier): a read-only claim is provisioned from
	// each snapshot and a data-mover pod copies its files, so that the
	// recovery point survives the loss of the storage system the volumes
	// live on. Without it volumes are protected by their snapshots only.
	// +optional
	VaultTier bool `json:"vaultTier,omitempty"`
}

// BackupJobStatus is what the extension reports about a backup.
type BackupJobStatus struct {
	JobStatusCommon `json:",inline"`
	// RecoveryPointID is the full ID of the recovery point written.
	// +optional
	RecoveryPointID string `json:"recoveryPointID,omitempty"`
	// Counts are the objects backed up per resource type (resource.group).
	// +optional
	Counts map[string]int64 `json:"counts,omitempty"`
	// CopiedRecoveryPointID is the full ID of the copy in spec.copyTo's
	// repository (it carries the original's ID in tag arca.io/origin).
	// +optional
	CopiedRecoveryPointID string `json:"copiedRecoveryPointID,omitempty"`
}

// Keys of BackupJobStatus.Counts besides the per-resource-type counts:
// what the backup added to the repository after deduplication and
// compression (CountStoredBytes) and the bytes it backed up, objects plus
// vault-tier volume data (CountLogicalBytes). The vault records them on
// the recovery point to report storage used and the dedup ratio.
const (
	CountStoredBytes  = "storedBytes"
	CountLogicalBytes = "logicalBytes"
)

// BackupJob backs up the cluster's resources into a storage location.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=arca,shortName=abj
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Items",type=integer,JSONPath=`.status.progress.itemsDone`
// +kubebuilder:printcolumn:name="Recovery Point",type=string,JSONPath=`.status.recoveryPointID`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BackupJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec BackupJobSpec `json:"spec"`
	// +optional
	Status BackupJobStatus `json:"status,omitempty"`
}

// BackupJobList is a list of BackupJobs.
// +kubebuilder:object:root=true
type BackupJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BackupJob `json:"items"`
}

// RestoreJobSpec is one restore of a recovery point into this cluster.
type RestoreJobSpec struct {
	// RecoveryPoint is a recovery point ID, a unique prefix of one, or "latest".
	// +kubebuilder:validation:MinLength=1
	RecoveryPoint string `json:"recoveryPoint"`
	// StorageLocation names the StorageLocation (in the job's namespace)
	// holding the recovery point; it may be read-only.
	// +kubebuilder:validation:MinLength=1
	StorageLocation string `json:"storageLocation"`
	// FallbackStorageLocation names a StorageLocation holding a copy of
	// the recovery point (BackupJob spec.copyTo): when the repository of
	// spec.storageLocation is unreachable the point is read from there,
	// found by its ID (the copy's own, or the original's kept in tag
	// arca.io/origin), and the job warns RestoredFromSecondary.
	// +optional
	FallbackStorageLocation string `json:"fallbackStorageLocation,omitempty"`
	// RestoreCriteria, inline; its storageClassMappings replace the job
	// field of the same name (same JSON, so existing RestoreJobs still work).
	RestoreCriteria `json:",inline"`
	// Cancel stops a queued or running job.
	// +optional
	Cancel bool `json:"cancel,omitempty"`
	// VaultPoint, set by a vault, names the vault and backup instance
	// whose catalog the recovery point comes from: the extension restores
	// (or verifies) the point only if its tags say the same
	// (CodeRecoveryPointOfAnotherInstance otherwise).
	// +optional
	VaultPoint *VaultPoint `json:"vaultPoint,omitempty"`
	// Verification, when set, makes this restore a verification of the
	// recovery point (docs/extension.md, Verification): the repository
	// data is checked, the point's namespaces are restored into sandbox
	// namespaces (VerificationNamespacePrefix…, mapped by the extension;
	// namespaceMappings must be empty), the restored objects are compared
	// with the point, restoreHookReferences run as smoke tests, the verdict
	// goes to status.verification and the sandbox namespaces are deleted.
	// +optional
	Verification *VerificationSpec `json:"verification,omitempty"`
}

// VaultPoint is what a vault's RestoreJob or RecoveryPointQuery says of
// its recovery point: the vault and backup instance it belongs to, which
// the point's backup wrote as its tags TagVault and TagInstance. The
// extension checks the point's tags against it before reading further, so
// that a vault's catalog naming a point of another vault or instance (in a
// shared repository) does not restore or reveal it. A job or query without
// it (the cluster owner's own) is not checked.
type VaultPoint struct {
	// Vault is the vault's name in its catalog (tag arca.io/vault).
	// +kubebuilder:validation:MinLength=1
	Vault string `json:"vault"`
	// Instance is the backup instance (tag arca.io/instance).
	// +kubebuilder:validation:MinLength=1
	Instance string `json:"instance"`
}

// Matches reports whether a recovery point's tags name p's vault and
// instance.
func (p VaultPoint) Matches(tags map[string]string) bool {
	return tags[TagVault] == p.Vault && tags[TagInstance] == p.Instance
}

// CodeRecoveryPointOfAnotherInstance: the recovery point a vault's
// RestoreJob or RecoveryPointQuery names is not tagged with the vault and
// instance of its spec.vaultPoint; nothing was restored or read. The
// vault uses the same code when its catalog sync is given such a point.
const CodeRecoveryPointOfAnotherInstance = "RecoveryPointOfAnotherInstance"

// VerificationSpec tunes a verification.
type VerificationSpec struct {
	// ReadDataPercent is the share of the repository's packs read whole
	// and verified blob by blob (0 to 100); the rest are checked by their
	// headers. Every verification picks its share at random.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	ReadDataPercent int32 `json:"readDataPercent,omitempty"`
	// SkipVolumes restores claims without their data (no snapshot or
	// vault-tier data is read).
	// +optional
	SkipVolumes bool `json:"skipVolumes,omitempty"`
}

// Verdicts of a verification (VerificationResult.Verdict).
const (
	VerdictVerified           = "Verified"
	VerdictVerificationFailed = "VerificationFailed"
)

// VerificationNamespacePrefix starts every sandbox namespace of a
// verification: arca-verify-<5 characters of the job>-<namespace>. The
// extension deletes only namespaces with this prefix that the
// verification's restore created.
const VerificationNamespacePrefix = "arca-verify-"

// Codes of a failed verification (status.verification.codes and the job's
// errors) and of its cleanup (a warning).
const (
	// CodeVerificationDataDamaged: the repository check found files the
	// recovery point needs missing or damaged.
	CodeVerificationDataDamaged = "VerificationDataDamaged"
	// CodeVerificationRestoreFailed: objects of the point could not be
	// restored into the sandbox (or the restore stopped).
	CodeVerificationRestoreFailed = "VerificationRestoreFailed"
	// CodeVerificationObjectsDiffer: restored objects differ from the
	// point, or are missing from the sandbox.
	CodeVerificationObjectsDiffer = "VerificationObjectsDiffer"
	// CodeVerificationHookFailed: a restore hook (smoke test) failed.
	CodeVerificationHookFailed = "VerificationHookFailed"
	// CodeVerificationCleanupFailed (a warning): sandbox namespaces could
	// not be deleted; the message names them.
	CodeVerificationCleanupFailed = "VerificationCleanupFailed"
	// CodePolicyDeniesVerification: the ClusterTrustPolicy does not allow
	// verification (spec.verification).
	CodePolicyDeniesVerification = "PolicyDeniesVerification"
)

// VerificationDifference is one problem a verification found.
type VerificationDifference struct {
	// Object is resource.group namespace/name in the recovery point, or a
	// repository file (data/ID).
	Object  string `json:"object"`
	Problem string `json:"problem"`
}

// VerificationResult is the outcome of a verification.
type VerificationResult struct {
	// Verdict is Verified or VerificationFailed.
	Verdict string `json:"verdict"`
	// Codes say why a verification failed.
	// +optional
	Codes []string `json:"codes,omitempty"`
	// Differences lists what differs or is damaged, at most MaxItemResults.
	// +optional
	Differences []VerificationDifference `json:"differences,omitempty"`
	// ObjectsCompared counts restored objects compared with the point.
	ObjectsCompared int64 `json:"objectsCompared"`
	// PacksRead counts packs read whole; PacksChecked all packs checked.
	PacksRead    int64 `json:"packsRead"`
	PacksChecked int64 `json:"packsChecked"`
	// SandboxNamespaces are the namespaces restored into.
	// +optional
	SandboxNamespaces []string `json:"sandboxNamespaces,omitempty"`
	// CleanedUp: every sandbox namespace was deleted (deletion accepted).
	CleanedUp bool `json:"cleanedUp"`
}

// RestoreItemResult is one object the restore did not simply create.
type RestoreItemResult struct {
	// Object is resource.group/namespace/name in the target cluster.
	Object string `json:"object"`
	Action string `json:"action"`
	// +optional
	Reason string `json:"reason,omitempty"`
}

// MaxItemResults bounds RestoreJobStatus.Items, so a restore with many
// failures still fits an object.
const MaxItemResults = 100

// RestoreJobStatus is what the extension reports about a restore.
type RestoreJobStatus struct {
	JobStatusCommon `json:",inline"`
	// RecoveryPointID is the full ID the spec's reference resolved to.
	// +optional
	RecoveryPointID string `json:"recoveryPointID,omitempty"`
	// Results counts objects by action (Created, Patched, Unchanged,
	// SkippedExists, SkippedOwned, SkippedFiltered, Failed).
	// +optional
	Results map[string]int64 `json:"results,omitempty"`
	// Items lists failed objects first, then other non-created ones, at most MaxItemResults.
	// +optional
	Items []RestoreItemResult `json:"items,omitempty"`
	// Verification is the verdict of a verification (spec.verification).
	// +optional
	Verification *VerificationResult `json:"verification,omitempty"`
}

// RestoreJob restores a recovery point into this cluster.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=arca,shortName=arj
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Done",type=integer,JSONPath=`.status.progress.itemsDone`
// +kubebuilder:printcolumn:name="Total",type=integer,JSONPath=`.status.progress.itemsTotal`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RestoreJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec RestoreJobSpec `json:"spec"`
	// +optional
	Status RestoreJobStatus `json:"status,omitempty"`
}

// RestoreJobList is a list of RestoreJobs.
// +kubebuilder:object:root=true
type RestoreJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RestoreJob `json:"items"`
}

// JobStatus returns the status fields both job kinds share.
func (j *BackupJob) JobStatus() *JobStatusCommon { return &j.Status.JobStatusCommon }

// CancelRequested reports spec.cancel.
func (j *BackupJob) CancelRequested() bool { return j.Spec.Cancel }

// JobStatus returns the status fields both job kinds share.
func (j *RestoreJob) JobStatus() *JobStatusCommon { return &j.Status.JobStatusCommon }

// CancelRequested reports spec.cancel.
func (j *RestoreJob) CancelRequested() bool { return j.Spec.Cancel }
