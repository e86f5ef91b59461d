package calendar

import (
	"testing"
	"time"
)

func TestPeriods(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		p    Period
		a, b string
		same bool
	}{
		{Hour, "2026-12-01T10:00:00Z", "2026-12-01T10:59:59Z", true},
		{Hour, "2026-12-01T10:59:59Z", "2026-12-01T11:00:00Z", false},
		{Day, "2026-12-01T00:00:00Z", "2026-12-01T23:59:59Z", true},
		// Periods are in UTC: 23:30 at UTC-2 is the next UTC day.
		{Day, "2026-12-01T12:00:00Z", "2026-12-01T23:30:00-02:00", false},
		// ISO weeks run Monday to Sunday: Sunday 2026-11-29 and Monday
		// 2026-11-30 are in different weeks.
		{Week, "2026-11-29T12:00:00Z", "2026-11-30T12:00:00Z", false},
		{Week, "2026-11-30T00:00:00Z", "2026-12-06T23:59:59Z", true},
		// ISO week 1 of 2027 starts on Monday 2027-01-04; 2027-01-01 is in
		// week 53 of 2026.
		{Week, "2026-12-31T12:00:00Z", "2027-01-01T12:00:00Z", true},
		{Month, "2026-12-01T00:00:00Z", "2026-12-31T23:59:59Z", true},
		{Month, "2026-11-30T23:59:59Z", "2026-12-01T00:00:00Z", false},
		{Year, "2026-01-01T00:00:00Z", "2026-12-31T23:59:59Z", true},
		{Year, "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z", false},
	}
	for _, c := range cases {
		if got := c.p.Same(at(c.a), at(c.b)); got != c.same {
			t.Errorf("%s: Same(%s, %s) = %v, want %v (keys %s, %s)", c.p, c.a, c.b, got, c.same, c.p.Key(at(c.a)), c.p.Key(at(c.b)))
		}
	}
	if k := Week.Key(at("2027-01-01T12:00:00Z")); k != "2026-W53" {
		t.Errorf("week key of 2027-01-01 = %s, want 2026-W53", k)
	}
}
