package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	ok := map[string]Duration{
		"P7D": {Days: 7}, "P4W": {Weeks: 4}, "P12M": {Months: 12}, "P1Y": {Years: 1}, "P1Y6M": {Years: 1, Months: 6},
	}
	for s, want := range ok {
		got, err := ParseDuration(s)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", s, got, err, want)
		}
		if got.String() != s {
			t.Errorf("String() = %q, want %q", got.String(), s)
		}
	}
	bad := map[string]string{
		"":           "not an ISO 8601 duration",
		"7D":         "not an ISO 8601 duration",
		"P":          "not an ISO 8601 duration",
		"PT4H":       "whole days",
		"P7":         "ISO 8601",
		"PD":         "ISO 8601",
		"P7X":        "unknown unit",
		"P1D1Y":      "in the order",
		"P0D":        "longer than zero",
		"P1D2D":      "once each",
		"P-1D":       "number before it",
		"P99999999D": "too large",
	}
	for s, want := range bad {
		_, err := ParseDuration(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseDuration(%q) error = %v, want mention of %q", s, err, want)
		}
	}
}

func TestDurationAdd(t *testing.T) {
	t0 := time.Date(2026, 1, 31, 2, 0, 0, 0, time.UTC)
	if got := (Duration{Months: 1}).AddTo(t0); !got.Equal(time.Date(2026, 3, 3, 2, 0, 0, 0, time.UTC)) {
		t.Fatalf("P1M from Jan 31 = %v", got)
	}
	if got := (Duration{Weeks: 4}).AddTo(t0); !got.Equal(t0.Add(28 * 24 * time.Hour)) {
		t.Fatalf("P4W = %v", got)
	}
}

func TestInterval(t *testing.T) {
	s, err := ParseSchedule("R/2026-01-01T02:00:00Z/PT4H")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ after, want string }{
		{"2025-12-31T00:00:00Z", "2026-01-01T02:00:00Z"}, // before start: the start
		{"2026-01-01T02:00:00Z", "2026-01-01T06:00:00Z"}, // strictly after
		{"2026-01-01T05:59:59Z", "2026-01-01T06:00:00Z"},
		{"2026-03-10T23:00:00Z", "2026-03-11T02:00:00Z"},
	}
	for _, c := range cases {
		after, _ := time.Parse(time.RFC3339, c.after)
		if got := s.Next(after).UTC().Format(time.RFC3339); got != c.want {
			t.Errorf("Next(%s) = %s, want %s", c.after, got, c.want)
		}
	}
	bounded, err := ParseSchedule("R2/2026-01-01T00:00:00+02:00/P1D")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2025, 12, 31, 22, 0, 0, 0, time.UTC)
	if n := bounded.Next(start.Add(-time.Hour)); !n.Equal(start) {
		t.Fatalf("offset start: %v", n)
	}
	if n := bounded.Next(start.Add(24 * time.Hour)); !n.IsZero() {
		t.Fatalf("R2 must stop after two runs, got %v", n)
	}
	for _, p := range []string{"PT1H", "PT6H", "PT24H", "P1D"} {
		if _, err := ParseSchedule("R/2026-01-01T00:00:00Z/" + p); err != nil {
			t.Errorf("%s rejected: %v", p, err)
		}
	}
	bad := map[string]string{
		"R/2026-01-01T00:00:00Z/PT30M": "allowed intervals",
		"R/2026-01-01T00:00:00Z/PT25H": "allowed intervals",
		"R/2026-01-01T00:00:00Z/PT0H":  "allowed intervals",
		"R/2026-01-01T00:00:00Z/P2D":   "allowed intervals",
		"R/2026-01-01T00:00:00Z/P1W":   "allowed intervals",
		"R/2026-01-01/PT4H":            "RFC 3339",
		"R/2026-01-01T00:00:00/PT4H":   "RFC 3339",
		"R0/2026-01-01T00:00:00Z/PT4H": "repetition",
		"R/PT4H":                       "repeating interval",
		"":                             "required",
	}
	for s, want := range bad {
		_, err := ParseSchedule(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSchedule(%q) error = %v, want mention of %q", s, err, want)
		}
	}
}

func TestCron(t *testing.T) {
	cases := []struct{ expr, after, want string }{
		{"0 2 * * *", "2026-01-01T02:00:00Z", "2026-01-02T02:00:00Z"},
		{"30 */6 * * *", "2026-01-01T06:30:00Z", "2026-01-01T12:30:00Z"},
		{"0 1 * * MON", "2026-01-01T00:00:00Z", "2026-01-05T01:00:00Z"}, // Jan 1 2026 is a Thursday
		{"0 1 * * 7", "2026-01-01T00:00:00Z", "2026-01-04T01:00:00Z"},   // 7 = Sunday
		{"0 0 1 JAN-MAR *", "2026-03-02T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"0 0 29 2 *", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z"},
		{"0 3 1 * 5", "2026-01-01T00:00:00Z", "2026-01-01T03:00:00Z"},  // dom OR dow: the 1st
		{"0 3 13 * 5", "2026-01-03T00:00:00Z", "2026-01-09T03:00:00Z"}, // a Friday before the 13th
		{"0 9-17/4 * * 1-5", "2026-01-05T09:00:00Z", "2026-01-05T13:00:00Z"},
		{"5 5/10 * * *", "2026-01-01T05:05:00Z", "2026-01-01T15:05:00Z"},
	}
	for _, c := range cases {
		s, err := ParseSchedule(c.expr)
		if err != nil {
			t.Errorf("%q: %v", c.expr, err)
			continue
		}
		after, _ := time.Parse(time.RFC3339, c.after)
		if got := s.Next(after).Format(time.RFC3339); got != c.want {
			t.Errorf("%q Next(%s) = %s, want %s", c.expr, c.after, got, c.want)
		}
	}
	bad := map[string]string{
		"0 2 * *":      "5 fields",
		"*/15 * * * *": "one minute",
		"0,30 * * * *": "one minute",
		"60 * * * *":   "outside 0-59",
		"0 24 * * *":   "outside 0-23",
		"0 0 0 * *":    "outside 1-31",
		"0 0 * 13 *":   "outside 1-12",
		"0 0 * * 8":    "outside 0-7",
		"0 0 * * FOO":  "not a number",
		"0 5-2 * * *":  "after its end",
		"0 */0 * * *":  "step",
		"0 0 31 2 *":   "never matches",
	}
	for s, want := range bad {
		_, err := ParseSchedule(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSchedule(%q) error = %v, want mention of %q", s, err, want)
		}
	}
}

func rule(d, ds string) *RuleSpec { return &RuleSpec{Duration: d, Datastore: ds} }

func TestParsePolicy(t *testing.T) {
	p, err := Parse(Spec{Schedule: "R/2026-01-01T00:00:00Z/PT4H", Retention: RetentionSpec{
		Default: rule("P7D", ""), Daily: rule("P30D", "operational"), Weekly: rule("P12W", "vault"), Yearly: rule("P10Y", "vault"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, r := range p.Rules {
		order = append(order, r.Name+":"+r.Datastore)
	}
	if got := strings.Join(order, ","); got != "yearly:vault,weekly:vault,daily:operational,default:operational" {
		t.Fatalf("rules in priority order: %s", got)
	}

	_, err = Parse(Spec{Schedule: "R/2026-01-01T00:00:00Z/PT2M", Retention: RetentionSpec{
		Daily: rule("P7", "tape"), Monthly: rule("P11Y", ""), Default: nil,
	}})
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %v", err)
	}
	fields := map[string]string{}
	for _, f := range ve.Fields {
		fields[f.Field] = f.Reason
	}
	for field, want := range map[string]string{
		"schedule":                   "allowed intervals",
		"retention.default":          "required",
		"retention.daily.datastore":  `"operational" or "vault"`,
		"retention.daily.duration":   "ISO 8601",
		"retention.monthly.duration": "between P1D and P10Y",
	} {
		if !strings.Contains(fields[field], want) {
			t.Errorf("field %s: reason %q, want mention of %q (all: %v)", field, fields[field], want, fields)
		}
	}
	_, err = Parse(Spec{Schedule: "0 2 * * *", Retention: RetentionSpec{Default: rule("P7D", "vault")}})
	if err == nil || !strings.Contains(err.Error(), "default rule must use the operational datastore") {
		t.Fatalf("default on vault tier: %v", err)
	}
}
