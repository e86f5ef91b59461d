// Package layering holds no code: its test enforces the import rules of
// docs/design.md, so that the architecture stays visible in the tree.
package layering

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/arca-backup/arca/"

// rule forbids packages under From (a path prefix below the module) to
// import packages under any of Not.
type rule struct {
	From string
	Not  []string
	Why  string
	// ProductionOnly exempts _test.go files, for rules about what a
	// package's code may depend on where its tests must run the other side.
	ProductionOnly bool
}

var rules = []rule{
	{From: "internal/storage", Not: []string{"internal/repo", "internal/backup", "internal/restore", "internal/vault", "internal/cli", "internal/extension"},
		Why: "storage backends know nothing of what is stored in them"},
	{From: "internal/repo", Not: []string{"internal/backup", "internal/restore", "internal/vault", "internal/cli", "internal/extension", "internal/kube"},
		Why: "the repository format is independent of Kubernetes and of who writes it"},
	{From: "internal/backup", Not: []string{"internal/vault", "internal/cli", "internal/extension"},
		Why: "the engine runs in the CLI, the extension and tests alike"},
	{From: "internal/restore", Not: []string{"internal/vault", "internal/cli", "internal/extension"},
		Why: "the engine runs in the CLI, the extension and tests alike"},
	{From: "internal/vault", Not: []string{"internal/cli", "internal/extension", "internal/testenv"},
		Why: "the vault drives clusters only through its ClusterDriver interface"},
	{From: "internal/extension", Not: []string{"internal/vault", "internal/cli"},
		Why: "the extension runs in clusters that may never see a vault"},
	{From: "internal/clusterdriver", Not: []string{"internal/extension", "internal/cli"},
		Why: "the vault's driver speaks to clusters only through the API server", ProductionOnly: true},
	{From: "api/", Not: []string{"internal/"},
		Why: "API types are imported by everyone and import nobody of ours"},
}

func TestImportRules(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "tools", "node_modules", ".git", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !strings.HasPrefix(p, module) {
				continue
			}
			target := strings.TrimPrefix(p, module)
			for _, r := range rules {
				if !strings.HasPrefix(rel, r.From) || (r.ProductionOnly && strings.HasSuffix(rel, "_test.go")) {
					continue
				}
				for _, not := range r.Not {
					if strings.HasPrefix(target, not) && !isTestOf(rel, target) {
						t.Errorf("%s imports %s: %s (docs/design.md)", rel, p, r.Why)
					}
				}
			}
			checked++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatalf("no module-internal imports found under %s: the walk is broken", root)
	}
}

// isTestOf allows tests to import the test environment; every other rule
// applies to tests too.
func isTestOf(file, target string) bool {
	return strings.HasSuffix(file, "_test.go") && strings.HasPrefix(target, "internal/testenv")
}
