package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/retry"
)

// FallbackPasswordEnv is read for the secondary repository's password when
// --fallback-password-file is absent.
const FallbackPasswordEnv = "ARCA_FALLBACK_PASSWORD"

// WarnRestoredFromSecondary: the primary repository could not be read and
// the restore read the copy in the secondary storage location.
const WarnRestoredFromSecondary = v1alpha1.CodeRestoredFromSecondary

// fallbackFlags name a secondary repository (one `arca repo copy` fills) a
// restore reads when the primary is unreachable, or always with
// --from-fallback.
type fallbackFlags struct {
	repo         RepoOptions
	fromFallback bool
}

func (f *fallbackFlags) addFlags(fs *pflag.FlagSet) {
	f.repo.flag, f.repo.PasswordEnv = "fallback", FallbackPasswordEnv
	fs.StringVar(&f.repo.Repo, "fallback-repo", "", "secondary repository (a copy made by arca repo copy) read when --repo cannot be read")
	fs.StringVar(&f.repo.PasswordFile, "fallback-password-file", "", "file holding the secondary's password (default: $"+FallbackPasswordEnv+")")
	fs.BoolVar(&f.fromFallback, "from-fallback", false, "read the recovery point from --fallback-repo, not from --repo")
}

// openPoint opens the repository holding ref and finds the point: the
// primary (o), or, when it cannot be opened or read and a fallback is
// named, the secondary, with a warning on stderr naming both. A wrong
// password or an unknown point in a readable primary is an error, not a
// reason to fall back.
func (f *fallbackFlags) openPoint(ctx context.Context, o *RepoOptions, ref string, stderr io.Writer) (repo.Reader, *repo.RecoveryPoint, error) {
	f.repo.flag, f.repo.PasswordEnv = "fallback", FallbackPasswordEnv
	f.repo.LockWait, f.repo.Stderr = o.LockWait, o.Stderr
	if f.fromFallback && f.repo.Repo == "" {
		return nil, nil, &UsageError{errors.New("--from-fallback needs --fallback-repo URL")}
	}
	if f.repo.Repo != "" {
		// Both passwords up front: a missing one is a usage error now,
		// not after the primary failed.
		if _, err := f.repo.Password(); err != nil {
			return nil, nil, err
		}
	}
	if !f.fromFallback {
		if f.repo.Repo != "" {
			o.retry = retry.PrimaryWithFallback
		}
		r, rp, err := openAndFind(ctx, o, ref)
		if err == nil || f.repo.Repo == "" || !primaryDown(err) {
			return r, rp, err
		}
		fmt.Fprintf(stderr, "warning: %s: the primary repository %s could not be read (%v); restoring from the secondary %s\n",
			WarnRestoredFromSecondary, o.Repo, err, f.repo.Repo)
	}
	r, err := f.repo.OpenReader(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("secondary: %w", err)
	}
	rp, err := findCopy(ctx, r, ref)
	if err != nil {
		r.Close()
		return nil, nil, &UsageError{fmt.Errorf("recovery point %q in the secondary %s: %w", ref, f.repo.Repo, err)}
	}
	return r, rp, nil
}

func openAndFind(ctx context.Context, o *RepoOptions, ref string) (repo.Reader, *repo.RecoveryPoint, error) {
	r, err := o.OpenReader(ctx)
	if err != nil {
		return nil, nil, err
	}
	rp, err := r.FindRecoveryPoint(ctx, ref)
	if err != nil {
		r.Close()
		// The primary answered: a point it does not have is the caller's
		// mistake, not a reason to fall back.
		return nil, nil, &UsageError{fmt.Errorf("recovery point %q: %w", ref, err)}
	}
	return r, rp, nil
}

// primaryDown tells a primary that cannot be read (unreachable, missing,
// damaged) from a mistake of the caller's, which falling back would hide.
func primaryDown(err error) bool {
	var ue *UsageError
	return !errors.As(err, &ue) && !errors.Is(err, repo.ErrWrongPassword) && !errors.Is(err, context.Canceled)
}

// findCopy resolves ref in a secondary: "latest", the point's own ID or a
// prefix of it, or the ID (or a unique prefix) of the original it is a
// copy of, as the primary and the vault's catalog name it.
func findCopy(ctx context.Context, r repo.Reader, ref string) (*repo.RecoveryPoint, error) {
	if rp, err := r.FindRecoveryPoint(ctx, ref); err == nil || !errors.Is(err, repo.ErrNotFound) {
		return rp, err
	}
	rps, err := r.ListRecoveryPoints(ctx)
	if err != nil {
		return nil, err
	}
	ref = strings.ToLower(ref)
	var match []*repo.RecoveryPoint
	for _, rp := range rps {
		if strings.HasPrefix(rp.Origin().String(), ref) {
			match = append(match, rp)
		}
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("%s: %w (neither a point of the secondary nor a copy of one)", ref, repo.ErrNotFound)
	case 1:
		return match[0], nil
	}
	return nil, fmt.Errorf("%q is the prefix of %d copies' origins: give more of the ID", ref, len(match))
}
