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

// Renewer keeps the tokens of registered clusters fresh: a token is
// renewed once less than a third of TTL remains. A cluster that rejects
// the vault is marked TrustedAccessRevoked (jobs then fail with that
// code); other errors are retried on the next tick.
type Renewer struct {
	Store store.ClusterStore
	Clock clock.Clock
	Log   *slog.Logger
	TTL   time.Duration // lifetime asked for; default v1alpha1.VaultTokenTTL
}

func (r *Renewer) ttl() time.Duration {
	if r.TTL == 0 {
		return v1alpha1.VaultTokenTTL
	}
	return r.TTL
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
		if c.State != store.ClusterConnected {
			continue
		}
		if c.TokenExpiresAt != nil && c.TokenExpiresAt.Sub(r.Clock.Now()) > r.ttl()/3 {
			continue
		}
		tok, exp, err := Renew(ctx, c, r.ttl())
		var rev *RevokedError
		switch {
		case errors.As(err, &rev):
			c.State, c.Message = store.ClusterRevoked, rev.Error()
		case err != nil:
			errs = append(errs, err)
			continue
		default:
			c.Token, c.TokenExpiresAt, c.Message = tok, &exp, ""
		}
		if err := r.Store.UpdateCluster(ctx, c); err != nil {
			errs = append(errs, fmt.Errorf("save cluster %q: %w", c.Name, err))
			continue
		}
		if rev == nil {
			renewed = append(renewed, c.Name)
		} else if r.Log != nil {
			r.Log.Warn("trusted access revoked", "cluster", c.Name, "err", rev.Err)
		}
	}
	return renewed, errors.Join(errs...)
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

// MarkRevoked records a revocation seen while using the credential.
func MarkRevoked(ctx context.Context, st store.ClusterStore, name string, cause error) {
	c, err := st.GetCluster(ctx, name)
	if err != nil || c.State == store.ClusterRevoked {
		return
	}
	c.State, c.Message = store.ClusterRevoked, (&RevokedError{Cluster: name, Err: cause}).Error()
	_ = st.UpdateCluster(ctx, c) // a concurrent writer saw the same or re-enabled it
}
