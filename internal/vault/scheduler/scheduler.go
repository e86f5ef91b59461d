// Package scheduler turns due policy triggers into ScheduledBackup jobs,
// exactly once per slot.
//
// All state lives in the store: each protected instance has a trigger row
// holding its next nominal run time. A scheduler tick reads the due triggers
// and, for each, calls Store.ClaimTrigger, which in one transaction moves
// next_run from the value read to the next slot after now (UPDATE … WHERE
// next_run = <value read>) and inserts the job. A second scheduler (another
// replica, or this one after a restart) that read the same row finds
// next_run changed and creates nothing. The job also carries a unique
// dedup key (vault/instance@slot) as a second guard.
//
// A window missed while the vault was down runs once: the claim moves
// next_run to the first slot after now, skipping every missed one, and the
// job records how many it skipped as a MissedWindows warning.
package scheduler

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Never is stored as next_run of a trigger whose schedule has no more runs
// (a bounded Rn/… interval that is exhausted).
var Never = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// MaxJitter bounds the jitter: it must stay below the shortest allowed
// period (1h) so that a jittered run never passes the next slot.
const MaxJitter = 30 * time.Minute

// Scheduler creates ScheduledBackup jobs from due triggers.
type Scheduler struct {
	Store store.TriggerStore
	Clock clock.Clock
	// Jitter spreads instances that share a slot over [0, Jitter): each
	// instance gets a fixed offset derived from its name, identical on all
	// replicas. Capped at MaxJitter.
	Jitter time.Duration
	Log    *slog.Logger
	// OnJob, when set, is called for every job created (metrics).
	OnJob func(*store.Job)
	// Notify, when set, is told of missed schedules as schedule-missed
	// events: a slot claimed after later slots had passed, or more than
	// LateAfter after its time (the vault was down, or the scheduler not
	// running).
	Notify func(context.Context, store.Event)
	// LateAfter is how late a slot may start before it counts as missed
	// (zero: one hour).
	LateAfter time.Duration
}

// Offset returns the jitter offset of an instance.
func (s *Scheduler) Offset(vault, instance string) time.Duration {
	j := min(s.Jitter, MaxJitter)
	if j <= 0 {
		return 0
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%s", vault, instance)
	return time.Duration(h.Sum64() % uint64(j))
}

func (s *Scheduler) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// Tick creates the jobs due at the clock's current time and returns them.
func (s *Scheduler) Tick(ctx context.Context) ([]*store.Job, error) {
	now := s.Clock.Now().UTC()
	due, err := s.Store.DueTriggers(ctx, now)
	if err != nil {
		return nil, fmt.Errorf("list due triggers: %w", err)
	}
	var created []*store.Job
	for _, tr := range due {
		if tr.NextRun.Add(s.Offset(tr.Vault, tr.Instance)).After(now) {
			continue
		}
		sched, err := policy.ParseSchedule(tr.Schedule)
		if err != nil {
			// Policies are validated on write; a bad row is logged, not fatal.
			s.log().Error("trigger has an invalid schedule", "vault", tr.Vault, "instance", tr.Instance, "schedule", tr.Schedule, "err", err)
			continue
		}
		next, missed := nextAfter(sched, tr.NextRun, now)
		slot := tr.NextRun
		job := &store.Job{
			Vault:       tr.Vault,
			Type:        store.JobScheduledBackup,
			Instance:    tr.Instance,
			State:       store.JobQueued,
			TriggerTime: &slot,
			DedupKey:    fmt.Sprintf("%s/%s@%d", tr.Vault, tr.Instance, slot.Unix()),
		}
		if missed > 0 {
			job.Warnings = []store.Issue{{Code: "MissedWindows", Message: fmt.Sprintf(
				"%d later scheduled window(s) passed while the scheduler was not running; they run as this one job", missed)}}
		}
		ok, err := s.Store.ClaimTrigger(ctx, tr, next, job)
		if err != nil {
			return created, fmt.Errorf("claim trigger %s/%s: %w", tr.Vault, tr.Instance, err)
		}
		if !ok {
			continue // another scheduler took this slot
		}
		s.log().Info("scheduled backup queued", "vault", tr.Vault, "instance", tr.Instance, "job", job.ID, "slot", slot, "next", next)
		if s.OnJob != nil {
			s.OnJob(job)
		}
		lateAfter := s.LateAfter
		if lateAfter <= 0 {
			lateAfter = time.Hour
		}
		late := now.Sub(slot.Add(s.Offset(tr.Vault, tr.Instance)))
		if (missed > 0 || late > lateAfter) && s.Notify != nil {
			s.Notify(ctx, store.Event{Type: store.EventScheduleMissed, Vault: tr.Vault, Instance: tr.Instance, Job: job.ID, JobType: job.Type,
				Message: fmt.Sprintf("the scheduled backup of %s/%s due at %s started %s late, and %d later window(s) passed, while the scheduler was not running; they run as job %s",
					tr.Vault, tr.Instance, slot.Format(time.RFC3339), late.Round(time.Second), missed, job.ID), Issues: job.Warnings})
		}
		created = append(created, job)
	}
	return created, nil
}

// nextAfter returns the first slot strictly after now, and how many slots
// after the due one were skipped on the way (missed windows).
func nextAfter(sched policy.Schedule, due, now time.Time) (time.Time, int) {
	missed := 0
	next := sched.Next(due)
	for !next.IsZero() && !next.After(now) {
		missed++
		if missed > 100000 { // years of hourly slots: jump directly
			next = sched.Next(now)
			break
		}
		next = sched.Next(next)
	}
	if next.IsZero() {
		return Never, missed
	}
	return next, missed
}

// Run ticks every interval until ctx ends. Errors are logged; the next tick
// retries.
func (s *Scheduler) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			s.log().Error("scheduler tick", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Arm creates or replaces the trigger of an instance so that its next run
// is the first slot of schedule after now. Called when protection is
// configured or resumed and when the instance's policy changes.
func Arm(ctx context.Context, st store.TriggerStore, vault, instance, schedule string, now time.Time) (*store.Trigger, error) {
	sched, err := policy.ParseSchedule(schedule)
	if err != nil {
		return nil, err
	}
	next := sched.Next(now)
	if next.IsZero() {
		next = Never
	}
	tr := &store.Trigger{Vault: vault, Instance: instance, Schedule: schedule, NextRun: next}
	if err := st.PutTrigger(ctx, tr); err != nil {
		return nil, err
	}
	return tr, nil
}
