// Package testenv starts the real components Arca's tests run against: an
// etcd + kube-apiserver + kube-controller-manager control plane, the CSI
// snapshot stack with an in-memory CSI driver (StartCSI) or with a hostpath
// driver whose volumes hold real bytes (StartHostPathCSI, package hostpath),
// Azurite, MinIO and PostgreSQL, and a container image registry with the
// images the test node runs (registry.go).
//
// Binaries come from the tools cache filled by `make tools` (see tools/). A
// component that cannot start fails the test with its log; in CI nothing is
// skipped. Every process is stopped when the test ends and its log is printed
// if the test failed.
package testenv

import (
	"bytes"
	"context"

	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// T is the part of testing.TB the environment needs. *testing.T satisfies
// it; the demo supplies its own so that it can start the same components
// outside `go test`.
type T interface {
	Helper()
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
	Failed() bool
}

// ToolsDir is where `make tools` puts the pinned binaries. ARCA_TOOLS_DIR
// overrides it; the default matches tools/build.sh.
func ToolsDir() string {
	if d := os.Getenv("ARCA_TOOLS_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "arca", "tools", "bin")
}

// Binary returns the path of a pinned tool, failing the test with the fix if
// it has not been built.
func Binary(t T, name string) string {
	t.Helper()
	p := filepath.Join(ToolsDir(), name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("test binary %s not found at %s: run `make tools` first (make test does it)", name, p)
	}
	return p
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Process is a child process whose combined output is captured.
type Process struct {
	Name string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// StartProcess starts bin with args. It is stopped (SIGTERM, then SIGKILL
// after 10 s) when the test ends; if the test failed its log is printed.
func StartProcess(t T, name, bin string, args []string, env []string, dir string) *Process {
	t.Helper()
	return StartProcessAs(t, name, bin, args, env, dir, nil)
}

// StartProcessAs is StartProcess under another identity (nil: our own), for
// servers that refuse to run as root. Go sets the parent-death signal after
// switching identity, so the child still dies with the test binary.
func StartProcessAs(t T, name, bin string, args []string, env []string, dir string, cred *syscall.Credential) *Process {
	t.Helper()
	p := &Process{Name: name, log: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s (%s): %v", name, bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("---- log of %s ----\n%s\n---- end of %s ----", name, p.Log(), name)
		}
	})
	return p
}

// Log returns everything the process printed so far.
func (p *Process) Log() string { return p.log.String() }

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop terminates the process group and waits for it.
func (p *Process) Stop() {
	if ok, _ := p.Exited(); ok {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// WaitReady polls ready until it returns nil, the process exits, or timeout
// passes; on failure it fails the test with the process log.
func (p *Process) WaitReady(t T, timeout time.Duration, ready func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		if ok, err := p.Exited(); ok {
			t.Fatalf("%s exited before becoming ready: %v\n%s", p.Name, err, p.Log())
		}
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		last = ready(cctx)
		ccancel()
		if last == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s not ready after %s: %v\n%s", p.Name, timeout, last, p.Log())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Addr formats a loopback address.
func Addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
