package retention

// Retention per datastore (issue 15), as in Azure Backup for AKS: a
// recovery point may be held by two tiers, each with its own rule and
// expiry.
//
//   - The operational tier is the volumes' CSI snapshots. Every scheduled
//     point has it, kept by the highest-priority operational rule it
//     matches (first-of rules with datastore operational, else default).
//   - The vault tier is the volumes' data moved into the repository. The
//     first successful backup of a day, week, month or year — per the
//     rules with datastore vault — goes to it: the job runner asks the
//     cluster for it when the backup starts (BackupJob spec.vaultTier) and
//     records it when the backup succeeds. "First" is judged against the
//     instance's earlier points that reached the vault tier, so a day
//     whose first backup failed takes its next one.
//
// The point itself (its objects in the repository) is kept until the
// latest of its tiers expires. When only the operational tier expires the
// point's snapshots are deleted and the point is kept, restorable from its
// vault-tier data; when the point expires it is forgotten in the repository
// and the repository is pruned (the existing path).

import (
	"context"
	"time"

	"github.com/arca-backup/arca/internal/calendar"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/store"
)

var rulePeriods = map[string]calendar.Period{policy.RuleDaily: calendar.Day, policy.RuleWeekly: calendar.Week,
	policy.RuleMonthly: calendar.Month, policy.RuleYearly: calendar.Year}

// firstOf reports whether t is the first of rule's period among earlier.
func firstOf(rule string, t time.Time, earlier []time.Time) bool {
	period, ok := rulePeriods[rule]
	if !ok {
		return false
	}
	for _, e := range earlier {
		if e.Before(t) && period.Same(e, t) {
			return false
		}
	}
	return true
}

// ClassifyOperational returns the rule that keeps a scheduled point taken
// at t in the operational tier: the highest-priority operational first-of
// rule it matches, else the default rule. earlier are the times of the
// instance's earlier scheduled points.
func ClassifyOperational(p *policy.Policy, t time.Time, earlier []time.Time) policy.Rule {
	for _, r := range p.Rules { // descending priority, default last
		if r.Datastore != policy.Operational {
			continue
		}
		if r.Name == policy.RuleDefault || firstOf(r.Name, t, earlier) {
			return r
		}
	}
	return p.Default()
}

// VaultRule returns the rule that takes a backup at t to the vault tier,
// or false when no vault rule does: the highest-priority rule with
// datastore vault whose period (UTC) has no earlier point in the vault
// tier. earlierVault are the times of the instance's points that reached
// the vault tier.
func VaultRule(p *policy.Policy, t time.Time, earlierVault []time.Time) (policy.Rule, bool) {
	for _, r := range p.Rules {
		if r.Datastore == policy.VaultStore && firstOf(r.Name, t, earlierVault) {
			return r, true
		}
	}
	return policy.Rule{}, false
}

// VaultTimes returns the times of the points that reached the vault tier
// (whether or not their vault-tier data has expired since).
func VaultTimes(rps []*store.RecoveryPoint) []time.Time {
	var out []time.Time
	for _, rp := range rps {
		if rp.Tiers.Vault != nil {
			out = append(out, rp.Time)
		}
	}
	return out
}

// SetTiers fills a new point's tiers from the rule keeping it in the
// operational tier and, when it reached the vault tier, the vault rule;
// its own expiry, tag and datastore follow from them: the tier kept
// longest.
func SetTiers(rp *store.RecoveryPoint, op policy.Rule, vault *policy.Rule) {
	t := rp.Time.UTC()
	opExp := op.Duration.AddTo(t)
	rp.Tiers.Operational = &store.Tier{Rule: op.Name, ExpiresAt: &opExp, State: store.TierAvailable}
	rp.Tag, rp.Datastore, rp.ExpiresAt = op.Name, policy.Operational, &opExp
	if vault == nil {
		return
	}
	vExp := vault.Duration.AddTo(t)
	rp.Tiers.Vault = &store.Tier{Rule: vault.Name, ExpiresAt: &vExp, State: store.TierAvailable}
	rp.Datastore = policy.VaultStore
	if vExp.After(opExp) {
		rp.Tag, rp.ExpiresAt = vault.Name, &vExp
	}
}

// latestTierExpiry is the latest expiry of a point's available tiers, or
// nil when it has none with an expiry.
func latestTierExpiry(rp *store.RecoveryPoint) *time.Time {
	var out *time.Time
	for _, t := range []*store.Tier{rp.Tiers.Operational, rp.Tiers.Vault} {
		if t != nil && t.State == store.TierAvailable && t.ExpiresAt != nil && (out == nil || t.ExpiresAt.After(*out)) {
			x := *t.ExpiresAt
			out = &x
		}
	}
	return out
}

// SnapshotsExpired selects the points whose operational tier alone has
// expired at now: their snapshots go, the points stay (their vault-tier
// data is still available). Points kept forever (no expiry) and points
// expiring as a whole are left out.
func SnapshotsExpired(now time.Time, rps []*store.RecoveryPoint, skip map[string]bool) []*store.RecoveryPoint {
	var out []*store.RecoveryPoint
	for _, rp := range rps {
		op, v := rp.Tiers.Operational, rp.Tiers.Vault
		if skip[rp.ID] || rp.ExpiresAt == nil || op == nil || op.State != store.TierAvailable || op.ExpiresAt == nil ||
			op.ExpiresAt.After(now) || v == nil || v.State != store.TierAvailable {
			continue
		}
		out = append(out, rp)
	}
	return out
}

// SnapshotRemover is implemented by DataRemovers that can delete a
// point's snapshots alone (the operational tier), keeping the point.
type SnapshotRemover interface {
	RemoveSnapshots(ctx context.Context, rp *store.RecoveryPoint) error
}

// expireSnapshots deletes the snapshots of points whose operational tier
// expired and marks the tier Deleted; the points stay.
func (e *Engine) expireSnapshots(ctx context.Context, rps []*store.RecoveryPoint, res *Result) {
	for _, rp := range rps {
		if e.Remover != nil {
			sr, ok := e.Remover.(SnapshotRemover)
			if !ok {
				res.Errors = append(res.Errors, store.Issue{Code: CodeSnapshotsNotRemoved, Object: rp.ID,
					Message: "the vault's data remover cannot delete a recovery point's snapshots alone; the operational tier is kept"})
				continue
			}
			if err := sr.RemoveSnapshots(ctx, rp); err != nil {
				res.Errors = append(res.Errors, store.Issue{Code: CodeSnapshotsNotRemoved, Message: err.Error(), Object: rp.ID})
				continue
			}
		}
		rp.Tiers.Operational.State = store.TierDeleted
		if rp.Tag == rp.Tiers.Operational.Rule && rp.Tiers.Vault != nil {
			rp.Tag = rp.Tiers.Vault.Rule
		}
		if err := e.Store.UpdateRecoveryPoint(ctx, rp); err != nil {
			res.Errors = append(res.Errors, store.Issue{Code: CodeSnapshotsNotRemoved, Object: rp.ID,
				Message: "the snapshots were deleted but the catalog was not updated (the next run tries again): " + err.Error()})
			continue
		}
		e.log().Info("operational tier expired", "vault", rp.Vault, "instance", rp.Instance, "id", rp.ID, "taken", rp.Time)
		res.SnapshotsExpired = append(res.SnapshotsExpired, rp.ID)
	}
}

// Codes of retention issues.
const (
	CodeSnapshotsNotRemoved = "SnapshotsNotRemoved"
)
