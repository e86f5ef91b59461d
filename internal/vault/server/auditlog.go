package server

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// AuditEvent is one audit line as GET /api/v1/audit returns it: the same
// fields as the audit log line (Server.audit).
type AuditEvent struct {
	Time      time.Time `json:"time"`
	Event     string    `json:"event"` // write, failed, denied
	Principal string    `json:"principal"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Route     string    `json:"route"`
	Status    int       `json:"status"`
	Code      string    `json:"code,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Action    string    `json:"action,omitempty"`
	Scope     string    `json:"scope,omitempty"`
}

// AuditMemory is how many audit events a vault process keeps for
// GET /api/v1/audit; the log (stderr) is the durable record.
const AuditMemory = 1000

// auditRing keeps the newest AuditMemory events of this process.
type auditRing struct {
	mu     sync.Mutex
	events []AuditEvent
	next   int
}

func (a *auditRing) add(e AuditEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.events) < AuditMemory {
		a.events = append(a.events, e)
		return
	}
	a.events[a.next] = e
	a.next = (a.next + 1) % AuditMemory
}

// newest returns up to n events, newest first.
func (a *auditRing) newest(n int) []AuditEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]AuditEvent, 0, min(n, len(a.events)))
	for i := 0; i < len(a.events) && len(out) < n; i++ {
		// The newest is just before next (or the last appended).
		j := (a.next - 1 - i + 2*len(a.events)) % len(a.events)
		if len(a.events) < AuditMemory {
			j = len(a.events) - 1 - i
		}
		out = append(out, a.events[j])
	}
	return out
}

// listAudit returns this process's newest audit events (?limit=, default
// and at most AuditMemory).
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	n := AuditMemory
	if l := r.URL.Query().Get("limit"); l != "" {
		v, err := strconv.Atoi(l)
		if err != nil || v < 1 || v > AuditMemory {
			writeError(w, r, apiErr(http.StatusBadRequest, "InvalidValue", "limit must be a number from 1 to %d, not %q", AuditMemory, l))
			return
		}
		n = v
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": s.auditLog.newest(n),
		"note": "the newest audit events of this vault process (at most " + strconv.Itoa(AuditMemory) + ", since it started); the vault's log holds every audit line"})
}
