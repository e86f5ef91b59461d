package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/local"
	"github.com/arca-backup/arca/internal/testenv"
)

// The data mover and file-level access as users run them: the root
// command against a repository directory.
func TestDatamoverCLI(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv(PasswordEnv, "pw")
	repoURL := "file://" + filepath.Join(dir, "repo")
	src := filepath.Join(dir, "vol")
	for i := 0; i < 20; i++ {
		p := filepath.Join(src, fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%02d.txt", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bytes.Repeat([]byte(fmt.Sprintf("line %d\n", i)), 1000*i), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	resultFile := filepath.Join(dir, "result.json")
	out, err := runArca(ctx, "datamover", "backup", "--repo", repoURL, "--source", src, "--volume", "shop/data",
		"--tag", "arca.io/backup-job=arca-system/b1", "--result-file", resultFile)
	if err != nil {
		t.Fatalf("datamover backup: %v\n%s", err, out)
	}
	var res DatamoverResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("datamover backup output: %v\n%s", err, out)
	}
	if res.Volume.Name != "shop/data" || res.Volume.Files != 24 || res.Volume.NewBytes == 0 || len(res.RecoveryPoint) != 64 {
		t.Fatalf("datamover result: %+v", res)
	}
	if b, _ := os.ReadFile(resultFile); strings.TrimSpace(string(b)) != strings.TrimSpace(out) {
		t.Fatalf("result file %q differs from the output %q", b, out)
	}
	rp := res.RecoveryPoint[:12]

	out, err = runArca(ctx, "recovery-point", "files", "ls", "--repo", repoURL, "--recovery-point", rp, "/d1")
	if err != nil {
		t.Fatalf("files ls: %v", err)
	}
	if !strings.Contains(out, "/d1/f04.txt") || strings.Contains(out, "/d2/") || !strings.Contains(out, "PATH") {
		t.Fatalf("files ls /d1:\n%s", out)
	}
	out, err = runArca(ctx, "recovery-point", "files", "ls", "--repo", repoURL, "--recovery-point", "latest", "-R", "-o", "json")
	if err != nil {
		t.Fatalf("files ls -R: %v", err)
	}
	var listed struct{ Items []fileRow }
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed.Items) != 24 {
		t.Fatalf("files ls -R -o json: %v, %d items\n%s", err, len(listed.Items), out)
	}
	out, err = runArca(ctx, "recovery-point", "files", "cat", "--repo", repoURL, "--recovery-point", rp, "--volume", "shop/data", "d2/f05.txt")
	if err != nil || out != strings.Repeat("line 5\n", 5000) {
		t.Fatalf("files cat: %v (%d bytes)", err, len(out))
	}
	target := filepath.Join(dir, "out")
	if _, err := runArca(ctx, "recovery-point", "files", "restore", "--repo", repoURL, "--recovery-point", rp, "d0", target); err != nil {
		t.Fatalf("files restore: %v", err)
	}
	for _, n := range []string{"f00.txt", "f03.txt", "f18.txt"} {
		want, _ := os.ReadFile(filepath.Join(src, "d0", n))
		got, err := os.ReadFile(filepath.Join(target, n))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("restored %s: %v", n, err)
		}
	}

	// Bad input: each error names the problem and the fix.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"recovery-point", "files", "ls", "--repo", repoURL, "--recovery-point", rp, "/nope"}, `"/nope" in volume shop/data of recovery point`},
		{[]string{"recovery-point", "files", "cat", "--repo", repoURL, "--recovery-point", rp, "--volume", "other/vol", "x"}, `no volume "other/vol"; it holds: shop/data`},
		{[]string{"recovery-point", "files", "ls", "--repo", repoURL}, "--recovery-point is required"},
		{[]string{"recovery-point", "files", "cat", "--repo", repoURL, "--recovery-point", rp, "d1"}, "is a dir, not a file"},
		{[]string{"datamover", "backup", "--repo", repoURL, "--volume", "x/y"}, "--source and --volume are required"},
		{[]string{"datamover", "backup", "--repo", repoURL, "--volume", "x/y", "--source", filepath.Join(dir, "missing")}, "no such file"},
		{[]string{"datamover", "restore", "--repo", repoURL, "--recovery-point", rp}, "--target is required"},
	} {
		_, err := runArca(ctx, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("arca %s: %v, want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	var ue *UsageError
	if _, err := runArca(ctx, "recovery-point", "files", "ls", "--repo", repoURL); !errors.As(err, &ue) {
		t.Errorf("missing --recovery-point is not a usage error: %v", err)
	}

	// The mover restores a whole volume.
	whole := filepath.Join(dir, "whole")
	if _, err := runArca(ctx, "datamover", "restore", "--repo", repoURL, "--recovery-point", rp, "--volume", "shop/data", "--target", whole); err != nil {
		t.Fatalf("datamover restore: %v", err)
	}
	want, _ := os.ReadFile(filepath.Join(src, "d2", "f17.txt"))
	if got, _ := os.ReadFile(filepath.Join(whole, "d2", "f17.txt")); !bytes.Equal(got, want) {
		t.Fatal("datamover restore: d2/f17.txt differs")
	}
}

// TestDatamoverChild is the mover process of TestDatamoverKilledMidCopy:
// it runs only when that test starts it.
func TestDatamoverChild(t *testing.T) {
	args := os.Getenv("ARCA_TEST_DATAMOVER_ARGS")
	if args == "" {
		t.Skip("started by TestDatamoverKilledMidCopy")
	}
	var argv []string
	if err := json.Unmarshal([]byte(args), &argv); err != nil {
		t.Fatal(err)
	}
	if _, err := runArca(context.Background(), argv...); err != nil {
		t.Fatal(err)
	}
}

// The mover killed mid-copy (SIGKILL: no cleanup runs) leaves packs but no
// recovery point: nothing claims data that is not there, check finds no
// damage, and the next run completes and restores byte for byte.
func TestDatamoverKilledMidCopy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv(PasswordEnv, "pw")
	repoDir := filepath.Join(dir, "repo")
	repoURL := "file://" + repoDir
	if _, err := runArca(ctx, "repo", "init", "--repo", repoURL); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "vol")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 12; i++ {
		data := make([]byte, 25<<20)
		mrand.New(mrand.NewSource(int64(i))).Read(data) // incompressible, no repeats: many packs
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	argv, _ := json.Marshal([]string{"datamover", "backup", "--repo", repoURL, "--source", src, "--volume", "ns/big", "--readers", "1"})
	child := exec.Command(os.Args[0], "-test.run=^TestDatamoverChild$", "-test.count=1")
	child.Env = append(os.Environ(), "ARCA_TEST_DATAMOVER_ARGS="+string(argv))
	var childOut bytes.Buffer
	child.Stdout, child.Stderr = &childOut, &childOut
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once it has saved some packs (names of 64 hex digits; the
	// backend's temporary files have others).
	savedPacks := func() int {
		n := 0
		ms, _ := filepath.Glob(filepath.Join(repoDir, "data", "*", "*"))
		for _, m := range ms {
			if len(filepath.Base(m)) == 64 {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if savedPacks() >= 2 {
			break
		}
		if time.Now().After(deadline) || child.ProcessState != nil {
			_ = child.Process.Kill()
			t.Fatalf("the mover saved no packs in 2 minutes, or ended first:\n%s", childOut.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := child.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the mover was not killed mid-copy (it finished first?): %v\n%s", err, childOut.String())
	}
	t.Logf("killed the mover after %d packs", savedPacks())

	be, err := local.Open(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, "pw")
	if err != nil {
		t.Fatal(err)
	}
	if rps, err := r.ListRecoveryPoints(ctx); err != nil || len(rps) != 0 {
		t.Fatalf("after the kill: %d recovery points (%v); a killed mover must leave none", len(rps), err)
	}
	chk, err := r.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil || !chk.OK() || chk.UnreferencedPacks == 0 {
		t.Fatalf("check after the kill: %v %+v (want no damage, the killed run's packs unreferenced)", err, chk)
	}
	// The next run completes beside the dead run's lock, and restores.
	out, err := runArca(ctx, "datamover", "backup", "--repo", repoURL, "--source", src, "--volume", "ns/big")
	if err != nil {
		t.Fatalf("backup after the kill: %v", err)
	}
	var res DatamoverResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "restored")
	if _, err := runArca(ctx, "datamover", "restore", "--repo", repoURL, "--recovery-point", res.RecoveryPoint, "--target", dst); err != nil {
		t.Fatalf("restore: %v", err)
	}
	for i := 0; i < 12; i++ {
		a, _ := os.ReadFile(filepath.Join(src, fmt.Sprintf("f%02d", i)))
		b, _ := os.ReadFile(filepath.Join(dst, fmt.Sprintf("f%02d", i)))
		if !bytes.Equal(a, b) {
			t.Fatalf("f%02d differs after restore", i)
		}
	}
}

// TestDatamoverRepositoryUnavailable: a data mover whose repository does
// not answer (nothing listens on the S3 endpoint's port) ends with
// RepositoryUnavailable naming the repository, and writes that error to
// --result-file (a restore pod's termination message, which the
// extension reads). Opening the storage is not retried, so this fails at
// once; calls after the open are retried for --storage-retry.
func TestDatamoverRepositoryUnavailable(t *testing.T) {
	ctx := context.Background()
	url := fmt.Sprintf("s3://bucket/p?endpoint=127.0.0.1:%d&tls=false&path-style=true&region=us-east-1", testenv.FreePort(t))
	t.Setenv("AWS_ACCESS_KEY_ID", "x")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "y")
	t.Setenv(PasswordEnv, "pw")
	result := filepath.Join(t.TempDir(), "termination-log")
	start := time.Now()
	_, err := runArca(ctx, "datamover", "restore", "--repo", url, "--recovery-point", strings.Repeat("ab", 32), "--volume", "shop/data",
		"--target", t.TempDir(), "--storage-retry", "3s", "--result-file", result)
	took := time.Since(start)
	if err == nil || !strings.HasPrefix(err.Error(), "RepositoryUnavailable: the repository "+url) {
		t.Fatalf("restore from a repository that does not answer: %v", err)
	}
	if took > 30*time.Second {
		t.Errorf("gave up after %s, want at most the 3 s budget", took)
	}
	b, rerr := os.ReadFile(result)
	if rerr != nil || !strings.HasPrefix(string(b), "RepositoryUnavailable: ") {
		t.Errorf("result file: %q, %v", b, rerr)
	}
	t.Logf("gave up after %s: %v", took.Round(time.Millisecond), err)
}
