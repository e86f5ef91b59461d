package testenv

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/arca-backup/arca/internal/image"
)

func pull(t *testing.T, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return img
}

func TestRegistryPushPull(t *testing.T) {
	// A second loopback address stands for cp.HostIP: the registry listens
	// on the host it is given, and only there.
	r := StartRegistry(t, "127.0.0.2")
	if !strings.HasPrefix(r.Addr(), "127.0.0.2:") {
		t.Fatalf("registry address %q, want 127.0.0.2:PORT", r.Addr())
	}
	_, port, _ := net.SplitHostPort(r.Addr())
	if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
		c.Close()
		t.Errorf("registry for 127.0.0.2 also answers on 127.0.0.1:%s", port)
	}
	img, err := image.Build(image.Spec{
		Layers:  []image.Layer{{Entries: []image.Entry{image.File("/hello", 0o644, []byte("hello "+t.Name()))}}},
		Cmd:     []string{"/hello"},
		Created: time.Unix(1, 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()

	ref := r.Push(t, img, "arca-test/hello:v1")
	if ref != r.Addr()+"/arca-test/hello:v1" {
		t.Errorf("Push returned %q, want %s/arca-test/hello:v1", ref, r.Addr())
	}
	if got, err := pull(t, ref).Digest(); err != nil || got != want {
		t.Fatalf("pulled %s: digest %s (%v), want %s", ref, got, err, want)
	}

	byDigest := r.Push(t, img, "arca-test/by-digest")
	if byDigest != r.Addr()+"/arca-test/by-digest@"+want.String() {
		t.Errorf("Push by digest returned %q", byDigest)
	}
	if got, err := pull(t, byDigest).Digest(); err != nil || got != want {
		t.Fatalf("pulled %s: digest %s (%v), want %s", byDigest, got, err, want)
	}

	// A tag that was never pushed is not found: the registry is real.
	missing, _ := name.ParseReference(r.Addr()+"/arca-test/hello:v2", name.Insecure)
	if _, err := remote.Image(missing); err == nil {
		t.Fatal("pulling a tag that was never pushed succeeded")
	}
}

// TestRegistryTestImages pushes the three images the node tests use and
// pulls each back: the config says what a container runtime will run.
func TestRegistryTestImages(t *testing.T) {
	r := StartRegistry(t, "127.0.0.1")
	for _, tc := range []struct {
		ref        string
		entrypoint []string
		user       string
	}{
		{PauseImage(t, r), []string{"/pause"}, "65535:65535"},
		{AppImage(t, r), nil, ""},
		{ExtensionImage(t, r), []string{"/arca"}, "65532:65532"},
	} {
		if !strings.HasPrefix(tc.ref, r.Addr()+"/") {
			t.Errorf("reference %q is not in registry %s", tc.ref, r.Addr())
		}
		cfg, err := pull(t, tc.ref).ConfigFile()
		if err != nil {
			t.Fatalf("%s: config: %v", tc.ref, err)
		}
		if !slices.Equal(cfg.Config.Entrypoint, tc.entrypoint) || cfg.Config.User != tc.user {
			t.Errorf("%s: entrypoint %q user %q, want %q %q", tc.ref, cfg.Config.Entrypoint, cfg.Config.User, tc.entrypoint, tc.user)
		}
	}
	// Built once per process: a second registry gets the same digests.
	r2 := StartRegistry(t, "127.0.0.1")
	a, _ := pull(t, AppImage(t, r)).Digest()
	b, _ := pull(t, AppImage(t, r2)).Digest()
	if a != b {
		t.Errorf("AppImage digests differ between registries: %s and %s", a, b)
	}
}
