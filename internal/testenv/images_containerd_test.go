package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/arca-backup/arca/internal/image"
)

// privateContainerd is a containerd of the test's own (root, state and
// socket in a temporary directory) driven with ctr.
type privateContainerd struct {
	dir  string
	sock string
}

func startPrivateContainerd(t *testing.T) *privateContainerd {
	t.Helper()
	for _, bin := range []string{"containerd", "ctr", "runc", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: install Debian's containerd and runc (make deps)", bin)
		}
	}
	dir, err := os.MkdirTemp("", "arca-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // runs after containerd stopped
	c := &privateContainerd{dir: dir, sock: filepath.Join(dir, "sock")}
	// Only what ctr needs: no CRI plugin, so this containerd never touches
	// CNI or a kubelet's state.
	config := `version = 2
root = "` + dir + `/root"
state = "` + dir + `/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "` + c.sock + `"
[ttrpc]
  address = "` + c.sock + `.ttrpc"
`
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	p := StartProcess(t, "containerd", "containerd", []string{"--config", filepath.Join(dir, "config.toml")}, nil, dir)
	p.WaitReady(t, 30*time.Second, func(ctx context.Context) error {
		_, err := c.ctr(ctx, "version")
		return err
	})
	return c
}

func (c *privateContainerd) ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.sock, "-n", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), &ctrError{args: args, err: err, out: string(out)}
	}
	return string(out), nil
}

type ctrError struct {
	args []string
	err  error
	out  string
}

func (e *ctrError) Error() string {
	return "ctr " + strings.Join(e.args, " ") + ": " + e.err.Error() + ": " + strings.TrimSpace(e.out)
}

// importArchive writes img as bin/arca-image.tar is written (docker-archive)
// and imports it the way a kind node or the lead's node would.
func (c *privateContainerd) importArchive(t *testing.T, img v1.Image, tag string) {
	t.Helper()
	p := filepath.Join(c.dir, strings.NewReplacer("/", "_", ":", "_").Replace(tag)+".tar")
	if err := image.WriteArchive(p, tag, img); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := c.ctr(ctx, "images", "import", p); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(out, tag) {
		t.Fatalf("ctr images import %s: %q does not name %s", p, out, tag)
	}
	os.Remove(p)
}

// TestImagesRunInContainerd imports the three images as docker-archives
// with `ctr images import` and runs each as PID 1 under runc: the busybox
// shell, the extension's /arca as user 65532, and pause, which must exit 0
// on SIGTERM. It also pulls the busybox image from the test registry over
// plain HTTP and runs it.
func TestImagesRunInContainerd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("running containers with runc needs root")
	}
	c := startPrivateContainerd(t)
	const (
		app   = "example.test/arca-test/busybox:v1"
		pause = "example.test/arca-test/pause:v1"
		ext   = "example.test/arca/arca:test"
	)
	c.importArchive(t, appImg(t), app)
	c.importArchive(t, pauseImg(t), pause)
	c.importArchive(t, extensionImg(t), ext)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	out, err := c.ctr(ctx, "run", "--rm", app, "arca-busybox", "sh", "-c",
		`echo pid=$$ uid=$(id -u); printf hello | sha256sum; mkdir -p /tmp/d && touch /tmp/d/f && ls /tmp/d && find /bin -name sh | wc -l`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pid=1 uid=0", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", "\nf\n", "\n1\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("busybox output %q lacks %q", out, want)
		}
	}

	t.Logf("busybox:\n%s", out)

	out, err = c.ctr(ctx, "run", "--rm", ext, "arca-version", "/arca", "version")
	if err != nil || strings.TrimSpace(out) != ExtensionVersion {
		t.Errorf("/arca version in the extension image: %q, %v; want %s", out, err, ExtensionVersion)
	}
	// The image has no shell: bind the host's static busybox in to see
	// which user the image's config makes the process, and what it may
	// write.
	out, err = c.ctr(ctx, "run", "--rm", "--mount", "type=bind,src="+image.BusyboxPath+",dst=/busybox,options=rbind:ro",
		ext, "arca-user", "/busybox", "sh", "-c", "echo $(/busybox id -u):$(/busybox id -g) pid=$$; /busybox ls -ld /tmp /home/nonroot; /busybox touch /home/nonroot/x /tmp/y && echo writable")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"65532:65532 pid=1", "drwxrwxrwt", "drwx------", "nonroot  nonroot", "writable"} {
		if !strings.Contains(out, want) {
			t.Errorf("extension image as its user: %q lacks %q", out, want)
		}
	}
	t.Logf("extension image, as its user:\n%s", out)

	// containerd pulls from the test registry over plain HTTP, as a node
	// does, and runs what it pulled.
	reg := StartRegistry(t, "127.0.0.2")
	ref := AppImage(t, reg)
	if _, err := c.ctr(ctx, "images", "pull", "--plain-http", ref); err != nil {
		t.Fatal(err)
	}
	out, err = c.ctr(ctx, "run", "--rm", ref, "arca-pulled", "sh", "-c", "echo pulled $$")
	if err != nil || strings.TrimSpace(out) != "pulled 1" {
		t.Errorf("busybox pulled from %s: %q, %v", ref, out, err)
	}

	// pause holds on until SIGTERM, then exits 0 (ctr run returns the
	// container's exit status).
	run := exec.CommandContext(ctx, "ctr", "--address", c.sock, "-n", "k8s.io", "run", "--rm", pause, "arca-pause")
	var runOut strings.Builder
	run.Stdout, run.Stderr = &runOut, &runOut
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run.Wait() }()
	deadline := time.Now().Add(time.Minute)
	for {
		ls, _ := c.ctr(ctx, "tasks", "ls")
		if strings.Contains(ls, "arca-pause") && strings.Contains(ls, "RUNNING") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pause never ran: %s\n%s", ls, runOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("pause exited without a signal: %v\n%s", err, runOut.String())
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := c.ctr(ctx, "tasks", "kill", "--signal", "SIGTERM", "arca-pause"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pause after SIGTERM: %v, want exit 0\n%s", err, runOut.String())
		}
	case <-time.After(30 * time.Second):
		c.ctr(context.Background(), "tasks", "kill", "--signal", "SIGKILL", "arca-pause")
		t.Fatal("pause did not exit on SIGTERM")
	}
}
