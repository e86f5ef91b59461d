package testenv

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// MinIO is a running MinIO server with a fresh data directory.
type MinIO struct {
	Endpoint  string // host:port, plain HTTP
	AccessKey string
	SecretKey string
	Dir       string
	Process   *Process

	bin, console string
	env          []string
}

// ServiceOption tunes StartMinIO and StartAzurite.
type ServiceOption func(*serviceOptions)

type serviceOptions struct{ host string }

// OnHost makes the service listen on host instead of 127.0.0.1: pods on a
// test node cannot reach the host's loopback, so a service they use listens
// on the control plane's HostIP.
func OnHost(host string) ServiceOption { return func(o *serviceOptions) { o.host = host } }

func serviceOpts(opts []ServiceOption) serviceOptions {
	o := serviceOptions{host: "127.0.0.1"}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// StartMinIO starts the MinIO server built by tools/minio (`make tools`) on a
// free port of 127.0.0.1 (or OnHost's address). It is stopped when the test
// ends.
func StartMinIO(t T, opts ...ServiceOption) *MinIO {
	t.Helper()
	so := serviceOpts(opts)
	bin := Binary(t, "minio")
	m := &MinIO{AccessKey: "arca-test-access", SecretKey: "arca-test-secret-key", Dir: tempDir(t, "arca-minio-")}
	env := []string{
		"MINIO_ROOT_USER=" + m.AccessKey,
		"MINIO_ROOT_PASSWORD=" + m.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1", // no colours, no terminal assumptions
		"HOME=" + m.Dir, // MinIO keeps client config under $HOME
	}
	m.bin, m.env = bin, env
	start := time.Now()
	for attempt := 1; ; attempt++ {
		port := FreePort(t)
		m.Endpoint, m.console = net.JoinHostPort(so.host, strconv.Itoa(port)), Addr(FreePort(t))
		err := m.start(t)
		if err == nil {
			break
		}
		if attempt < 3 && portInUse(m.Process.Log()) {
			m.Process.Stop()
			continue
		}
		t.Fatalf("minio did not start: %v\n%s", err, m.Process.Log())
	}
	t.Logf("minio ready at %s in %s", m.Endpoint, time.Since(start).Round(time.Millisecond))
	return m
}

// start runs the server at m.Endpoint on m.Dir's data and waits until
// its S3 API answers.
func (m *MinIO) start(t T) error {
	args := []string{"server", "--quiet", "--address", m.Endpoint, "--console-address", m.console, m.Dir + "/data"}
	m.Process = StartProcess(t, "minio", m.bin, args, m.env, m.Dir)
	ready, err := waitHTTP(m.Process, "http://"+m.Endpoint+"/minio/health/ready", 60*time.Second,
		func(status int) bool { return status == 200 })
	if !ready {
		if err == nil {
			err = fmt.Errorf("not ready after 60s")
		}
		return err
	}
	// The health endpoint can answer before the object layer is
	// initialised (XMinioServerNotInitialized under load): wait until an
	// S3 call works.
	return m.waitS3(t, 60*time.Second)
}

// Stop stops the server (its data stays): the storage becomes
// unreachable, as in an outage. Restart brings it back.
func (m *MinIO) Stop() { m.Process.Stop() }

// Restart starts a stopped server again at the same address on the same
// data, and waits until its S3 API answers. The new process is stopped
// when t ends: pass the test that should keep it, not a subtest.
func (m *MinIO) Restart(t T) {
	t.Helper()
	m.Process.Stop()
	start := time.Now()
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		// The old socket may linger for a moment after the process ends.
		if err = m.start(t); err == nil {
			t.Logf("minio at %s restarted in %s", m.Endpoint, time.Since(start).Round(time.Millisecond))
			return
		}
		m.Process.Stop()
		if !portInUse(m.Process.Log()) {
			break
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("minio did not restart at %s: %v\n%s", m.Endpoint, err, m.Process.Log())
}

func (m *MinIO) waitS3(t T, timeout time.Duration) error {
	c := m.Client(t)
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.ListBuckets(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if exited, perr := m.Process.Exited(); exited {
			return fmt.Errorf("minio exited: %v", perr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("S3 API not ready after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Client returns a minio-go client for the root user.
func (m *MinIO) Client(t T) *minio.Client {
	t.Helper()
	c, err := minio.New(m.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""),
		Secure: false,
	})
	if err != nil {
		t.Fatalf("minio client: %v", err)
	}
	return c
}

// MakeBucket creates a bucket.
func (m *MinIO) MakeBucket(t T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Client(t).MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
}

// portInUse reports whether a server log says its port was taken.
func portInUse(log string) bool {
	l := strings.ToLower(log)
	return strings.Contains(l, "address already in use") || strings.Contains(l, "eaddrinuse")
}
