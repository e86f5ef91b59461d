// Package layering holds no code: its test enforces the import rules of
// docs/design.md ("Import rules"), so that the architecture stays visible in
// the tree.
//
// Every package of the module (as `go list ./...` sees it) has an entry in
// rules naming the packages of this module it may import, in its code and in
// its tests. A new package, or a new import, fails the test until the table
// (and docs/design.md) says it is allowed. On top of the table, principles
// state the design's rules in general form, so that widening the table in a
// way the design forbids fails too, unless it is written down as a named
// exception.
package layering

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/arca-backup/arca"

// where tells a failing reader what to edit.
const where = "rules in internal/layering/layering_test.go and the Import rules section of docs/design.md"

// rule lists what one package may import from this module. Entries are
// package paths below the module ("internal/repo"); "x/..." means x and
// every package below it.
type rule struct {
	// Imports: what the package's code (non-test files) may import.
	Imports []string
	// Tests: what its _test.go files may import besides Imports (and the
	// package itself).
	Tests []string
	// Exceptions: imports that break a principle today, each named and
	// explained. They are listed in Imports or Tests too. An exception that
	// is no longer needed fails the test: remove it.
	Exceptions []exception
}

type exception struct {
	Name   string // short name, to be quoted in reports and issues
	Import string
	Why    string
}

// rules: every package of the module, with its imports as they are on
// 2026-12-01. Keep it sorted.
var rules = map[string]rule{
	"api/v1alpha1": {},
	"docs":         {}, // the user guide, embedded for the dashboard
	"bench": {Tests: []string{"api/v1alpha1", "internal/backup", "internal/cli", "internal/extension", "internal/kube", "internal/repo",
		"internal/restore", "internal/storage/local", "internal/testenv", "internal/vault/clock", "internal/vault/policy",
		"internal/vault/rbac", "internal/vault/retention", "internal/vault/scheduler", "internal/vault/server", "internal/vault/store",
		"internal/vault/store/postgres", "internal/vault/store/sqlite", "internal/vault/store/sqlstore"}},
	"cmd/arca":       {Imports: []string{"internal/cli"}},
	"config/crd":     {},
	"hack/crdfix":    {},
	"hack/demo":      {Imports: []string{"api/v1alpha1", "internal/extension", "internal/testenv"}},
	"hack/genchart":  {Imports: []string{"internal/extension"}},
	"hack/image":     {Imports: []string{"internal/extension", "internal/image"}},
	"hack/pause":     {},
	"hack/testtimes": {},

	// The engines.
	"internal/backup": {Imports: []string{"api/v1alpha1", "internal/kube", "internal/repo", "internal/selection"},
		Tests: []string{"internal/storage", "internal/storage/mem", "internal/testenv"}},
	"internal/restore": {Imports: []string{"api/v1alpha1", "internal/kube", "internal/modifiers", "internal/repo", "internal/selection"},
		Tests: []string{"internal/backup", "internal/diff", "internal/kube/kubetest", "internal/storage/mem", "internal/testenv"}},
	"internal/diff": {Imports: []string{"internal/backup", "internal/kube", "internal/repo"}},
	// A verification's sandbox, comparison and cleanup, run by the extension.
	"internal/verify": {Imports: []string{"api/v1alpha1", "internal/diff", "internal/kube", "internal/repo", "internal/restore"}},

	// The dashboard's browser test: vault, cluster and CLI together.
	"internal/browsertest": {Tests: []string{"internal/cli", "internal/clusterdriver", "internal/testenv", "internal/vault/server", "internal/vault/store/sqlite"}},
	// Calendar periods (day, ISO week, …) for both retention concepts.
	"internal/calendar": {},
	"internal/units":    {},
	// internal/testenv: its tests install the chart on a real node (work in flight on 2026-12-01).
	"internal/chart": {Tests: []string{"api/v1alpha1", "internal/extension", "internal/testenv"}},
	"internal/cli": {
		Imports: []string{"api/v1alpha1", "internal/backup", "internal/clusterdriver", "internal/diff", "internal/extension", "internal/kube",
			"internal/modifiers", "internal/operations", "internal/prereq", "internal/prereq/vaultaccess", "internal/repo", "internal/restore",
			"internal/selection", "internal/storage", "internal/storage/location", "internal/storage/retry", "internal/trustedaccess", "internal/vault/client",
			"internal/units", "internal/vault/policy", "internal/vault/rbac", "internal/vault/server", "internal/vault/service", "internal/vault/store", "internal/volumedata"},
		Tests: []string{"config/crd", "internal/kube/kubetest", "internal/sealed", "internal/storage/faulty", "internal/storage/local", "internal/testenv", "internal/vault/store/sqlite",
			"internal/volume"}},
	// The vault's side of trusted access: drivers, prerequisite checks and
	// token renewal over the credentials the cluster's owner registered
	// (service.Clusters).
	"internal/clusterdriver": {
		Imports: []string{"api/v1alpha1", "internal/prereq", "internal/prereq/vaultaccess", "internal/sealed", "internal/storage/location", "internal/vault/clock",
			"internal/vault/jobs", "internal/vault/service", "internal/vault/store"},
		// Its tests run both sides: the vault through the CLI, the extension in the cluster.
		Tests: []string{"internal/cli", "internal/extension", "internal/repo", "internal/storage", "internal/storage/local", "internal/testenv", "internal/trustedaccess",
			"internal/vault/client", "internal/vault/rbac", "internal/vault/retention", "internal/vault/scheduler", "internal/vault/server", "internal/vault/store/sqlite",
			"internal/volume", "internal/volumedata"}},
	"internal/extension": {
		Imports: []string{"api/v1alpha1", "config/crd", "internal/backup", "internal/diff", "internal/kube", "internal/mover", "internal/operations", "internal/repo", "internal/restore",
			"internal/sealed", "internal/selection", "internal/storage", "internal/storage/location", "internal/storage/retry", "internal/trustpolicy", "internal/verify", "internal/volumedata"},
		Tests: []string{"internal/storage/local", "internal/testenv", "internal/volume", "internal/volumedata"}},
	// Tests: its tests build the extension image from the CLI's binary (work in flight on 2026-12-01).
	"internal/image":         {Tests: []string{"internal/cli", "internal/extension"}},
	"internal/kube":          {},
	"internal/kube/kubetest": {},
	"internal/layering":      {},
	"internal/modifiers":     {Imports: []string{"api/v1alpha1"}},
	// The vault tier's data mover in the cluster: an operations.VolumeMover running `arca datamover` pods.
	"internal/mover": {Imports: []string{"api/v1alpha1", "internal/operations", "internal/repo", "internal/volume", "internal/volumedata"}},
	// One path for backup, restore and forget, used by the CLI, the extension and the data mover.
	"internal/operations": {Imports: []string{"api/v1alpha1", "internal/backup", "internal/modifiers", "internal/repo", "internal/restore", "internal/volume"},
		Tests: []string{"internal/storage", "internal/storage/mem", "internal/testenv"}},
	"internal/trustpolicy": {Imports: []string{"api/v1alpha1"}},
	"internal/prereq": {Imports: []string{"api/v1alpha1", "internal/repo", "internal/selection", "internal/storage"},
		Tests: []string{"config/crd", "internal/clusterdriver", "internal/prereq/vaultaccess", "internal/storage/location", "internal/testenv", "internal/trustedaccess",
			"internal/vault/client", "internal/vault/policy", "internal/vault/server", "internal/vault/service", "internal/vault/store/sqlite"}},
	"internal/prereq/vaultaccess": {Imports: []string{"internal/prereq", "internal/vault/client", "internal/vault/rbac", "internal/vault/store"}},
	"internal/repo": {Imports: []string{"internal/calendar", "internal/storage"},
		Tests: []string{"internal/storage/faulty", "internal/storage/local", "internal/storage/mem", "internal/storage/retry"}},
	"internal/repo/cloudtest": {Tests: []string{"internal/repo", "internal/storage", "internal/storage/location", "internal/testenv"}},
	// The answer of a RecoveryPointQuery, sealed to the requester's key.
	"internal/sealed":    {Imports: []string{"api/v1alpha1"}},
	"internal/selection": {Imports: []string{"api/v1alpha1", "internal/kube"}},

	// Storage: each backend knows only the interface.
	"internal/storage":                {},
	"internal/storage/azure":          {Imports: []string{"internal/storage", "internal/storage/internal/exact"}, Tests: []string{"internal/storage/storagetest", "internal/testenv"}},
	"internal/storage/faulty":         {Imports: []string{"internal/storage"}, Tests: []string{"internal/storage/mem", "internal/storage/storagetest"}},
	"internal/storage/internal/exact": {Imports: []string{"internal/storage"}},
	"internal/storage/local":          {Imports: []string{"internal/storage"}, Tests: []string{"internal/storage/storagetest"}},
	"internal/storage/location": {Imports: []string{"internal/storage", "internal/storage/azure", "internal/storage/local", "internal/storage/retry", "internal/storage/s3"},
		Tests: []string{"internal/testenv"}},
	"internal/storage/mem":         {Imports: []string{"internal/storage"}, Tests: []string{"internal/storage/storagetest"}},
	"internal/storage/retry":       {Imports: []string{"internal/storage"}, Tests: []string{"internal/storage/faulty", "internal/storage/mem", "internal/storage/storagetest"}},
	"internal/storage/s3":          {Imports: []string{"internal/storage", "internal/storage/internal/exact"}, Tests: []string{"internal/storage/storagetest", "internal/testenv"}},
	"internal/storage/storagetest": {Imports: []string{"internal/storage"}},

	"internal/testenv":          {Imports: []string{"internal/image", "internal/testenv/hostpath"}},
	"internal/testenv/hostpath": {},
	// The cluster owner's side of trusted access (enable, disable, list),
	// run with the owner's credentials. Its tests follow the credential into
	// the vault's side.
	"internal/trustedaccess": {Imports: []string{"api/v1alpha1"},
		Tests: []string{"config/crd", "internal/clusterdriver", "internal/testenv", "internal/vault/client", "internal/vault/policy",
			"internal/vault/rbac", "internal/vault/server", "internal/vault/service", "internal/vault/store", "internal/vault/store/sqlite"}},

	// The vault.
	"internal/vault/client": {Imports: []string{"api/v1alpha1", "internal/vault/policy", "internal/vault/rbac", "internal/vault/service", "internal/vault/store"}},
	"internal/vault/clock":  {},
	"internal/vault/jobs":   {Imports: []string{"api/v1alpha1", "internal/vault/clock", "internal/vault/policy", "internal/vault/retention", "internal/vault/store"}, Tests: []string{"internal/vault/store/sqlite"}},
	"internal/vault/notify": {Imports: []string{"internal/vault/clock", "internal/vault/store"}, Tests: []string{"internal/vault/store/sqlite"}},
	"internal/vault/policy": {},
	"internal/vault/rbac":   {},
	"internal/vault/retention": {Imports: []string{"internal/calendar", "internal/vault/clock", "internal/vault/policy", "internal/vault/store"},
		Tests: []string{"internal/testenv", "internal/vault/store/postgres", "internal/vault/store/sqlite"}},
	"internal/vault/scheduler": {Imports: []string{"internal/vault/clock", "internal/vault/policy", "internal/vault/store"},
		Tests: []string{"internal/testenv", "internal/vault/store/postgres", "internal/vault/store/sqlite"}},
	"internal/vault/dashboard": {Imports: []string{"docs"}},
	"internal/vault/server": {
		Imports: []string{"api/v1alpha1", "internal/vault/clock", "internal/vault/dashboard", "internal/vault/jobs", "internal/vault/policy", "internal/vault/rbac",
			"internal/vault/notify", "internal/vault/retention", "internal/vault/scheduler", "internal/vault/service", "internal/vault/store",
			"internal/vault/store/postgres", "internal/vault/store/sqlite", "internal/vault/store/sqlstore"},
		Tests: []string{"internal/testenv", "internal/vault/client"}},
	"internal/vault/service": {Imports: []string{"api/v1alpha1", "internal/calendar", "internal/vault/clock", "internal/vault/jobs", "internal/vault/policy",
		"internal/vault/rbac", "internal/vault/retention", "internal/vault/scheduler", "internal/vault/store"},
		Tests: []string{"internal/testenv", "internal/vault/store/postgres", "internal/vault/store/sqlite"}},
	"internal/vault/store":           {},
	"internal/vault/store/postgres":  {Imports: []string{"internal/vault/store/sqlstore"}, Tests: []string{"internal/testenv", "internal/vault/store", "internal/vault/store/storetest"}},
	"internal/vault/store/sqlite":    {Imports: []string{"internal/vault/store/sqlstore"}, Tests: []string{"internal/vault/store", "internal/vault/store/storetest"}},
	"internal/vault/store/sqlstore":  {Imports: []string{"internal/vault/rbac", "internal/vault/store"}}, // scopes, to cascade deletes to role assignments
	"internal/vault/store/storetest": {Imports: []string{"internal/vault/rbac", "internal/vault/store"}},

	"internal/volume": {Imports: []string{"api/v1alpha1", "internal/repo", "internal/restore", "internal/units", "internal/volumedata"}, // restore pods' progress lines
		Tests: []string{"internal/backup", "internal/storage", "internal/storage/faulty", "internal/storage/mem", "internal/testenv"}},
	"internal/volumedata": {Imports: []string{"internal/repo", "internal/units"},
		Tests: []string{"internal/storage", "internal/storage/faulty", "internal/storage/local", "internal/storage/mem"}},
}

// principle is a rule of docs/design.md in general form: packages matching
// From must not import anything matching Not (module paths below the module,
// or other import paths such as "k8s.io/..."), except what matches Except.
type principle struct {
	From, Not, Except []string
	// FromExcept: packages matching From that the principle does not cover.
	FromExcept []string
	Why        string
	// ProductionOnly exempts tests, for rules about what a package's code
	// may depend on where its tests must run the other side.
	ProductionOnly bool
}

var kubernetes = []string{"k8s.io/...", "sigs.k8s.io/..."}

var principles = []principle{
	{From: []string{"internal/storage/..."}, Not: []string{"internal/...", "api/...", "config/...", "cmd/...", "hack/..."},
		Except: []string{"internal/storage/..."},
		Why:    "storage backends know nothing of what is stored in them"},
	{From: []string{"internal/storage/...", "internal/repo/..."}, Not: kubernetes,
		Why: "the repository and its storage are independent of Kubernetes"},
	{From: []string{"internal/repo/..."}, Not: []string{"internal/backup", "internal/restore", "internal/diff", "internal/volume", "internal/vault/...",
		"internal/cli", "internal/extension", "internal/kube/...", "internal/selection", "internal/clusterdriver", "internal/trustedaccess", "internal/prereq/..."},
		Why: "the repository format is independent of Kubernetes and of who writes it"},
	{From: []string{"internal/backup", "internal/restore", "internal/diff", "internal/verify"}, Not: []string{"internal/vault/...", "internal/cli", "internal/extension",
		"internal/clusterdriver", "internal/trustedaccess"},
		Why: "the engines run in the CLI, the extension and tests alike"},
	{From: []string{"internal/backup", "internal/restore"}, Not: []string{"internal/volume"},
		Why: "the engines call the volume layer through their hooks (backup.VolumeSnapshotter, restore.VolumeRestorer)"},
	{From: []string{"internal/vault/..."}, Not: append([]string{"internal/cli", "internal/extension", "internal/clusterdriver", "internal/trustedaccess",
		"internal/prereq/...", "internal/kube/..."}, kubernetes...),
		Why: "the vault reaches clusters only through its ClusterDriver interface"},
	{From: []string{"internal/extension"}, Not: []string{"internal/vault/...", "internal/cli", "internal/clusterdriver", "internal/trustedaccess"},
		Why: "the extension runs in clusters that may never see a vault"},
	{From: []string{"internal/cli", "internal/extension"}, Not: []string{"internal/volume"}, ProductionOnly: true,
		Why: "the CLI and the extension back up, restore and forget through internal/operations, which wires the volume layer (their tests read volume records)"},
	{From: []string{"internal/operations"}, Not: []string{"internal/vault/...", "internal/cli", "internal/extension", "internal/clusterdriver",
		"internal/trustedaccess", "internal/prereq/..."},
		Why: "the operations run in the CLI, the extension and the data mover alike: their callers parse input and present results"},
	{From: []string{"internal/clusterdriver"}, Not: []string{"internal/extension", "internal/cli"},
		Why: "the vault's driver speaks to clusters only through the API server", ProductionOnly: true},
	{From: []string{"internal/clusterdriver"}, Not: []string{"internal/trustedaccess"}, ProductionOnly: true,
		Why: "the vault's side of trusted access holds only what the cluster's owner registered, never the owner's code or credentials"},
	{From: []string{"internal/trustedaccess"}, Not: []string{"internal/vault/...", "internal/clusterdriver"}, ProductionOnly: true,
		Why: "the cluster owner's side of trusted access runs with the owner's credentials and knows nothing of the vault's store"},
	{From: []string{"api/..."}, Not: []string{"internal/...", "cmd/...", "hack/..."},
		Why: "API types are imported by everyone and import nobody of ours"},
	{From: []string{"..."}, FromExcept: []string{"internal/testenv/...", "hack/..."}, Not: []string{"internal/testenv/..."}, ProductionOnly: true,
		Why: "the test environment is for tests and hack/ programs only"},
	{From: []string{"..."}, Not: []string{"cmd/...", "hack/...", "bench"},
		Why: "commands, dev programs and benchmarks are leaves: nothing imports them"},
}

// noKubernetesDeps: packages whose code must not pull in Kubernetes even
// indirectly (checked on `go list`'s Deps, the transitive imports).
var noKubernetesDeps = []string{"internal/repo", "internal/storage/..."}

// match reports whether path matches pattern ("x" exactly, "x/..." for x
// and below, "..." for everything).
func match(pattern, path string) bool {
	if pattern == "..." {
		return true
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}

func matchAny(patterns []string, path string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return match(p, path) })
}

// pkg is what the checker needs of one package. Import paths are full.
type pkg struct {
	ImportPath   string
	Imports      []string
	Deps         []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
}

// local returns the path below the module and whether p is in the module.
func local(p string) (string, bool) {
	if p == module {
		return "", true
	}
	rest, ok := strings.CutPrefix(p, module+"/")
	return rest, ok
}

// check returns one message per violation, sorted.
func check(pkgs []pkg, rules map[string]rule) []string {
	var out []string
	seen := map[string]bool{}
	usedException := map[string]bool{}
	for _, p := range pkgs {
		name, ok := local(p.ImportPath)
		if !ok {
			continue
		}
		seen[name] = true
		if p.Error != nil {
			out = append(out, fmt.Sprintf("%s: go list: %s", name, p.Error.Err))
		}
		r, ok := rules[name]
		if !ok {
			out = append(out, fmt.Sprintf("package %s has no import rule: add an entry for it to %s (today it imports %v; its tests %v)",
				name, where, ours(p.Imports), ours(append(slices.Clone(p.TestImports), p.XTestImports...))))
			continue
		}
		type imp struct {
			path string
			test bool
		}
		var imps []imp
		for _, i := range p.Imports {
			imps = append(imps, imp{i, false})
		}
		for _, i := range append(slices.Clone(p.TestImports), p.XTestImports...) {
			if !slices.Contains(p.Imports, i) {
				imps = append(imps, imp{i, true})
			}
		}
		for _, i := range imps {
			target, in := local(i.path)
			if !in {
				target = i.path
			}
			what := "imports"
			if i.test {
				what = "tests import"
			}
			if in && target != name {
				allowed := matchAny(r.Imports, target) || i.test && matchAny(r.Tests, target)
				if !allowed {
					field := "Imports"
					if i.test {
						field = "Tests"
					}
					out = append(out, fmt.Sprintf("%s %s %s, which its rule does not allow: if that is intended, add it to rules[%q].%s (%s); otherwise remove the import",
						name, what, target, name, field, where))
				}
			}
			for _, pr := range principles {
				if !matchAny(pr.From, name) || matchAny(pr.FromExcept, name) || (i.test && pr.ProductionOnly) {
					continue
				}
				if !matchAny(pr.Not, target) || matchAny(pr.Except, target) || target == name {
					continue
				}
				if i.test && match("internal/testenv/...", target) {
					continue // tests may always use the test environment
				}
				excepted := false
				for _, e := range r.Exceptions {
					if e.Import == target {
						excepted = true
						usedException[name+" "+e.Name] = true
					}
				}
				if !excepted {
					out = append(out, fmt.Sprintf("%s %s %s: %s (docs/design.md, Import rules)", name, what, target, pr.Why))
				}
			}
		}
		if matchAny(noKubernetesDeps, name) {
			for _, d := range p.Deps {
				if matchAny(kubernetes, d) {
					out = append(out, fmt.Sprintf("%s depends on %s (directly or through another package): the repository and its storage must build without Kubernetes (docs/design.md, Import rules)", name, d))
					break
				}
			}
		}
	}
	for name, r := range rules {
		if !seen[name] {
			out = append(out, fmt.Sprintf("rules has an entry for %s, which is not a package of the module: remove it from %s", name, where))
		}
		for _, e := range r.Exceptions {
			if seen[name] && !usedException[name+" "+e.Name] {
				out = append(out, fmt.Sprintf("exception %q of %s (import %s) is no longer needed: remove it from %s", e.Name, name, e.Import, where))
			}
		}
	}
	sort.Strings(out)
	return out
}

// ours lists the module-internal imports, below the module.
func ours(imports []string) []string {
	var out []string
	for _, i := range imports {
		if l, ok := local(i); ok && !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

// listModule runs `go list` over every package of the module.
func listModule(t *testing.T) []pkg {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,Deps,TestImports,XTestImports,Error", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./... in %s: %v\n%s", root, err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestImportRules(t *testing.T) {
	pkgs := listModule(t)
	if len(pkgs) < len(rules)/2 {
		t.Fatalf("go list found %d packages, the rules name %d: the listing is broken", len(pkgs), len(rules))
	}
	for _, msg := range check(pkgs, rules) {
		t.Error(msg)
	}
}

// TestCheckerCatchesViolations feeds made-up packages through the checker:
// each violation must be reported, and a clean package must not be.
func TestCheckerCatchesViolations(t *testing.T) {
	m := func(p string) string { return module + "/" + p }
	testRules := map[string]rule{
		"internal/repo":          {Imports: []string{"internal/storage"}},
		"internal/storage":       {},
		"internal/storage/local": {Imports: []string{"internal/storage"}},
		"internal/vault/server": {Imports: []string{"internal/vault/store", "internal/testenv", "internal/trustedaccess"},
			Exceptions: []exception{{Name: "stale", Import: "internal/prereq", Why: "made up"}}},
		"internal/vault/store": {},
		"internal/extension":   {Imports: []string{"internal/repo", "internal/volume"}},
		"internal/gone":        {},
		"hack/demo":            {Imports: []string{"internal/testenv"}},
		"internal/testenv":     {},
	}
	pkgs := []pkg{
		// Clean: imports only what its rule allows.
		{ImportPath: m("internal/storage")},
		{ImportPath: m("internal/testenv")},
		{ImportPath: m("internal/vault/store")},
		{ImportPath: m("hack/demo"), Imports: []string{m("internal/testenv")}},
		// A Kubernetes import in the repository.
		{ImportPath: m("internal/repo"), Imports: []string{m("internal/storage"), "k8s.io/client-go/kubernetes"}, TestImports: []string{"sigs.k8s.io/yaml"}},
		// Kubernetes pulled in indirectly by a backend.
		{ImportPath: m("internal/storage/local"), Imports: []string{m("internal/storage")}, Deps: []string{m("internal/storage"), "k8s.io/apimachinery/pkg/types"}},
		// The test environment in production code, and a principle broken
		// by an import the table allows but no exception names.
		{ImportPath: m("internal/vault/server"), Imports: []string{m("internal/vault/store"), m("internal/testenv"), m("internal/trustedaccess")}},
		// The extension importing the vault, and its tests the CLI; and the
		// volume layer, which its (widened) rule allows but a principle
		// does not.
		{ImportPath: m("internal/extension"), Imports: []string{m("internal/repo"), m("internal/vault/store"), m("internal/volume")},
			XTestImports: []string{m("internal/cli")}},
		// A package nobody wrote a rule for.
		{ImportPath: m("internal/newthing"), Imports: []string{m("internal/repo")}},
	}
	got := check(pkgs, testRules)
	want := []string{
		"package internal/newthing has no import rule: add an entry for it to rules in internal/layering/layering_test.go",
		"internal/repo imports k8s.io/client-go/kubernetes: the repository and its storage are independent of Kubernetes",
		"internal/repo tests import sigs.k8s.io/yaml: the repository and its storage are independent of Kubernetes",
		"internal/storage/local depends on k8s.io/apimachinery/pkg/types (directly or through another package)",
		"internal/vault/server imports internal/testenv: the test environment is for tests and hack/ programs only",
		"internal/vault/server imports internal/trustedaccess: the vault reaches clusters only through its ClusterDriver interface",
		"internal/extension imports internal/vault/store, which its rule does not allow: if that is intended, add it to rules[\"internal/extension\"].Imports",
		"internal/extension imports internal/vault/store: the extension runs in clusters that may never see a vault",
		"internal/extension tests import internal/cli, which its rule does not allow",
		"internal/extension tests import internal/cli: the extension runs in clusters that may never see a vault",
		"internal/extension imports internal/volume: the CLI and the extension back up, restore and forget through internal/operations",
		"rules has an entry for internal/gone, which is not a package of the module",
		"exception \"stale\" of internal/vault/server (import internal/prereq) is no longer needed",
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, w) }) {
			t.Errorf("no violation reported starting with %q", w)
		}
	}
	for _, g := range got {
		for _, clean := range []string{"internal/storage ", "internal/testenv ", "internal/vault/store ", "hack/demo "} {
			if strings.HasPrefix(g, clean) {
				t.Errorf("a clean package was reported: %s", g)
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d violations reported, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
}
