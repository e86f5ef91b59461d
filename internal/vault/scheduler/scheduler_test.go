package scheduler_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/scheduler"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

const fourHourly = "R/2026-01-01T00:00:00Z/PT4H"

var (
	ctx   = context.Background()
	begin = time.Date(2025, 12, 31, 23, 0, 0, 0, time.UTC)
	// Three simulated days: 2026-01-01T00:00 up to, not including, 01-04T00:00.
	end = time.Date(2026, 1, 3, 23, 59, 0, 0, time.UTC)
)

// opener returns handles on one database; each call is a new "process".
type opener func(t *testing.T) store.Store

func sqliteOpener(t *testing.T) opener {
	path := filepath.Join(t.TempDir(), "vault.db")
	return func(t *testing.T) store.Store {
		s, err := sqlite.Open(ctx, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

func arm(t *testing.T, s store.Store, instance string, now time.Time) {
	t.Helper()
	if _, err := scheduler.Arm(ctx, s, "v", instance, fourHourly, now); err != nil {
		t.Fatal(err)
	}
}

func scheduledJobs(t *testing.T, s store.Store) []*store.Job {
	t.Helper()
	jobs, err := s.ListJobs(ctx, store.JobFilter{Vault: "v", Type: store.JobScheduledBackup})
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

// checkSlots asserts exactly one job per 4-hour slot of the three days.
func checkSlots(t *testing.T, jobs []*store.Job) {
	t.Helper()
	if len(jobs) != 18 {
		t.Fatalf("%d jobs over 3 days of a 4-hourly policy, want 18", len(jobs))
	}
	seen := map[time.Time]int{}
	for _, j := range jobs {
		seen[j.TriggerTime.UTC()]++
	}
	for slot := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC); slot.Before(end); slot = slot.Add(4 * time.Hour) {
		if seen[slot] != 1 {
			t.Errorf("slot %s has %d jobs, want 1", slot.Format(time.RFC3339), seen[slot])
		}
	}
}

func simulate(t *testing.T, from, to time.Time, clk *clock.Fake, scheds ...*scheduler.Scheduler) {
	t.Helper()
	for now := from; !now.After(to); now = now.Add(5 * time.Minute) {
		clk.Set(now)
		var wg sync.WaitGroup
		for _, s := range scheds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.Tick(ctx); err != nil {
					t.Errorf("tick at %s: %v", now, err)
				}
			}()
		}
		wg.Wait()
	}
}

func testThreeDays(t *testing.T, open opener) {
	s := open(t)
	clk := clock.NewFake(begin)
	arm(t, s, "i1", begin)
	simulate(t, begin, end, clk, &scheduler.Scheduler{Store: s, Clock: clk})
	checkSlots(t, scheduledJobs(t, s))
}

func testRestart(t *testing.T, open opener) {
	s := open(t)
	clk := clock.NewFake(begin)
	arm(t, s, "i1", begin)
	mid := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC) // exactly on a slot
	simulate(t, begin, mid, clk, &scheduler.Scheduler{Store: s, Clock: clk})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A new process: new store handle, new scheduler, same database. It
	// ticks again at the instant the old one last ticked.
	s2 := open(t)
	simulate(t, mid, end, clk, &scheduler.Scheduler{Store: s2, Clock: clk})
	checkSlots(t, scheduledJobs(t, s2))
}

func testTwoReplicas(t *testing.T, open opener) {
	a, b := open(t), open(t)
	clk := clock.NewFake(begin)
	arm(t, a, "i1", begin)
	arm(t, a, "i2", begin)
	simulate(t, begin, end, clk, &scheduler.Scheduler{Store: a, Clock: clk}, &scheduler.Scheduler{Store: b, Clock: clk})
	jobs := scheduledJobs(t, a)
	if len(jobs) != 36 {
		t.Fatalf("two instances, two replicas: %d jobs, want 36", len(jobs))
	}
	per := map[string][]*store.Job{}
	for _, j := range jobs {
		per[j.Instance] = append(per[j.Instance], j)
	}
	checkSlots(t, per["i1"])
	checkSlots(t, per["i2"])
}

func testMissedWindows(t *testing.T, open opener) {
	s := open(t)
	clk := clock.NewFake(begin)
	arm(t, s, "i1", begin)
	sch := &scheduler.Scheduler{Store: s, Clock: clk}
	// Down from 23:00 until 13:30 the next day: slots 00, 04, 08, 12 missed.
	clk.Set(time.Date(2026, 1, 1, 13, 30, 0, 0, time.UTC))
	for i := 0; i < 3; i++ {
		if _, err := sch.Tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	jobs := scheduledJobs(t, s)
	if len(jobs) != 1 {
		t.Fatalf("missed windows produced %d jobs, want 1", len(jobs))
	}
	if len(jobs[0].Warnings) != 1 || jobs[0].Warnings[0].Code != "MissedWindows" {
		t.Fatalf("warnings: %+v", jobs[0].Warnings)
	}
	tr, err := s.GetTrigger(ctx, "v", "i1")
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 1, 1, 16, 0, 0, 0, time.UTC); !tr.NextRun.Equal(want) {
		t.Fatalf("next run %s, want %s", tr.NextRun, want)
	}
}

// A slot claimed on time raises no event; after the scheduler was down
// across later slots, the one job it queues comes with one
// schedule-missed event naming the instance and the job.
func testMissedScheduleNotified(t *testing.T, open opener) {
	s := open(t)
	clk := clock.NewFake(begin)
	arm(t, s, "i1", begin)
	var events []store.Event
	sch := &scheduler.Scheduler{Store: s, Clock: clk, Notify: func(_ context.Context, e store.Event) { events = append(events, e) }}
	clk.Set(time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC))
	if _, err := sch.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if len(events) != 0 {
		t.Fatalf("an on-time slot raised %+v", events)
	}
	clk.Set(time.Date(2026, 1, 1, 13, 30, 0, 0, time.UTC)) // 04, 08 and 12 passed
	js, err := sch.Tick(ctx)
	if err != nil || len(js) != 1 {
		t.Fatal(js, err)
	}
	if len(events) != 1 || events[0].Type != store.EventScheduleMissed || events[0].Instance != "i1" || events[0].Job != js[0].ID ||
		!strings.Contains(events[0].Message, "2 later window(s)") {
		t.Fatalf("events: %+v", events)
	}
}

func testJitter(t *testing.T, open opener) {
	s := open(t)
	clk := clock.NewFake(begin)
	sch := &scheduler.Scheduler{Store: s, Clock: clk, Jitter: 20 * time.Minute}
	offsets := map[string]time.Duration{}
	for _, in := range []string{"a", "b", "c", "d", "e"} {
		arm(t, s, in, begin)
		off := sch.Offset("v", in)
		if off < 0 || off >= 20*time.Minute || off != sch.Offset("v", in) {
			t.Fatalf("offset %v out of range or unstable", off)
		}
		offsets[in] = off
	}
	slot := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for m := 0; m <= 20; m++ {
		clk.Set(slot.Add(time.Duration(m) * time.Minute))
		created, err := sch.Tick(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range created {
			if got := clk.Now().Sub(slot); got < offsets[j.Instance] || got > offsets[j.Instance]+time.Minute {
				t.Errorf("instance %s started %v after the slot, offset %v", j.Instance, got, offsets[j.Instance])
			}
		}
	}
	if n := len(scheduledJobs(t, s)); n != 5 {
		t.Fatalf("%d jobs, want one per instance", n)
	}
}

func runAll(t *testing.T, mk func(t *testing.T) opener) {
	for name, fn := range map[string]func(*testing.T, opener){
		"ThreeDays18Jobs": testThreeDays, "RestartDuplicatesNone": testRestart, "TwoReplicasNoDuplicates": testTwoReplicas,
		"MissedWindowsRunOnce": testMissedWindows, "Jitter": testJitter, "MissedScheduleNotified": testMissedScheduleNotified,
	} {
		t.Run(name, func(t *testing.T) { fn(t, mk(t)) })
	}
}

func TestSchedulerSQLite(t *testing.T) { runAll(t, sqliteOpener) }
