package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule yields the nominal run times of a policy.
type Schedule interface {
	// Next returns the first run time strictly after t, or the zero time
	// when the schedule has no more runs.
	Next(t time.Time) time.Time
	String() string
}

// ParseSchedule accepts an ISO 8601 repeating interval (R/<start>/<period>
// or Rn/<start>/<period>) or a 5-field cron expression.
func ParseSchedule(s string) (Schedule, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, &FieldError{Reason: "required: an ISO 8601 repeating interval such as R/2026-01-01T02:00:00Z/PT4H, or a cron expression such as \"0 2 * * *\""}
	}
	// A typed nil in the interface would look like a schedule to callers
	// that test the result for nil, so errors return a plain nil.
	if strings.HasPrefix(s, "R") {
		iv, err := ParseInterval(s)
		if err != nil {
			return nil, err
		}
		return iv, nil
	}
	c, err := ParseCron(s)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Interval is an ISO 8601 repeating interval: runs at Start + k·Period.
type Interval struct {
	Start  time.Time
	Period time.Duration
	Count  int // 0: unbounded (R/…); n: n runs (Rn/…)
	text   string
}

// ParseInterval parses R[n]/<RFC 3339 start>/<period>. The period must be a
// whole number of hours from 1 to 24 (PT1H … PT24H) or P1D: backups more
// often than hourly are not supported, less often than daily are expressed
// by retention, not schedule.
func ParseInterval(s string) (*Interval, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return nil, &FieldError{Reason: "not an ISO 8601 repeating interval: want R/<start>/<period>, e.g. R/2026-01-01T02:00:00Z/PT4H"}
	}
	iv := &Interval{text: s}
	if parts[0] != "R" {
		n, err := strconv.Atoi(parts[0][1:])
		if err != nil || n < 1 {
			return nil, &FieldError{Reason: fmt.Sprintf("repetition %q: want R (unbounded) or Rn with n ≥ 1", parts[0])}
		}
		iv.Count = n
	}
	start, err := time.Parse(time.RFC3339, parts[1])
	if err != nil {
		return nil, &FieldError{Reason: fmt.Sprintf("start %q: want an RFC 3339 date-time with offset, e.g. 2026-01-01T02:00:00Z", parts[1])}
	}
	iv.Start = start
	p, err := parsePeriod(parts[2])
	if err != nil {
		return nil, err
	}
	iv.Period = p
	return iv, nil
}

func parsePeriod(p string) (time.Duration, error) {
	bad := &FieldError{Reason: fmt.Sprintf("period %q: allowed intervals are PT1H to PT24H in whole hours, or P1D", p)}
	if p == "P1D" {
		return 24 * time.Hour, nil
	}
	if !strings.HasPrefix(p, "PT") || !strings.HasSuffix(p, "H") {
		return 0, bad
	}
	n, err := strconv.Atoi(p[2 : len(p)-1])
	if err != nil || n < 1 || n > 24 || p[2] == '0' || p[2] == '+' {
		return 0, bad
	}
	return time.Duration(n) * time.Hour, nil
}

// Next returns the first Start + k·Period strictly after t. It counts in
// whole seconds (periods are whole hours), not time.Duration, which
// saturates past 292 years: a start in year 0000 is valid RFC 3339.
func (iv *Interval) Next(t time.Time) time.Time {
	period := int64(iv.Period / time.Second)
	var k int64
	if !t.Before(iv.Start) {
		elapsed := t.Unix() - iv.Start.Unix() // whole seconds, rounded down below
		if t.Nanosecond() < iv.Start.Nanosecond() {
			elapsed--
		}
		k = elapsed/period + 1
	}
	if iv.Count > 0 && k >= int64(iv.Count) {
		return time.Time{}
	}
	return time.Unix(iv.Start.Unix()+k*period, int64(iv.Start.Nanosecond())).In(iv.Start.Location())
}

func (iv *Interval) String() string { return iv.text }

// Cron is a 5-field cron expression evaluated in UTC: minute hour
// day-of-month month day-of-week. Fields take *, numbers, ranges a-b,
// steps */n and a-b/n, comma lists, and month (JAN–DEC) and weekday
// (SUN–SAT) names; weekday 7 is Sunday too. As in Vixie cron, when both
// day-of-month and day-of-week are restricted, a day matching either runs.
type Cron struct {
	minute, hour, dom, month, dow uint64 // bit sets
	domStar, dowStar              bool
	text                          string
}

var monthNames = []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}
var dayNames = []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}

// ParseCron parses a 5-field expression. Because the vault backs up at most
// hourly, the minute field must be a single minute.
func ParseCron(s string) (*Cron, error) {
	f := strings.Fields(s)
	if len(f) != 5 {
		return nil, &FieldError{Reason: fmt.Sprintf("cron expression needs 5 fields (minute hour day-of-month month day-of-week), got %d", len(f))}
	}
	c := &Cron{text: s}
	var err error
	if c.minute, err = cronField(f[0], "minute", 0, 59, nil); err != nil {
		return nil, err
	}
	if popcount(c.minute) != 1 {
		return nil, &FieldError{Reason: fmt.Sprintf("minute field %q: must be one minute (e.g. 0); backups run at most hourly", f[0])}
	}
	if c.hour, err = cronField(f[1], "hour", 0, 23, nil); err != nil {
		return nil, err
	}
	if c.dom, err = cronField(f[2], "day-of-month", 1, 31, nil); err != nil {
		return nil, err
	}
	if c.month, err = cronField(f[3], "month", 1, 12, monthNames); err != nil {
		return nil, err
	}
	if c.dow, err = cronField(f[4], "day-of-week", 0, 7, dayNames); err != nil {
		return nil, err
	}
	if c.dow&(1<<7) != 0 { // 7 is Sunday
		c.dow |= 1
	}
	c.domStar, c.dowStar = f[2] == "*", f[4] == "*"
	if c.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, &FieldError{Reason: "cron expression never matches a real date"}
	}
	return c, nil
}

func popcount(x uint64) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

func cronField(s, name string, lo, hi int, names []string) (uint64, error) {
	var set uint64
	for _, part := range strings.Split(s, ",") {
		bad := func(why string) error {
			return &FieldError{Reason: fmt.Sprintf("%s field %q: %s", name, part, why)}
		}
		rng, step := part, 1
		if i := strings.IndexByte(part, '/'); i >= 0 {
			n, err := strconv.Atoi(part[i+1:])
			if err != nil || n < 1 {
				return 0, bad("step must be a positive number")
			}
			rng, step = part[:i], n
		}
		a, b := lo, hi
		switch {
		case rng == "*":
		case strings.Contains(rng, "-"):
			x, y, _ := strings.Cut(rng, "-")
			var err error
			if a, err = cronValue(x, lo, hi, names); err != nil {
				return 0, bad(err.Error())
			}
			if b, err = cronValue(y, lo, hi, names); err != nil {
				return 0, bad(err.Error())
			}
			if a > b {
				return 0, bad("range start is after its end")
			}
		default:
			v, err := cronValue(rng, lo, hi, names)
			if err != nil {
				return 0, bad(err.Error())
			}
			a, b = v, v
			if step != 1 {
				b = hi // "5/15" means from 5 every 15
			}
		}
		for v := a; v <= b; v += step {
			set |= 1 << uint(v)
		}
	}
	return set, nil
}

func cronValue(s string, lo, hi int, names []string) (int, error) {
	for i, n := range names {
		if strings.EqualFold(s, n) {
			return i + lo, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if v < lo || v > hi {
		return 0, fmt.Errorf("%d is outside %d-%d", v, lo, hi)
	}
	return v, nil
}

func (c *Cron) dayMatches(t time.Time) bool {
	dom := c.dom&(1<<uint(t.Day())) != 0
	dow := c.dow&(1<<uint(t.Weekday())) != 0
	switch {
	case c.domStar && c.dowStar:
		return true
	case c.domStar:
		return dow
	case c.dowStar:
		return dom
	default:
		return dom || dow
	}
}

// Next returns the first matching minute strictly after t, in UTC; zero if
// none within five years (e.g. 31 February).
func (c *Cron) Next(t time.Time) time.Time {
	t = t.UTC().Truncate(time.Minute).Add(time.Minute)
	limit := t.AddDate(5, 0, 0)
	for t.Before(limit) {
		if c.month&(1<<uint(t.Month())) == 0 {
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if !c.dayMatches(t) {
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if c.hour&(1<<uint(t.Hour())) == 0 {
			t = t.Truncate(time.Hour).Add(time.Hour)
			continue
		}
		if c.minute&(1<<uint(t.Minute())) == 0 {
			t = t.Add(time.Minute)
			continue
		}
		return t
	}
	return time.Time{}
}

func (c *Cron) String() string { return c.text }
