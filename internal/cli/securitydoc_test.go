package cli

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSecurityDocNamesRealTests holds docs/security.md to the code: every
// test or fuzz target a threat table names as its proof exists in the tree,
// so a row cannot point at a test that was renamed or never written, and
// every table row names at least one.
func TestSecurityDocNamesRealTests(t *testing.T) {
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	funcRE := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)\w+)\(`)
	err = filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range funcRE.FindAllSubmatch(b, -1) {
			defined[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	nameRE := regexp.MustCompile("`((?:Test|Fuzz)[A-Za-z0-9_]+)`")
	rows, missing := 0, 0
	for i, line := range strings.Split(string(doc), "\n") {
		cells := strings.Split(strings.Trim(line, " |"), " | ")
		// A threat table row: threat | control | test | result.
		if !strings.HasPrefix(line, "| ") || len(cells) < 3 || strings.HasPrefix(line, "|---") || cells[0] == "threat" {
			continue
		}
		testCell := cells[2]
		names := nameRE.FindAllStringSubmatch(testCell, -1)
		if len(names) == 0 {
			continue
		}
		rows++
		for _, n := range names {
			if !defined[n[1]] {
				missing++
				t.Errorf("docs/security.md:%d names %s as a proof, but no test or fuzz target has that name", i+1, n[1])
			}
		}
	}
	if rows < 10 {
		t.Fatalf("docs/security.md has %d threat rows naming tests; the threat tables are missing or their test column moved", rows)
	}
	t.Logf("%d threat rows, every named test exists", rows)
}
