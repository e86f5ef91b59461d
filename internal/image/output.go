package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// WriteArchive writes img, tagged tag, as a docker-archive tarball (the
// `docker save` layout: manifest.json, the config and one gzip file per
// layer) that `docker load`, `kind load image-archive` and
// `ctr images import` accept. The archive itself is reproducible: its tar
// entries carry no times or owners.
func WriteArchive(path, tag string, img v1.Image) error {
	t, err := name.NewTag(tag, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image tag %q: %w (want REGISTRY/REPOSITORY:TAG)", tag, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := tarball.WriteToFile(tmp, t, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

// PushOptions tune Push.
type PushOptions struct {
	// Insecure pushes over plain HTTP. Loopback, localhost and RFC 1918
	// addresses use plain HTTP anyway.
	Insecure bool
}

// Push uploads img to ref (REGISTRY/REPOSITORY:TAG), with the credentials
// of the Docker config (~/.docker/config.json, $DOCKER_CONFIG) when the
// registry asks for them, and returns the pushed digest.
func Push(ctx context.Context, img v1.Image, ref string, o PushOptions) (v1.Hash, error) {
	var opts []name.Option
	if o.Insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image reference %q: %w (want REGISTRY/REPOSITORY:TAG)", ref, err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
	}
	return img.Digest()
}
