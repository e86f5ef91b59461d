// Package calendar names the calendar periods that retention counts in:
// hour, day, ISO week (Monday to Sunday), month and year, all in UTC.
//
// Arca has two retention concepts, and both bucket recovery points by these
// periods through this package (docs/design.md, "Retention"):
//   - the repository's keep-N rules (internal/repo, `arca repo forget
//     --keep-daily 7`): restic's count-based thinning of a repository that no
//     vault manages, decided afresh over all points each time it runs;
//   - the vault's Azure-style rules (internal/vault/retention): each
//     scheduled point is tagged once, when it is recorded, as the first of
//     its day, week, month or year, and expires after that rule's duration.
package calendar

import (
	"fmt"
	"time"
)

// Period is a calendar period.
type Period int

const (
	Hour Period = iota
	Day
	Week // ISO 8601 week: Monday to Sunday, numbered within its ISO year
	Month
	Year
)

func (p Period) String() string {
	switch p {
	case Hour:
		return "hour"
	case Day:
		return "day"
	case Week:
		return "week"
	case Month:
		return "month"
	case Year:
		return "year"
	}
	return fmt.Sprintf("period(%d)", int(p))
}

// Key names the period of kind p that contains t (in UTC): two times are in
// the same period exactly when their keys are equal.
func (p Period) Key(t time.Time) string {
	t = t.UTC()
	switch p {
	case Hour:
		return t.Format("2006-01-02T15")
	case Day:
		return t.Format("2006-01-02")
	case Week:
		y, w := t.ISOWeek()
		return fmt.Sprintf("%04d-W%02d", y, w)
	case Month:
		return t.Format("2006-01")
	case Year:
		return t.Format("2006")
	}
	panic(fmt.Sprintf("calendar: unknown period %d", int(p)))
}

// Same reports whether a and b fall in the same period of kind p.
func (p Period) Same(a, b time.Time) bool { return p.Key(a) == p.Key(b) }
