package extension

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/location"
	"github.com/arca-backup/arca/internal/storage/retry"
)

// codedError carries a job error code.
type codedError struct {
	code string
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func coded(code string, format string, args ...any) error {
	return &codedError{code: code, err: fmt.Errorf(format, args...)}
}

func codeOf(err error, def string) string {
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	// Errors of other packages that name their job code (mover.Error).
	var jc interface{ JobCode() string }
	if errors.As(err, &jc) {
		return jc.JobCode()
	}
	return def
}

// storageAccess is an opened storage location: the backend and the password.
type storageAccess struct {
	loc      *v1alpha1.StorageLocation
	be       storage.Backend
	password string
	// lockWait is told when a backup or restore waits for a prune's
	// exclusive lock (repo.WithLockWait).
	lockWait func(repo.LockWait)
}

// openStorage reads a StorageLocation and its Secret (uncached: the
// extension keeps no Secret informer) and opens the backend. write asks for
// a location that takes backups.
func (x *Extension) openStorage(ctx context.Context, ns, name string, write bool) (*storageAccess, error) {
	loc, err := x.storageLocation(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	return x.openLocation(ctx, loc, write)
}

// storageLocation reads a StorageLocation (uncached).
func (x *Extension) storageLocation(ctx context.Context, ns, name string) (*v1alpha1.StorageLocation, error) {
	loc := &v1alpha1.StorageLocation{}
	if err := x.api.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, loc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, coded(v1alpha1.CodeStorageLocationNotFound, "storage location %q not found in namespace %s", name, ns)
		}
		return nil, coded(v1alpha1.CodeRepositoryUnavailable, "read storage location %q: %v", name, err)
	}
	return loc, nil
}

func (x *Extension) openLocation(ctx context.Context, loc *v1alpha1.StorageLocation, write bool) (*storageAccess, error) {
	return x.openLocationRetry(ctx, loc, write, retry.Options{MaxElapsed: x.opts.StorageRetry})
}

// openLocationRetry is openLocation with the storage's retry budget
// (zero: the default).
func (x *Extension) openLocationRetry(ctx context.Context, loc *v1alpha1.StorageLocation, write bool, ro retry.Options) (*storageAccess, error) {
	if write && loc.Spec.ReadOnly {
		return nil, coded(v1alpha1.CodeStorageLocationReadOnly, "storage location %q is read-only: it serves restores only", loc.Name)
	}
	sec := &corev1.Secret{}
	if err := x.api.Get(ctx, types.NamespacedName{Namespace: loc.Namespace, Name: loc.Spec.CredentialsSecret}, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, coded(v1alpha1.CodeCredentialsNotFound, "secret %q of storage location %q not found in namespace %s", loc.Spec.CredentialsSecret, loc.Name, loc.Namespace)
		}
		return nil, coded(v1alpha1.CodeCredentialsNotFound, "read secret %q of storage location %q: %v", loc.Spec.CredentialsSecret, loc.Name, err)
	}
	pw := string(sec.Data[v1alpha1.SecretKeyPassword])
	if pw == "" {
		return nil, coded(v1alpha1.CodeCredentialsNotFound, "secret %q of storage location %q has no key %q (the repository password)", sec.Name, loc.Name, v1alpha1.SecretKeyPassword)
	}
	d := func(k string) string { return string(sec.Data[k]) }
	creds := location.Credentials{
		AzureAccountKey: d(v1alpha1.SecretKeyAzureAccountKey), AzureSASToken: d(v1alpha1.SecretKeyAzureSASToken),
		AzureConnectionString: d(v1alpha1.SecretKeyAzureConnectionString),
		AWSAccessKeyID:        d(v1alpha1.SecretKeyAWSAccessKeyID), AWSSecretAccessKey: d(v1alpha1.SecretKeyAWSSecretAccessKey),
		AWSSessionToken: d(v1alpha1.SecretKeyAWSSessionToken),
	}
	be, err := location.OpenWith(ctx, loc.Spec.URL, creds, location.Options{Create: write, Retry: ro})
	if err != nil {
		hint := ""
		if l, perr := location.Parse(loc.Spec.URL); perr == nil && l.Kind == location.File && x.opts.PodName != "" {
			// In a pod a path exists only on a mounted volume.
			hint = fmt.Sprintf(" (the extension runs in pod %s, which sees %s only when a volume is mounted there: "+
				"`arca extension update --storage-claim NAME` or `--storage-host-path DIR`)", x.opts.PodName, l.Path)
		}
		return nil, coded(v1alpha1.CodeRepositoryUnavailable, "open storage location %q (%s): %v%s", loc.Name, loc.Spec.URL, err, hint)
	}
	lockWait := func(w repo.LockWait) {
		x.log.Info("waiting for the repository's exclusive lock (a prune)", "storageLocation", loc.Namespace+"/"+loc.Name,
			"holder", w.Holder.Hostname, "pid", w.Holder.PID, "since", w.Holder.Time, "waited", w.Waited.String(), "next", w.Next.String(), "max", w.Max.String())
	}
	return &storageAccess{loc: loc, be: be, password: pw, lockWait: lockWait}, nil
}

// openRepo opens the repository; with create, a location without one gets one.
func (s *storageAccess) openRepo(ctx context.Context, create bool) (*repo.Repository, error) {
	var r *repo.Repository
	var err error
	wait := repo.WithLockWait(repo.DefaultLockWait, s.lockWait)
	if create {
		r, _, err = repo.OpenOrInit(ctx, s.be, s.password, wait)
	} else {
		r, err = repo.Open(ctx, s.be, s.password, wait)
	}
	if err != nil {
		_ = s.be.Close()
		return nil, coded(v1alpha1.CodeRepositoryUnavailable, "open repository of storage location %q (%s): %v", s.loc.Name, s.loc.Spec.URL, err)
	}
	return r, nil
}

// openReader opens the repository for reading only (restore, listing): the
// handle cannot write recovery points, forget, prune or change keys.
func (s *storageAccess) openReader(ctx context.Context) (repo.Reader, error) {
	r, err := s.openRepo(ctx, false)
	if err != nil {
		return nil, err
	}
	return r.ReadOnly(), nil
}
