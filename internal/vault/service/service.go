// Package service is the vault's operations: vaults, policies, backup
// instances and their protection, backup now, restores, the recovery
// point catalog and its sync, and jobs. The HTTP server (package server)
// decodes a request, authorizes it, calls one operation and encodes the
// answer; the scheduler, the job runner and later the dashboard call the
// same operations. Operations check their input, keep the rules between
// records (a policy in use is not deleted, a protected instance is not
// deleted, …) and return typed errors (*Error, by Kind) that each front
// end maps once. Operations that take long (deleting an instance's data)
// are queued as jobs that the job runner runs, and return the job.
package service

import (
	"context"
	"log/slog"
	"regexp"
	"time"

	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/retention"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Store is the part of the vault's store the operations use.
type Store interface {
	store.VaultStore
	store.PolicyStore
	store.InstanceStore
	store.RecoveryPointStore
	store.JobStore
	store.TriggerStore
	store.TokenStore
	store.RoleStore
	store.ClusterStore
	store.SoftDeleteStore
	store.ApprovalStore
	store.NotificationStore
}

// Service runs the vault's operations.
type Service struct {
	Store     Store
	Clock     clock.Clock
	Retention *retention.Engine // catalog tagging; nil: one over Store
	Runner    *jobs.Runner      // cancels jobs in their cluster
	Clusters  Clusters          // prerequisite checks in clusters; nil: none can run
	// Queries asks clusters' extensions about recovery points (contents,
	// diff, files); nil: Clusters, when it implements Querier.
	Queries Querier
	// TokenLifetime is the lifetime of a token created without one, and
	// TokenMaxLifetime the longest allowed (zero: the defaults, P30D and
	// P1Y).
	TokenLifetime, TokenMaxLifetime policy.Duration
	// OnJob, when set, is called for every job an operation creates, and
	// OnJobFinished for every job an operation ends (metrics).
	OnJob, OnJobFinished func(*store.Job)
	// Notifier, when set, receives the events subscribers can be told
	// about (notify.go); nil: none are sent.
	Notifier Notifier
	// ApprovalLifetime is how long an approval request waits and an
	// approval lasts (zero: DefaultApprovalLifetime, 24 hours).
	ApprovalLifetime time.Duration
	// Log, when set, receives the audit records of the resource guard
	// (approval requested, approved, rejected, used).
	Log *slog.Logger
}

func (s *Service) now() clock.Clock {
	if s.Clock == nil {
		return clock.Real{}
	}
	return s.Clock
}

func (s *Service) retention() *retention.Engine {
	if s.Retention == nil {
		return &retention.Engine{Store: s.Store, Clock: s.now()}
	}
	return s.Retention
}

func (s *Service) created(j *store.Job) {
	if s.OnJob != nil {
		s.OnJob(j)
	}
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// CheckName checks a resource name: a DNS label (RFC 1123), like
// Kubernetes names, so that names can be used in clusters too.
func CheckName(field, name string) error {
	if !nameRE.MatchString(name) {
		return InvalidField("InvalidName", field, name, "not a DNS label",
			"%s %q: must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit", field, name)
	}
	return nil
}

// Precondition checks the version a caller expects (0: any) against the
// current one.
func Precondition(expected, current int64) error {
	if expected != 0 && expected != current {
		return Preconditionf("If-Match \"%d\" does not match the current ETag \"%d\": the resource changed; fetch it again", expected, current)
	}
	return nil
}

// ---- vaults ----

// ListVaults lists every vault; the caller filters what a principal may see.
func (s *Service) ListVaults(ctx context.Context) ([]*store.Vault, error) {
	return s.Store.ListVaults(ctx)
}

// CreateVault creates a vault.
func (s *Service) CreateVault(ctx context.Context, name, description string) (*store.Vault, error) {
	if err := CheckName("name", name); err != nil {
		return nil, err
	}
	if len(description) > 1024 {
		return nil, InvalidField("InvalidValue", "description", "", "at most 1024 characters")
	}
	v := &store.Vault{Name: name, Description: description, SoftDeleteDays: store.DefaultSoftDeleteDays}
	if err := s.Store.CreateVault(ctx, v); err != nil {
		return nil, err
	}
	return v, nil
}

// GetVault returns a vault.
func (s *Service) GetVault(ctx context.Context, name string) (*store.Vault, error) {
	return s.Store.GetVault(ctx, name)
}

// DeleteVault deletes an empty vault.
func (s *Service) DeleteVault(ctx context.Context, name string, expected int64) error {
	if _, err := s.Store.GetVault(ctx, name); err != nil {
		return err
	}
	ps, err := s.Store.ListPolicies(ctx, name)
	if err != nil {
		return err
	}
	ins, err := s.Store.ListInstances(ctx, name, "")
	if err != nil {
		return err
	}
	if len(ps)+len(ins) > 0 {
		return Conflictf("VaultNotEmpty", "vault %q still has %d backup instance(s) (soft-deleted ones included) and %d policy(ies): delete them first", name, len(ins), len(ps))
	}
	v, err := s.Store.GetVault(ctx, name)
	if err != nil {
		return err
	}
	return s.guarded(ctx, v, OpDeleteVault, name, func() error {
		if err := fromStore(s.Store.DeleteVault(ctx, name, expected), expected); err != nil {
			return err
		}
		// A vault made later with the same name starts without them.
		subs, err := s.Store.ListSubscriptions(ctx, name)
		if err != nil {
			return err
		}
		for _, sub := range subs {
			_ = s.Store.DeleteSubscription(ctx, name, sub.ID)
		}
		return nil
	})
}
