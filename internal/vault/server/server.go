// Package server is the vault's HTTP/JSON API (/api/v1, described by the
// OpenAPI document served at /api/v1/openapi.json), with bearer-token
// authentication, request limits, access and audit logs, /healthz and
// Prometheus /metrics; and Run, which wires the store, scheduler, job runner
// and retention engine behind it (`arca vault serve`).
package server

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/dashboard"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/notify"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/retention"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the API's OpenAPI 3 document.
func OpenAPI() []byte { return openAPI }

// DefaultMaxBody limits request bodies.
const DefaultMaxBody = 1 << 20

// Server serves the API.
type Server struct {
	Store     service.Store    // token lookup, health; the rest goes through Service
	Service   *service.Service // the operations the handlers call
	Clock     clock.Clock
	Runner    *jobs.Runner
	Clusters  service.Clusters // nil: the vault reaches no cluster
	Retention *retention.Engine
	// Notifier, when set, receives the vault's events (webhooks).
	Notifier service.Notifier
	Log      *slog.Logger
	MaxBody  int64 // 0: DefaultMaxBody
	// ValidateOnCreate runs the prerequisite checks (with the vault's
	// trusted-access identity) when an instance is created and refuses
	// creation when one fails, unless ?skipValidation=true. Run turns it on.
	ValidateOnCreate bool
	// TokenLifetime and TokenMaxLifetime bound API tokens (zero: the
	// defaults of package service, P30D and P1Y).
	TokenLifetime, TokenMaxLifetime policy.Duration

	webhooks        *notify.Webhooks // New: the Notifier, delivered by Run
	retentionLease  *Lease           // Run: retention and renewal on one replica at a time
	retentionPasses atomic.Int64

	auditLog auditRing // GET /api/v1/audit

	registry *prometheus.Registry
	metrics  *metrics
	handler  http.Handler
}

type metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	jobs      *prometheus.CounterVec
	finished  *prometheus.CounterVec
	retention prometheus.Counter
	events    *prometheus.CounterVec
	webhooks  *prometheus.CounterVec
	// verifications by verdict, their duration, and when each instance's
	// point was last verified (Unix seconds) by verdict.
	verifications        *prometheus.CounterVec
	verificationDuration prometheus.Histogram
	verificationLast     *prometheus.GaugeVec
}

// route is one API operation; the table drives the mux and the OpenAPI
// completeness test.
type route struct {
	Method, Pattern string
	Public          bool // no authentication
	Handler         http.HandlerFunc
}

// Routes lists method and path of every operation (tests, docs).
func (s *Server) Routes() [][2]string {
	var out [][2]string
	for _, rt := range s.routes() {
		out = append(out, [2]string{rt.Method, rt.Pattern})
	}
	return out
}

func (s *Server) routes() []route {
	const v, vp = "/api/v1/vaults/{vault}", "/api/v1/vaults/{vault}/policies/{policy}"
	const in = "/api/v1/vaults/{vault}/instances/{instance}"
	return []route{
		{"GET", "/healthz", true, s.healthz},
		{"GET", "/metrics", true, s.metricsHandler},
		{"GET", "/api/v1/openapi.json", true, s.openapi},

		{"POST", "/api/v1/session", true, s.signIn},
		{"GET", "/api/v1/session", false, s.getSession},
		{"DELETE", "/api/v1/session", true, s.signOut},

		{"GET", "/api/v1/vaults", false, s.listVaults},
		{"POST", "/api/v1/vaults", false, s.createVault},
		{"GET", v, false, s.getVault},
		{"PUT", v, false, s.updateVault},
		{"DELETE", v, false, s.deleteVault},

		{"GET", v + "/policies", false, s.listPolicies},
		{"POST", v + "/policies", false, s.createPolicy},
		{"GET", vp, false, s.getPolicy},
		{"PUT", vp, false, s.updatePolicy},
		{"DELETE", vp, false, s.deletePolicy},

		{"GET", v + "/instances", false, s.listInstances},
		{"POST", v + "/instances", false, s.createInstance},
		{"GET", in, false, s.getInstance},
		{"PUT", in, false, s.updateInstance},
		{"DELETE", in, false, s.deleteInstance},
		{"POST", in + "/stop-protection", false, s.stopProtection},
		{"POST", in + "/resume-protection", false, s.resumeProtection},
		{"POST", in + "/backup", false, s.backupNow},
		{"POST", in + "/validate", false, s.validateInstanceRoute},
		{"POST", in + "/sync", false, s.syncRecoveryPoints},
		{"POST", in + "/undelete", false, s.undeleteInstance},

		{"GET", v + "/recovery-points", false, s.listRecoveryPoints},
		{"GET", v + "/recovery-points/{id}", false, s.getRecoveryPoint},
		{"GET", v + "/recovery-points/{id}/contents", false, s.recoveryPointContents},
		{"GET", v + "/recovery-points/{id}/diff", false, s.recoveryPointDiff},
		{"GET", v + "/recovery-points/{id}/volumes", false, s.recoveryPointVolumes},
		{"GET", v + "/recovery-points/{id}/files", false, s.recoveryPointFiles(false)},
		{"GET", v + "/recovery-points/{id}/files/content", false, s.recoveryPointFiles(true)},
		{"DELETE", v + "/recovery-points/{id}", false, s.deleteRecoveryPoint},
		{"POST", v + "/recovery-points/{id}/undelete", false, s.undeleteRecoveryPoint},
		{"POST", v + "/recovery-points/{id}/verify", false, s.verifyRecoveryPoint},
		{"GET", v + "/usage", false, s.vaultUsage},

		{"GET", v + "/approvals", false, s.listApprovals},
		{"GET", v + "/approvals/{id}", false, s.getApproval},
		{"POST", v + "/approvals/{id}/approve", false, s.decide(true)},
		{"POST", v + "/approvals/{id}/reject", false, s.decide(false)},

		{"GET", v + "/notifications", false, s.listSubscriptions},
		{"POST", v + "/notifications", false, s.addSubscription},
		{"GET", v + "/notifications/{id}", false, s.getSubscription},
		{"DELETE", v + "/notifications/{id}", false, s.deleteSubscription},
		{"GET", v + "/deliveries", false, s.listDeliveries},
		{"POST", v + "/restores", false, s.startRestore},
		{"POST", v + "/restores/validate", false, s.validateRestoreRoute},

		{"GET", v + "/jobs", false, s.listJobs},
		{"GET", v + "/jobs/{id}", false, s.getJob},
		{"POST", v + "/jobs/{id}/cancel", false, s.cancelJob},

		{"GET", "/api/v1/tokens", false, s.listTokens},
		{"POST", "/api/v1/tokens", false, s.createToken},
		{"DELETE", "/api/v1/tokens/{id}", false, s.deleteToken},

		{"GET", "/api/v1/audit", false, s.listAudit},
		{"GET", "/api/v1/roles", false, s.listRoles},
		{"GET", "/api/v1/permissions", false, s.permissions},
		{"GET", "/api/v1/role-assignments", false, s.listRoleAssignments},
		{"POST", "/api/v1/role-assignments", false, s.createRoleAssignment},
		{"DELETE", "/api/v1/role-assignments/{id}", false, s.deleteRoleAssignment},

		{"GET", "/api/v1/clusters", false, s.listClusters},
		{"POST", "/api/v1/clusters", false, s.registerCluster},
		{"GET", "/api/v1/clusters/{cluster}", false, s.getCluster},
		{"PUT", "/api/v1/clusters/{cluster}", false, s.updateCluster},
		{"DELETE", "/api/v1/clusters/{cluster}", false, s.deleteCluster},
	}
}

// Handler returns the API handler (built once).
func (s *Server) Handler() http.Handler {
	if s.handler != nil {
		return s.handler
	}
	if s.Clock == nil {
		s.Clock = clock.Real{}
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	if s.MaxBody == 0 {
		s.MaxBody = DefaultMaxBody
	}
	s.initMetrics()
	if s.Service == nil {
		s.Service = &service.Service{Store: s.Store, Clock: s.Clock, Retention: s.Retention, Runner: s.Runner, Clusters: s.Clusters,
			OnJob: s.JobCreated, OnJobFinished: s.JobFinished, TokenLifetime: s.TokenLifetime, TokenMaxLifetime: s.TokenMaxLifetime,
			Notifier: s.Notifier, Log: s.Log}
	}
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		var h http.Handler = rt.Handler
		if !rt.Public {
			h = s.authenticate(s.authorize(rt.Method+" "+rt.Pattern, h))
		}
		mux.Handle(rt.Method+" "+rt.Pattern, h)
	}
	// The dashboard: its page at / and its assets, public (the page signs
	// in through POST /api/v1/session).
	ui := dashboard.Handler()
	mux.Handle("GET "+dashboard.IndexPath, ui)
	mux.Handle("GET "+dashboard.AssetsPath, ui)
	// The catch-all answers in JSON; a path served with other methods gets
	// 405 and an Allow header, found through a method-less mux.
	paths, allow := http.NewServeMux(), map[string][]string{}
	for _, rt := range s.routes() {
		if allow[rt.Pattern] == nil {
			paths.Handle(rt.Pattern, http.NotFoundHandler())
		}
		allow[rt.Pattern] = append(allow[rt.Pattern], rt.Method)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if _, pat := paths.Handler(r); pat != "" {
			w.Header().Set("Allow", strings.Join(allow[pat], ", "))
			writeError(w, r, apiErr(http.StatusMethodNotAllowed, "MethodNotAllowed", "%s is not supported on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow[pat], ", ")))
			return
		}
		writeError(w, r, apiErr(http.StatusNotFound, "RouteNotFound", "no operation %s %s; see /api/v1/openapi.json", r.Method, r.URL.Path))
	})
	s.handler = s.observe(mux)
	return s.handler
}

func (s *Server) initMetrics() {
	s.registry = prometheus.NewRegistry()
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "arca_vault_http_requests_total",
			Help: "API requests by method, route pattern and status code."}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "arca_vault_http_request_duration_seconds",
			Help: "API request latency by route pattern.", Buckets: prometheus.DefBuckets}, []string{"route"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "arca_vault_jobs_created_total",
			Help: "Jobs created by type."}, []string{"type"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "arca_vault_jobs_finished_total",
			Help: "Jobs that reached a terminal state, by type and state."}, []string{"type", "state"}),
		retention: prometheus.NewCounter(prometheus.CounterOpts{Name: "arca_vault_recovery_points_expired_total",
			Help: "Recovery points removed by retention."}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "arca_vault_events_total",
			Help: "Events raised for notification, by type (job-failed, job-warning, verification-failed, schedule-missed)."}, []string{"type"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "arca_vault_webhook_attempts_total",
			Help: "Webhook delivery attempts by result (delivered, failed: not delivered by this attempt)."}, []string{"result"}),
	}
	m.verifications = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "arca_vault_verification_total",
		Help: "Verification jobs that reached a verdict, by verdict (Verified, VerificationFailed)."}, []string{"verdict"})
	m.verificationDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "arca_vault_verification_duration_seconds",
		Help: "How long verification jobs with a verdict took, from start to end.", Buckets: prometheus.ExponentialBuckets(5, 2, 12)})
	m.verificationLast = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "arca_vault_verification_last_timestamp_seconds",
		Help: "When a recovery point of the instance was last verified, by verdict (Unix seconds)."}, []string{"vault", "instance", "verdict"})
	s.registry.MustRegister(m.requests, m.duration, m.jobs, m.finished, m.retention, m.events, m.webhooks,
		m.verifications, m.verificationDuration, m.verificationLast)
	s.metrics = m
}

// JobCreated counts a job (the scheduler calls it too).
func (s *Server) JobCreated(j *store.Job) {
	if s.metrics != nil {
		s.metrics.jobs.WithLabelValues(j.Type).Inc()
	}
}

// JobFinished counts a job reaching a terminal state, and raises its
// event when it failed or ended with warnings.
func (s *Server) JobFinished(j *store.Job) {
	if s.metrics != nil {
		s.metrics.finished.WithLabelValues(j.Type, j.State).Inc()
	}
	s.jobEvent(j)
	s.verificationFinished(j)
}

// verificationFinished counts a verification's verdict and, when it
// failed, raises verification-failed naming the point, the codes and the
// first problems.
func (s *Server) verificationFinished(j *store.Job) {
	v := jobs.VerificationOf(j)
	if v == nil {
		return
	}
	if s.metrics != nil {
		s.metrics.verifications.WithLabelValues(v.Verdict).Inc()
		if j.StartedAt != nil && j.EndedAt != nil {
			s.metrics.verificationDuration.Observe(j.EndedAt.Sub(*j.StartedAt).Seconds())
		}
		s.metrics.verificationLast.WithLabelValues(j.Vault, j.Instance, v.Verdict).Set(float64(v.Time.Unix()))
	}
	if v.Verdict != v1alpha1.VerdictVerificationFailed {
		return
	}
	var p jobs.VerificationParams
	_ = json.Unmarshal(j.Params, &p)
	e := store.Event{Type: store.EventVerificationFailed, Vault: j.Vault, Instance: j.Instance, Job: j.ID, JobType: j.Type,
		Message: fmt.Sprintf("recovery point %s failed verification in cluster %s (%s)", p.RecoveryPoint, v.Cluster, strings.Join(v.Codes, ", "))}
	for _, d := range v.Differences {
		if len(e.Issues) == 10 {
			break
		}
		e.Issues = append(e.Issues, store.Issue{Code: "VerificationDifference", Message: d.Message, Object: d.Object})
	}
	s.notify(context.Background(), e)
}

// jobEvent notifies subscribers of a job that ended Failed or
// CompletedWithWarnings.
func (s *Server) jobEvent(j *store.Job) {
	e := store.Event{Vault: j.Vault, Instance: j.Instance, Job: j.ID, JobType: j.Type}
	switch j.State {
	case store.JobFailed:
		e.Type, e.Issues = store.EventJobFailed, j.Errors
		e.Message = fmt.Sprintf("%s job %s failed", j.Type, j.ID)
	case store.JobCompletedWithWarnings:
		e.Type, e.Issues = store.EventJobWarning, j.Warnings
		e.Message = fmt.Sprintf("%s job %s completed with %d warning(s)", j.Type, j.ID, len(j.Warnings))
	default:
		return
	}
	if len(e.Issues) > 0 {
		e.Message += ": " + e.Issues[0].Code + ": " + e.Issues[0].Message
	}
	s.notify(context.Background(), e)
}

// notify sends an event through the service's Notifier.
func (s *Server) notify(ctx context.Context, e store.Event) {
	if s.Service != nil {
		s.Service.Notify(ctx, e)
	}
}

// counted is the Notifier New installs: it counts every event
// (arca_vault_events_total), whoever raises it, then hands it on.
type counted struct {
	s    *Server
	next service.Notifier
}

func (c counted) Notify(ctx context.Context, e store.Event) {
	if c.s.metrics != nil {
		c.s.metrics.events.WithLabelValues(e.Type).Inc()
	}
	c.next.Notify(ctx, e)
}

func (s *Server) webhookAttempt(_ *store.Delivery, delivered bool) {
	if s.metrics == nil {
		return
	}
	result := "failed"
	if delivered {
		result = "delivered"
	}
	s.metrics.webhooks.WithLabelValues(result).Inc()
}

// recorder captures what the access log, the audit log and metrics need.
type recorder struct {
	http.ResponseWriter
	status    int
	bytes     int64
	principal string
	err       error // an internal error (500)
	// The refusal or failure the response carried: its code and message,
	// and for a denial the action and scope that were not granted.
	code, reason, action, scope string
}

type recorderKey struct{}

// recorderOf returns the request's recorder (nil outside observe).
func recorderOf(r *http.Request) *recorder {
	rec, _ := r.Context().Value(recorderKey{}).(*recorder)
	return rec
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// observe is the outermost layer: body limit, access log, audit log,
// metrics.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now() // latency measurement only, not logic
		r.Body = http.MaxBytesReader(w, r.Body, s.MaxBody)
		rec := &recorder{ResponseWriter: w}
		// The mux sets Pattern on the request it is given.
		r = r.WithContext(context.WithValue(r.Context(), recorderKey{}, rec))
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		route := r.Pattern
		if route == "" || route == "/" {
			route = "unmatched"
		}
		elapsed := time.Since(start)
		s.metrics.requests.WithLabelValues(r.Method, route, strconv.Itoa(rec.status)).Inc()
		s.metrics.duration.WithLabelValues(route).Observe(elapsed.Seconds())
		attrs := []any{"method", r.Method, "path", r.URL.Path, "route", route, "status", rec.status,
			"bytes", rec.bytes, "duration_ms", elapsed.Milliseconds(), "remote", r.RemoteAddr}
		if rec.principal != "" {
			attrs = append(attrs, "principal", rec.principal)
		}
		if rec.err != nil {
			attrs = append(attrs, "err", rec.err.Error())
		}
		s.Log.Info("access", attrs...)
		s.audit(r, rec, route)
	})
}

// audit writes the audit line of a request: every write (any method but
// GET), whatever its outcome, and every refused request. A refusal (401,
// 403) is event "denied", with the action and scope that were not
// granted; any other error is "failed", with its code and message as the
// reason; a write that succeeded is "write".
func (s *Server) audit(r *http.Request, rec *recorder, route string) {
	denied := rec.status == http.StatusUnauthorized || rec.status == http.StatusForbidden
	if r.Method == http.MethodGet && !denied {
		return
	}
	principal := rec.principal
	if principal == "" {
		principal = "(unauthenticated)"
	}
	ev := AuditEvent{Time: s.Clock.Now().UTC(), Principal: principal, Method: r.Method, Path: r.URL.Path, Route: route, Status: rec.status}
	switch {
	case denied:
		ev.Event, ev.Action, ev.Scope, ev.Code, ev.Reason = "denied", rec.action, rec.scope, rec.code, rec.reason
		attrs := []any{"event", "denied", "principal", principal}
		if rec.action != "" {
			attrs = append(attrs, "action", rec.action, "scope", rec.scope)
		}
		attrs = append(attrs, "method", r.Method, "path", r.URL.Path, "route", route, "status", rec.status, "code", rec.code, "reason", rec.reason)
		s.Log.Warn("audit", attrs...)
	case rec.status >= 400:
		ev.Event, ev.Code, ev.Reason = "failed", rec.code, rec.reason
		s.Log.Warn("audit", "event", "failed", "principal", principal, "method", r.Method, "path", r.URL.Path, "route", route,
			"status", rec.status, "code", rec.code, "reason", rec.reason)
	default:
		ev.Event = "write"
		s.Log.Info("audit", "event", "write", "principal", principal, "method", r.Method, "path", r.URL.Path, "route", route, "status", rec.status)
	}
	s.auditLog.add(ev)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if _, err := s.Store.ListVaults(r.Context()); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "store: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) metricsHandler(w http.ResponseWriter, r *http.Request) {
	promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

func (s *Server) openapi(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}
