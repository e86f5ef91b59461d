package cli

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/<name>.golden (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "output", name+".golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/cli -run TestOutputFormats -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (-update rewrites it):\n--- got\n%s\n--- want\n%s", name, path, got, want)
	}
}

var (
	reTime = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
	reID   = regexp.MustCompile(`\b[0-9a-f]{24}\b`)
)

// normalise replaces what changes from run to run (times, generated IDs).
func normalise(s string) string {
	s = reTime.ReplaceAllString(s, "2026-01-01T00:00:00Z")
	s = reID.ReplaceAllString(s, "000000000000000000000000")
	return s
}

// TestOutputFormats drives list and show commands in-process against a
// vault and compares each --output format with a golden file.
func TestOutputFormats(t *testing.T) {
	run := startTestVault(t)
	must := func(args ...string) {
		t.Helper()
		if out, err := run(args...); err != nil {
			t.Fatalf("arca %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	must("vault", "create", "default", "--description", "golden test")
	must("policy", "create", "daily", "--schedule", "0 2 * * *", "--retain-default", "P7D", "--retain-weekly", "P12W")
	must("role", "assign", "--principal", "vault:default", "--role", "Reader", "--scope", "/clusters/prod-1")
	must("role", "assign", "--principal", "extension:prod-1", "--role", "Storage Contributor", "--scope-storage", "file:///srv/repo")
	must("instance", "create", "shop", "--cluster", "prod-1", "--policy", "daily", "--storage", "file:///srv/repo",
		"--include-namespaces", "shop")
	// No cluster is connected: the job fails, which makes its state stable.
	_, _ = run("backup", "now", "shop", "--wait")

	t.Setenv(ConfigEnv, filepath.Join(t.TempDir(), "config.yaml"))
	if out, err := runPlain("config", "set-context", "lab", "--vault-url", "https://vault.lab:8443", "--token", "secret", "--vault", "default"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}

	cases := []struct {
		name string
		args []string
	}{
		{"vault-list", []string{"vault", "list"}},
		{"vault-show", []string{"vault", "show", "default"}},
		{"policy-list", []string{"policy", "list"}},
		{"policy-show", []string{"policy", "show", "daily"}},
		{"instance-list", []string{"instance", "list"}},
		{"instance-show", []string{"instance", "show", "shop"}},
		{"recovery-point-list", []string{"recovery-point", "list"}},
		{"job-list", []string{"job", "list"}},
		{"role-definitions", []string{"role", "definitions"}},
		{"config-view", []string{"config", "view"}},
	}
	for _, c := range cases {
		for _, format := range []string{"table", "json", "yaml"} {
			args := append(append([]string{}, c.args...), "--output", format)
			r := run
			if c.name == "config-view" {
				r = runPlain // no vault flags
			}
			out, err := r(args...)
			if err != nil {
				t.Errorf("arca %s: %v\n%s", strings.Join(args, " "), err, out)
				continue
			}
			golden(t, c.name+"."+format, normalise(out))
		}
	}
}

// runPlain runs arca in-process with exactly args.
func runPlain(args ...string) (string, error) {
	root := NewRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// TestConfigContext: with no flags and no environment, vault commands take
// the URL, token, CA and vault from the current context; flags still win.
func TestConfigContext(t *testing.T) {
	run := startTestVault(t)
	for _, env := range []string{"ARCA_VAULT_URL", "ARCA_TOKEN", "ARCA_CA_CERT", "ARCA_VAULT"} {
		t.Setenv(env, "")
	}
	t.Setenv(ConfigEnv, filepath.Join(t.TempDir(), "arca", "config.yaml"))
	if _, err := runPlain("vault", "list"); err == nil {
		t.Fatal("vault list without a token or context should fail")
	}
	// run adds the test vault's --vault-url, --token and --ca-cert.
	if out, err := run("config", "set-context", "live", "--vault", "prod", "--use"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := runPlain("vault", "create", "prod"); err != nil {
		t.Fatalf("vault create through the context: %v\n%s", err, out)
	}
	// The context's default vault is used by --vault commands.
	if out, err := runPlain("policy", "create", "daily", "--schedule", "0 2 * * *", "--retain-default", "P7D"); err != nil {
		t.Fatalf("policy create in the context's vault: %v\n%s", err, out)
	}
	if out, err := runPlain("policy", "show", "daily", "--vault", "prod", "-o", "json"); err != nil || !strings.Contains(out, `"vault": "prod"`) {
		t.Fatalf("policy not in vault prod: %v\n%s", err, out)
	}
	// A flag wins over the context.
	if _, err := runPlain("vault", "list", "--token", "wrong"); err == nil {
		t.Fatal("--token should override the context's token")
	}
	out, err := runPlain("config", "view")
	if err != nil || !strings.Contains(out, "REDACTED") || !strings.Contains(out, "*") {
		t.Fatalf("config view: %v\n%s", err, out)
	}
	if fi, err := os.Stat(ConfigPath()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file mode: %v %v", fi, err)
	}
	if _, err := runPlain("config", "use-context", "nope"); ExitCode(err) != 2 {
		t.Fatalf("use-context of a missing context: %v", err)
	}
}

// TestRepoListsTakeYAML: the repository's list and show commands accept
// --output yaml like the vault's.
func TestRepoListsTakeYAML(t *testing.T) {
	t.Setenv(PasswordEnv, "pw")
	url := "file://" + filepath.Join(t.TempDir(), "repo")
	if out, err := runPlain("repo", "init", "--repo", url); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"repo", "stats"}, "recoveryPoints: 0"},
		{[]string{"repo", "key", "list"}, "current: true"},
		{[]string{"local", "list"}, "[]"},
	} {
		out, err := runPlain(append(c.args, "--repo", url, "-o", "yaml")...)
		if err != nil || !strings.Contains(out, c.want) {
			t.Errorf("arca %s -o yaml: %v\n%s", strings.Join(c.args, " "), err, out)
		}
	}
}
