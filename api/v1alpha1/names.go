package v1alpha1

import "time"

// Names every component shares: the extension's namespace and objects, the
// vault's roles in a cluster, the labels on objects Arca creates, and the
// tags a recovery point carries. They are defined here once; the extension,
// trusted access, prerequisite checks, the cluster driver and the CLI refer
// to these constants, never to the literals.
const (
	// ExtensionNamespace is where the extension runs and where jobs,
	// storage locations, hooks and trusted-access bindings live.
	ExtensionNamespace = "arca-system"
	// ExtensionName names the extension's Deployment, ServiceAccount,
	// ClusterRole and leader Lease, and is its app.kubernetes.io/name.
	ExtensionName = "arca-extension"
	// BackupOperatorRole is the ClusterRole the vault's identity is bound
	// to inside ExtensionNamespace only (trusted access).
	BackupOperatorRole = "arca-backup-operator"
	// VaultReaderRole is the read-only ClusterRole for the vault's
	// prerequisite validation (no Secrets).
	VaultReaderRole = "arca-vault-reader"

	// LabelManagedBy (app.kubernetes.io/managed-by) names what manages an
	// object Arca creates: the extension's install, trusted access, the
	// volume layer's snapshots.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// LabelName (app.kubernetes.io/name) names the application.
	LabelName = "app.kubernetes.io/name"

	// LabelVault marks the trusted-access objects created for a vault.
	LabelVault = "arca.io/vault"
	// LabelVaultJob marks a BackupJob or RestoreJob the vault created, with
	// its job ID.
	LabelVaultJob = "arca.io/vault-job"
	// LabelVaultForget marks the BackupJobs that forget expired points.
	LabelVaultForget = "arca.io/vault-forget"

	// Tags of a recovery point made for the vault: which vault, backup
	// instance and vault job it belongs to. `arca vault sync` rebuilds the
	// catalog from them.
	TagVault    = "arca.io/vault"
	TagInstance = "arca.io/instance"
	TagJob      = "arca.io/job"
	// TagBackupJob is the namespace/name of the BackupJob that made a
	// recovery point.
	TagBackupJob = "arca.io/backup-job"
	// TagVolume marks a recovery point written by the data mover
	// (`arca datamover backup`); its value is the volume's name
	// (namespace/claim).
	TagVolume = "arca.io/volume"
	// TagVolumeHolder marks a recovery point a data-mover pod committed to
	// hold one volume's tree until the backup's own recovery point names
	// it; its value is the backup ID (volume.Records.BackupID). The
	// extension forgets holders when the backup ends; one that survives an
	// extension crash is forgotten later by TagVolumeHolderJob.
	TagVolumeHolder = "arca.io/volume-holder"
	// TagVolumeHolderJob names the BackupJob a holder serves, as the UID of
	// the cluster (its kube-system namespace's UID) and the UID of the job,
	// "CLUSTER/JOB". The extension of that cluster forgets a holder whose
	// job has ended or no longer exists (docs/volumes.md, Holder points);
	// holders of other clusters, and holders without the tag (written
	// before it existed), it leaves alone.
	TagVolumeHolderJob = "arca.io/volume-holder-job"
	// LabelDataMover marks the temporary objects of the vault tier's data
	// mover (VolumeSnapshotContent, VolumeSnapshot, PVC, pod); its value is
	// the backup ID. The extension deletes them when a move ends and, on
	// start, every one a previous run left behind.
	LabelDataMover = "arca.io/data-mover"
)

// ShortIDLength is how many characters of a recovery point ID messages,
// tables and job statuses show: enough to tell points apart in one
// repository, and a prefix that RestoreJobs and `arca local` accept.
const ShortIDLength = 12

// ShortID is the form of a recovery point ID (64 hex characters) in
// messages: its first ShortIDLength characters. A shorter string, such as
// an ID that is already short, comes back unchanged.
func ShortID(id string) string {
	if len(id) > ShortIDLength {
		return id[:ShortIDLength]
	}
	return id
}

// VaultTokenTTL is the lifetime of the vault's token in a cluster unless
// the cluster's owner chooses another (arca trusted-access enable
// --token-ttl); the vault renews its token for as long again.
const VaultTokenTTL = time.Hour
