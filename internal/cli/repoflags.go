package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/location"
	"github.com/arca-backup/arca/internal/storage/retry"
)

// RepoOptions locate and unlock a repository. Commands that use a
// repository embed it, call AddFlags, then Open or OpenOrInit:
//
//	--repo URL            file:///path or a directory, azure://account/container/prefix,
//	                      s3://bucket/prefix?endpoint=… (credentials from the environment)
//	--password-file FILE  the password (first line); otherwise $ARCA_PASSWORD
//	--lock-wait DURATION  how long a backup or restore waits for a prune's lock
type RepoOptions struct {
	Repo         string
	PasswordFile string
	// PasswordEnv names the environment variable read when PasswordFile
	// is empty (default $ARCA_PASSWORD; a copy's target reads
	// $ARCA_TO_PASSWORD, a fallback repository $ARCA_FALLBACK_PASSWORD).
	PasswordEnv string
	// flag is how the command names Repo and PasswordFile in its
	// messages (default --repo and --password-file).
	flag string
	// LockWait: how long a shared lock request (backup, restore) waits,
	// retrying with backoff, while another process holds the exclusive
	// lock; 0 fails at once (the zero value, when AddFlags was not called).
	LockWait time.Duration
	// Stderr receives the lock-wait reports (nil: os.Stderr).
	Stderr io.Writer
	// retry bounds the storage retries (zero: the defaults, minutes on an
	// unreachable store); a primary with a fallback gives up sooner.
	retry retry.Options
}

func (o *RepoOptions) passwordEnv() string {
	if o.PasswordEnv != "" {
		return o.PasswordEnv
	}
	return PasswordEnv
}

func (o *RepoOptions) repoFlag() string {
	if o.flag != "" {
		return o.flag
	}
	return "repo"
}

func (o *RepoOptions) passwordFlag() string {
	if o.flag != "" {
		return o.flag + "-password-file"
	}
	return "password-file"
}

// PasswordEnv is the environment variable read when --password-file is absent.
const PasswordEnv = "ARCA_PASSWORD"

// AddFlags registers --repo and --password-file.
func (o *RepoOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Repo, "repo", "", "repository URL: file:///path (or a directory), azure://account/container/prefix, s3://bucket/prefix?endpoint=…")
	fs.StringVar(&o.PasswordFile, "password-file", "", "file holding the repository password (default: $"+PasswordEnv+")")
	fs.DurationVar(&o.LockWait, "lock-wait", repo.DefaultLockWait, "how long a backup or restore waits, retrying, while another process (a prune) holds the repository's exclusive lock; 0 fails at once")
}

// reportLockWait tells the user that the command waits for another
// process's lock, and for how long at most.
func (o *RepoOptions) reportLockWait(w repo.LockWait) {
	out := o.Stderr
	if out == nil {
		out = os.Stderr
	}
	fmt.Fprintf(out, "waiting for the repository: exclusive lock %s held by %s (pid %d) since %s; next try in %s (waited %s of at most %s, --lock-wait)\n",
		w.Holder.ID.Short(), w.Holder.Hostname, w.Holder.PID, w.Holder.Time.Format(time.RFC3339),
		w.Next.Round(time.Millisecond), w.Waited.Round(time.Second), w.Max)
}

// Password returns the password from --password-file or $ARCA_PASSWORD; a
// UsageError naming both if neither is set.
func (o *RepoOptions) Password() (string, error) {
	if o.PasswordFile != "" {
		b, err := os.ReadFile(o.PasswordFile)
		if err != nil {
			return "", &UsageError{fmt.Errorf("read password file: %w", err)}
		}
		p, _, _ := strings.Cut(string(b), "\n")
		p = strings.TrimRight(p, "\r")
		if p == "" {
			return "", &UsageError{fmt.Errorf("password file %s is empty", o.PasswordFile)}
		}
		return p, nil
	}
	if p := os.Getenv(o.passwordEnv()); p != "" {
		return p, nil
	}
	return "", &UsageError{fmt.Errorf("no password for the repository %s: use --%s FILE or set %s", o.Repo, o.passwordFlag(), o.passwordEnv())}
}

// Backend opens the storage named by --repo (storage/location: file://,
// a bare path, azure://, s3://; credentials from the environment), wrapped
// in the retry decorator. With create, a missing directory, container or
// bucket is created.
func (o *RepoOptions) Backend(ctx context.Context, create bool) (storage.Backend, error) {
	if o.Repo == "" {
		return nil, &UsageError{fmt.Errorf("--%s is required", o.repoFlag())}
	}
	be, err := location.OpenWith(ctx, o.Repo, location.Credentials{}, location.Options{Create: create, Retry: o.retry})
	if err != nil {
		var pe *location.ParseError
		if errors.As(err, &pe) {
			return nil, &UsageError{err}
		}
		if storage.IsNotExist(err) {
			return nil, fmt.Errorf("%w: %v", repo.ErrNoRepository, err)
		}
		return nil, err
	}
	return be, nil
}

// Open opens an existing repository.
func (o *RepoOptions) Open(ctx context.Context, opts ...repo.Option) (*repo.Repository, error) {
	pw, err := o.Password()
	if err != nil {
		return nil, err
	}
	be, err := o.Backend(ctx, false)
	if err != nil {
		return nil, err
	}
	opts = append([]repo.Option{repo.WithLockWait(o.LockWait, o.reportLockWait)}, opts...)
	r, err := repo.Open(ctx, be, pw, opts...)
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", o.Repo, err)
	}
	return r, nil
}

// OpenReader opens an existing repository for reading only: the commands
// that list, show, diff, check or restore get a handle that cannot write.
func (o *RepoOptions) OpenReader(ctx context.Context, opts ...repo.Option) (repo.Reader, error) {
	r, err := o.Open(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return r.ReadOnly(), nil
}

// OpenOrInit opens the repository, creating it if there is none.
func (o *RepoOptions) OpenOrInit(ctx context.Context, opts ...repo.Option) (*repo.Repository, bool, error) {
	pw, err := o.Password()
	if err != nil {
		return nil, false, err
	}
	be, err := o.Backend(ctx, true)
	if err != nil {
		return nil, false, err
	}
	opts = append([]repo.Option{repo.WithLockWait(o.LockWait, o.reportLockWait)}, opts...)
	r, created, err := repo.OpenOrInit(ctx, be, pw, opts...)
	if err != nil {
		return nil, false, fmt.Errorf("open repository %s: %w", o.Repo, err)
	}
	return r, created, nil
}
