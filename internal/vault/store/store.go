// Package store defines the vault's persistence: the records the vault keeps
// (vaults, policies, backup instances, recovery points, jobs, tokens and
// scheduler triggers) and the Store interface that the SQLite and PostgreSQL
// implementations satisfy. Both implementations pass one shared suite,
// storetest.Run.
//
// Updates use optimistic concurrency: every mutable record carries a Version
// that the store increments on each write. An update names the version it
// was based on; if the stored version differs the store returns a
// *ConflictError and changes nothing.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrNotFound is returned when a named record does not exist.
var ErrNotFound = errors.New("not found")

// ErrAlreadyExists is returned when creating a record whose key is taken.
var ErrAlreadyExists = errors.New("already exists")

// ErrCredentialKey is matched (errors.Is) by every failure to seal or
// open a cluster credential: no key configured for a sealed credential, or
// the wrong key.
var ErrCredentialKey = errors.New("cluster credential key")

// ErrConflict matches every *ConflictError with errors.Is.
var ErrConflict = errors.New("version conflict")

// ConflictError reports an update or delete based on a stale version.
type ConflictError struct {
	Kind     string // "vault", "policy", …
	Key      string
	Expected int64 // the version the caller based its change on
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s %q was modified concurrently (expected version %d)", e.Kind, e.Key, e.Expected)
}

// Is makes errors.Is(err, ErrConflict) true for any *ConflictError.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Meta is common to every mutable record.
type Meta struct {
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Immutability settings of a vault (as AKS immutable vaults): disabled;
// unlocked (enforced, and can still be disabled); locked (enforced, and
// can never be disabled again).
const (
	ImmutabilityDisabled = "disabled"
	ImmutabilityUnlocked = "unlocked"
	ImmutabilityLocked   = "locked"
)

// DefaultSoftDeleteDays is how long a new vault keeps deleted recovery
// points and instances before purging them.
const DefaultSoftDeleteDays = 14

// Vault groups policies, instances and their recovery points.
type Vault struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// SoftDeleteDays is how many days a deleted recovery point or
	// instance is kept, undeletable, before it is purged; 0: soft delete
	// disabled (deletion is immediate).
	SoftDeleteDays int `json:"softDeleteDays"`
	// Immutability is disabled, unlocked or locked (ImmutabilityDisabled…).
	Immutability string `json:"immutability"`
	// ResourceGuard turns on multi-user authorization: destructive
	// operations need the approval of a second principal (Approval).
	ResourceGuard bool `json:"resourceGuard"`
	Meta
}

// Immutable reports whether the vault's immutability is enforced.
func (v *Vault) Immutable() bool {
	return v.Immutability == ImmutabilityUnlocked || v.Immutability == ImmutabilityLocked
}

// Policy is a backup policy. Schedule and Retention are kept in their
// validated textual/JSON form; package policy parses them.
type Policy struct {
	Vault     string          `json:"vault"`
	Name      string          `json:"name"`
	Schedule  string          `json:"schedule"`
	Retention json.RawMessage `json:"retention"`
	// CopyTo names a secondary storage location: every vault-tier
	// recovery point of the policy's instances is copied there.
	CopyTo string `json:"copyTo,omitempty"`
	// Verify is how often the latest recovery point of each of the
	// policy's instances is verified in the instance's own cluster:
	// daily, weekly or monthly (calendar periods, UTC); "" never.
	Verify string `json:"verify,omitempty"`
	Meta
}

// Protection states of a backup instance.
const (
	ProtectionConfigured = "ProtectionConfigured"
	ProtectionStopped    = "ProtectionStopped"
	// ProtectionSoftDeleted: stopped with delete-data (or deleted with
	// its data) in a vault with soft delete; kept, with its points, until
	// PurgeAt, and undeletable until then.
	ProtectionSoftDeleted = "SoftDeleted"
)

// Stop-protection modes.
const (
	StopRetainForever   = "retain-forever"
	StopRetainPerPolicy = "retain-per-policy"
	StopDeleteData      = "delete-data"
)

// Instance is a backup instance: one cluster protected by one policy.
type Instance struct {
	Vault            string          `json:"vault"`
	Name             string          `json:"name"`
	Cluster          string          `json:"cluster"`
	Policy           string          `json:"policy"`
	Config           json.RawMessage `json:"backupConfiguration,omitempty"`
	StorageLocation  string          `json:"storageLocation"`
	SnapshotLocation string          `json:"snapshotLocation,omitempty"`
	ProtectionState  string          `json:"protectionState"`
	StopMode         string          `json:"stopMode,omitempty"`
	// DeletedAt and PurgeAt are set while the instance is SoftDeleted;
	// DeleteInstance says whether the purge deletes the instance too
	// (deleted with its data) or leaves it stopped (stop with delete-data).
	DeletedAt      *time.Time `json:"deletedAt,omitempty"`
	PurgeAt        *time.Time `json:"purgeAt,omitempty"`
	DeleteInstance bool       `json:"deleteInstance,omitempty"`
	Meta
}

// Recovery point states.
const (
	RPAvailable = "Available"
	RPDeleting  = "Deleting"
	// RPSoftDeleted: deleted in a vault with soft delete; kept until
	// PurgeAt, then its data is removed.
	RPSoftDeleted = "SoftDeleted"
)

// RecoveryPoint is the catalog entry of one completed backup.
type RecoveryPoint struct {
	Vault     string     `json:"vault"`
	ID        string     `json:"id"`
	Instance  string     `json:"instance"`
	JobID     string     `json:"jobId,omitempty"`
	Time      time.Time  `json:"time"` // when the backup was taken
	RepoID    string     `json:"repositoryId,omitempty"`
	Tag       string     `json:"tag"` // retention rule that keeps it: default, daily, …, ondemand
	Datastore string     `json:"datastore"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"` // nil: kept until deleted explicitly
	State     string     `json:"state"`
	Items     int64      `json:"items"`
	Bytes     int64      `json:"bytes"`
	// StoredBytes is what the backup added to the repository after
	// deduplication and compression (0: unknown, e.g. points recorded
	// before it was measured or found by catalog sync).
	StoredBytes int64 `json:"storedBytes,omitempty"`
	// Verification is the outcome of the point's latest finished
	// verification; it is not stored with the point but read from the
	// vault's Verification jobs (the service fills it in).
	Verification *Verification `json:"verification,omitempty"`
	// DeletedAt and PurgeAt are set while the point is SoftDeleted.
	DeletedAt *time.Time `json:"deletedAt,omitempty"`
	PurgeAt   *time.Time `json:"purgeAt,omitempty"`
	// Tiers are the datastores holding the point's data, each with its
	// own rule and expiry (retention per datastore). ExpiresAt is the
	// point's own expiry: the latest of its tiers' (nil, retain-forever,
	// overrides them all).
	Tiers Tiers `json:"tiers"`
	// Copies are the point's copies in secondary storage locations.
	Copies []Copy `json:"copies,omitempty"`
	Meta
}

// Tier states.
const (
	TierAvailable = "Available"
	TierDeleted   = "Deleted" // expired: its data was removed, the point kept
)

// Tier is one datastore's hold on a recovery point: the operational tier
// (the volumes' CSI snapshots) or the vault tier (the volumes' data moved
// into the repository).
type Tier struct {
	Rule      string     `json:"rule"` // the retention rule that keeps it
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	State     string     `json:"state"`
}

// Tiers of a recovery point; nil: the point has no data in that tier.
type Tiers struct {
	Operational *Tier `json:"operational,omitempty"`
	Vault       *Tier `json:"vault,omitempty"`
}

// Copy is a copy of a recovery point in a secondary storage location
// (policy copyTo): where, and its ID there.
type Copy struct {
	StorageLocation string `json:"storageLocation"`
	RepoID          string `json:"repositoryId"`
}

// Verification is what a Verification job found about a recovery point
// (the cluster's RestoreJob status.verification, docs/extension.md).
type Verification struct {
	// Verdict is Verified or VerificationFailed (api/v1alpha1's verdicts).
	Verdict string    `json:"verdict"`
	JobID   string    `json:"jobId"`
	Cluster string    `json:"cluster"`
	Time    time.Time `json:"time"`
	// Codes say why it failed; Differences name the damaged files and the
	// objects that failed or differ (Object, and the problem as Message).
	Codes           []string `json:"codes,omitempty"`
	Differences     []Issue  `json:"differences,omitempty"`
	ObjectsCompared int64    `json:"objectsCompared"`
	PacksRead       int64    `json:"packsRead"`
	PacksChecked    int64    `json:"packsChecked"`
	// SandboxNamespaces were restored into; CleanedUp: all deleted.
	SandboxNamespaces []string `json:"sandboxNamespaces,omitempty"`
	CleanedUp         bool     `json:"cleanedUp"`
}

// Job types.
const (
	JobOnDemandBackup  = "OnDemandBackup"
	JobScheduledBackup = "ScheduledBackup"
	JobRestore         = "Restore"
	JobRetention       = "Retention"
	// JobVerification restores a recovery point into sandbox namespaces of
	// a cluster and checks it (docs/vault.md, Verification).
	JobVerification = "Verification"
)

// Job states.
const (
	JobQueued                = "Queued"
	JobInProgress            = "InProgress"
	JobCompleted             = "Completed"
	JobCompletedWithWarnings = "CompletedWithWarnings"
	JobFailed                = "Failed"
	JobCancelled             = "Cancelled"
)

// JobStateTerminal reports whether a job in state s can change no more.
func JobStateTerminal(s string) bool {
	switch s {
	case JobCompleted, JobCompletedWithWarnings, JobFailed, JobCancelled:
		return true
	}
	return false
}

// Issue is a job warning or error with a stable code.
type Issue struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Object  string `json:"object,omitempty"`
}

// SubTask is one step of a job as reported by the executor.
type SubTask struct {
	Name  string `json:"name"`
	State string `json:"state"`
}

// Job is one backup, restore or retention run.
type Job struct {
	Vault       string          `json:"vault"`
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	Instance    string          `json:"instance,omitempty"`
	State       string          `json:"state"`
	DedupKey    string          `json:"-"` // unique when set; the scheduler uses instance+slot
	TriggerTime *time.Time      `json:"triggerTime,omitempty"`
	StartedAt   *time.Time      `json:"startedAt,omitempty"`
	EndedAt     *time.Time      `json:"endedAt,omitempty"`
	Params      json.RawMessage `json:"parameters,omitempty"`
	ExternalRef string          `json:"externalRef,omitempty"`
	SubTasks    []SubTask       `json:"subTasks,omitempty"`
	Warnings    []Issue         `json:"warnings,omitempty"`
	Errors      []Issue         `json:"errors,omitempty"`
	// Progress is the cluster job's progress as last read by the vault.
	Progress *JobProgress `json:"progress,omitempty"`
	Meta
}

// JobProgress counts the work of a job as the cluster reports it. Totals
// are zero while unknown. Counts are, for a backup, the objects written
// per resource type (the recovery point's counts) and, for a restore, the
// objects by action (Created, Patched, SkippedExists, Failed, …).
type JobProgress struct {
	ItemsDone  int64 `json:"itemsDone"`
	ItemsTotal int64 `json:"itemsTotal,omitempty"`
	BytesDone  int64 `json:"bytesDone"`
	BytesTotal int64 `json:"bytesTotal,omitempty"`
	// BytesPerSecond and ETASeconds: the rate of the volume data moved (a
	// vault-tier backup's movers, a restore's restore pods) and the time
	// left; 0 when unknown.
	BytesPerSecond int64            `json:"bytesPerSecond,omitempty"`
	ETASeconds     int64            `json:"etaSeconds,omitempty"`
	Counts         map[string]int64 `json:"counts,omitempty"`
}

// Event types: what a notification subscription can ask to be told
// about.
const (
	EventJobFailed          = "job-failed"          // a job ended Failed
	EventJobWarning         = "job-warning"         // a job ended CompletedWithWarnings
	EventVerificationFailed = "verification-failed" // a verification found a recovery point damaged
	EventScheduleMissed     = "schedule-missed"     // a scheduled backup did not start in its window
)

// EventTypes lists every event type, in the order they are documented.
func EventTypes() []string {
	return []string{EventJobFailed, EventJobWarning, EventVerificationFailed, EventScheduleMissed}
}

// Event is one notification: what happened, in which vault, to which
// instance, job or recovery point. It is the body of a webhook delivery.
type Event struct {
	ID            string    `json:"id"` // unique per event; receivers deduplicate retries by it
	Type          string    `json:"type"`
	Vault         string    `json:"vault"`
	Instance      string    `json:"instance,omitempty"`
	Job           string    `json:"job,omitempty"`
	JobType       string    `json:"jobType,omitempty"`
	RecoveryPoint string    `json:"recoveryPoint,omitempty"`
	Time          time.Time `json:"time"`
	Message       string    `json:"message"`
	Issues        []Issue   `json:"issues,omitempty"`
}

// Token is an API bearer token. Only its hash is stored.
type Token struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Hash      string     `json:"-"`
	Principal string     `json:"principal"`
	CreatedAt time.Time  `json:"createdAt"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// RoleAssignment grants a built-in role (package rbac) to a principal at a
// scope. Assignments are immutable: change one by removing and adding.
type RoleAssignment struct {
	ID        string    `json:"id"`
	Principal string    `json:"principal"`
	Role      string    `json:"role"`
	Scope     string    `json:"scope"`
	CreatedBy string    `json:"createdBy,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// RoleAssignmentFilter selects assignments; zero fields match everything.
type RoleAssignmentFilter struct {
	Principal string
	Scope     string // exactly this scope
}

// Trusted-access states of a registered cluster.
const (
	ClusterConnected = "Connected"
	ClusterRevoked   = "TrustedAccessRevoked"
	// ClusterExpired: the vault's token expired before it was renewed
	// (the vault was down, or renewal reached its maximum lifetime); the
	// cluster's owner did not revoke anything, but only they can issue a
	// fresh token.
	ClusterExpired = "TrustedAccessExpired"
)

// Cluster is a cluster registered through trusted access: how the vault
// reaches its API server, and the short-lived token of the vault's service
// account there, which the vault renews itself. Token is a secret: it is
// never returned by the API.
type Cluster struct {
	Name           string     `json:"name"`
	Server         string     `json:"server"`
	CAData         []byte     `json:"caData,omitempty"`
	Namespace      string     `json:"namespace"`
	ServiceAccount string     `json:"serviceAccount"`
	Token          string     `json:"-"`
	TokenExpiresAt *time.Time `json:"tokenExpiresAt,omitempty"`
	// RegisteredAt is when the cluster's owner last gave the vault a
	// credential (trusted access enabled or re-enabled), Renewals how
	// many times the vault renewed it since: renewal stops after a
	// maximum total lifetime from RegisteredAt.
	RegisteredAt time.Time `json:"registeredAt"`
	Renewals     int64     `json:"renewals"`
	State        string    `json:"state"`
	Message      string    `json:"message,omitempty"`
	Meta
}

// Trigger is the scheduler's persistent state for one protected instance:
// the next nominal run time and the last one that started a job.
type Trigger struct {
	Vault    string     `json:"vault"`
	Instance string     `json:"instance"`
	Schedule string     `json:"schedule"`
	NextRun  time.Time  `json:"nextRun"`
	LastRun  *time.Time `json:"lastRun,omitempty"`
	Meta
}

// JobFilter selects jobs; zero fields match everything.
type JobFilter struct {
	Vault, Instance, Type, State string
	Limit                        int // 0: no limit; newest first
}

// Page selects one page of a list ordered by name: the records named after
// After (all when empty), at most Limit of them (all when 0). The next
// page starts after the last name returned (keyset pagination: pages stay
// cheap however far into the list, and stay consistent under inserts).
type Page struct {
	After string
	Limit int
}

// RecoveryPointFilter selects recovery points; zero fields match
// everything, except that soft-deleted points are left out unless
// IncludeDeleted or OnlyDeleted is set.
type RecoveryPointFilter struct {
	Vault, Instance string
	IncludeDeleted  bool // soft-deleted points too
	OnlyDeleted     bool // soft-deleted points only
}

// Approval states.
const (
	ApprovalPending  = "Pending"
	ApprovalApproved = "Approved"
	ApprovalRejected = "Rejected"
	ApprovalUsed     = "Used"    // the approved operation ran
	ApprovalExpired  = "Expired" // shown when ExpiresAt passed; not stored
)

// Approval is a multi-user authorization request: Requester asked for
// Operation on Target in Vault, which has its resource guard on; a second
// principal holding the guard role approves or rejects it. An approved
// request lets the requester's same operation through once, until
// ExpiresAt.
type Approval struct {
	ID        string     `json:"id"`
	Vault     string     `json:"vault"`
	Operation string     `json:"operation"` // e.g. deleteRecoveryPoint
	Target    string     `json:"target"`    // what it acts on, e.g. the point's ID
	Requester string     `json:"requester"`
	State     string     `json:"state"`
	Approver  string     `json:"approver,omitempty"` // who approved or rejected it
	Reason    string     `json:"reason,omitempty"`
	CreatedAt time.Time  `json:"createdAt"`
	ExpiresAt time.Time  `json:"expiresAt"`
	DecidedAt *time.Time `json:"decidedAt,omitempty"`
	UsedAt    *time.Time `json:"usedAt,omitempty"`
	Version   int64      `json:"version"`
}

// Subscription is a webhook that receives a vault's events of the listed
// types, signed with Secret (never returned by the API).
type Subscription struct {
	Vault     string    `json:"vault"`
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Secret    string    `json:"-"`
	Events    []string  `json:"events"`
	CreatedBy string    `json:"createdBy,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// Delivery states.
const (
	DeliveryPending   = "Pending"   // not delivered yet; retried
	DeliveryDelivered = "Delivered" // the receiver answered 2xx
	DeliveryFailed    = "Failed"    // every attempt failed
)

// Delivery records sending one event to one subscription.
type Delivery struct {
	ID           string     `json:"id"`
	Vault        string     `json:"vault"`
	Subscription string     `json:"subscription"`
	Event        Event      `json:"event"`
	State        string     `json:"state"`
	Attempts     int        `json:"attempts"`
	LastStatus   int        `json:"lastStatus,omitempty"` // HTTP status of the last attempt; 0: no answer
	LastError    string     `json:"lastError,omitempty"`
	CreatedAt    time.Time  `json:"createdAt"`
	UpdatedAt    time.Time  `json:"updatedAt"`
	DeliveredAt  *time.Time `json:"deliveredAt,omitempty"`
}

// The store is split by concept, in the way of restic's and
// controller-runtime's small interfaces: each consumer takes only the
// interfaces it uses (the scheduler a TriggerStore, the trusted-access
// side a ClusterStore, …), and Store is their union, which the SQLite and
// PostgreSQL implementations satisfy. Every method is safe for concurrent
// use. Create methods fill Meta (Version 1, timestamps) on the passed
// record. Update methods take the record with the Version it was read at,
// and on success set the new Version; a stale Version yields
// *ConflictError. Delete methods take the expected version, or 0 for
// "whatever is stored". Deleting a vault, policy, instance or cluster also
// deletes, in the same transaction, the role assignments at its scope and
// below it: a name used again later does not inherit old grants.

// VaultStore keeps vaults.
type VaultStore interface {
	CreateVault(ctx context.Context, v *Vault) error
	GetVault(ctx context.Context, name string) (*Vault, error)
	ListVaults(ctx context.Context) ([]*Vault, error)
	UpdateVault(ctx context.Context, v *Vault) error
	DeleteVault(ctx context.Context, name string, version int64) error
}

// PolicyStore keeps backup policies.
type PolicyStore interface {
	CreatePolicy(ctx context.Context, p *Policy) error
	GetPolicy(ctx context.Context, vault, name string) (*Policy, error)
	ListPolicies(ctx context.Context, vault string) ([]*Policy, error)
	// ListPoliciesPage lists one page of a vault's policies, by name.
	ListPoliciesPage(ctx context.Context, vault string, p Page) ([]*Policy, error)
	UpdatePolicy(ctx context.Context, p *Policy) error
	DeletePolicy(ctx context.Context, vault, name string, version int64) error
}

// InstanceStore keeps backup instances.
type InstanceStore interface {
	CreateInstance(ctx context.Context, in *Instance) error
	GetInstance(ctx context.Context, vault, name string) (*Instance, error)
	// ListInstances lists a vault's instances; policy, when set, filters.
	ListInstances(ctx context.Context, vault, policy string) ([]*Instance, error)
	// ListInstancesPage lists one page of ListInstances, by name.
	ListInstancesPage(ctx context.Context, vault, policy string, p Page) ([]*Instance, error)
	UpdateInstance(ctx context.Context, in *Instance) error
	DeleteInstance(ctx context.Context, vault, name string, version int64) error
}

// RecoveryPointStore keeps the recovery point catalog.
type RecoveryPointStore interface {
	CreateRecoveryPoint(ctx context.Context, rp *RecoveryPoint) error
	GetRecoveryPoint(ctx context.Context, vault, id string) (*RecoveryPoint, error)
	// ListRecoveryPoints returns matching points oldest first.
	ListRecoveryPoints(ctx context.Context, f RecoveryPointFilter) ([]*RecoveryPoint, error)
	UpdateRecoveryPoint(ctx context.Context, rp *RecoveryPoint) error
	DeleteRecoveryPoint(ctx context.Context, vault, id string, version int64) error
	// ClearRecoveryPointExpiries keeps every point of an instance forever
	// (stop protection, retain-forever), in one statement however many
	// points it has; it returns how many it changed.
	ClearRecoveryPointExpiries(ctx context.Context, vault, instance string) (int64, error)
	// SetRecoveryPointExpiries sets the expiry of each named point of a
	// vault (nil: kept forever), in one transaction: all or none.
	SetRecoveryPointExpiries(ctx context.Context, vault string, expiries map[string]*time.Time) error
}

// JobStore keeps jobs.
type JobStore interface {
	// CreateJob stores a job; a set DedupKey already used yields ErrAlreadyExists.
	CreateJob(ctx context.Context, j *Job) error
	GetJob(ctx context.Context, vault, id string) (*Job, error)
	// ListJobs returns matching jobs newest first.
	ListJobs(ctx context.Context, f JobFilter) ([]*Job, error)
	UpdateJob(ctx context.Context, j *Job) error
}

// TokenStore keeps API tokens (their hashes).
type TokenStore interface {
	CreateToken(ctx context.Context, t *Token) error
	GetTokenByHash(ctx context.Context, hash string) (*Token, error)
	ListTokens(ctx context.Context) ([]*Token, error)
	DeleteToken(ctx context.Context, id string) error
	// BoundTokens gives every token without an expiry the expiry at
	// (tokens made before lifetimes existed); it returns how many.
	BoundTokens(ctx context.Context, at time.Time) (int64, error)
}

// RoleStore keeps role assignments.
type RoleStore interface {
	// CreateRoleAssignment stores a new assignment (ID generated when
	// empty); the same principal, role and scope twice yields
	// ErrAlreadyExists.
	CreateRoleAssignment(ctx context.Context, a *RoleAssignment) error
	ListRoleAssignments(ctx context.Context, f RoleAssignmentFilter) ([]*RoleAssignment, error)
	GetRoleAssignment(ctx context.Context, id string) (*RoleAssignment, error)
	DeleteRoleAssignment(ctx context.Context, id string) error
}

// ClusterStore keeps clusters registered through trusted access.
type ClusterStore interface {
	CreateCluster(ctx context.Context, c *Cluster) error
	GetCluster(ctx context.Context, name string) (*Cluster, error)
	ListClusters(ctx context.Context) ([]*Cluster, error)
	UpdateCluster(ctx context.Context, c *Cluster) error
	DeleteCluster(ctx context.Context, name string, version int64) error
}

// LeaseStore keeps leases: a named task that one holder (a vault
// replica) runs at a time.
type LeaseStore interface {
	// AcquireLease takes or extends the lease name for holder until ttl
	// from now. It reports false when another holder has it and it has not
	// expired. A holder that stops extending its lease loses it after ttl.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// ReleaseLease gives the lease up if holder has it.
	ReleaseLease(ctx context.Context, name, holder string) error
}

// SoftDeleteStore moves recovery points and instances in and out of the
// soft-deleted state, each in one transaction.
type SoftDeleteStore interface {
	// SoftDeleteRecoveryPoint marks one point SoftDeleted until purge,
	// if it is at version (0: any) and not soft-deleted already.
	SoftDeleteRecoveryPoint(ctx context.Context, vault, id string, version int64, at, purge time.Time) error
	// UndeleteRecoveryPoint makes a soft-deleted point Available again.
	UndeleteRecoveryPoint(ctx context.Context, vault, id string) error
	// SoftDeleteInstance marks an instance SoftDeleted until purge (with
	// in's other fields as given, at in.Version) and, in the same
	// transaction, every point of it not soft-deleted already, with the
	// same times.
	SoftDeleteInstance(ctx context.Context, in *Instance, at, purge time.Time) error
	// UndeleteInstance sets the soft-deleted instance to state and mode
	// and makes Available again the points deleted with it (those whose
	// DeletedAt is the instance's); points deleted on their own stay.
	UndeleteInstance(ctx context.Context, in *Instance, state, mode string) error
	// ListPurgeableInstances lists the soft-deleted instances of every
	// vault whose PurgeAt is at or before now.
	ListPurgeableInstances(ctx context.Context, now time.Time) ([]*Instance, error)
	// ListPurgeableRecoveryPoints lists the points of every vault whose
	// PurgeAt is at or before now: SoftDeleted ones, and Deleting ones
	// (purged, their deletion job not done or failed).
	ListPurgeableRecoveryPoints(ctx context.Context, now time.Time) ([]*RecoveryPoint, error)
}

// ApprovalStore keeps multi-user authorization requests.
type ApprovalStore interface {
	// CreateApproval stores a new request (ID generated when empty).
	CreateApproval(ctx context.Context, a *Approval) error
	GetApproval(ctx context.Context, vault, id string) (*Approval, error)
	// ListApprovals lists a vault's requests, newest first; requester,
	// operation and target, when set, filter.
	ListApprovals(ctx context.Context, vault string, f ApprovalFilter) ([]*Approval, error)
	// UpdateApproval stores a's state, approver, reason and times, at
	// a.Version (*ConflictError when it moved: approved or used twice).
	UpdateApproval(ctx context.Context, a *Approval) error
}

// ApprovalFilter selects approvals; zero fields match everything.
type ApprovalFilter struct {
	Requester, Operation, Target, State string
}

// NotificationStore keeps webhook subscriptions and their deliveries.
type NotificationStore interface {
	CreateSubscription(ctx context.Context, s *Subscription) error
	GetSubscription(ctx context.Context, vault, id string) (*Subscription, error)
	// ListSubscriptions lists a vault's subscriptions ("" : every vault's).
	ListSubscriptions(ctx context.Context, vault string) ([]*Subscription, error)
	DeleteSubscription(ctx context.Context, vault, id string) error
	CreateDelivery(ctx context.Context, d *Delivery) error
	UpdateDelivery(ctx context.Context, d *Delivery) error
	// ListDeliveries lists a vault's deliveries, newest first, at most
	// limit (0: all); subscription, when set, filters.
	ListDeliveries(ctx context.Context, vault, subscription string, limit int) ([]*Delivery, error)
	// PendingDeliveries lists the deliveries of every vault still Pending.
	PendingDeliveries(ctx context.Context) ([]*Delivery, error)
}

// TriggerStore keeps the scheduler's triggers.
type TriggerStore interface {
	// PutTrigger creates or replaces the trigger of an instance,
	// unconditionally (policy change, resume).
	PutTrigger(ctx context.Context, t *Trigger) error
	GetTrigger(ctx context.Context, vault, instance string) (*Trigger, error)
	DeleteTrigger(ctx context.Context, vault, instance string) error
	// DueTriggers lists triggers whose NextRun is at or before now.
	DueTriggers(ctx context.Context, now time.Time) ([]*Trigger, error)
	// ClaimTrigger atomically moves the trigger from t.NextRun to next and
	// creates job, but only if the stored NextRun still equals t.NextRun.
	// It reports false (and creates nothing) when another scheduler claimed
	// the slot first. This is the exactly-once primitive of the scheduler.
	ClaimTrigger(ctx context.Context, t *Trigger, next time.Time, job *Job) (bool, error)
}

// Store is the vault's whole persistence: the union of the interfaces
// above and Close. The implementations satisfy it; consumers take the
// parts they use.
type Store interface {
	VaultStore
	PolicyStore
	InstanceStore
	RecoveryPointStore
	JobStore
	TokenStore
	RoleStore
	ClusterStore
	TriggerStore
	LeaseStore
	SoftDeleteStore
	ApprovalStore
	NotificationStore
	Close() error
}

// GetVersion returns the record's version (its ETag in the API).
func (m Meta) GetVersion() int64 { return m.Version }

// GetVersion returns the request's version (its ETag in the API).
func (a *Approval) GetVersion() int64 { return a.Version }
