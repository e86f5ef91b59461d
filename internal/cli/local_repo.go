package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/local"
)

// localPassword reads the repository password from file, or from
// $ARCA_PASSWORD when no file is given.
//
// TODO: replace with the shared helpers of repoflags.go once they land.
func localPassword(file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", &UsageError{fmt.Errorf("read password file: %w", err)}
		}
		p := strings.TrimRight(string(b), "\r\n")
		if p == "" {
			return "", &UsageError{fmt.Errorf("password file %s is empty", file)}
		}
		return p, nil
	}
	if p := os.Getenv("ARCA_PASSWORD"); p != "" {
		return p, nil
	}
	return "", &UsageError{errors.New("no repository password: use --password-file FILE or set ARCA_PASSWORD")}
}

// localOpenRepo opens the repository at location; with create, a missing
// repository is initialised.
//
// TODO: use storage/location.Open (azure://, s3://) once it lands; until
// then only file:// URLs and directories are supported here.
func localOpenRepo(ctx context.Context, location, password string, create bool) (*repo.Repository, bool, error) {
	dir := location
	if strings.Contains(location, "://") {
		u, err := url.Parse(location)
		if err != nil {
			return nil, false, &UsageError{fmt.Errorf("repository URL %q: %w", location, err)}
		}
		if u.Scheme != "file" {
			return nil, false, &UsageError{fmt.Errorf("repository URL %q: scheme %s not supported by arca local yet (use file://)", location, u.Scheme)}
		}
		dir = u.Path
	}
	var be storage.Backend
	var err error
	if create {
		be, err = local.Create(dir)
	} else {
		be, err = local.Open(dir)
	}
	if err != nil {
		if storage.IsNotExist(err) {
			return nil, false, &UsageError{fmt.Errorf("no repository at %s", location)}
		}
		return nil, false, err
	}
	if create {
		r, created, err := repo.OpenOrInit(ctx, be, password)
		if err != nil {
			return nil, false, fmt.Errorf("open repository %s: %w", location, err)
		}
		return r, created, nil
	}
	r, err := repo.Open(ctx, be, password)
	if err != nil {
		return nil, false, fmt.Errorf("open repository %s: %w", location, err)
	}
	return r, false, nil
}
