package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/notify"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/retention"
	"github.com/arca-backup/arca/internal/vault/scheduler"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/postgres"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
	"github.com/arca-backup/arca/internal/vault/store/sqlstore"
)

// Options configure a vault process.
type Options struct {
	Listen  string // default 127.0.0.1:8443
	DataDir string // default ~/.local/share/arca/vault
	DB      string // postgres://… ; empty: SQLite file vault.db in DataDir
	TLSCert string // with TLSKey: use this certificate instead of the generated one
	TLSKey  string
	Log     *slog.Logger
	Clock   clock.Clock

	SchedulerInterval time.Duration // default 30s
	RunnerInterval    time.Duration // default 5s
	RetentionInterval time.Duration // default 1h
	// LeaseTTL is how long a replica that stops (or loses the database)
	// keeps the background lease (retention, credential renewal) before
	// another replica takes over (default 2m).
	LeaseTTL time.Duration
	Jitter   time.Duration // scheduler jitter, default 0
	// Clusters builds the vault's way into its clusters over its store
	// (clusterdriver.NewTrustedAccess in arca vault serve); nil: the vault
	// reaches no cluster (jobs fail ClusterNotConnected, checks cannot run).
	Clusters      func(store.ClusterStore, clock.Clock, *slog.Logger) service.Clusters
	RenewInterval time.Duration // cluster credential renewal check, default 1m
	// NotifyInterval is how often due webhook deliveries are attempted
	// (default 15s; a new event is sent at once).
	NotifyInterval time.Duration
	// NotifyBackoff is the wait before each webhook retry (nil:
	// notify.DefaultBackoff).
	NotifyBackoff []time.Duration

	// TokenLifetime is the lifetime of an API token created without one
	// (default P30D) and TokenMaxLifetime the longest allowed (default
	// P1Y); vault init's admin token gets the maximum.
	TokenLifetime, TokenMaxLifetime policy.Duration

	// CredentialKey (base64, from ARCA_VAULT_CREDENTIAL_KEY) or the file
	// CredentialKeyFile holds the key that seals cluster credentials in
	// the store; neither: <DataDir>/credential.key, generated on first
	// start. Replicas sharing a database need the same key.
	CredentialKey, CredentialKeyFile string

	// Ready, when set, is called with the bound address once listening.
	Ready func(addr string)
}

// The token lifetimes a vault applies unless told otherwise (the flags'
// defaults).
var (
	DefaultTokenLifetime    = service.DefaultTokenLifetime
	DefaultTokenMaxLifetime = service.DefaultTokenMaxLifetime
)

// DefaultDataDir is ~/.local/share/arca/vault (XDG_DATA_HOME honoured).
func DefaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "arca", "vault")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "."
	}
	return filepath.Join(home, ".local", "share", "arca", "vault")
}

func (o *Options) defaults() {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8443"
	}
	if o.DataDir == "" {
		o.DataDir = DefaultDataDir()
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.SchedulerInterval == 0 {
		o.SchedulerInterval = 30 * time.Second
	}
	if o.RunnerInterval == 0 {
		o.RunnerInterval = 5 * time.Second
	}
	if o.RetentionInterval == 0 {
		o.RetentionInterval = time.Hour
	}
	if o.RenewInterval == 0 {
		o.RenewInterval = time.Minute
	}
	if o.NotifyInterval == 0 {
		o.NotifyInterval = 15 * time.Second
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 2 * time.Minute
	}
	if o.TokenMaxLifetime == (policy.Duration{}) {
		o.TokenMaxLifetime = service.DefaultTokenMaxLifetime
	}
	if o.TokenLifetime == (policy.Duration{}) {
		o.TokenLifetime = service.DefaultTokenLifetime
		if o.TokenMaxLifetime.Less(o.TokenLifetime) {
			o.TokenLifetime = o.TokenMaxLifetime
		}
	}
}

// OpenStore opens the configured store, creating the data directory and
// applying migrations, and seals cluster credentials with the credential
// key (credentialKey).
func OpenStore(ctx context.Context, o Options) (store.Store, error) {
	o.defaults()
	var st *sqlstore.Store
	var err error
	switch {
	case strings.HasPrefix(o.DB, "postgres://") || strings.HasPrefix(o.DB, "postgresql://"):
		st, err = postgres.Open(ctx, o.DB, o.Clock.Now)
	case o.DB != "":
		return nil, fmt.Errorf("--db %q: want a postgres:// URL, or nothing for the embedded SQLite database", o.DB)
	default:
		if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
			return nil, err
		}
		st, err = sqlite.Open(ctx, filepath.Join(o.DataDir, "vault.db"), o.Clock.Now)
	}
	if err != nil {
		return nil, err
	}
	if err := o.credentialKey(ctx, st); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// DefaultCredentialKeyFile is where the credential key is kept when
// neither --credential-key-file nor ARCA_VAULT_CREDENTIAL_KEY names one.
func DefaultCredentialKeyFile(dataDir string) string { return filepath.Join(dataDir, "credential.key") }

// credentialKey gives the store the key that seals cluster credentials:
// CredentialKey (the environment), else the file CredentialKeyFile, else
// the data directory's credential.key, generated on first start. The key
// is never written to the database (only its fingerprint, to refuse a
// replica started with another key).
func (o Options) credentialKey(ctx context.Context, st *sqlstore.Store) error {
	if o.CredentialKey != "" && o.CredentialKeyFile != "" {
		return errors.New("give the credential key once: --credential-key-file or ARCA_VAULT_CREDENTIAL_KEY, not both")
	}
	text, source := o.CredentialKey, "ARCA_VAULT_CREDENTIAL_KEY"
	generated := ""
	if text == "" {
		file := o.CredentialKeyFile
		source = "--credential-key-file " + file
		if file == "" {
			file = DefaultCredentialKeyFile(o.DataDir)
			source = file
		}
		b, err := os.ReadFile(file)
		switch {
		case err == nil:
			text = string(b)
		case errors.Is(err, os.ErrNotExist) && o.CredentialKeyFile == "":
			// First start: a new key, written before the database
			// records its fingerprint so that it cannot be lost.
			text = sqlstore.NewCredentialKey()
			if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
				return err
			}
			f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("create the credential key %s: %w", file, err)
			}
			_, werr := f.WriteString(text + "\n")
			if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
				return fmt.Errorf("write the credential key %s: %w", file, err)
			}
			generated = file
		case errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("--credential-key-file %s does not exist: create it with (umask 077; head -c 32 /dev/urandom | base64 > %s), and give the same file to every replica", file, file)
		default:
			return fmt.Errorf("read the credential key: %w", err)
		}
	}
	key, err := sqlstore.ParseCredentialKey(text)
	if err != nil {
		return fmt.Errorf("credential key from %s: %w", source, err)
	}
	if err := st.UseCredentialKey(ctx, key); err != nil {
		if generated != "" {
			_ = os.Remove(generated) // not the key of this database
		}
		return fmt.Errorf("credential key from %s: %w", source, err)
	}
	if generated != "" {
		o.Log.Info("generated the key that seals cluster credentials; give the same file to every replica and keep it out of database backups", "file", generated)
	}
	return nil
}

func (o Options) tlsFiles() (cert, key string, created bool, err error) {
	if o.TLSCert != "" || o.TLSKey != "" {
		if o.TLSCert == "" || o.TLSKey == "" {
			return "", "", false, errors.New("--tls-cert and --tls-key go together")
		}
		return o.TLSCert, o.TLSKey, false, nil
	}
	return EnsureSelfSigned(filepath.Join(o.DataDir, "tls"), o.Clock.Now())
}

// ErrInitialized is returned by Init when the vault already has a token
// that has not expired.
var ErrInitialized = errors.New("vault already initialised: it has API tokens that have not expired (create more with arca token create)")

// InitResult is what `arca vault init` prints.
type InitResult struct {
	Token       string
	CertFile    string
	Fingerprint string
	DataDir     string
}

// Init prepares a vault: database and schema, TLS certificate, and the
// first admin token, returned once and never stored in clear. The token
// lives the maximum token lifetime; when every token has expired, Init
// (run where the database is) issues a new admin token, so that a vault
// whose tokens all lapsed can be managed again.
func Init(ctx context.Context, o Options) (*InitResult, error) {
	o.defaults()
	if err := service.CheckTokenLifetimes(o.TokenLifetime, o.TokenMaxLifetime); err != nil {
		return nil, err
	}
	st, err := OpenStore(ctx, o)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	cert, _, _, err := o.tlsFiles()
	if err != nil {
		return nil, err
	}
	toks, err := st.ListTokens(ctx)
	if err != nil {
		return nil, err
	}
	now := o.Clock.Now()
	for _, t := range toks {
		if t.ExpiresAt == nil || t.ExpiresAt.After(now) {
			return nil, ErrInitialized
		}
	}
	exp := o.TokenMaxLifetime.AddTo(now)
	tok, _, err := CreateAdminToken(ctx, st, "admin", "admin", &exp)
	if err != nil {
		return nil, err
	}
	fp, err := Fingerprint(cert)
	if err != nil {
		return nil, err
	}
	return &InitResult{Token: tok, CertFile: cert, Fingerprint: fp, DataDir: o.DataDir}, nil
}

// BoundTokens gives the tokens a vault made before token lifetimes
// existed (no expiry) the maximum lifetime from now, so that every token
// expires, and says so in the log: their holders have that long to get a
// new one (arca token create).
func BoundTokens(ctx context.Context, st store.TokenStore, o Options) error {
	o.defaults()
	at := o.TokenMaxLifetime.AddTo(o.Clock.Now())
	n, err := st.BoundTokens(ctx, at)
	if err != nil {
		return err
	}
	if n > 0 {
		o.Log.Warn("API tokens without an expiry now expire; create new ones before then (arca token create)", "tokens", n, "expiresAt", at)
	}
	return nil
}

// New assembles a server and its background workers on an open store.
func New(st store.Store, o Options) (*Server, *scheduler.Scheduler) {
	o.defaults()
	ret := &retention.Engine{Store: st, Clock: o.Clock, Log: o.Log}
	s := &Server{Store: st, Clock: o.Clock, Log: o.Log, Retention: ret, TokenLifetime: o.TokenLifetime, TokenMaxLifetime: o.TokenMaxLifetime}
	s.webhooks = &notify.Webhooks{Store: st, Clock: o.Clock, Log: o.Log, Backoff: o.NotifyBackoff, OnAttempt: s.webhookAttempt}
	s.webhooks.Start()
	s.Notifier = counted{s, s.webhooks}
	var drivers jobs.Drivers = jobs.DriverMap{}
	if o.Clusters != nil {
		s.Clusters = o.Clusters(st, o.Clock, o.Log)
		drivers = s.Clusters
	}
	// Expiry removes data too: the cluster deletes retained snapshots and
	// forgets the point in the repository (jobs.ClusterRemover).
	ret.Remover = &jobs.ClusterRemover{Store: st, Drivers: drivers}
	s.Runner = &jobs.Runner{Store: st, Clock: o.Clock, Drivers: drivers, Retention: ret, Log: o.Log, OnFinish: s.JobFinished}
	s.Handler()
	s.Runner.Authorize = s.Service // the runner re-checks roles before a job acts
	sch := &scheduler.Scheduler{Store: st, Clock: o.Clock, Jitter: o.Jitter, Log: o.Log, OnJob: s.JobCreated, Notify: s.Notifier.Notify}
	return s, sch
}

// Run serves the vault until ctx ends: API over TLS, scheduler, job runner
// and retention loop.
func Run(ctx context.Context, o Options) error {
	o.defaults()
	if err := service.CheckTokenLifetimes(o.TokenLifetime, o.TokenMaxLifetime); err != nil {
		return err
	}
	st, err := OpenStore(ctx, o)
	if err != nil {
		return err
	}
	defer st.Close()
	certFile, keyFile, created, err := o.tlsFiles()
	if err != nil {
		return err
	}
	if created {
		o.Log.Info("generated a self-signed TLS certificate", "cert", certFile)
	}
	tlsCfg, err := loadTLS(certFile, keyFile)
	if err != nil {
		return err
	}
	if toks, err := st.ListTokens(ctx); err == nil && len(toks) == 0 {
		o.Log.Warn("the vault has no API tokens: run `arca vault init` with the same --data-dir/--db to create the first one")
	}
	if err := BoundTokens(ctx, st, o); err != nil {
		return err
	}
	s, sch := New(st, o)
	s.ValidateOnCreate = true
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(o.Log.Handler(), slog.LevelWarn),
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Retention and credential renewal run on one replica at a time
	// (the scheduler and the job runner claim each slot and job in the
	// store themselves).
	s.retentionLease = &Lease{Store: st, Name: "background", Holder: NewHolder(), TTL: o.LeaseTTL, Log: o.Log}
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); s.retentionLease.Hold(ctx) }()
	if s.Clusters != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.maintainClusters(ctx, o.RenewInterval, o.LeaseTTL/3) }()
	}
	go func() { defer wg.Done(); sch.Run(ctx, o.SchedulerInterval) }()
	go func() { defer wg.Done(); s.Runner.Run(ctx, o.RunnerInterval) }()
	go func() { defer wg.Done(); s.runRetention(ctx, o.RetentionInterval) }()
	wg.Add(1)
	go func() { defer wg.Done(); s.deliverWebhooks(ctx, o.NotifyInterval, o.LeaseTTL/3) }()
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	o.Log.Info("vault listening", "addr", ln.Addr().String(), "data_dir", o.DataDir, "store", storeKind(o))
	if o.Ready != nil {
		o.Ready(ln.Addr().String())
	}
	select {
	case err = <-errc:
	case <-ctx.Done():
		shut, c := context.WithTimeout(context.Background(), 10*time.Second)
		err = srv.Shutdown(shut)
		c()
	}
	cancel()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func storeKind(o Options) string {
	if o.DB != "" {
		return "postgres"
	}
	return "sqlite"
}

// DeliverWebhooks attempts the due webhook deliveries once (Run does it
// in the background) and returns how many it attempted.
func (s *Server) DeliverWebhooks(ctx context.Context) (int, error) { return s.webhooks.Tick(ctx) }

// deliverWebhooks sends webhook deliveries while this replica holds the
// background lease: two replicas sending at once would deliver twice.
func (s *Server) deliverWebhooks(ctx context.Context, every, retry time.Duration) {
	for {
		s.retentionLease.Do(ctx, func(ctx context.Context) { s.webhooks.Run(ctx, every) })
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

// maintainClusters renews cluster credentials while this replica holds
// the background lease: two replicas renewing at once would each mint a
// token.
func (s *Server) maintainClusters(ctx context.Context, every, retry time.Duration) {
	for {
		s.retentionLease.Do(ctx, func(ctx context.Context) { s.Clusters.Maintain(ctx, every) })
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

// RetentionPass runs one retention pass (runRetention runs one every
// interval): expiry, then the purge of soft-deleted points and instances
// past their period, whose deletion jobs it queues for the job runner, then
// the verifications policies schedule (verify: daily|weekly|monthly).
func (s *Server) RetentionPass(ctx context.Context) {
	s.Log.Debug("retention pass started", "holder", s.holder())
	js, err := s.Retention.Run(ctx)
	if err != nil && ctx.Err() == nil {
		s.Log.Error("retention pass", "err", err)
	}
	for _, j := range js {
		s.JobCreated(j)
		s.jobEvent(j)
		if res := j.Params; len(res) > 0 {
			s.metrics.retention.Add(float64(countDeleted(res)))
		}
	}
	// The purge's jobs are counted by PurgeSoftDeleted's OnJob.
	if _, err := s.Service.PurgeSoftDeleted(ctx); err != nil && ctx.Err() == nil {
		s.Log.Error("soft-delete purge", "err", err)
	}
	// Policies with verify: one Verification job per instance and period.
	if _, err := s.Service.ScheduleVerifications(ctx, s.Clock.Now()); err != nil && ctx.Err() == nil {
		s.Log.Error("scheduled verification", "err", err)
	}
}

// runRetention runs a retention pass every interval, on the replica that
// holds the background lease (all of them when there is no lease: New
// without Run).
func (s *Server) runRetention(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	pass := s.RetentionPass
	for {
		if s.retentionLease == nil {
			pass(ctx)
		} else if ran := s.retentionLease.Do(ctx, pass); ran {
			s.retentionPasses.Add(1)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) holder() string {
	if s.retentionLease == nil {
		return ""
	}
	return s.retentionLease.Holder
}

// RetentionPasses counts the retention passes this replica ran under the
// background lease (tests, metrics).
func (s *Server) RetentionPasses() int64 { return s.retentionPasses.Load() }

func countDeleted(params []byte) int {
	var r retention.Result
	if err := jsonUnmarshal(params, &r); err != nil {
		return 0
	}
	return len(r.Deleted)
}
