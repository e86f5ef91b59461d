package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"

	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/store"
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

// writeError maps an error to its response. Store errors become 404, 409
// or 412; validation errors 400; anything unexpected 500 (logged by the
// access log with the error).
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *APIError
	var ve *policy.ValidationError
	var fe *policy.FieldError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &ve):
		ae = &APIError{Status: http.StatusBadRequest, Code: "InvalidPolicy", Message: ve.Error(), Details: ve.Fields}
	case errors.As(err, &fe):
		ae = &APIError{Status: http.StatusBadRequest, Code: "InvalidValue", Message: fe.Error(), Details: []*policy.FieldError{fe}}
	case errors.Is(err, store.ErrNotFound):
		ae = apiErr(http.StatusNotFound, "NotFound", "%v", err)
	case errors.Is(err, store.ErrAlreadyExists):
		ae = apiErr(http.StatusConflict, "AlreadyExists", "%v", err)
	case errors.Is(err, store.ErrConflict):
		if r.Header.Get("If-Match") != "" {
			ae = apiErr(http.StatusPreconditionFailed, "PreconditionFailed", "%v; fetch it again and retry with the new ETag", err)
		} else {
			ae = apiErr(http.StatusConflict, "ConcurrentModification", "%v; retry", err)
		}
	default:
		if rec, ok := w.(*recorder); ok {
			rec.err = err
		}
		ae = apiErr(http.StatusInternalServerError, "InternalError", "internal error; see the vault log")
	}
	writeJSON(w, ae.Status, map[string]any{"error": ae})
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// validName checks a resource name: a DNS label (RFC 1123), like
// Kubernetes names, so that names can be used in clusters too.
func validName(field, name string) error {
	if !nameRE.MatchString(name) {
		return &APIError{Status: http.StatusBadRequest, Code: "InvalidName",
			Message: fmt.Sprintf("%s %q: must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit", field, name),
			Details: []*policy.FieldError{{Field: field, Value: name, Reason: "not a DNS label"}}}
	}
	return nil
}

func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apiErr(http.StatusRequestEntityTooLarge, "RequestTooLarge", "request body exceeds %d bytes", mbe.Limit)
		}
		return apiErr(http.StatusBadRequest, "InvalidBody", "request body is not valid JSON for this operation: %v", err)
	}
	if dec.More() {
		return apiErr(http.StatusBadRequest, "InvalidBody", "request body has data after the JSON object")
	}
	return nil
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
