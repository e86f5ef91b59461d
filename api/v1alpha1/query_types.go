package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// QueryKind is what a RecoveryPointQuery asks.
// +kubebuilder:validation:Enum=Contents;Diff;Files;Volumes
type QueryKind string

const (
	// QueryContents browses a point's resources: with no namespace its
	// namespaces, with a namespace its types, with a type its objects,
	// with a name the object itself (YAML).
	QueryContents QueryKind = "Contents"
	// QueryDiff compares a point with another point or the live cluster.
	QueryDiff QueryKind = "Diff"
	// QueryFiles lists a directory of a vault-tier volume, or (with
	// spec.read) returns a window of one file's content.
	QueryFiles QueryKind = "Files"
	// QueryVolumes lists a point's volumes: what its snapshot records and
	// its vault-tier data say of each claim.
	QueryVolumes QueryKind = "Volumes"
)

// Bounds of a query's answer: the status of a RecoveryPointQuery is one
// object in etcd, so every answer is a page.
const (
	// MaxQueryPageItems bounds the entries of one page (namespaces, types,
	// objects, changes or files).
	MaxQueryPageItems = 500
	// MaxQueryReadBytes bounds one page of a file's content (a window at
	// spec.offset) and of one object's YAML.
	MaxQueryReadBytes = 512 << 10
	// DefaultQueryTTLSeconds: a finished query is deleted this long after it
	// completed, when nobody deleted it after reading it.
	DefaultQueryTTLSeconds = 300
	// ClusterScopedNamespace stands for "no namespace" in contents: the
	// cluster-scoped objects of a point.
	ClusterScopedNamespace = "-"
	// QueryKeyAlgorithm names how a sealed answer is encrypted (the
	// requester's X25519 key, an ephemeral X25519 key, HKDF-SHA256 and
	// AES-256-GCM; docs/extension.md).
	QueryKeyAlgorithm = "X25519-HKDF-SHA256-AES256GCM"
)

// Codes of a failed RecoveryPointQuery (docs/extension.md lists them).
const (
	// CodeQueryKeyRequired: a vault's query has no spec.recipientKey, so
	// its answer could be read by every identity that may read queries.
	CodeQueryKeyRequired = "QueryKeyRequired"
	// CodePathNotFound: the path is not in the point's volume.
	CodePathNotFound = "PathNotFound"
	// CodeVolumeNotFound: the point holds no such volume data.
	CodeVolumeNotFound = "VolumeNotFound"
	// CodeObjectNotFound: the point holds no such object.
	CodeObjectNotFound = "ObjectNotFound"
	// CodeQueryFailed: reading the repository failed (a corrupt pack names
	// the pack file and the recovery point).
	CodeQueryFailed = "QueryFailed"
)

// RecoveryPointQuerySpec is one question about a recovery point, answered
// by the extension, which holds the repository's password.
type RecoveryPointQuerySpec struct {
	// Kind is Contents, Diff, Files or Volumes.
	Kind QueryKind `json:"kind"`
	// RecoveryPoint is the point's full repository ID.
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{64}$`
	RecoveryPoint string `json:"recoveryPoint"`
	// StorageLocation names the StorageLocation (in the query's namespace)
	// holding the point.
	// +kubebuilder:validation:MinLength=1
	StorageLocation string `json:"storageLocation"`

	// Namespace, Type and Name narrow Contents (and filter Diff): a
	// namespace ("-" for cluster-scoped objects), a type
	// (resource.group, "pods" for the core group), a name.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// +optional
	Type string `json:"type,omitempty"`
	// +optional
	Name string `json:"name,omitempty"`
	// RevealSecrets returns the values of Secrets' data; without it they
	// are replaced by their length. The vault sets it only for callers
	// who may read the storage location's data.
	// +optional
	RevealSecrets bool `json:"revealSecrets,omitempty"`

	// Against is the full repository ID of the point a Diff compares
	// with, in the same storage location; Live compares with the live
	// cluster instead (selected by the point's own configuration).
	// +optional
	Against string `json:"against,omitempty"`
	// +optional
	Live bool `json:"live,omitempty"`

	// Volume names the volume data of a Files query (namespace/claim).
	// +optional
	Volume string `json:"volume,omitempty"`
	// Path in the volume ("/" or empty: its root).
	// +optional
	Path string `json:"path,omitempty"`
	// Read returns the content of the file at Path, from Offset, at most
	// Length bytes (at most MaxQueryReadBytes), instead of a listing.
	// +optional
	Read bool `json:"read,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	Offset int64 `json:"offset,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	Length int64 `json:"length,omitempty"`

	// Limit bounds the entries of the page (default and at most
	// MaxQueryPageItems); Continue is the token of the previous page.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Limit int `json:"limit,omitempty"`
	// +optional
	Continue string `json:"continue,omitempty"`

	// VaultPoint, set by a vault, names the vault and backup instance of
	// the point: the extension answers only if the point's tags say the
	// same, and a Diff's spec.against must carry the same vault tag (it
	// may be another instance's) (CodeRecoveryPointOfAnotherInstance
	// otherwise).
	// +optional
	VaultPoint *VaultPoint `json:"vaultPoint,omitempty"`

	// RecipientKey is the requester's X25519 public key (base64, 32
	// bytes): the answer is then sealed to it (status.sealed), so that
	// only the requester reads it. A vault's query must carry one.
	// +optional
	RecipientKey string `json:"recipientKey,omitempty"`
	// TTLSeconds: the query is deleted this long after it finished
	// (default DefaultQueryTTLSeconds).
	// +optional
	// +kubebuilder:validation:Minimum=0
	TTLSeconds int64 `json:"ttlSeconds,omitempty"`
}

// QueryCount is a name with how many objects it holds.
type QueryCount struct {
	Name  string `json:"name"`
	Count int64  `json:"count"`
}

// QueryObject is one object of a recovery point.
type QueryObject struct {
	// Type is resource.group ("pods" for the core group).
	Type      string `json:"type"`
	Kind      string `json:"kind,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Size      int64  `json:"size"`
}

// QueryChange is one object that differs, with its changed fields.
type QueryChange struct {
	// Type is Added, Removed or Changed.
	Type      string `json:"type"`
	Object    string `json:"object"` // resource.group namespace/name
	Resource  string `json:"resource"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// +optional
	Fields []QueryFieldChange `json:"fields,omitempty"`
}

// QueryFieldChange is one field that differs; Old and New are JSON values.
type QueryFieldChange struct {
	Path string `json:"path"`
	// +optional
	Old string `json:"old,omitempty"`
	// +optional
	New string `json:"new,omitempty"`
}

// QueryFile is one entry of a volume's file tree.
type QueryFile struct {
	Path string `json:"path"`
	// Type: file, dir, symlink, hardlink, fifo, socket, chardev, blockdev, block-volume.
	Type     string      `json:"type"`
	Mode     string      `json:"mode"`
	UID      uint32      `json:"uid"`
	GID      uint32      `json:"gid"`
	Size     int64       `json:"size"`
	Modified metav1.Time `json:"modified"`
	// ModifiedNanos is the modification time in nanoseconds since the
	// epoch (Modified has whole seconds only); a restore through the vault
	// sets it as the repository has it.
	// +optional
	ModifiedNanos int64 `json:"modifiedNanos,omitempty"`
	// +optional
	Link string `json:"link,omitempty"`
}

// QueryVolume is one volume (claim) of a recovery point: its snapshot
// record, its vault-tier data, or both.
type QueryVolume struct {
	// Name is namespace/claim.
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Claim     string `json:"claim"`
	// +optional
	PV string `json:"pv,omitempty"`
	// +optional
	Driver string `json:"driver,omitempty"`
	// +optional
	StorageClass string `json:"storageClass,omitempty"`
	// +optional
	VolumeMode string `json:"volumeMode,omitempty"`
	// Size is the snapshot's restore size in bytes (0 when unknown).
	// +optional
	Size int64 `json:"size,omitempty"`
	// Snapshot is the driver's snapshot handle and Content the retained
	// VolumeSnapshotContent, as recorded at backup time.
	// +optional
	SnapshotHandle string `json:"snapshotHandle,omitempty"`
	// +optional
	Content string `json:"content,omitempty"`
	// +optional
	SnapshotTime *metav1.Time `json:"snapshotTime,omitempty"`
	// Data is the volume's vault-tier file tree, when the point holds one.
	// +optional
	Data *QueryVolumeData `json:"data,omitempty"`
	// SkippedCode and SkippedMessage say why the claim's data is not in
	// the point (no snapshot was taken).
	// +optional
	SkippedCode string `json:"skippedCode,omitempty"`
	// +optional
	SkippedMessage string `json:"skippedMessage,omitempty"`
}

// QueryVolumeData is what the mover measured of a vault-tier volume.
type QueryVolumeData struct {
	// +optional
	Block    bool  `json:"block,omitempty"`
	Files    int64 `json:"files"`
	Bytes    int64 `json:"bytes"`
	NewBytes int64 `json:"newBytes"`
	// DurationMillis is how long the mover took.
	DurationMillis int64 `json:"durationMillis"`
}

// RecoveryPointQueryResult is the answer: one of its parts, by the query.
type RecoveryPointQueryResult struct {
	// Namespaces of a point (contents without a namespace).
	// +optional
	Namespaces []QueryCount `json:"namespaces,omitempty"`
	// Types of one namespace (contents with a namespace).
	// +optional
	Types []QueryCount `json:"types,omitempty"`
	// Objects of one namespace and type.
	// +optional
	Objects []QueryObject `json:"objects,omitempty"`
	// Object is one object's YAML (at most MaxQueryReadBytes; Truncated
	// says when it was cut).
	// +optional
	Object string `json:"object,omitempty"`
	// Changes of a diff, and the counts of the whole diff.
	// +optional
	Changes []QueryChange `json:"changes,omitempty"`
	// +optional
	Added int `json:"added,omitempty"`
	// +optional
	Removed int `json:"removed,omitempty"`
	// +optional
	Modified int `json:"modified,omitempty"`
	// +optional
	Unchanged int `json:"unchanged,omitempty"`
	// Volumes of a point (kind Volumes).
	// +optional
	Volumes []QueryVolume `json:"volumes,omitempty"`
	// Files of a directory listing.
	// +optional
	Files []QueryFile `json:"files,omitempty"`
	// Data is a window of a file's content, from spec.offset; Size is the
	// whole file's size and EOF says the window reaches its end.
	// +optional
	Data []byte `json:"data,omitempty"`
	// +optional
	Size int64 `json:"size,omitempty"`
	// +optional
	EOF bool `json:"eof,omitempty"`
	// Truncated: the object's YAML was longer than MaxQueryReadBytes.
	// +optional
	Truncated bool `json:"truncated,omitempty"`
	// Hidden counts what the cluster owner's policy hid (namespaces
	// outside the vault's ClusterTrustPolicy, cluster-scoped objects it
	// may not restore).
	// +optional
	Hidden int64 `json:"hidden,omitempty"`
	// Continue is the token of the next page; empty on the last.
	// +optional
	Continue string `json:"continue,omitempty"`
}

// SealedResult is a RecoveryPointQueryResult (its JSON) encrypted to the
// query's spec.recipientKey.
type SealedResult struct {
	Algorithm string `json:"algorithm"`
	// EphemeralKey is the extension's one-time X25519 public key.
	EphemeralKey []byte `json:"ephemeralKey"`
	Nonce        []byte `json:"nonce"`
	Ciphertext   []byte `json:"ciphertext"`
}

// RecoveryPointQueryStatus is the answer, or why there is none.
type RecoveryPointQueryStatus struct {
	// Phase: Completed or Failed once answered.
	// +optional
	Phase JobPhase `json:"phase,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
	// +optional
	Errors []JobIssue `json:"errors,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// Result is the answer when the query has no recipientKey.
	// +optional
	Result *RecoveryPointQueryResult `json:"result,omitempty"`
	// Sealed is the answer sealed to spec.recipientKey.
	// +optional
	Sealed *SealedResult `json:"sealed,omitempty"`
}

// RecoveryPointQuery asks the extension about a recovery point's contents,
// a diff, or a vault-tier volume's files; the answer is in its status. The
// vault creates one for each such request of its API, reads the answer and
// deletes it; a finished query is deleted after spec.ttlSeconds anyway.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=arca,shortName=arpq
// +kubebuilder:printcolumn:name="Kind",type=string,JSONPath=`.spec.kind`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RecoveryPointQuery struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec RecoveryPointQuerySpec `json:"spec"`
	// +optional
	Status RecoveryPointQueryStatus `json:"status,omitempty"`
}

// RecoveryPointQueryList is a list of RecoveryPointQueries.
// +kubebuilder:object:root=true
type RecoveryPointQueryList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RecoveryPointQuery `json:"items"`
}
