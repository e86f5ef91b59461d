package service

import (
	"context"
	"errors"
	"time"

	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Protection users can trust (issue 17), vault side: soft delete
// (softdelete.go), the immutable vault setting, and multi-user
// authorization. When a vault's resource guard is on, each destructive
// operation below needs the approval of a second principal who holds the
// Resource Guard Approver role at the vault and whom the requester is not:
// the operation fails with ApprovalRequired naming a request, an approver
// approves it (arca approval approve), and the requester's same operation
// then passes once, until the approval expires.

// Guarded operations: the Operation of an approval request.
const (
	OpDeleteVault          = "deleteVault"
	OpDeleteInstance       = "deleteInstance"
	OpStopDeleteData       = "stopProtectionDeleteData"
	OpDeleteRecoveryPoint  = "deleteRecoveryPoint"
	OpDisableImmutability  = "disableImmutability"
	OpDisableSoftDelete    = "disableSoftDelete"
	OpDisableResourceGuard = "disableResourceGuard"
	OpShortenRetention     = "shortenRetention"
	OpUnregisterCluster    = "unregisterCluster"
	OpRemoveLastOwner      = "removeLastOwner"
	OpAssignApprover       = "assignApprover" // a further Resource Guard Approver
)

// Error codes of the guard and of immutability.
const (
	CodeApprovalRequired     = "ApprovalRequired"
	CodeApprovalPending      = "ApprovalPending"
	CodeSelfApproval         = "SelfApprovalRefused"
	CodeRequesterIsApprover  = "RequesterHoldsApproverRole"
	CodeApprovalExpired      = "ApprovalExpired"
	CodeApprovalDecided      = "ApprovalAlreadyDecided"
	CodeImmutableDelete      = "ImmutableVaultDeleteRefused"
	CodeImmutableRetention   = "ImmutableVaultRetentionShortened"
	CodeImmutabilityLocked   = "ImmutabilityLocked"
	CodeInvalidImmutability  = "InvalidImmutability"
	CodeInvalidSoftDeleteDay = "InvalidSoftDeleteDays"
)

// DefaultApprovalLifetime is how long a request waits for a decision and
// how long an approval, once given, lets its operation through.
const DefaultApprovalLifetime = 24 * time.Hour

// MaxSoftDeleteDays bounds a vault's soft-delete retention.
const MaxSoftDeleteDays = 180

type callerKey struct{}

// WithCaller records in ctx the authenticated principal an operation runs
// for. The resource guard needs it (who requests, who approves); the HTTP
// server sets it for every authenticated request, and other front ends
// must too.
func WithCaller(ctx context.Context, principal string) context.Context {
	return context.WithValue(ctx, callerKey{}, principal)
}

// CallerOf returns the principal WithCaller recorded ("" when none).
func CallerOf(ctx context.Context) string {
	p, _ := ctx.Value(callerKey{}).(string)
	return p
}

func (s *Service) approvalLifetime() time.Duration {
	if s.ApprovalLifetime <= 0 {
		return DefaultApprovalLifetime
	}
	return s.ApprovalLifetime
}

func (s *Service) audit(event string, args ...any) {
	if s.Log != nil {
		s.Log.Info("audit", append([]any{"event", event}, args...)...)
	}
}

// guard lets op on target in vault v through when v's resource guard is
// off, or when the caller holds an unexpired approval for exactly this
// operation, which it marks used (once: the version check makes a second
// concurrent use fail). Otherwise it records a request, or names the
// pending one, and refuses with its ID. The returned approval, if any,
// is given back with unuse when the operation then fails.
func (s *Service) guard(ctx context.Context, v *store.Vault, op, target string) (*store.Approval, error) {
	if !v.ResourceGuard {
		return nil, nil
	}
	caller := CallerOf(ctx)
	scope := rbac.VaultScope(v.Name)
	if caller == "" {
		e := ForbiddenTo(rbac.ApprovalsApprove, scope, "vault %q has its resource guard on: %s of %s needs an authenticated requester and an approval", v.Name, op, target)
		e.Code = CodeApprovalRequired
		return nil, e
	}
	now := s.now().Now().UTC()
	as, err := s.Store.ListApprovals(ctx, v.Name, store.ApprovalFilter{Requester: caller, Operation: op, Target: target})
	if err != nil {
		return nil, err
	}
	for _, a := range as {
		if !now.Before(a.ExpiresAt) {
			continue
		}
		switch a.State {
		case store.ApprovalApproved:
			a.State, a.UsedAt = store.ApprovalUsed, &now
			if err := s.Store.UpdateApproval(ctx, a); errors.Is(err, store.ErrConflict) {
				continue // used concurrently by another call
			} else if err != nil {
				return nil, err
			}
			s.audit("approvalUsed", "principal", caller, "vault", v.Name, "approval", a.ID, "operation", op, "target", target, "approver", a.Approver)
			return a, nil
		case store.ApprovalPending:
			e := ForbiddenTo(rbac.ApprovalsApprove, scope,
				"%s of %s in vault %q is waiting for approval %s (requested %s, expires %s): a principal holding the %s role at %s, other than %s, approves it with: arca approval approve %s --vault %s",
				op, target, v.Name, a.ID, a.CreatedAt.Format(time.RFC3339), a.ExpiresAt.Format(time.RFC3339), rbac.ResourceGuardApprover, scope, caller, a.ID, v.Name)
			e.Code = CodeApprovalPending
			return nil, e
		}
	}
	a := &store.Approval{Vault: v.Name, Operation: op, Target: target, Requester: caller, ExpiresAt: now.Add(s.approvalLifetime())}
	if err := s.Store.CreateApproval(ctx, a); err != nil {
		return nil, err
	}
	s.audit("approvalRequested", "principal", caller, "vault", v.Name, "approval", a.ID, "operation", op, "target", target)
	e := ForbiddenTo(rbac.ApprovalsApprove, scope,
		"vault %q has its resource guard on: %s of %s needs a second principal's approval; request %s was recorded (expires %s). A principal holding the %s role at %s, other than %s, approves it with: arca approval approve %s --vault %s; then run this again",
		v.Name, op, target, a.ID, a.ExpiresAt.Format(time.RFC3339), rbac.ResourceGuardApprover, scope, caller, a.ID, v.Name)
	e.Code = CodeApprovalRequired
	return nil, e
}

// unuse gives an approval back after the operation it let through failed.
func (s *Service) unuse(ctx context.Context, a *store.Approval) {
	if a == nil {
		return
	}
	a.State, a.UsedAt = store.ApprovalApproved, nil
	_ = s.Store.UpdateApproval(ctx, a)
}

// guarded runs fn behind guard.
func (s *Service) guarded(ctx context.Context, v *store.Vault, op, target string, fn func() error) error {
	a, err := s.guard(ctx, v, op, target)
	if err != nil {
		return err
	}
	if err := fn(); err != nil {
		s.unuse(ctx, a)
		return err
	}
	return nil
}

// shown is an approval as listed: Pending or Approved past ExpiresAt
// shows as Expired.
func (s *Service) shown(a *store.Approval) *store.Approval {
	if (a.State == store.ApprovalPending || a.State == store.ApprovalApproved) && !s.now().Now().Before(a.ExpiresAt) {
		a.State = store.ApprovalExpired
	}
	return a
}

// ListApprovals lists a vault's approval requests, newest first.
func (s *Service) ListApprovals(ctx context.Context, vault string, f store.ApprovalFilter) ([]*store.Approval, error) {
	if _, err := s.Store.GetVault(ctx, vault); err != nil {
		return nil, err
	}
	state := f.State
	if state == store.ApprovalExpired {
		f.State = ""
	}
	as, err := s.Store.ListApprovals(ctx, vault, f)
	if err != nil {
		return nil, err
	}
	out := []*store.Approval{}
	for _, a := range as {
		if a = s.shown(a); state == "" || a.State == state {
			out = append(out, a)
		}
	}
	return out, nil
}

// GetApproval returns one approval request.
func (s *Service) GetApproval(ctx context.Context, vault, id string) (*store.Approval, error) {
	a, err := s.Store.GetApproval(ctx, vault, id)
	if err != nil {
		return nil, err
	}
	return s.shown(a), nil
}

// DecideApproval approves or rejects a pending request, as the caller:
// who must hold the approve action at the vault, must not be the
// requester, and, to approve, the requester must not hold that action
// either (one principal with both roles would be no second pair of eyes).
// An approval lets the operation through once, until ApprovalLifetime
// from now.
func (s *Service) DecideApproval(ctx context.Context, vault, id string, approve bool, reason string) (*store.Approval, error) {
	caller := CallerOf(ctx)
	scope := rbac.VaultScope(vault)
	if len(reason) > 1024 {
		return nil, InvalidField("InvalidValue", "reason", "", "at most 1024 characters")
	}
	a, err := s.Store.GetApproval(ctx, vault, id)
	if err != nil {
		return nil, err
	}
	now := s.now().Now().UTC()
	switch {
	case a.State != store.ApprovalPending:
		return nil, Conflictf(CodeApprovalDecided, "approval %s is already %s (by %s): ask the requester to run the operation again for a new request", a.ID, a.State, a.Approver)
	case !now.Before(a.ExpiresAt):
		return nil, Conflictf(CodeApprovalExpired, "approval %s expired at %s: the requester (%s) runs the operation again to make a new request", a.ID, a.ExpiresAt.Format(time.RFC3339), a.Requester)
	case caller == "" || caller == a.Requester:
		e := ForbiddenTo(rbac.ApprovalsApprove, scope, "%s requested %s and cannot decide it: a second principal holding the %s role at %s does", a.Requester, a.ID, rbac.ResourceGuardApprover, scope)
		e.Code = CodeSelfApproval
		return nil, e
	}
	if ok, err := s.Can(ctx, caller, rbac.ApprovalsApprove, scope); err != nil {
		return nil, err
	} else if !ok {
		e := Refused(caller, rbac.ApprovalsApprove, scope)
		e.Message += "; approvals need the " + rbac.ResourceGuardApprover + " role"
		return nil, e
	}
	if approve {
		if held, err := s.Can(ctx, a.Requester, rbac.ApprovalsApprove, scope); err != nil {
			return nil, err
		} else if held {
			e := ForbiddenTo(rbac.ApprovalsApprove, scope, "the requester %s holds the %s role at %s itself, so an approval would not be a second principal's: remove that role from %s (or have a principal without it make the request)",
				a.Requester, rbac.ResourceGuardApprover, scope, a.Requester)
			e.Code = CodeRequesterIsApprover
			return nil, e
		}
	}
	a.State, a.Approver, a.Reason, a.DecidedAt = store.ApprovalRejected, caller, reason, &now
	event := "approvalRejected"
	if approve {
		a.State, a.ExpiresAt, event = store.ApprovalApproved, now.Add(s.approvalLifetime()), "approvalApproved"
	}
	if err := s.Store.UpdateApproval(ctx, a); err != nil {
		return nil, Classify(err)
	}
	s.audit(event, "principal", caller, "vault", vault, "approval", a.ID, "operation", a.Operation, "target", a.Target, "requester", a.Requester)
	return a, nil
}

// ---- vault settings ----

// VaultUpdate is the body of PUT /vaults/{vault}: fields left out (nil)
// are kept.
type VaultUpdate struct {
	Name           string  `json:"name,omitempty"` // must be the vault's name when set
	Description    *string `json:"description,omitempty"`
	SoftDeleteDays *int    `json:"softDeleteDays,omitempty"`
	Immutability   *string `json:"immutability,omitempty"`
	ResourceGuard  *bool   `json:"resourceGuard,omitempty"`
}

// UpdateVault changes a vault's description and settings. Immutability
// goes disabled → unlocked → locked; locked is final, and unlocked →
// disabled, turning soft delete off and turning the resource guard off
// are guarded operations.
func (s *Service) UpdateVault(ctx context.Context, name string, expected int64, u VaultUpdate) (*store.Vault, error) {
	v, err := s.Store.GetVault(ctx, name)
	if err != nil {
		return nil, err
	}
	if u.Name != "" && u.Name != v.Name {
		return nil, InvalidField("ImmutableField", "name", u.Name, "name cannot be changed", "name cannot be changed")
	}
	if err := Precondition(expected, v.Version); err != nil {
		return nil, err
	}
	var ops []string
	if u.Description != nil {
		if len(*u.Description) > 1024 {
			return nil, InvalidField("InvalidValue", "description", "", "at most 1024 characters")
		}
		v.Description = *u.Description
	}
	if u.SoftDeleteDays != nil {
		d := *u.SoftDeleteDays
		if d < 0 || d > MaxSoftDeleteDays {
			return nil, InvalidField(CodeInvalidSoftDeleteDay, "softDeleteDays", "", "0 (soft delete off) or 1-180 days",
				"softDeleteDays %d: want 0 (soft delete off) or 1-%d days", d, MaxSoftDeleteDays)
		}
		if d == 0 && v.SoftDeleteDays > 0 {
			ops = append(ops, OpDisableSoftDelete)
		}
		v.SoftDeleteDays = d
	}
	if u.Immutability != nil {
		to := *u.Immutability
		switch to {
		case store.ImmutabilityDisabled, store.ImmutabilityUnlocked, store.ImmutabilityLocked:
		default:
			return nil, InvalidField(CodeInvalidImmutability, "immutability", to, "want disabled, unlocked or locked")
		}
		if v.Immutability == store.ImmutabilityLocked && to != store.ImmutabilityLocked {
			return nil, Conflictf(CodeImmutabilityLocked, "vault %q is immutable and locked: a locked vault cannot be unlocked or disabled (by design, as an AKS immutable vault); its points expire with their retention", v.Name)
		}
		if v.Immutability == store.ImmutabilityUnlocked && to == store.ImmutabilityDisabled {
			ops = append(ops, OpDisableImmutability)
		}
		v.Immutability = to
	}
	if u.ResourceGuard != nil {
		if v.ResourceGuard && !*u.ResourceGuard {
			ops = append(ops, OpDisableResourceGuard)
		}
		// Turned on, it guards this very update too (below) only from
		// the next one on: v is checked as stored.
	}
	stored, err := s.Store.GetVault(ctx, name)
	if err != nil {
		return nil, err
	}
	var used []*store.Approval
	for _, op := range ops {
		a, err := s.guard(ctx, stored, op, v.Name)
		if err != nil {
			for _, x := range used {
				s.unuse(ctx, x)
			}
			return nil, err
		}
		used = append(used, a)
	}
	if u.ResourceGuard != nil {
		v.ResourceGuard = *u.ResourceGuard
	}
	if err := s.Store.UpdateVault(ctx, v); err != nil {
		for _, x := range used {
			s.unuse(ctx, x)
		}
		return nil, fromStore(err, expected)
	}
	return v, nil
}

// shortened lists the rules of from that to keeps for less time or no
// longer has: what a policy change shortens.
func shortened(from, to *policy.Policy) []string {
	var out []string
	for _, r := range from.Rules {
		found := false
		for _, n := range to.Rules {
			if n.Name == r.Name {
				found = true
				if n.Duration.Less(r.Duration) {
					out = append(out, r.Name+" "+r.Duration.String()+" → "+n.Duration.String())
				}
			}
		}
		if !found && r.Name != policy.RuleDefault {
			out = append(out, r.Name+" "+r.Duration.String()+" → removed")
		}
	}
	return out
}
