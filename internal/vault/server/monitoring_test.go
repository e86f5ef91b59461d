package server_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// exportedMetrics reads the metrics the Go code declares (Name:
// "arca_…" in prometheus options), with the label names of the vectors
// (the []string{…} after the options).
func exportedMetrics(t *testing.T, root string) map[string][]string {
	t.Helper()
	decl := regexp.MustCompile(`Name:\s*"(arca_[a-z_]+)"[^}]*\}(\s*,\s*\[\]string\{([^}]*)\})?`)
	out := map[string][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			var labels []string
			for _, l := range strings.Split(m[3], ",") {
				if l = strings.Trim(strings.TrimSpace(l), `"`); l != "" {
					labels = append(labels, l)
				}
			}
			out[m[1]] = labels
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var (
	metricRE   = regexp.MustCompile(`\barca_[a-z_]+`)
	selectorRE = regexp.MustCompile(`(arca_[a-z_]+)\{([^}]*)\}`)
	byRE       = regexp.MustCompile(`\bby \(([^)]*)\)`)
	matcherRE  = regexp.MustCompile(`([a-z_]+)\s*(=~|!~|!=|=)`)
)

// checkExpr checks that every metric an expression names is exported and
// that every label it selects or groups by is one of that metric's.
func checkExpr(t *testing.T, where, expr string, exported map[string][]string) {
	t.Helper()
	base := func(name string) (string, bool) {
		if _, ok := exported[name]; ok {
			return name, true
		}
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suf); ok {
				if _, ok := exported[b]; ok {
					return b, true
				}
			}
		}
		return "", false
	}
	var names []string
	for _, n := range metricRE.FindAllString(expr, -1) {
		b, ok := base(n)
		if !ok {
			t.Errorf("%s: metric %s is exported nowhere in the code", where, n)
			continue
		}
		names = append(names, b)
	}
	hasLabel := func(l string) bool {
		if l == "le" {
			return true
		}
		for _, n := range names {
			if slices.Contains(exported[n], l) {
				return true
			}
		}
		return false
	}
	for _, m := range selectorRE.FindAllStringSubmatch(expr, -1) {
		b, _ := base(m[1])
		for _, lm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
			if l := lm[1]; l != "le" && !slices.Contains(exported[b], l) {
				t.Errorf("%s: %s has no label %q (it has %v)", where, m[1], l, exported[b])
			}
		}
	}
	for _, m := range byRE.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); !hasLabel(l) {
				t.Errorf("%s: groups by %q, a label none of %v has", where, l, names)
			}
		}
	}
}

// TestMonitoringNamesExportedMetrics: every metric (and label) the alert
// rules and the Grafana dashboard under deploy/monitoring use is exported
// by the vault or the extension, so a renamed metric fails here instead of
// silently emptying a panel or an alert.
func TestMonitoringNamesExportedMetrics(t *testing.T) {
	repo := filepath.Join("..", "..", "..")
	exported := exportedMetrics(t, filepath.Join(repo, "internal"))
	for _, need := range []string{"arca_vault_jobs_finished_total", "arca_extension_jobs_total", "arca_vault_events_total"} {
		if _, ok := exported[need]; !ok {
			t.Fatalf("the declaration scan found no %s: it no longer matches how metrics are declared (%v)", need, exported)
		}
	}

	b, err := os.ReadFile(filepath.Join(repo, "deploy", "monitoring", "arca-alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The rules file is read line by line (the vault's tests take no YAML
	// library; layering): each "- alert:" starts a rule, and its "expr:"
	// is the rest of the line or, after "|", the more indented lines below.
	type rule struct{ alert, expr string }
	var rules []rule
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if a, ok := strings.CutPrefix(l, "- alert:"); ok {
			rules = append(rules, rule{alert: strings.TrimSpace(a)})
			continue
		}
		e, ok := strings.CutPrefix(l, "expr:")
		if !ok || len(rules) == 0 {
			continue
		}
		e = strings.TrimSpace(e)
		if e == "|" {
			indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
			e = ""
			for i+1 < len(lines) && len(lines[i+1])-len(strings.TrimLeft(lines[i+1], " ")) > indent {
				i++
				e += strings.TrimSpace(lines[i]) + " "
			}
		}
		rules[len(rules)-1].expr = e
	}
	n := 0
	for _, r := range rules {
		if r.alert == "" || r.expr == "" {
			t.Errorf("rule %q without alert or expr", r.alert)
		}
		checkExpr(t, "alert "+r.alert, r.expr, exported)
		n++
	}
	if n < 5 {
		t.Fatalf("only %d alert rules read", n)
	}

	b, err = os.ReadFile(filepath.Join(repo, "deploy", "monitoring", "arca-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("arca-dashboard.json: %v", err)
	}
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			checkExpr(t, "panel "+p.Title, tg.Expr, exported)
			for _, m := range metricRE.FindAllString(tg.Expr, -1) {
				used[strings.TrimSuffix(m, "_bucket")] = true
			}
		}
	}
	// The dashboard shows every metric there is.
	for m := range exported {
		if !used[m] {
			t.Errorf("the dashboard has no panel for %s", m)
		}
	}
}
