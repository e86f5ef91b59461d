package service

import (
	"errors"
	"fmt"

	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Kind classifies an operation's failure. The HTTP server maps each kind
// to one status code (server.StatusOf); other front ends (the CLI's
// local mode, the dashboard) map them their own way.
type Kind string

// The error kinds. Every *Error has one.
const (
	NotFound           Kind = "NotFound"           // the named record does not exist
	Conflict           Kind = "Conflict"           // the state forbids it now (in use, already stopped, concurrent change)
	PreconditionFailed Kind = "PreconditionFailed" // the caller's expected version is stale
	Invalid            Kind = "Invalid"            // bad input: Field names it, Fix says what to send
	Forbidden          Kind = "Forbidden"          // Action at Scope is not granted
	TooLarge           Kind = "TooLarge"           // the request is over a bound
	ChecksFailed       Kind = "ChecksFailed"       // prerequisite checks failed; Report holds them
	Unavailable        Kind = "Unavailable"        // this vault process cannot do it as configured (503)
	Internal           Kind = "Internal"           // anything unexpected
)

// Kinds lists every kind (tests check that each has a status).
func Kinds() []Kind {
	return []Kind{NotFound, Conflict, PreconditionFailed, Invalid, Forbidden, TooLarge, ChecksFailed, Unavailable, Internal}
}

// Error is the typed error of every operation.
type Error struct {
	Kind    Kind
	Code    string // stable machine-readable code, e.g. VaultNotEmpty
	Message string
	// Invalid: the field, the value sent and the fix.
	Field, Value, Fix string
	// Details, when set, lists several invalid fields (a policy).
	Details []*policy.FieldError
	// Forbidden: the action and scope that were not granted.
	Action, Scope string
	// ChecksFailed: the validation report.
	Report any
	Err    error // cause, if any
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func (e *Error) Unwrap() error { return e.Err }

// JobCode makes an *Error a job error with its code (a job the runner's
// re-check refuses fails with it).
func (e *Error) JobCode() string { return e.Code }

// Fields returns the invalid fields of an Invalid error.
func (e *Error) Fields() []*policy.FieldError {
	if len(e.Details) > 0 || e.Field == "" {
		return e.Details
	}
	return []*policy.FieldError{{Field: e.Field, Value: e.Value, Reason: e.Fix}}
}

func newErr(k Kind, code, format string, args ...any) *Error {
	return &Error{Kind: k, Code: code, Message: fmt.Sprintf(format, args...)}
}

// NotFoundf, Conflictf and Preconditionf build errors of their kind.
func NotFoundf(code, format string, args ...any) *Error {
	return newErr(NotFound, code, format, args...)
}

// Conflictf builds a Conflict error.
func Conflictf(code, format string, args ...any) *Error {
	return newErr(Conflict, code, format, args...)
}

// Preconditionf builds a PreconditionFailed error.
func Preconditionf(format string, args ...any) *Error {
	return newErr(PreconditionFailed, "PreconditionFailed", format, args...)
}

// TooLargef builds a TooLarge error.
func TooLargef(code, format string, args ...any) *Error {
	return newErr(TooLarge, code, format, args...)
}

// InvalidField reports a bad field: what was sent and how to fix it. The
// message is "field value: fix" unless msg is given.
func InvalidField(code, field, value, fix string, msg ...any) *Error {
	e := &Error{Kind: Invalid, Code: code, Field: field, Value: value, Fix: fix}
	if len(msg) > 0 {
		e.Message = fmt.Sprintf(msg[0].(string), msg[1:]...)
	} else if value != "" {
		e.Message = fmt.Sprintf("%s %q: %s", field, value, fix)
	} else {
		e.Message = field + ": " + fix
	}
	return e
}

// ForbiddenTo reports an action refused at a scope.
func ForbiddenTo(action, scope, format string, args ...any) *Error {
	e := newErr(Forbidden, "Forbidden", format, args...)
	e.Action, e.Scope = action, scope
	return e
}

// Classify turns any error an operation can meet into an *Error: an
// *Error as it is; the store's not-found, already-exists and version
// conflict (a PreconditionFailed when the caller named a version, a
// Conflict otherwise: see FromStore); policy validation errors as
// Invalid; anything else Internal, keeping the cause.
func Classify(err error) *Error {
	var e *Error
	var ve *policy.ValidationError
	var fe *policy.FieldError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		return e
	case errors.As(err, &ve):
		return &Error{Kind: Invalid, Code: "InvalidPolicy", Message: ve.Error(), Details: ve.Fields, Err: err}
	case errors.As(err, &fe):
		return &Error{Kind: Invalid, Code: "InvalidValue", Message: fe.Error(), Field: fe.Field, Value: fe.Value, Fix: fe.Reason, Err: err}
	case errors.Is(err, store.ErrNotFound):
		return &Error{Kind: NotFound, Code: "NotFound", Message: err.Error(), Err: err}
	case errors.Is(err, store.ErrAlreadyExists):
		return &Error{Kind: Conflict, Code: "AlreadyExists", Message: err.Error(), Err: err}
	case errors.Is(err, store.ErrConflict):
		return &Error{Kind: Conflict, Code: "ConcurrentModification", Message: err.Error() + "; retry", Err: err}
	}
	return &Error{Kind: Internal, Code: "InternalError", Message: "internal error; see the vault log", Err: err}
}

// fromStore classifies a store error of a write based on version
// expected (0: none named): a version conflict then is the caller's stale
// precondition.
func fromStore(err error, expected int64) error {
	if err == nil {
		return nil
	}
	if expected != 0 && errors.Is(err, store.ErrConflict) {
		return &Error{Kind: PreconditionFailed, Code: "PreconditionFailed",
			Message: err.Error() + "; fetch it again and retry with the new ETag", Err: err}
	}
	return err
}
