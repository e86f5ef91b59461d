package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/service"
)

// APIError is the body of every 4xx/5xx response:
// {"error": {"code": "...", "message": "...", "details": [...]}}.
type APIError struct {
	Status  int                  `json:"-"`
	Code    string               `json:"code"`
	Message string               `json:"message"`
	Details []*policy.FieldError `json:"details,omitempty"`
	// Action and Scope name what a 403 Forbidden lacked.
	Action string `json:"action,omitempty"`
	Scope  string `json:"scope,omitempty"`
}

func (e *APIError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

func apiErr(status int, code, format string, args ...any) *APIError {
	return &APIError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// statusOf is the one mapping of the operations' error kinds to HTTP
// statuses.
var statusOf = map[service.Kind]int{
	service.NotFound:           http.StatusNotFound,
	service.Conflict:           http.StatusConflict,
	service.PreconditionFailed: http.StatusPreconditionFailed,
	service.Invalid:            http.StatusBadRequest,
	service.Forbidden:          http.StatusForbidden,
	service.TooLarge:           http.StatusRequestEntityTooLarge,
	service.ChecksFailed:       http.StatusUnprocessableEntity,
	service.Unavailable:        http.StatusServiceUnavailable,
	service.Internal:           http.StatusInternalServerError,
}

// StatusOf returns the HTTP status of an error kind (500 for a kind
// without one, which the tests forbid).
func StatusOf(k service.Kind) int {
	if st, ok := statusOf[k]; ok {
		return st
	}
	return http.StatusInternalServerError
}

// writeError maps an error to its response: an *APIError (the server's
// own, with its status) as it is; anything else through service.Classify
// and StatusOf. Unexpected errors become 500 and are logged by the access
// log.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *APIError
	body := map[string]any{}
	if !errors.As(err, &ae) {
		e := service.Classify(err)
		ae = &APIError{Status: StatusOf(e.Kind), Code: e.Code, Message: e.Message, Action: e.Action, Scope: e.Scope}
		if e.Kind == service.Invalid {
			ae.Details = e.Fields()
		}
		if e.Report != nil {
			body["validation"] = e.Report
		}
		if rec := recorderOf(r); rec != nil && e.Kind == service.Internal {
			rec.err = err
		}
	}
	if rec := recorderOf(r); rec != nil {
		rec.code, rec.reason, rec.action, rec.scope = ae.Code, ae.Message, ae.Action, ae.Scope
	}
	body["error"] = ae
	writeJSON(w, ae.Status, body)
}

func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return service.TooLargef("RequestTooLarge", "request body exceeds %d bytes", mbe.Limit)
		}
		return service.InvalidField("InvalidBody", "body", "", "send the JSON object of this operation (see /api/v1/openapi.json)",
			"request body is not valid JSON for this operation: %v", err)
	}
	if dec.More() {
		return service.InvalidField("InvalidBody", "body", "", "send one JSON object", "request body has data after the JSON object")
	}
	return nil
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
