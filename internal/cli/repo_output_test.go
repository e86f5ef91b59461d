package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/local"
)

// runArca runs the root command in-process and returns its stdout.
func runArca(ctx context.Context, args ...string) (string, error) {
	root := NewRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

// sameStructured fails unless yamlOut is YAML holding the same document as
// jsonOut, and returns that document.
func sameStructured(t *testing.T, name, jsonOut, yamlOut string) any {
	t.Helper()
	if y := strings.TrimSpace(yamlOut); y != "[]" && (strings.HasPrefix(y, "{") || strings.HasPrefix(y, "[")) {
		t.Errorf("%s --output yaml printed JSON:\n%s", name, yamlOut)
	}
	var fromJSON, fromYAML any
	if err := json.Unmarshal([]byte(jsonOut), &fromJSON); err != nil {
		t.Fatalf("%s --output json: %v\n%s", name, err, jsonOut)
	}
	if err := yaml.Unmarshal([]byte(yamlOut), &fromYAML); err != nil {
		t.Fatalf("%s --output yaml: %v\n%s", name, err, yamlOut)
	}
	if !reflect.DeepEqual(fromJSON, fromYAML) {
		t.Errorf("%s: yaml and json differ\n--- json\n%s\n--- yaml\n%s", name, jsonOut, yamlOut)
	}
	return fromYAML
}

// TestRepoOutputYAML: every `arca repo` command that prints a result takes
// --output yaml, with the same fields as its JSON.
func TestRepoOutputYAML(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(PasswordEnv, "")
	common := []string{"--repo", "file://" + filepath.Join(dir, "repo"), "--password-file", pw}
	run := func(args ...string) string {
		t.Helper()
		out, err := runArca(ctx, append(args, common...)...)
		if err != nil {
			t.Fatalf("arca %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	out := run("repo", "init", "--output", "yaml")
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(out), &doc); err != nil || doc["id"] == nil || doc["repository"] == nil {
		t.Fatalf("repo init --output yaml: %q (%v)", out, err)
	}
	// Two recovery points, so that forget has something to decide.
	be, err := local.Open(filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, "pw")
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"one", "two"} {
		w, err := r.NewWriter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tw := w.NewTree()
		id, err := w.PutBlob(ctx, []byte(name))
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.Add(ctx, repo.TreeEntry{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Name: name, Blobs: []repo.ID{id}, Size: int64(len(name))}); err != nil {
			t.Fatal(err)
		}
		tree, err := tw.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		started := time.Date(2026, 1, 1+i, 0, 0, 0, 0, time.UTC)
		if _, err := w.Commit(ctx, &repo.RecoveryPoint{Name: name, Started: started, Finished: started,
			Resources: []repo.ResourceTree{{Version: "v1", Resource: "configmaps", Tree: tree}}}); err != nil {
			t.Fatal(err)
		}
	}

	for _, args := range [][]string{
		{"repo", "check"},
		{"repo", "check", "--read-data"},
		{"repo", "stats"},
		{"repo", "prune", "--dry-run"},
		{"repo", "forget", "--keep-last", "1", "--dry-run"},
		{"repo", "unlock"},
		{"repo", "key", "list"},
	} {
		name := strings.Join(args, " ")
		js := run(append(args, "--output", "json")...)
		ym := run(append(args, "-o", "yaml")...)
		sameStructured(t, name, js, ym)
	}

	// rebuild-index changes what it reports (index files removed), so its
	// YAML is checked on its own.
	out = run("repo", "rebuild-index", "--output", "yaml")
	doc = nil
	if err := yaml.Unmarshal([]byte(out), &doc); err != nil || doc["packs"] != float64(2) || doc["damagedPacks"] == nil {
		t.Errorf("repo rebuild-index --output yaml: %q (%v)", out, err)
	}

	_, err = runArca(ctx, append([]string{"repo", "check", "--output", "xml"}, common...)...)
	if ExitCode(err) != 2 || !strings.Contains(err.Error(), "yaml") {
		t.Errorf("--output xml: exit %d, %v", ExitCode(err), err)
	}
}
