package testenv

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/arca-backup/arca/internal/image"
)

// Registry is an in-memory OCI registry (go-containerregistry's
// pkg/registry) served over plain HTTP, from which the test node pulls
// images as it would from any registry.
type Registry struct {
	addr string
	srv  *http.Server
	log  *syncBuffer
}

// StartRegistry serves a fresh registry on host and a free port. host is
// the address the pulling side reaches: cp.HostIP for a node's containerd
// (pods cannot reach the host's 127.0.0.1), 127.0.0.1 otherwise. It is
// stopped when the test ends; its request log is printed if the test
// failed.
func StartRegistry(t T, host string) *Registry {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("registry: listen on %s: %v", host, err)
	}
	r := &Registry{addr: l.Addr().String(), log: &syncBuffer{}}
	r.srv = &http.Server{
		Handler:           registry.New(registry.Logger(log.New(r.log, "", log.Ltime))),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		if err := r.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Write([]byte("serve: " + err.Error() + "\n"))
		}
	}()
	t.Cleanup(func() {
		r.srv.Close()
		if t.Failed() {
			t.Logf("registry %s log:\n%s", r.addr, r.log.String())
		}
	})
	t.Logf("registry serving on http://%s", r.addr)
	return r
}

// Addr is the registry's "host:port".
func (r *Registry) Addr() string { return r.addr }

// Push uploads img as repoTag ("repo:tag", or "repo" for a push by digest)
// and returns the reference to pull: "host:port/repo:tag", or
// "host:port/repo@sha256:…" without a tag.
func (r *Registry) Push(t T, img v1.Image, repoTag string) string {
	t.Helper()
	ref := r.addr + "/" + repoTag
	byDigest := !strings.Contains(repoTag[strings.LastIndex(repoTag, "/")+1:], ":")
	if byDigest {
		d, err := img.Digest()
		if err != nil {
			t.Fatalf("registry: digest of image for %s: %v", repoTag, err)
		}
		ref += "@" + d.String()
	}
	parsed, err := name.ParseReference(ref, name.Insecure, name.StrictValidation)
	if err != nil {
		t.Fatalf("registry: reference %q: %v", ref, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := remote.Write(parsed, img, remote.WithContext(ctx)); err != nil {
		t.Fatalf("registry: push %s: %v", ref, err)
	}
	return ref
}

// Repositories of the images PauseImage, AppImage and ExtensionImage push.
const (
	PauseRepoTag     = "arca-test/pause:test"
	AppRepoTag       = "arca-test/busybox:test"
	ExtensionRepoTag = "arca-backup/arca:" + ExtensionVersion
	// ExtensionVersion is the version baked into the extension image the
	// tests build (what `arca version` and the image labels say).
	ExtensionVersion = "test"
)

// builtImage builds an image once per process; every test reuses it.
type builtImage struct {
	once sync.Once
	img  v1.Image
	err  error
	took time.Duration
}

func (b *builtImage) get(t T, what string, build func() (v1.Image, error)) v1.Image {
	t.Helper()
	b.once.Do(func() {
		start := time.Now()
		b.img, b.err = build()
		b.took = time.Since(start)
		if b.err == nil {
			t.Logf("built %s image in %s", what, b.took.Round(time.Millisecond))
		}
	})
	if b.err != nil {
		t.Fatalf("build %s image: %v", what, b.err)
	}
	return b.img
}

var pauseImage, appImage, extensionImage builtImage

// PauseImage pushes the pod sandbox image (hack/pause, built once per
// process) to r and returns its reference.
func PauseImage(t T, r *Registry) string {
	t.Helper()
	return r.Push(t, pauseImg(t), PauseRepoTag)
}

// AppImage pushes the busybox application image (Debian's busybox-static,
// built once per process) to r and returns its reference.
func AppImage(t T, r *Registry) string {
	t.Helper()
	return r.Push(t, appImg(t), AppRepoTag)
}

// ExtensionImage pushes the extension image, built once per process from
// the current source tree exactly as `make image` builds it (version
// ExtensionVersion), to r and returns its reference.
func ExtensionImage(t T, r *Registry) string {
	t.Helper()
	return r.Push(t, extensionImg(t), ExtensionRepoTag)
}

func pauseImg(t T) v1.Image {
	t.Helper()
	return pauseImage.get(t, "pause", func() (v1.Image, error) {
		dir, err := sourceDir()
		if err != nil {
			return nil, err
		}
		bin, err := image.BuildStatic(context.Background(), dir, image.PausePackage, nil)
		if err != nil {
			return nil, err
		}
		return image.Pause(bin)
	})
}

func appImg(t T) v1.Image {
	t.Helper()
	return appImage.get(t, "busybox", func() (v1.Image, error) {
		b, err := os.ReadFile(image.BusyboxPath)
		if err != nil {
			return nil, errors.New(err.Error() + " (install Debian's busybox-static: make deps)")
		}
		return image.Busybox(b)
	})
}

func extensionImg(t T) v1.Image {
	t.Helper()
	return extensionImage.get(t, "extension", func() (v1.Image, error) {
		dir, err := sourceDir()
		if err != nil {
			return nil, err
		}
		ca, err := os.ReadFile(image.HostCABundle)
		if err != nil {
			return nil, errors.New(err.Error() + " (install Debian's ca-certificates: make deps)")
		}
		bin, err := image.BuildArca(context.Background(), dir, ExtensionVersion)
		if err != nil {
			return nil, err
		}
		return image.Extension(image.ExtensionOptions{Arca: bin, CABundle: ca, Version: ExtensionVersion, Created: time.Unix(0, 0)})
	})
}

// sourceDir is the root of the arca source tree the test runs in.
func sourceDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return image.ModuleDir(wd)
}
