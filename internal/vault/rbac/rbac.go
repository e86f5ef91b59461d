// Package rbac is the vault's role-based access model: principals, actions,
// built-in roles as sets of actions, hierarchical scopes, and the decision
// function. It holds no state; the store keeps role assignments and the
// server asks Decide on every call.
//
// Scopes are paths. A scope grants to itself and everything below it:
//
//	/                                       the whole vault server
//	/vaults/{vault}                         a vault
//	/vaults/{vault}/policies/{policy}       a policy
//	/vaults/{vault}/instances/{instance}    a backup instance
//	/clusters/{cluster}                     a registered cluster
//	/storageLocations/{escaped URL}         a storage location (repository)
//	/snapshotLocations/{name}               a snapshot location
//
// Principals are "user:NAME", "vault:NAME", "cluster:NAME" or
// "extension:NAME"; a bare NAME is a user (the first admin is "admin").
package rbac

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Actions. Every API operation needs exactly one.
const (
	VaultsRead   = "vaults/read"
	VaultsWrite  = "vaults/write"
	VaultsDelete = "vaults/delete"

	PoliciesRead   = "policies/read"
	PoliciesWrite  = "policies/write"
	PoliciesDelete = "policies/delete"

	InstancesRead     = "instances/read"
	InstancesWrite    = "instances/write"
	InstancesDelete   = "instances/delete"
	InstancesProtect  = "instances/protection/action" // stop and resume protection
	InstancesBackup   = "instances/backup/action"
	InstancesValidate = "instances/validate/action"

	RecoveryPointsRead     = "recoveryPoints/read"
	RecoveryPointsDelete   = "recoveryPoints/delete"
	RecoveryPointsUndelete = "recoveryPoints/undelete/action" // bring back a soft-deleted point
	InstancesUndelete      = "instances/undelete/action"      // bring back a soft-deleted instance
	RestoresStart          = "restores/action"

	// Multi-user authorization (resource guard): reading a vault's
	// approval requests, and approving or rejecting them. Approve is held
	// by the Resource Guard Approver role only, never by Owner or
	// Contributor: the point of the guard is a second principal.
	ApprovalsRead    = "approvals/read"
	ApprovalsApprove = "approvals/approve/action"

	// Webhook subscriptions of a vault and their deliveries.
	NotificationsRead  = "notifications/read"
	NotificationsWrite = "notifications/write"

	JobsRead   = "jobs/read"
	JobsCancel = "jobs/cancel/action"

	TokensRead  = "tokens/read"
	TokensWrite = "tokens/write" // creating a token for a principal is acting as it: Owner only

	RoleAssignmentsRead  = "roleAssignments/read"
	RoleAssignmentsWrite = "roleAssignments/write"

	ClustersRead    = "clusters/read"
	ClustersWrite   = "clusters/write" // register a cluster (trusted access)
	ClustersDelete  = "clusters/delete"
	ClustersBackup  = "clusters/backup/action"  // protect a cluster: back it up (instances on it, backup now)
	ClustersRestore = "clusters/restore/action" // restore into a cluster

	// Repository data at a storage location: read to restore from it,
	// write to back up into it. Enforced on the caller and on the cluster's
	// extension (extension:C) when an instance is created or updated, a
	// backup or restore starts, and again when its job runs.
	StorageRead  = "storageLocations/data/read"
	StorageWrite = "storageLocations/data/write"

	// Snapshots at a snapshot location (VolumeSnapshotClass): read to
	// restore from them (the caller, the vault), write to take them (the
	// caller, the cluster: cluster:C). Enforced at the same points.
	SnapshotsRead  = "snapshotLocations/read"
	SnapshotsWrite = "snapshotLocations/write"
)

// AllActions lists every action, for documentation and Owner.
var AllActions = []string{
	VaultsRead, VaultsWrite, VaultsDelete,
	PoliciesRead, PoliciesWrite, PoliciesDelete,
	InstancesRead, InstancesWrite, InstancesDelete, InstancesProtect, InstancesBackup, InstancesValidate,
	RecoveryPointsRead, RecoveryPointsDelete, RecoveryPointsUndelete, InstancesUndelete, RestoresStart,
	ApprovalsRead, ApprovalsApprove, NotificationsRead, NotificationsWrite,
	JobsRead, JobsCancel,
	TokensRead, TokensWrite,
	RoleAssignmentsRead, RoleAssignmentsWrite,
	ClustersRead, ClustersWrite, ClustersDelete, ClustersBackup, ClustersRestore,
	StorageRead, StorageWrite,
	SnapshotsRead, SnapshotsWrite,
}

// Role names.
const (
	Owner              = "Owner"
	Contributor        = "Contributor"
	Reader             = "Reader"
	BackupContributor  = "Backup Contributor"
	BackupOperator     = "Backup Operator"
	BackupReader       = "Backup Reader"
	StorageContributor = "Storage Contributor"
	// ResourceGuardApprover approves destructive operations in vaults
	// whose resource guard is on (multi-user authorization).
	ResourceGuardApprover = "Resource Guard Approver"
)

// Role is a named set of actions.
type Role struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Actions     []string `json:"actions"`
}

func except(drop ...string) []string {
	var out []string
	for _, a := range AllActions {
		if !slices.Contains(drop, a) {
			out = append(out, a)
		}
	}
	return out
}

func reads() []string {
	var out []string
	for _, a := range AllActions {
		if strings.HasSuffix(a, "/read") && a != TokensRead && a != StorageRead {
			out = append(out, a)
		}
	}
	return out
}

var backupReads = []string{VaultsRead, PoliciesRead, InstancesRead, RecoveryPointsRead, JobsRead}

// Roles are the built-in roles, in the order they are documented.
var Roles = []Role{
	{Owner, "everything, including granting access and issuing tokens, except approving guarded operations", except(ApprovalsApprove)},
	{Contributor, "everything except granting access, issuing tokens and approving guarded operations", except(RoleAssignmentsWrite, TokensRead, TokensWrite, ApprovalsApprove)},
	{Reader, "read everything except tokens and repository data", reads()},
	{BackupContributor, "manage vaults, policies and instances, run backups and restores",
		append(slices.Clone(backupReads), VaultsWrite, PoliciesWrite, PoliciesDelete, InstancesWrite, InstancesDelete,
			InstancesProtect, InstancesBackup, InstancesValidate, RestoresStart, JobsCancel, ClustersRead, ClustersBackup, ClustersRestore,
			RoleAssignmentsRead, RecoveryPointsDelete, RecoveryPointsUndelete, InstancesUndelete, ApprovalsRead,
			NotificationsRead, NotificationsWrite)},
	{BackupOperator, "run backups and restores and validate; no changes to policies or instances",
		append(slices.Clone(backupReads), InstancesBackup, InstancesValidate, RestoresStart, JobsCancel, ClustersRead, ClustersBackup, ClustersRestore)},
	{BackupReader, "read vaults, policies, instances, recovery points and jobs", slices.Clone(backupReads)},
	{StorageContributor, "read and write repository data at a storage location", []string{StorageRead, StorageWrite}},
	{ResourceGuardApprover, "approve or reject the destructive operations a vault's resource guard holds back; nothing else",
		[]string{VaultsRead, ApprovalsRead, ApprovalsApprove}},
}

// FindRole returns a built-in role by name (case-insensitive, spaces
// optional: "backup-operator" and "BackupOperator" find "Backup Operator").
func FindRole(name string) (*Role, bool) {
	norm := func(s string) string {
		return strings.NewReplacer(" ", "", "-", "", "_", "").Replace(strings.ToLower(s))
	}
	for i := range Roles {
		if norm(Roles[i].Name) == norm(name) {
			return &Roles[i], true
		}
	}
	return nil, false
}

// Allows reports whether role grants action.
func (r *Role) Allows(action string) bool { return slices.Contains(r.Actions, action) }

// Covers reports whether the actions held include every action of role:
// whether holding them is as good as holding the role. An unknown role
// is an error.
func Covers(held []string, role string) (bool, error) {
	need, ok := FindRole(role)
	if !ok {
		return false, fmt.Errorf("unknown role %q", role)
	}
	for _, a := range need.Actions {
		if !slices.Contains(held, a) {
			return false, nil
		}
	}
	return true, nil
}

// ActionsOf lists the actions the named roles grant together (unknown
// names grant nothing).
func ActionsOf(roles []string) []string {
	var out []string
	for _, name := range roles {
		if r, ok := FindRole(name); ok {
			for _, a := range r.Actions {
				if !slices.Contains(out, a) {
					out = append(out, a)
				}
			}
		}
	}
	return out
}

// Assignment grants a role to a principal at a scope.
type Assignment struct {
	Principal string
	Role      string
	Scope     string
}

// Decision explains an authorization result.
type Decision struct {
	Allowed bool
	// Via is the assignment that granted the action, when allowed.
	Via *Assignment
}

// Decide reports whether any of the principal's assignments grants action
// at scope (directly or from an enclosing scope).
func Decide(assignments []Assignment, principal, action, scope string) Decision {
	for i, a := range assignments {
		if a.Principal != principal || !Contains(a.Scope, scope) {
			continue
		}
		if r, ok := FindRole(a.Role); ok && r.Allows(action) {
			return Decision{Allowed: true, Via: &assignments[i]}
		}
	}
	return Decision{}
}

// Contains reports whether scope outer encloses (or equals) inner.
func Contains(outer, inner string) bool {
	if outer == "/" || outer == inner {
		return true
	}
	return strings.HasPrefix(inner, outer+"/")
}

// Scope constructors.
func Root() string                     { return "/" }
func VaultScope(v string) string       { return "/vaults/" + v }
func PolicyScope(v, p string) string   { return VaultScope(v) + "/policies/" + p }
func InstanceScope(v, i string) string { return VaultScope(v) + "/instances/" + i }
func ClusterScope(c string) string     { return "/clusters/" + c }

// StorageScope names a storage location; its URL is one escaped segment so
// that a location does not enclose another one that shares a prefix.
func StorageScope(location string) string { return "/storageLocations/" + url.PathEscape(location) }

// SnapshotScope names a snapshot location (a VolumeSnapshotClass name, or
// cluster/class).
func SnapshotScope(name string) string { return "/snapshotLocations/" + url.PathEscape(name) }

var (
	label       = `[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?`
	seg         = `[^/]+`
	scopeRE     = regexp.MustCompile(`^/(vaults/` + label + `(/(policies|instances)/` + label + `)?|clusters/` + label + `|storageLocations/` + seg + `|snapshotLocations/` + seg + `)?$`)
	principalRE = regexp.MustCompile(`^((user|vault|cluster|extension):)?` + label + `$`)
)

// ValidScope checks the form of a scope.
func ValidScope(s string) error {
	if !scopeRE.MatchString(s) {
		return fmt.Errorf("scope %q: want /, /vaults/V, /vaults/V/policies/P, /vaults/V/instances/I, /clusters/C, /storageLocations/URL or /snapshotLocations/S", s)
	}
	return nil
}

// ValidPrincipal checks the form of a principal.
func ValidPrincipal(p string) error {
	if !principalRE.MatchString(p) {
		return fmt.Errorf("principal %q: want NAME or user:|vault:|cluster:|extension: followed by a DNS label", p)
	}
	return nil
}

// Identities used by the trust model (ARCHITECTURE.md §4).
func VaultIdentity(vault string) string       { return "vault:" + vault }
func ClusterIdentity(cluster string) string   { return "cluster:" + cluster }
func ExtensionIdentity(cluster string) string { return "extension:" + cluster }
