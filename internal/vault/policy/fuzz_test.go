package policy

import (
	"testing"
	"time"
)

// Policy schedules, durations and retention bodies come from API callers.
// The parsers must never panic, and what they accept must behave: a
// duration prints back to itself, a schedule moves forward in time.

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"P7D", "P4W", "P12M", "P1Y6M", "P1Y2M3W4D", "PT4H", "P", "P99999D", "P1D1D", "P-1D"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			if d != (Duration{}) {
				t.Fatalf("ParseDuration(%q) failed (%v) but returned %+v", s, err, d)
			}
			return
		}
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Fatalf("ParseDuration(%q) = %+v prints as %q, which parses to %+v, %v", s, d, d.String(), back, err)
		}
		base := time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC)
		if d != (Duration{}) && !d.AddTo(base).After(base) {
			t.Fatalf("duration %q does not move time forward", s)
		}
	})
}

func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{
		"R/2026-01-01T02:00:00Z/PT4H", "R3/2026-01-01T02:00:00+02:00/P1D", "R/2026-01-01T02:00:00Z/PT25H",
		"0 2 * * *", "*/15 * * * *", "0 0 29 2 *", "0 0 31 4 *", "5 4 * * sun", "0 0 1-7 * 1", "60 * * * *", "R0/x/y",
	} {
		f.Add(s)
	}
	base := time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		sch, err := ParseSchedule(s)
		if err != nil {
			if sch != nil {
				t.Fatalf("ParseSchedule(%q) failed (%v) but returned a schedule", s, err)
			}
			return
		}
		// A few steps from a fixed time: each run is strictly later than
		// the one before, or the schedule has ended.
		at := base
		for i := 0; i < 4; i++ {
			next := sch.Next(at)
			if next.IsZero() {
				return
			}
			if !next.After(at) {
				t.Fatalf("schedule %q: Next(%s) = %s, not later", s, at, next)
			}
			at = next
		}
	})
}

func FuzzParseJSON(f *testing.F) {
	f.Add("R/2026-01-01T02:00:00Z/PT4H", []byte(`{"default":{"duration":"P7D"},"weekly":{"duration":"P4W","datastore":"vault"}}`))
	f.Add("0 2 * * *", []byte(`{"default":{"duration":"P30D"},"monthly":{"duration":"P12M"},"yearly":{"duration":"P10Y","datastore":"vault"}}`))
	f.Add("0 2 * * *", []byte(`{"default":{}}`))
	f.Add("0 2 * * *", []byte(`null`))
	f.Fuzz(func(t *testing.T, schedule string, retention []byte) {
		p, err := ParseJSON(schedule, retention)
		if (p == nil) == (err == nil) {
			t.Fatalf("ParseJSON(%q, %q) = %v, %v: want exactly one of a policy and an error", schedule, retention, p, err)
		}
	})
}
