package cli

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// codePatterns find the stable warning and error codes in the source: code
// constants (CodeX = "…", WarnX = "…"), struct literals (Code: "…"),
// prerequisite checks (ch.Result, ch.Code = Failed, "…") and vault API
// errors (apiErr(status, "…", …)).
var codePatterns = []*regexp.Regexp{
	regexp.MustCompile(`\b(?:Code|Warn)[A-Za-z]*\s*=\s*"([A-Z][A-Za-z]+)"`),
	regexp.MustCompile(`\bCode:\s*"([A-Z][A-Za-z]+)"`),
	regexp.MustCompile(`\.Result,\s*\w+\.Code[^=\n]*=\s*\w+,\s*"([A-Z][A-Za-z]+)"`),
	regexp.MustCompile(`\bapiErr\([^,]+,\s*"([A-Z][A-Za-z]+)"`),
}

// sourceCodes returns each code with the first file that emits it.
func sourceCodes(t *testing.T, roots ...string) map[string]string {
	t.Helper()
	codes := map[string]string{}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata" || d.Name() == "testenv" || d.Name() == "storetest") {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, re := range codePatterns {
				for _, m := range re.FindAllStringSubmatch(string(b), -1) {
					if _, ok := codes[m[1]]; !ok {
						codes[m[1]] = path
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return codes
}

// TestUserGuideListsEveryCode fails when a code the system emits is not in
// docs/user-guide.md's troubleshooting section as `Code`.
func TestUserGuideListsEveryCode(t *testing.T) {
	guide, err := os.ReadFile(filepath.Join("..", "..", "docs", "user-guide.md"))
	if err != nil {
		t.Fatal(err)
	}
	codes := sourceCodes(t, filepath.Join("..", "..", "internal"), filepath.Join("..", "..", "api"))
	if len(codes) < 50 {
		t.Fatalf("found only %d codes: the patterns no longer match how codes are declared", len(codes))
	}
	var missing []string
	for code, file := range codes {
		if !strings.Contains(string(guide), "`"+code+"`") {
			missing = append(missing, code+" ("+file+")")
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("docs/user-guide.md does not list %d code(s) (add each as `Code` with cause and fix):\n  %s", len(missing), strings.Join(missing, "\n  "))
	}
}
