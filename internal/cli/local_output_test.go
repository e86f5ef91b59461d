package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/arca-backup/arca/internal/kube/kubetest"
	"github.com/arca-backup/arca/internal/testenv"
)

// TestLocalOutputYAML: `arca local backup|restore|diff|forget` take
// --output yaml (the JSON document as YAML), next to text and json.
func TestLocalOutputYAML(t *testing.T) {
	ctx := context.Background()
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	c, err := kubetest.New(cp.Config())
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kubetest.Decode([]byte(`
apiVersion: v1
kind: Namespace
metadata: {name: yaml-a}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: yaml-a}
data: {color: blue}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, objs, ""); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	repoArgs := []string{"--repo", "file://" + filepath.Join(dir, "repo"), "--password-file", pw}
	common := append([]string{"--kubeconfig", cp.KubeconfigFile(t)}, repoArgs...)
	run := func(args ...string) string {
		t.Helper()
		out, err := runArca(ctx, append(args, common...)...)
		if err != nil {
			t.Fatalf("arca %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	parse := func(name, out string) map[string]any {
		t.Helper()
		var doc map[string]any
		if err := yaml.Unmarshal([]byte(out), &doc); err != nil || strings.HasPrefix(strings.TrimSpace(out), "{") {
			t.Fatalf("%s --output yaml: %v\n%s", name, err, out)
		}
		return doc
	}

	ns := []string{"--include-namespaces", "yaml-a"}
	first := parse("local backup", run(append([]string{"local", "backup", "--output", "yaml"}, ns...)...))
	id1, _ := first["id"].(string)
	if len(id1) != 64 || first["counts"] == nil {
		t.Fatalf("local backup --output yaml: %v", first)
	}
	second := parse("local backup", run(append([]string{"local", "backup", "-o", "yaml"}, ns...)...))
	id2, _ := second["id"].(string)

	sameStructured(t, "local diff", run("local", "diff", id1, id2, "--output", "json"), run("local", "diff", id1, id2, "--output", "yaml"))
	list := func(format string) string {
		out, err := runArca(ctx, append([]string{"local", "list", "--output", format}, repoArgs...)...)
		if err != nil {
			t.Fatalf("local list: %v", err)
		}
		return out
	}
	sameStructured(t, "local list", list("json"), list("yaml"))

	restore := []string{"local", "restore", "--recovery-point", id1, "--namespace-mapping", "yaml-a=yaml-b", "--dry-run"}
	res := parse("local restore", run(append(restore, "--output", "yaml")...))
	if res["dryRun"] != true || res["summary"] == nil {
		t.Errorf("local restore --dry-run --output yaml: %v", res)
	}

	out := run("local", "forget", id1, "--keep-snapshots", "--output", "yaml")
	var forgot []map[string]any
	if err := yaml.Unmarshal([]byte(out), &forgot); err != nil || len(forgot) != 1 || strings.HasPrefix(strings.TrimSpace(out), "[") {
		t.Errorf("local forget --output yaml: %v\n%s", err, out)
	}

	_, err = runArca(ctx, append([]string{"local", "backup", "--output", "xml"}, common...)...)
	if ExitCode(err) != 2 || !strings.Contains(err.Error(), "yaml") {
		t.Errorf("--output xml: exit %d, %v", ExitCode(err), err)
	}
}
