package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a running PostgreSQL server in a temporary directory, with
// trust authentication for the superuser "postgres" on loopback and on a unix
// socket inside Dir.
type Postgres struct {
	Host      string // 127.0.0.1
	Port      int
	User      string // superuser, no password (trust)
	Database  string // "postgres"
	Dir       string // holds data/ and the socket directory sock/
	SocketDir string
	BinDir    string
	Process   *Process
}

// DSN is a pgx/libpq URL for the superuser and the "postgres" database.
func (p *Postgres) DSN() string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", p.User, p.Host, p.Port, p.Database)
}

// DSNFor is the DSN for another database on the same server.
func (p *Postgres) DSNFor(database string) string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", p.User, p.Host, p.Port, database)
}

// CreateDatabase creates a database and returns its DSN, so that tests can
// share one server and still start from an empty schema.
func (p *Postgres) CreateDatabase(t T, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		t.Fatalf("connect to postgres: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	return p.DSNFor(name)
}

// PostgresBinDir finds the directory of initdb and postgres: the newest
// /usr/lib/postgresql/<version>/bin (Debian's layout), else the directory of
// initdb on PATH.
func PostgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		d := filepath.Dir(p)
		if isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("PostgreSQL server binaries (initdb, postgres) not found under /usr/lib/postgresql/*/bin or on PATH: run hack/install-deps.sh (make deps) to install Debian's postgresql package")
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// StartPostgres runs initdb in a fresh temporary directory and starts
// postgres on a free loopback port. PostgreSQL refuses to run as root, so
// when the tests run as root both run as the unprivileged user "nobody" (or
// $ARCA_POSTGRES_USER). Durability is switched off (fsync=off): it is a test
// server. It is stopped when the test ends.
func StartPostgres(t T) *Postgres {
	t.Helper()
	binDir, err := PostgresBinDir()
	if err != nil {
		t.Fatalf("%v", err)
	}
	cred, err := postgresCredential()
	if err != nil {
		t.Fatalf("%v", err)
	}
	p := &Postgres{Host: "127.0.0.1", User: "postgres", Database: "postgres", BinDir: binDir, Dir: tempDir(t, "arca-postgres-")}
	p.SocketDir = filepath.Join(p.Dir, "sock")
	data := filepath.Join(p.Dir, "data")
	if err := os.Mkdir(p.SocketDir, 0o700); err != nil {
		t.Fatalf("postgres socket dir: %v", err)
	}
	if cred != nil {
		for _, d := range []string{p.Dir, p.SocketDir} {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				t.Fatalf("give %s to uid %d: %v", d, cred.Uid, err)
			}
		}
	}
	start := time.Now()
	initdb := exec.Command(filepath.Join(binDir, "initdb"),
		"--pgdata", data, "--username", p.User, "--auth", "trust",
		"--encoding", "UTF8", "--locale", "C", "--no-sync", "--no-instructions")
	initdb.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	initdb.Dir = p.Dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb (%s) failed: %v\n%s", initdb.Path, err, out)
	}
	initTime := time.Since(start)

	for attempt := 1; ; attempt++ {
		p.Port = FreePort(t)
		args := []string{
			"-D", data,
			"-p", strconv.Itoa(p.Port),
			"-k", p.SocketDir,
			"-c", "listen_addresses=127.0.0.1",
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
			"-c", "shared_buffers=32MB",
			"-c", "max_connections=100",
			"-c", "log_min_messages=warning",
		}
		p.Process = StartProcessAs(t, "postgres", filepath.Join(binDir, "postgres"), args, []string{"LC_ALL=C", "LANG=C"}, p.Dir, cred)
		err := waitPostgres(p)
		if err == nil {
			break
		}
		if attempt < 3 && portInUse(p.Process.Log()) {
			p.Process.Stop()
			continue
		}
		t.Fatalf("postgres did not start: %v\n%s", err, p.Process.Log())
	}
	// Registered after StartProcess's cleanup, so it runs first: a fast
	// shutdown (SIGINT) disconnects clients instead of waiting for them, as
	// the SIGTERM of Process.Stop would.
	proc := p.Process
	t.Cleanup(func() {
		if exited, _ := proc.Exited(); !exited {
			_ = proc.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-proc.done:
			case <-time.After(10 * time.Second):
			}
		}
	})
	t.Logf("postgres ready at %s (initdb %s, total %s)", p.DSN(), initTime.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	return p
}

func waitPostgres(p *Postgres) error {
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if exited, err := p.Process.Exited(); exited {
			return fmt.Errorf("postgres exited: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, p.DSN())
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after 60s: %v", last)
}

// postgresCredential returns the identity to run PostgreSQL as: nil when not
// root, else the unprivileged user named by $ARCA_POSTGRES_USER (default
// "nobody").
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	name := os.Getenv("ARCA_POSTGRES_USER")
	if name == "" {
		name = "nobody"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL refuses to run as root and user %q to run it as does not exist (%v): create it or set ARCA_POSTGRES_USER", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil || uid == 0 {
		return nil, fmt.Errorf("user %q (uid %s, gid %s) cannot run PostgreSQL: set ARCA_POSTGRES_USER to an unprivileged user", name, u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// tempDir makes a temporary directory removed when the test ends (T has no
// TempDir). Servers that run as another user get the directory chowned.
func tempDir(t T, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(d); err != nil && !strings.Contains(err.Error(), "no such file") {
			t.Logf("remove %s: %v", d, err)
		}
	})
	return d
}
