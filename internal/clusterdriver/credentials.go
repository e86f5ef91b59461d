package clusterdriver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/store"
)

// The vault's side of trusted access: the credential a cluster's owner
// registered (arca trusted-access enable, package trustedaccess), turned
// into clients, kept fresh, and given up when the cluster rejects it.

// CodeRevoked is the job error code of a job refused because trusted
// access to its cluster was disabled.
const CodeRevoked = "TrustedAccessRevoked"

// ErrRevoked marks operations refused because trusted access was disabled
// (the service account or its bindings are gone, the token is rejected).
var ErrRevoked = errors.New(CodeRevoked)

// RevokedError reports that the cluster rejects the vault's identity.
type RevokedError struct {
	Cluster string
	Err     error
}

func (e *RevokedError) Error() string {
	return fmt.Sprintf("trusted access to cluster %q was revoked (%v): the cluster's owner re-enables it with arca trusted-access enable --cluster-name %s", e.Cluster, e.Err, e.Cluster)
}
func (e *RevokedError) Unwrap() error        { return e.Err }
func (e *RevokedError) Is(target error) bool { return target == ErrRevoked }

// JobCode and Permanent make a RevokedError a jobs.CodedError.
func (e *RevokedError) JobCode() string { return CodeRevoked }
func (e *RevokedError) Permanent() bool { return true }

// CodeExpired is the job error code of a job refused because the vault's
// token for its cluster expired (not revoked).
const CodeExpired = "TrustedAccessTokenExpired"

// ExpiredError reports that the vault's token for a cluster expired before
// it was renewed.
type ExpiredError struct {
	Cluster   string
	ExpiredAt time.Time
	Why       string // why it was not renewed, when known
}

func (e *ExpiredError) Error() string {
	why := e.Why
	if why == "" {
		why = "the vault was stopped or could not reach the cluster for longer than the token's remaining lifetime"
	}
	return fmt.Sprintf("the vault's token for cluster %q expired at %s and a token cannot renew itself once expired (%s); trusted access was not revoked: the cluster's owner issues a fresh token with arca trusted-access enable --cluster-name %s",
		e.Cluster, e.ExpiredAt.UTC().Format(time.RFC3339), why, e.Cluster)
}

// JobCode and Permanent make an ExpiredError a jobs.CodedError.
func (e *ExpiredError) JobCode() string { return CodeExpired }
func (e *ExpiredError) Permanent() bool { return true }

// clockSkew is the allowance between the vault's clock and the cluster's
// (which sets a token's expiry): a token rejected within it of its expiry
// counts as expired.
const clockSkew = time.Minute

// Expired reports whether c's token has expired at now, by the expiry the
// cluster gave it.
func Expired(c *store.Cluster, now time.Time) bool {
	return c.TokenExpiresAt != nil && !now.Before(c.TokenExpiresAt.Add(-clockSkew))
}

// rejection turns an API error of a call made with c's token into what it
// means: a 401 for a token past its expiry is expiry, not revocation; any
// other 401 or 403 is revocation (ErrRevoked); other errors stay as they
// are.
func rejection(c *store.Cluster, now time.Time, err error) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsUnauthorized(err) && Expired(c, now):
		return &ExpiredError{Cluster: c.Name, ExpiredAt: *c.TokenExpiresAt}
	case IsRevocation(err):
		return &RevokedError{Cluster: c.Name, Err: err}
	}
	return err
}

// IsRevocation reports whether an API error means the vault's identity is
// gone or unbound: 401 (token invalid: service account deleted), 403
// (bindings removed) or a missing service account on renewal.
func IsRevocation(err error) bool {
	return apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err)
}

// RestConfig is how the vault reaches a registered cluster.
func RestConfig(c *store.Cluster) *rest.Config {
	return &rest.Config{Host: c.Server, BearerToken: c.Token, TLSClientConfig: rest.TLSClientConfig{CAData: c.CAData},
		Timeout: 30 * time.Second, QPS: 20, Burst: 40}
}

// Renew asks the cluster for a new token of the vault's own service
// account, authenticating with the current one. The vault may create
// tokens for that one service account only (Role rule serviceaccounts/token
// with resourceNames), so a leaked vault token cannot mint tokens for
// anything else. A token past its expiry cannot renew itself: the vault
// renews well before (Renewer), and after an outage the owner runs enable
// again.
func Renew(ctx context.Context, c *store.Cluster, ttl time.Duration) (string, time.Time, error) {
	cs, err := kubernetes.NewForConfig(RestConfig(c))
	if err != nil {
		return "", time.Time{}, err
	}
	secs := int64(ttl / time.Second)
	tr, err := cs.CoreV1().ServiceAccounts(c.Namespace).CreateToken(ctx, c.ServiceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if IsRevocation(err) || apierrors.IsNotFound(err) {
		return "", time.Time{}, &RevokedError{Cluster: c.Name, Err: err}
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("renew token for cluster %q: %w", c.Name, err)
	}
	return tr.Status.Token, tr.Status.ExpirationTimestamp.Time, nil
}

// DefaultCredentialLifetime bounds renewal: a credential is renewed for at
// most this long after its cluster's owner gave it (trusted access enabled
// or re-enabled, Cluster.RegisteredAt); then it runs out and the owner
// renews their consent with arca trusted-access enable.
const DefaultCredentialLifetime = 90 * 24 * time.Hour

// minTokenTTL is the shortest token the API server issues (TokenRequest
// expirationSeconds is at least 600).
const minTokenTTL = 10 * time.Minute

// Renewer keeps the tokens of registered clusters fresh: a token is
// renewed once less than a third of TTL remains, for at most MaxLifetime
// after the cluster's owner gave it. Each renewal, and each end of one, is
// written to the audit log. A cluster that rejects the vault is marked
// TrustedAccessRevoked; a token that expired first is marked
// TrustedAccessExpired (the owner re-issues it; nothing was revoked);
// other errors are retried on the next tick.
type Renewer struct {
	Store store.ClusterStore
	Clock clock.Clock
	Log   *slog.Logger
	TTL   time.Duration // lifetime asked for; default v1alpha1.VaultTokenTTL
	// MaxLifetime bounds renewal after RegisteredAt; default
	// DefaultCredentialLifetime.
	MaxLifetime time.Duration
}

func (r *Renewer) ttl() time.Duration {
	if r.TTL == 0 {
		return v1alpha1.VaultTokenTTL
	}
	return r.TTL
}

func (r *Renewer) maxLifetime() time.Duration {
	if r.MaxLifetime == 0 {
		return DefaultCredentialLifetime
	}
	return r.MaxLifetime
}

func (r *Renewer) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

// Tick renews what is due; it returns the names of clusters renewed.
func (r *Renewer) Tick(ctx context.Context) ([]string, error) {
	cs, err := r.Store.ListClusters(ctx)
	if err != nil {
		return nil, err
	}
	var renewed []string
	var errs []error
	for _, c := range cs {
		ok, err := r.renew(ctx, c)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			renewed = append(renewed, c.Name)
		}
	}
	return renewed, errors.Join(errs...)
}

// renew renews one cluster's token when due.
func (r *Renewer) renew(ctx context.Context, c *store.Cluster) (bool, error) {
	now := r.Clock.Now()
	if c.State != store.ClusterConnected {
		return false, nil
	}
	until := c.RegisteredAt.Add(r.maxLifetime())
	if Expired(c, now) {
		why := ""
		if !now.Before(until) {
			why = fmt.Sprintf("renewal ended %s after trusted access was enabled", r.maxLifetime())
		}
		return false, r.expired(ctx, c, &ExpiredError{Cluster: c.Name, ExpiredAt: *c.TokenExpiresAt, Why: why})
	}
	if c.TokenExpiresAt != nil && c.TokenExpiresAt.Sub(now) > r.ttl()/3 {
		return false, nil
	}
	if !now.Add(minTokenTTL).Before(until) {
		// Renewal is over: the token runs out, once.
		msg := fmt.Sprintf("renewal stopped: the credential reached its maximum lifetime (%s since trusted access was enabled at %s); it expires at %s unless the cluster's owner re-enables trusted access (arca trusted-access enable --cluster-name %s)",
			r.maxLifetime(), c.RegisteredAt.UTC().Format(time.RFC3339), expiry(c), c.Name)
		if c.Message == msg {
			return false, nil
		}
		c.Message = msg
		if err := r.Store.UpdateCluster(ctx, c); err != nil {
			return false, fmt.Errorf("save cluster %q: %w", c.Name, err)
		}
		r.log().Warn("audit", "event", "clusterTokenRenewalStopped", "principal", "vault", "cluster", c.Name,
			"registeredAt", c.RegisteredAt, "renewals", c.Renewals, "tokenExpiresAt", c.TokenExpiresAt, "reason", msg)
		return false, nil
	}
	ttl := min(r.ttl(), until.Sub(now)) // never past the bound
	tok, exp, err := Renew(ctx, c, ttl)
	var rev *RevokedError
	switch {
	case errors.As(err, &rev) && apierrors.IsUnauthorized(rev.Err) && Expired(c, r.Clock.Now()):
		return false, r.expired(ctx, c, &ExpiredError{Cluster: c.Name, ExpiredAt: *c.TokenExpiresAt})
	case errors.As(err, &rev):
		c.State, c.Message = store.ClusterRevoked, rev.Error()
		if err := r.Store.UpdateCluster(ctx, c); err != nil {
			return false, fmt.Errorf("save cluster %q: %w", c.Name, err)
		}
		r.log().Warn("audit", "event", "clusterTrustedAccessRevoked", "principal", "vault", "cluster", c.Name, "reason", rev.Error())
		return false, nil
	case err != nil:
		r.log().Warn("audit", "event", "clusterTokenRenewalFailed", "principal", "vault", "cluster", c.Name,
			"tokenExpiresAt", c.TokenExpiresAt, "reason", err.Error())
		return false, err
	}
	c.Token, c.TokenExpiresAt, c.Message = tok, &exp, ""
	c.Renewals++
	if err := r.Store.UpdateCluster(ctx, c); err != nil {
		return false, fmt.Errorf("save cluster %q: %w", c.Name, err)
	}
	r.log().Info("audit", "event", "clusterTokenRenewed", "principal", "vault", "cluster", c.Name, "renewals", c.Renewals,
		"tokenExpiresAt", exp, "renewableUntil", until)
	return true, nil
}

func expiry(c *store.Cluster) string {
	if c.TokenExpiresAt == nil {
		return "an unknown time"
	}
	return c.TokenExpiresAt.UTC().Format(time.RFC3339)
}

// expired records a token that ran out.
func (r *Renewer) expired(ctx context.Context, c *store.Cluster, e *ExpiredError) error {
	c.State, c.Message = store.ClusterExpired, e.Error()
	if err := r.Store.UpdateCluster(ctx, c); err != nil {
		return fmt.Errorf("save cluster %q: %w", c.Name, err)
	}
	r.log().Warn("audit", "event", "clusterTokenExpired", "principal", "vault", "cluster", c.Name, "tokenExpiresAt", c.TokenExpiresAt,
		"renewals", c.Renewals, "reason", e.Error())
	return nil
}

// Run ticks until ctx ends.
func (r *Renewer) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := r.Tick(ctx); err != nil && ctx.Err() == nil && r.Log != nil {
			r.Log.Error("trusted access token renewal", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// markRejected records what a rejection seen while using the credential
// means (RevokedError or ExpiredError) in the cluster's registration.
func markRejected(ctx context.Context, st store.ClusterStore, name string, rejected error) {
	state := store.ClusterRevoked
	var ee *ExpiredError
	if errors.As(rejected, &ee) {
		state = store.ClusterExpired
	}
	c, err := st.GetCluster(ctx, name)
	if err != nil || c.State == state {
		return
	}
	c.State, c.Message = state, rejected.Error()
	_ = st.UpdateCluster(ctx, c) // a concurrent writer saw the same or re-enabled it
}

// MarkRevoked records a revocation seen while using the credential.
func MarkRevoked(ctx context.Context, st store.ClusterStore, name string, cause error) {
	markRejected(ctx, st, name, &RevokedError{Cluster: name, Err: cause})
}
