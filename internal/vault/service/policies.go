package service

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/scheduler"
	"github.com/arca-backup/arca/internal/vault/store"
)

// PolicySpec is a policy as a caller writes it.
type PolicySpec struct {
	Name      string               `json:"name"`
	Schedule  string               `json:"schedule"`
	Retention policy.RetentionSpec `json:"retention"`
	// CopyTo names a secondary storage location (a URL, as an instance's
	// storageLocation): every vault-tier point of the policy's instances
	// is copied there, and restores fall back to it when the primary is
	// unreachable. Setting it needs Storage Contributor there.
	CopyTo string `json:"copyTo,omitempty"`
	// Verify: daily, weekly or monthly verification of each instance's
	// latest recovery point in the instance's cluster; "" none
	// (docs/vault.md, Verification).
	Verify string `json:"verify,omitempty"`
}

// checkCopyTo validates a policy's copyTo and that caller may write there.
func (s *Service) checkCopyTo(ctx context.Context, caller, copyTo string) error {
	if copyTo == "" {
		return nil
	}
	if !strings.HasPrefix(copyTo, "file:///") && !strings.HasPrefix(copyTo, "azure://") && !strings.HasPrefix(copyTo, "s3://") || len(copyTo) > 2048 {
		return InvalidField("InvalidStorageLocation", "copyTo", copyTo, "want "+locations+", at most 2048 characters")
	}
	if caller == "" {
		return nil
	}
	return s.Require(ctx, []Requirement{{caller, rbac.StorageWrite, rbac.StorageScope(copyTo), rbac.StorageContributor,
		"to have the policy's vault-tier recovery points copied to " + copyTo}})
}

// stored validates a policy and returns its stored form: the schedule
// trimmed and the retention with datastores filled in.
func (b PolicySpec) stored() (string, json.RawMessage, error) {
	if _, err := policy.Parse(policy.Spec{Schedule: b.Schedule, Retention: b.Retention}); err != nil {
		return "", nil, err
	}
	norm := b.Retention
	for _, rs := range []*policy.RuleSpec{norm.Default, norm.Daily, norm.Weekly, norm.Monthly, norm.Yearly} {
		if rs != nil && rs.Datastore == "" {
			rs.Datastore = policy.Operational
		}
	}
	raw, err := json.Marshal(norm)
	if err != nil {
		return "", nil, err
	}
	return strings.TrimSpace(b.Schedule), raw, nil
}

// MaxPage bounds the limit of a list that pages.
const MaxPage = 1000

// ParsePage reads the limit and after of a list ordered by name; without
// limit the list is whole.
func ParsePage(limit, after string) (store.Page, error) {
	p := store.Page{After: after}
	if limit != "" {
		n, err := strconv.Atoi(limit)
		if err != nil || n < 1 || n > MaxPage {
			return p, InvalidField("InvalidValue", "limit", limit, fmt.Sprintf("want 1-%d (then ?after=<next of the previous page>)", MaxPage))
		}
		p.Limit = n
	}
	return p, nil
}

// ListPolicies lists one page of a vault's policies, by name.
func (s *Service) ListPolicies(ctx context.Context, vault string, p store.Page) ([]*store.Policy, error) {
	if _, err := s.Store.GetVault(ctx, vault); err != nil {
		return nil, err
	}
	return s.Store.ListPoliciesPage(ctx, vault, p)
}

// CreatePolicy creates a policy in a vault.
// The caller (CallerOf; none: not checked) must be able to write to its
// copyTo.
func (s *Service) CreatePolicy(ctx context.Context, vault string, b PolicySpec) (*store.Policy, error) {
	if _, err := s.Store.GetVault(ctx, vault); err != nil {
		return nil, err
	}
	if err := CheckName("name", b.Name); err != nil {
		return nil, err
	}
	sched, ret, err := b.stored()
	if err != nil {
		return nil, err
	}
	if err := s.checkCopyTo(ctx, CallerOf(ctx), b.CopyTo); err != nil {
		return nil, err
	}
	if err := checkVerify(b.Verify); err != nil {
		return nil, err
	}
	p := &store.Policy{Vault: vault, Name: b.Name, Schedule: sched, Retention: ret, CopyTo: b.CopyTo, Verify: b.Verify}
	if err := s.Store.CreatePolicy(ctx, p); err != nil {
		return nil, err
	}
	return p, nil
}

// GetPolicy returns a policy.
func (s *Service) GetPolicy(ctx context.Context, vault, name string) (*store.Policy, error) {
	return s.Store.GetPolicy(ctx, vault, name)
}

// UpdatePolicy replaces a policy's schedule and retention. Protected
// instances of the policy follow a new schedule from now on.
func (s *Service) UpdatePolicy(ctx context.Context, vault, name string, expected int64, b PolicySpec) (*store.Policy, error) {
	p, err := s.Store.GetPolicy(ctx, vault, name)
	if err != nil {
		return nil, err
	}
	if b.Name != "" && b.Name != p.Name {
		return nil, InvalidField("ImmutableField", "name", b.Name, "name cannot be changed", "name cannot be changed")
	}
	if err := Precondition(expected, p.Version); err != nil {
		return nil, err
	}
	sched, ret, err := b.stored()
	if err != nil {
		return nil, err
	}
	v, err := s.Store.GetVault(ctx, vault)
	if err != nil {
		return nil, err
	}
	var short []string
	if v.Immutable() || v.ResourceGuard {
		from, err1 := policy.ParseJSON(p.Schedule, p.Retention)
		to, err2 := policy.ParseJSON(sched, ret)
		if err1 == nil && err2 == nil {
			short = shortened(from, to)
		}
	}
	if len(short) > 0 && v.Immutable() {
		return nil, Conflictf(CodeImmutableRetention, "vault %q is immutable (%s): retention cannot be shortened, and this change shortens %s; keep each rule at least as long (a new policy with shorter rules applies to new instances only)",
			v.Name, v.Immutability, strings.Join(short, ", "))
	}
	if b.CopyTo != p.CopyTo {
		if err := s.checkCopyTo(ctx, CallerOf(ctx), b.CopyTo); err != nil {
			return nil, err
		}
	}
	if err := checkVerify(b.Verify); err != nil {
		return nil, err
	}
	changed := sched != p.Schedule
	p.Schedule, p.Retention, p.CopyTo, p.Verify = sched, ret, b.CopyTo, b.Verify
	update := func() error { return fromStore(s.Store.UpdatePolicy(ctx, p), expected) }
	if len(short) > 0 {
		err = s.guarded(ctx, v, OpShortenRetention, p.Name, update)
	} else {
		err = update()
	}
	if err != nil {
		return nil, err
	}
	if changed {
		ins, err := s.Store.ListInstances(ctx, p.Vault, p.Name)
		if err != nil {
			return nil, err
		}
		for _, in := range ins {
			if in.ProtectionState != store.ProtectionConfigured {
				continue
			}
			if _, err := scheduler.Arm(ctx, s.Store, in.Vault, in.Name, p.Schedule, s.now().Now()); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// DeletePolicy deletes a policy no instance uses.
func (s *Service) DeletePolicy(ctx context.Context, vault, name string, expected int64) error {
	if _, err := s.Store.GetPolicy(ctx, vault, name); err != nil {
		return err
	}
	ins, err := s.Store.ListInstances(ctx, vault, name)
	if err != nil {
		return err
	}
	if len(ins) > 0 {
		return Conflictf("PolicyInUse", "policy %q is used by %d backup instance(s), e.g. %q", name, len(ins), ins[0].Name)
	}
	return fromStore(s.Store.DeletePolicy(ctx, vault, name, expected), expected)
}
