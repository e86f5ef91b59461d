package clusterdriver

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Registered gives the job runner a ClusterDriver for every cluster
// registered through trusted access (jobs.Drivers): a Driver with the
// vault's short-lived token, which reports a revoked identity as
// TrustedAccessRevoked.
type Registered struct {
	Store store.ClusterStore
	Clock clock.Clock // tells an expired token from a revoked one; nil: the wall clock
}

var _ jobs.Drivers = (*Registered)(nil)

// Driver implements jobs.Drivers. A revoked cluster still gets a driver,
// so that its jobs fail with TrustedAccessRevoked rather than
// ClusterNotConnected. The registration is read on every call, so a
// renewed token is used at once.
func (d *Registered) Driver(cluster string) (jobs.ClusterDriver, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.Store.GetCluster(ctx, cluster)
	if err != nil {
		return nil, false
	}
	clk := d.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	return &registered{Store: d.Store, Cluster: c, Clock: clk}, true
}

// registered is one cluster's driver through trusted access.
type registered struct {
	Store   store.ClusterStore
	Cluster *store.Cluster
	Clock   clock.Clock
}

var (
	_ jobs.ClusterDriver = (*registered)(nil)
	_ jobs.Canceller     = (*registered)(nil)
	_ jobs.Forgetter     = (*registered)(nil)
)

func (d *registered) inner() (*Driver, error) {
	switch d.Cluster.State {
	case store.ClusterRevoked:
		return nil, &RevokedError{Cluster: d.Cluster.Name, Err: errors.New(d.Cluster.Message)}
	case store.ClusterExpired:
		e := &ExpiredError{Cluster: d.Cluster.Name}
		if d.Cluster.TokenExpiresAt != nil {
			e.ExpiredAt = *d.Cluster.TokenExpiresAt
		}
		return nil, e
	}
	cd, err := New(RestConfig(d.Cluster), d.Cluster.Namespace)
	if err != nil {
		return nil, err
	}
	// The identity's vault name: admission refuses its jobs without it.
	cd.Vault = strings.TrimPrefix(d.Cluster.ServiceAccount, v1alpha1.VaultServiceAccountPrefix)
	return cd, nil
}

// check turns an API error into what it means when the cluster rejects the
// identity: expiry (401 for a token past its expiry) or revocation (401:
// token invalid, its service account deleted; 403: bindings removed),
// recording it in the store.
func (d *registered) check(ctx context.Context, err error) error {
	rej := rejection(d.Cluster, d.Clock.Now(), err)
	var rev *RevokedError
	var exp *ExpiredError
	if errors.As(rej, &rev) || errors.As(rej, &exp) {
		markRejected(ctx, d.Store, d.Cluster.Name, rej)
	}
	return rej
}

// StartBackup implements jobs.ClusterDriver.
func (d *registered) StartBackup(ctx context.Context, req jobs.BackupRequest) (string, error) {
	in, err := d.inner()
	if err != nil {
		return "", err
	}
	ref, err := in.StartBackup(ctx, req)
	return ref, d.check(ctx, err)
}

// StartRestore implements jobs.ClusterDriver.
func (d *registered) StartRestore(ctx context.Context, req jobs.RestoreRequest) (string, error) {
	in, err := d.inner()
	if err != nil {
		return "", err
	}
	ref, err := in.StartRestore(ctx, req)
	return ref, d.check(ctx, err)
}

// JobStatus implements jobs.ClusterDriver.
func (d *registered) JobStatus(ctx context.Context, ref string) (*jobs.Status, error) {
	in, err := d.inner()
	if err != nil {
		return nil, err
	}
	st, err := in.JobStatus(ctx, ref)
	return st, d.check(ctx, err)
}

// CancelJob implements jobs.Canceller.
func (d *registered) CancelJob(ctx context.Context, ref string) error {
	in, err := d.inner()
	if err != nil {
		return err
	}
	return d.check(ctx, in.CancelJob(ctx, ref))
}

// StartForget implements jobs.Forgetter.
func (d *registered) StartForget(ctx context.Context, req jobs.ForgetRequest) (string, error) {
	in, err := d.inner()
	if err != nil {
		return "", err
	}
	ref, err := in.StartForget(ctx, req)
	return ref, d.check(ctx, err)
}
