package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/arca-backup/arca/internal/kube/kubetest"
	"github.com/arca-backup/arca/internal/testenv"
)

// TestLocalCommands drives `arca local` end to end against a real API
// server and a file repository, through the cobra tree.
func TestLocalCommands(t *testing.T) {
	ctx := context.Background()
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	kubeconfig := cp.KubeconfigFile(t)
	c, err := kubetest.New(cp.Config())
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kubetest.Decode([]byte(`
apiVersion: v1
kind: Namespace
metadata: {name: cli-a}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: cli-a, labels: {app: web}}
data: {color: blue}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: frozen, namespace: cli-a, labels: {app: web}}
immutable: true
data: {v: "1"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, objs, ""); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("secret\n"), 0o600)
	run := func(args ...string) (string, error) {
		root := NewRootCommand()
		var out, errOut bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errOut)
		root.SetArgs(args)
		err := root.ExecuteContext(ctx)
		return out.String(), err
	}
	common := []string{"--kubeconfig", kubeconfig, "--repo", "file://" + repoDir, "--password-file", pw}

	// An invalid selector fails with a usage error before the repository exists.
	_, err = run(append([]string{"local", "backup", "--selector", "app=web;tier!!=db"}, common...)...)
	if ExitCode(err) != 2 || !strings.Contains(err.Error(), "tier!!=db") {
		t.Fatalf("invalid selector: exit %d, err %v", ExitCode(err), err)
	}
	_, err = run(append([]string{"local", "backup", "--include-types", "deploymnets"}, common...)...)
	if ExitCode(err) != 2 || !strings.Contains(err.Error(), "deploymnets") {
		t.Fatalf("unknown type: exit %d, err %v", ExitCode(err), err)
	}
	if _, err := os.Stat(repoDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("repository written by an invalid backup (%v)", err)
	}

	// Backup from a config file plus flags; the repository is initialised.
	cfgFile := filepath.Join(dir, "backup.yaml")
	os.WriteFile(cfgFile, []byte("includedNamespaces: [cli-a]\nlabelSelectors: [\"app=web\"]\n"), 0o600)
	out, err := run(append([]string{"local", "backup", "--config", cfgFile, "--include-cluster-resources=false", "--output", "json"}, common...)...)
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		ID     string         `json:"id"`
		Items  int            `json:"items"`
		Counts map[string]int `json:"counts"`
	}
	if err := json.Unmarshal([]byte(out), &b); err != nil || len(b.ID) != 64 {
		t.Fatalf("backup output %q (%v)", out, err)
	}
	if b.Counts["configmaps"] != 2 || b.Counts["namespaces"] != 1 {
		t.Errorf("counts %v", b.Counts)
	}
	// Text output is the bare ID.
	out, err = run(append([]string{"local", "backup", "--include-namespaces", "cli-a"}, common...)...)
	if err != nil || len(strings.TrimSpace(out)) != 64 {
		t.Fatalf("text backup: %q %v", out, err)
	}
	second := strings.TrimSpace(out)

	out, err = run("local", "list", "--repo", repoDir, "--password-file", pw, "--output", "json")
	if err != nil {
		t.Fatal(err)
	}
	var list []struct{ ID string }
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 || list[0].ID != b.ID {
		t.Fatalf("list %q (%v)", out, err)
	}

	// Diff against the live cluster after a change.
	cms := c.Dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace("cli-a")
	if _, err := cms.Patch(ctx, "settings", "application/merge-patch+json", []byte(`{"data":{"color":"green"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err = run(append([]string{"local", "diff", b.ID[:12]}, common...)...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "~ configmaps cli-a/settings") || !strings.Contains(out, `~ data.color: "blue" → "green"`) {
		t.Errorf("diff output:\n%s", out)
	}
	out, err = run("local", "diff", b.ID, second, "--repo", repoDir, "--password-file", pw)
	if err != nil || !strings.Contains(out, "0 added, 0 removed, 0 changed") {
		t.Errorf("diff of equal recovery points: %q %v", out, err)
	}

	// Dry run of a mapped restore, then a patch restore with a failing item.
	out, err = run(append([]string{"local", "restore", "--recovery-point", "latest", "--namespace-mapping", "cli-a=cli-b", "--dry-run", "--output", "json"}, common...)...)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		DryRun  bool           `json:"dryRun"`
		Summary map[string]int `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || !res.DryRun || res.Summary["Created"] != 3 {
		t.Fatalf("dry run %q (%v)", out, err)
	}
	if err := cms.Delete(ctx, "frozen", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	frozen, _ := kubetest.Decode([]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"frozen","namespace":"cli-a"},"immutable":true,"data":{"v":"2"}}`))
	if err := c.Apply(ctx, frozen, ""); err != nil {
		t.Fatal(err)
	}
	out, err = run(append([]string{"local", "restore", "--recovery-point", b.ID, "--conflict", "patch"}, common...)...)
	if err == nil || ExitCode(err) != 1 || !strings.Contains(err.Error(), "configmaps cli-a/frozen") {
		t.Fatalf("patch restore: exit %d err %v\n%s", ExitCode(err), err, out)
	}
	if !strings.Contains(out, "Patched") {
		t.Errorf("restore output:\n%s", out)
	}
	cm, _ := cms.Get(ctx, "settings", metav1.GetOptions{})
	if cm.Object["data"].(map[string]any)["color"] != "blue" {
		t.Error("patch restore did not restore the config map")
	}
	_, err = run(append([]string{"local", "restore", "--recovery-point", "latest", "--namespace-mapping", "cli-a"}, common...)...)
	if ExitCode(err) != 2 {
		t.Errorf("bad mapping: exit %d, err %v", ExitCode(err), err)
	}
}
