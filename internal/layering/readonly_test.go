package layering

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The read/write split of the repository (docs/design.md, "The repository
// in layers"): code that only reads a repository — restore, diff, check,
// listing — holds a repo.Reader, never the read-write *repo.Repository, so
// it cannot write recovery points, forget, prune or change keys. The
// compiler enforces this once a consumer takes a Reader; this table keeps
// the consumers from drifting back.

// reader names code that only reads a repository: a whole package (Func
// empty) or one function or method of it.
type reader struct{ Pkg, Func string }

var readers = []reader{
	{"internal/restore", ""},
	{"internal/diff", ""},
	{"internal/prereq", ""},
	{"internal/volume", ""},
	{"internal/cli", "RunLocalRestore"},
	{"internal/cli", "RunLocalList"},
	{"internal/cli", "RunLocalDiff"},
	{"internal/cli", "RunRepoCheck"},
	{"internal/cli", "RunRepoStats"},
	{"internal/cli", "RunRepoKeyList"},
	{"internal/cli", "recoveryPointContent"}, // restore validation
	{"internal/cli", "syncInstance"},
	{"internal/cli", "openVolume"}, // recovery-point files, datamover restore
	{"internal/extension", "runRestore"},
	{"internal/extension", "probe"},
}

// writerNames are what a reader must not name: in a whole package, the
// repository package's writing API (repo.X); in a function, also any method
// of that name (the CLI's o.Open, the extension's openRepo return the
// read-write handle).
var (
	repoWriterAPI = []string{"Repository", "Writer", "TreeWriter", "Init", "Open", "OpenOrInit"}
	writerMethods = []string{"Open", "OpenOrInit", "openRepo", "NewWriter", "NewTree", "Forget", "ForgetByPolicy", "Prune",
		"RebuildIndex", "AddKey", "RemoveKey", "Unlock", "RemoveAllLocks"}
)

// readOnlyViolations parses one package's non-test files and reports each
// use of the writing API in the code that rs names.
func readOnlyViolations(fset *token.FileSet, files map[string]*ast.File, pkg string, rs []reader) []string {
	var out []string
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	found := map[string]bool{}
	for _, name := range names {
		f := files[name]
		repoName := ""
		imported := map[string]bool{} // package names: tabwriter.NewWriter is no repository method
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			n := filepath.Base(p)
			if imp.Name != nil {
				n = imp.Name.Name
			}
			imported[n] = true
			if p == module+"/internal/repo" {
				repoName = n
			}
		}
		for _, r := range rs {
			if r.Func == "" {
				if repoName == "" {
					continue
				}
				ast.Inspect(f, func(n ast.Node) bool {
					if sel, ok := n.(*ast.SelectorExpr); ok {
						if x, ok := sel.X.(*ast.Ident); ok && x.Name == repoName && contains(repoWriterAPI, sel.Sel.Name) {
							out = append(out, fmt.Sprintf("%s: %s uses %s.%s, but it only reads a repository: take a repo.Reader",
								pkg, fset.Position(sel.Pos()), repoName, sel.Sel.Name))
						}
					}
					return true
				})
				continue
			}
			for _, d := range f.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Name.Name != r.Func || fd.Body == nil {
					continue
				}
				found[r.Func] = true
				ast.Inspect(fd, func(n ast.Node) bool {
					sel, ok := n.(*ast.SelectorExpr)
					if !ok {
						return true
					}
					x, isIdent := sel.X.(*ast.Ident)
					pkgSel := isIdent && imported[x.Name]
					if (pkgSel && x.Name == repoName && contains(repoWriterAPI, sel.Sel.Name)) || (!pkgSel && contains(writerMethods, sel.Sel.Name)) {
						out = append(out, fmt.Sprintf("%s.%s (%s) names %s, but it only reads a repository: open it with OpenReader and take a repo.Reader",
							pkg, r.Func, fset.Position(sel.Pos()), sel.Sel.Name))
					}
					return true
				})
			}
		}
	}
	for _, r := range rs {
		if r.Func != "" && !found[r.Func] {
			out = append(out, fmt.Sprintf("%s: function %s not found: update readers in internal/layering/readonly_test.go", pkg, r.Func))
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func parseDir(t *testing.T, fset *token.FileSet, dir string) map[string]*ast.File {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]*ast.File{}
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files[n] = f
	}
	return files
}

func TestReadersTakeReadOnlyRepository(t *testing.T) {
	byPkg := map[string][]reader{}
	for _, r := range readers {
		byPkg[r.Pkg] = append(byPkg[r.Pkg], r)
	}
	fset := token.NewFileSet()
	var bad []string
	for pkg, rs := range byPkg {
		bad = append(bad, readOnlyViolations(fset, parseDir(t, fset, filepath.Join("..", "..", pkg)), pkg, rs)...)
	}
	sort.Strings(bad)
	for _, b := range bad {
		t.Error(b)
	}
}

// The check above can fail: a reader that opens the read-write handle, one
// that prunes, and a reader package naming *repo.Repository are caught, and
// so is a listed function that no longer exists.
func TestReadersCheckCatchesWriters(t *testing.T) {
	src := `package p
import "github.com/arca-backup/arca/internal/repo"
func show(o *opts) { r, _ := o.Open(nil); _ = r }
func list(r repo.Reader) {}
func clean(r *repo.Repository) { r.Prune(nil, repo.PruneOptions{}) }
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]*ast.File{"p.go": f}
	got := readOnlyViolations(fset, files, "p", []reader{{"p", "show"}, {"p", "list"}, {"p", "clean"}, {"p", "gone"}})
	want := []string{"p.show", "names Open", "p.clean", "names Repository", "names Prune", "function gone not found"}
	all := strings.Join(got, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("violations do not mention %q:\n%s", w, all)
		}
	}
	if strings.Contains(all, "p.list") {
		t.Errorf("a reader taking repo.Reader was reported:\n%s", all)
	}
	whole := readOnlyViolations(fset, files, "p", []reader{{"p", ""}})
	if len(whole) != 1 || !strings.Contains(whole[0], "uses repo.Repository") {
		t.Errorf("whole-package check: got %q, want one violation naming repo.Repository", whole)
	}
}
