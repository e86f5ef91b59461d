package clusterdriver

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/prereq"
	"github.com/arca-backup/arca/internal/prereq/vaultaccess"
	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
)

// TrustedAccess is how a vault reaches the clusters registered with it
// through trusted access (service.Clusters): drivers with the vault's
// token (Registered), the prerequisite checks run with that identity, and
// the token's renewal (Renewer).
type TrustedAccess struct {
	Store store.ClusterStore
	Clock clock.Clock
	Log   *slog.Logger
	// MaxLifetime bounds the renewal of a credential after its owner gave
	// it (Renewer.MaxLifetime; zero: DefaultCredentialLifetime).
	MaxLifetime time.Duration
	Registered
}

var _ service.Clusters = (*TrustedAccess)(nil)

// NewTrustedAccess returns the trusted access of a vault over its store.
func NewTrustedAccess(st store.ClusterStore, clk clock.Clock, log *slog.Logger) service.Clusters {
	return &TrustedAccess{Store: st, Clock: clk, Log: log, Registered: Registered{Store: st, Clock: clk}}
}

// NewTrustedAccessRenewingFor is NewTrustedAccess with credential renewal
// bounded to maxLifetime after the owner gave the credential (arca vault
// serve --cluster-credential-max-lifetime; zero: the default).
func NewTrustedAccessRenewingFor(maxLifetime time.Duration) func(store.ClusterStore, clock.Clock, *slog.Logger) service.Clusters {
	return func(st store.ClusterStore, clk clock.Clock, log *slog.Logger) service.Clusters {
		ta := NewTrustedAccess(st, clk, log).(*TrustedAccess)
		ta.MaxLifetime = maxLifetime
		return ta
	}
}

// Maintain implements service.Clusters: it renews tokens until ctx ends.
func (t *TrustedAccess) Maintain(ctx context.Context, every time.Duration) {
	(&Renewer{Store: t.Store, Clock: t.Clock, Log: t.Log, MaxLifetime: t.MaxLifetime}).Run(ctx, every)
}

// ValidationResult is the body of a validation response.
type ValidationResult struct {
	*prereq.Report
	Assignments []prereq.Assignment `json:"assignments,omitempty"`
}

func (t *TrustedAccess) result(ctx context.Context, rep *prereq.Report, acc *vaultaccess.Access, assign bool) *service.Validation {
	out := ValidationResult{Report: rep}
	if assign {
		out.Assignments = prereq.AssignMissing(ctx, rep, acc)
	}
	v := &service.Validation{Passed: rep.Passed, Body: out}
	for _, c := range rep.Failures() {
		v.Failures = append(v.Failures, fmt.Sprintf("%s: %s → %s", c.Code, c.Message, c.Remedy))
	}
	return v
}

// ValidateBackup checks an instance's prerequisites from the vault, with
// the vault's trusted-access identity in the cluster. The storage probe is
// the extension's (its StorageLocation status): the vault holds no storage
// credentials.
func (t *TrustedAccess) ValidateBackup(ctx context.Context, b service.BackupCheck) (*service.Validation, error) {
	in := b.Instance
	acc := &vaultaccess.Access{V: b.Roles}
	c, err := b.Roles.Cluster(ctx, in.Cluster)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return t.result(ctx, prereq.NotConnected("backup", fmt.Sprintf("instance %s/%s on cluster %s", in.Vault, in.Name, in.Cluster), in.Cluster), acc, false), nil
	}
	var cfg v1alpha1.BackupConfiguration
	if len(in.Config) > 0 {
		if err := json.Unmarshal(in.Config, &cfg); err != nil {
			return nil, err
		}
	}
	rep := prereq.ValidateBackup(ctx, prereq.BackupInput{Vault: in.Vault, Instance: in.Name,
		Cluster: prereq.Cluster{Name: in.Cluster, Config: RestConfig(c), AsVault: true}, Config: cfg,
		StorageLocation: in.StorageLocation, SnapshotLocation: in.SnapshotLocation,
		Access: acc, Connections: acc, Now: b.Now})
	return t.result(ctx, rep, acc, b.AssignMissing), nil
}

// contentChecks are the restore checks that need the recovery point's
// content, which the vault's catalog does not hold.
var contentChecks = []string{"NamespaceConflicts", "StorageClasses", "APIVersionsServed"}

// ValidateRestore checks a restore's prerequisites on the target cluster
// from the vault, with its trusted-access identity there. Without
// repository credentials the vault can neither probe the storage location
// (the extension's StorageLocation status is checked instead) nor read
// what the recovery point holds: those checks are Skipped and say so.
func (t *TrustedAccess) ValidateRestore(ctx context.Context, r service.RestoreCheck) (*service.Validation, error) {
	rp, target := r.Point, r.Target
	acc := &vaultaccess.Access{V: r.Roles}
	c, err := r.Roles.Cluster(ctx, target)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return t.result(ctx, prereq.NotConnected("restore", fmt.Sprintf("recovery point %s to cluster %s", rp.ID, target), target), acc, false), nil
	}
	rep := prereq.ValidateRestore(ctx, prereq.RestoreInput{Vault: rp.Vault, RecoveryPoint: rp.ID,
		Target: prereq.Cluster{Name: target, Config: RestConfig(c), AsVault: true}, Criteria: r.Criteria,
		StorageLocation: r.Instance.StorageLocation, Access: acc, Connections: acc, Now: r.Now})
	for _, id := range contentChecks {
		if ch := rep.Find(id); ch != nil && ch.Result == prereq.Skipped {
			ch.Message = "the vault's catalog does not hold the recovery point's content (namespaces, resource types, storage classes) and the vault has no repository password to read it"
			ch.Remedy = "run arca restore validate --recovery-point " + rp.ID + " --target-cluster " + target + " --kubeconfig K --password-file F to check it"
		}
	}
	if ch := rep.Find("StorageLocation"); ch != nil && ch.Result == prereq.Skipped {
		ch.Message = "the vault holds no storage credentials; the target extension's own probe (ExtensionStorageLocation) covers the location"
	}
	return t.result(ctx, rep, acc, r.AssignMissing), nil
}
