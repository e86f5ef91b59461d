package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/arca-backup/arca/internal/calendar"
	"github.com/arca-backup/arca/internal/storage"
)

// RetentionPolicy says which recovery points to keep. A point is kept if any
// rule keeps it. The newest point of a group is always kept.
type RetentionPolicy struct {
	KeepLast    int           `json:"keepLast,omitempty"`    // the N newest
	KeepHourly  int           `json:"keepHourly,omitempty"`  // the newest of each of the last N hours that have points
	KeepDaily   int           `json:"keepDaily,omitempty"`   // … days (UTC)
	KeepWeekly  int           `json:"keepWeekly,omitempty"`  // … ISO weeks
	KeepMonthly int           `json:"keepMonthly,omitempty"` // … months
	KeepYearly  int           `json:"keepYearly,omitempty"`  // … years
	KeepWithin  time.Duration `json:"keepWithin,omitempty"`  // every point started within this duration before now
}

// Empty reports whether the policy has no rule.
func (p RetentionPolicy) Empty() bool {
	return p == RetentionPolicy{}
}

// RetentionDecision is the verdict on one recovery point.
type RetentionDecision struct {
	RecoveryPoint *RecoveryPoint `json:"-"`
	ID            ID             `json:"id"`
	Keep          bool           `json:"keep"`
	Reasons       []string       `json:"reasons,omitempty"` // why kept
	Group         string         `json:"group,omitempty"`   // the group the rules counted in (ForgetByPolicy)
}

func pointTime(rp *RecoveryPoint) time.Time {
	if rp.Started.IsZero() {
		return rp.Finished
	}
	return rp.Started
}

// ApplyRetention decides, for one group of recovery points, which to keep
// under p at time now. It is a pure function. The result is newest first. An
// empty policy keeps everything.
func ApplyRetention(points []*RecoveryPoint, p RetentionPolicy, now time.Time) []RetentionDecision {
	sorted := append([]*RecoveryPoint(nil), points...)
	sort.SliceStable(sorted, func(i, j int) bool {
		ti, tj := pointTime(sorted[i]), pointTime(sorted[j])
		if !ti.Equal(tj) {
			return ti.After(tj)
		}
		return sorted[i].ID.String() > sorted[j].ID.String()
	})
	out := make([]RetentionDecision, len(sorted))
	for i, rp := range sorted {
		out[i] = RetentionDecision{RecoveryPoint: rp, ID: rp.ID}
	}
	if p.Empty() {
		for i := range out {
			out[i].Keep = true
			out[i].Reasons = []string{"no policy"}
		}
		return out
	}
	type bucketRule struct {
		name   string
		n      int
		period calendar.Period
	}
	rules := []bucketRule{
		{"hourly", p.KeepHourly, calendar.Hour},
		{"daily", p.KeepDaily, calendar.Day},
		{"weekly", p.KeepWeekly, calendar.Week},
		{"monthly", p.KeepMonthly, calendar.Month},
		{"yearly", p.KeepYearly, calendar.Year},
	}
	keep := func(i int, reason string) {
		out[i].Keep = true
		out[i].Reasons = append(out[i].Reasons, reason)
	}
	for i := range out {
		if i < p.KeepLast {
			keep(i, "last")
		}
		if p.KeepWithin > 0 && now.Sub(pointTime(out[i].RecoveryPoint)) <= p.KeepWithin {
			keep(i, "within "+p.KeepWithin.String())
		}
	}
	for _, rule := range rules {
		if rule.n <= 0 {
			continue
		}
		last, kept := "", 0
		for i := range out {
			if kept >= rule.n {
				break
			}
			k := rule.period.Key(pointTime(out[i].RecoveryPoint))
			if k != last {
				keep(i, rule.name)
				last = k
				kept++
			}
		}
	}
	if len(out) > 0 && !out[0].Keep {
		keep(0, "newest")
	}
	return out
}

// GroupFunc names the group a recovery point belongs to for retention: the
// keep rules count within each group.
type GroupFunc func(*RecoveryPoint) string

// GroupByTags groups recovery points by the values of the given tags — for
// Arca's points the vault and the backup instance
// (api/v1alpha1.TagVault, TagInstance), so that two instances backing up
// the same cluster each keep their own N points. A point that carries none
// of the tags (a plain `arca local backup`) is grouped by its source
// cluster.
func GroupByTags(tags ...string) GroupFunc {
	return func(rp *RecoveryPoint) string {
		var b strings.Builder
		found := false
		for _, t := range tags {
			v, ok := rp.Tags[t]
			found = found || ok
			fmt.Fprintf(&b, "%s=%s,", t, v)
		}
		if !found {
			return "cluster=" + rp.Source.Cluster
		}
		return strings.TrimSuffix(b.String(), ",")
	}
}

// Forget removes the manifests of the given recovery points. Their data
// stays until Prune. A manifest the storage still retains (object lock) is
// left: Forget goes on with the others and then returns a
// *PointsRetainedError naming those left.
func (r *Repository) Forget(ctx context.Context, ids []ID) error {
	var kept PointsRetainedError
	for _, id := range ids {
		err := r.be.Remove(ctx, storage.Handle{Type: storage.RecoveryPointFile, Name: id.String()})
		var re *storage.RetainedError
		if errors.As(err, &re) {
			kept.IDs = append(kept.IDs, id)
			if re.Until.After(kept.Until) {
				kept.Until = re.Until
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("forget %s: %w", id.Short(), err)
		}
	}
	if len(kept.IDs) > 0 {
		return &kept
	}
	return nil
}

// PointsRetainedError: Forget left recovery points whose manifests the
// storage retains (S3 Object Lock) until Until; forgetting them again after
// that date works. It matches storage.ErrRetained.
type PointsRetainedError struct {
	IDs   []ID
	Until time.Time
}

func (e *PointsRetainedError) Error() string {
	names := make([]string, 0, min(len(e.IDs), 5))
	for _, id := range e.IDs[:min(len(e.IDs), 5)] {
		names = append(names, id.Short())
	}
	more := ""
	if len(e.IDs) > 5 {
		more = fmt.Sprintf(" and %d more", len(e.IDs)-5)
	}
	return fmt.Sprintf("%d recovery points not forgotten (%s%s): the storage's object lock retains them until %s; forget them after that date",
		len(e.IDs), strings.Join(names, ", "), more, e.Until.UTC().Format(time.RFC3339))
}

func (e *PointsRetainedError) Is(target error) bool { return target == storage.ErrRetained }

// ForgetByPolicy applies p to every group of recovery points (as group
// names them; GroupByTags) and, unless dryRun, forgets those not kept. It
// returns all decisions.
func (r *Repository) ForgetByPolicy(ctx context.Context, p RetentionPolicy, group GroupFunc, dryRun bool) ([]RetentionDecision, error) {
	if p.Empty() {
		return nil, fmt.Errorf("empty retention policy: give at least one keep rule")
	}
	if group == nil {
		return nil, fmt.Errorf("forget by policy: no grouping given (use repo.GroupByTags)")
	}
	rps, err := r.ListRecoveryPoints(ctx)
	if err != nil {
		return nil, err
	}
	groups := map[string][]*RecoveryPoint{}
	var keys []string
	for _, rp := range rps {
		k := group(rp)
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], rp)
	}
	sort.Strings(keys)
	now := r.opts.clock.Now()
	var all []RetentionDecision
	var forget []ID
	for _, k := range keys {
		for _, d := range ApplyRetention(groups[k], p, now) {
			d.Group = k
			all = append(all, d)
			if !d.Keep {
				forget = append(forget, d.ID)
			}
		}
	}
	if dryRun {
		return all, nil
	}
	return all, r.Forget(ctx, forget)
}
