// Package policy parses and validates backup policies: the schedule (an
// ISO 8601 repeating interval or a 5-field cron expression), ISO 8601
// retention durations, and the retention rules (default plus optional
// first-successful-backup-of day/week/month/year rules).
//
// Every error names the field and the offending value and says what is
// accepted, so the API can return it to the user unchanged.
package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// FieldError is one validation failure.
type FieldError struct {
	Field  string `json:"field"`
	Value  string `json:"value,omitempty"`
	Reason string `json:"reason"`
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Reason)
}

// ValidationError collects every failure of one policy.
type ValidationError struct{ Fields []*FieldError }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Error()
	}
	return "invalid policy: " + strings.Join(parts, "; ")
}

// Datastores.
const (
	Operational = "operational"
	VaultStore  = "vault"
)

// Rule names in ascending priority.
const (
	RuleDefault = "default"
	RuleDaily   = "daily"
	RuleWeekly  = "weekly"
	RuleMonthly = "monthly"
	RuleYearly  = "yearly"
)

// RuleSpec is one retention rule as written by users.
type RuleSpec struct {
	Duration  string `json:"duration"`
	Datastore string `json:"datastore,omitempty"` // default: operational
}

// RetentionSpec is the retention section of a policy as written by users
// (and stored by the vault).
type RetentionSpec struct {
	Default *RuleSpec `json:"default"`
	Daily   *RuleSpec `json:"daily,omitempty"`
	Weekly  *RuleSpec `json:"weekly,omitempty"`
	Monthly *RuleSpec `json:"monthly,omitempty"`
	Yearly  *RuleSpec `json:"yearly,omitempty"`
}

// Spec is a policy as written by users.
type Spec struct {
	Schedule  string        `json:"schedule"`
	Retention RetentionSpec `json:"retention"`
}

// Rule is a validated retention rule.
type Rule struct {
	Name      string
	Duration  Duration
	Datastore string
}

// Policy is a validated policy.
type Policy struct {
	Schedule Schedule
	// Rules in descending priority: yearly, monthly, weekly, daily (those
	// configured), then default last.
	Rules []Rule
}

// Default returns the default rule.
func (p *Policy) Default() Rule { return p.Rules[len(p.Rules)-1] }

// Limits on retention durations: at least a day (the smallest period a
// first-of rule distinguishes), at most ten years.
var (
	MinRetention = Duration{Days: 1}
	MaxRetention = Duration{Years: 10}
)

// Parse validates a policy spec, reporting every problem at once.
func Parse(s Spec) (*Policy, error) {
	var errs []*FieldError
	p := &Policy{}
	sch, err := ParseSchedule(s.Schedule)
	if err != nil {
		errs = append(errs, asField(err, "schedule", s.Schedule))
	}
	p.Schedule = sch
	type named struct {
		name string
		spec *RuleSpec
	}
	for _, r := range []named{{RuleYearly, s.Retention.Yearly}, {RuleMonthly, s.Retention.Monthly},
		{RuleWeekly, s.Retention.Weekly}, {RuleDaily, s.Retention.Daily}, {RuleDefault, s.Retention.Default}} {
		field := "retention." + r.name
		if r.spec == nil {
			if r.name == RuleDefault {
				errs = append(errs, &FieldError{Field: field, Reason: "required: every policy needs a default retention rule, e.g. P7D"})
			}
			continue
		}
		rule, ferrs := parseRule(field, r.name, *r.spec)
		errs = append(errs, ferrs...)
		p.Rules = append(p.Rules, rule)
	}
	if len(errs) > 0 {
		return nil, &ValidationError{Fields: errs}
	}
	return p, nil
}

// ParseJSON decodes and validates a policy from its schedule and the JSON
// of its retention section, as the store keeps them.
func ParseJSON(schedule string, retention []byte) (*Policy, error) {
	var r RetentionSpec
	if err := json.Unmarshal(retention, &r); err != nil {
		return nil, &ValidationError{Fields: []*FieldError{{Field: "retention", Reason: "not valid JSON: " + err.Error()}}}
	}
	return Parse(Spec{Schedule: schedule, Retention: r})
}

func parseRule(field, name string, s RuleSpec) (Rule, []*FieldError) {
	var errs []*FieldError
	r := Rule{Name: name, Datastore: s.Datastore}
	if r.Datastore == "" {
		r.Datastore = Operational
	}
	switch r.Datastore {
	case Operational:
	case VaultStore:
		// As in Azure Backup, the vault tier takes at most one recovery
		// point per day: only first-of rules may target it.
		if name == RuleDefault {
			errs = append(errs, &FieldError{Field: field + ".datastore", Value: s.Datastore,
				Reason: "the default rule must use the operational datastore; only daily, weekly, monthly and yearly rules may target the vault datastore"})
		}
	default:
		errs = append(errs, &FieldError{Field: field + ".datastore", Value: s.Datastore, Reason: `must be "operational" or "vault"`})
	}
	d, err := ParseDuration(s.Duration)
	if err != nil {
		errs = append(errs, asField(err, field+".duration", s.Duration))
	} else if d.Less(MinRetention) || MaxRetention.Less(d) {
		errs = append(errs, &FieldError{Field: field + ".duration", Value: s.Duration, Reason: "must be between P1D and P10Y"})
	}
	r.Duration = d
	return r, errs
}

func asField(err error, field, value string) *FieldError {
	var fe *FieldError
	if errors.As(err, &fe) {
		return &FieldError{Field: field, Value: value, Reason: fe.Reason}
	}
	return &FieldError{Field: field, Value: value, Reason: err.Error()}
}

// Duration is an ISO 8601 duration in calendar units (PnYnMnWnD). Adding it
// uses calendar arithmetic: P1M from 31 January is 3 March, like
// time.AddDate.
type Duration struct{ Years, Months, Weeks, Days int }

// ParseDuration parses P followed by one or more of nY, nM, nW, nD in that
// order, e.g. P7D, P4W, P12M, P1Y, P1Y6M. Time components (PT…) are not
// accepted: retention is counted in days.
func ParseDuration(s string) (Duration, error) {
	var d Duration
	if !strings.HasPrefix(s, "P") || len(s) < 3 {
		return d, &FieldError{Reason: "not an ISO 8601 duration: want P followed by a number and a unit Y, M, W or D, e.g. P7D"}
	}
	if strings.Contains(s, "T") {
		return d, &FieldError{Reason: "retention durations are whole days or longer: use D, W, M or Y units, not a time part (PT…)"}
	}
	rest := s[1:]
	order := "YMWD"
	last := -1
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) {
			return Duration{}, &FieldError{Reason: "not an ISO 8601 duration: each unit needs a number before it, e.g. P4W"}
		}
		if i > 5 {
			return Duration{}, &FieldError{Reason: "number too large"}
		}
		n := 0
		for _, c := range rest[:i] {
			n = n*10 + int(c-'0')
		}
		u := strings.IndexByte(order, rest[i])
		if u < 0 {
			return Duration{}, &FieldError{Reason: fmt.Sprintf("unknown unit %q: use Y, M, W or D", rest[i])}
		}
		if u <= last {
			return Duration{}, &FieldError{Reason: "units must appear once each, in the order Y, M, W, D"}
		}
		last = u
		switch rest[i] {
		case 'Y':
			d.Years = n
		case 'M':
			d.Months = n
		case 'W':
			d.Weeks = n
		case 'D':
			d.Days = n
		}
		rest = rest[i+1:]
	}
	if d == (Duration{}) {
		return d, &FieldError{Reason: "duration must be longer than zero"}
	}
	return d, nil
}

// AddTo returns t + d in t's location.
func (d Duration) AddTo(t time.Time) time.Time {
	return t.AddDate(d.Years, d.Months, d.Weeks*7+d.Days)
}

// Less compares by the length from a fixed reference date; good enough to
// check limits (a month counts as the January of 2001's 31 days at most).
func (d Duration) Less(o Duration) bool {
	ref := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	return d.AddTo(ref).Before(o.AddTo(ref))
}

func (d Duration) String() string {
	var b strings.Builder
	b.WriteByte('P')
	for _, x := range []struct {
		n int
		u byte
	}{{d.Years, 'Y'}, {d.Months, 'M'}, {d.Weeks, 'W'}, {d.Days, 'D'}} {
		if x.n != 0 {
			fmt.Fprintf(&b, "%d%c", x.n, x.u)
		}
	}
	if b.Len() == 1 {
		return "P0D"
	}
	return b.String()
}

// MarshalText makes Duration print as its ISO 8601 form.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
