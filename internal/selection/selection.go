// Package selection decides which resource types and objects a backup or a
// restore includes: namespaces (names and glob patterns), resource types (by
// resource or kind, optionally with a group) and label selectors, all
// AND-ed. Everything is parsed up front so that a typo fails the operation
// before anything is written.
package selection

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/kube"
)

// Namespaces matches namespace names against include and exclude patterns.
type Namespaces struct {
	include []string // empty means all
	exclude []string
	// allow, when set, must also accept a namespace (Restrict).
	allow func(ns string) bool
}

// Restrict makes n select only namespaces allow accepts, whatever its
// patterns say: the cluster owner's trust policy bounds a vault's backup
// this way, also for namespaces created after the job was checked.
func (n *Namespaces) Restrict(allow func(ns string) bool) { n.allow = allow }

// NewNamespaces parses the patterns. With defaultExcludes, the namespaces of
// v1alpha1.DefaultExcludedNamespaces are excluded unless an include pattern
// names them literally.
func NewNamespaces(include, exclude []string, defaultExcludes bool) (*Namespaces, error) {
	var errs []error
	n := &Namespaces{}
	for _, p := range include {
		if err := v1alpha1.ValidNamespacePattern(p); err != nil {
			errs = append(errs, fmt.Errorf("included namespace %w", err))
		}
		if p == "*" {
			n.include = nil
			continue
		}
		n.include = append(n.include, p)
	}
	if containsStar(include) {
		n.include = nil
	}
	for _, p := range exclude {
		if err := v1alpha1.ValidNamespacePattern(p); err != nil {
			errs = append(errs, fmt.Errorf("excluded namespace %w", err))
		}
		n.exclude = append(n.exclude, p)
	}
	if defaultExcludes {
		for _, d := range v1alpha1.DefaultExcludedNamespaces {
			if !contains(include, d) {
				n.exclude = append(n.exclude, d)
			}
		}
	}
	return n, errors.Join(errs...)
}

// Includes reports whether namespace ns is selected.
func (n *Namespaces) Includes(ns string) bool {
	if matchAny(n.exclude, ns) || n.allow != nil && !n.allow(ns) {
		return false
	}
	return len(n.include) == 0 || matchAny(n.include, ns)
}

// All reports whether no include pattern restricts the namespaces.
func (n *Namespaces) All() bool { return len(n.include) == 0 }

// Literals are the included names that are not patterns: a backup warns
// when one of them does not exist.
func (n *Namespaces) Literals() []string {
	var out []string
	for _, p := range n.include {
		if !isPattern(p) {
			out = append(out, p)
		}
	}
	return out
}

func isPattern(p string) bool { return strings.ContainsAny(p, "*?[") }

func matchAny(pats []string, s string) bool {
	for _, p := range pats {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

// Types matches resource types against include and exclude references.
type Types struct {
	include []v1alpha1.TypeRef // empty means all
	exclude []v1alpha1.TypeRef
}

// NewTypes parses the references.
func NewTypes(include, exclude []string) (*Types, error) {
	var errs []error
	t := &Types{}
	for _, s := range include {
		r, err := v1alpha1.ParseTypeRef(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("included resource type %w", err))
			continue
		}
		t.include = append(t.include, r)
	}
	for _, s := range exclude {
		r, err := v1alpha1.ParseTypeRef(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("excluded resource type %w", err))
			continue
		}
		t.exclude = append(t.exclude, r)
	}
	for _, r := range t.include {
		if r.Name == "*" {
			t.include = nil
			break
		}
	}
	return t, errors.Join(errs...)
}

// Matches reports whether ref names the resource type r.
func Matches(ref v1alpha1.TypeRef, r kube.Resource) bool {
	if ref.Name == "*" {
		return true
	}
	if ref.GroupGiven && ref.Group != r.Group {
		return false
	}
	return strings.EqualFold(ref.Name, r.Resource) || strings.EqualFold(ref.Name, r.Kind)
}

// Includes reports whether type r is selected.
func (t *Types) Includes(r kube.Resource) bool {
	if t.Excludes(r) {
		return false
	}
	if len(t.include) == 0 {
		return true
	}
	for _, ref := range t.include {
		if Matches(ref, r) {
			return true
		}
	}
	return false
}

// Excludes reports whether type r is explicitly excluded.
func (t *Types) Excludes(r kube.Resource) bool {
	for _, ref := range t.exclude {
		if Matches(ref, r) {
			return true
		}
	}
	return false
}

// Explicit reports whether type r is named by an include reference (not
// just included because no type filter was given).
func (t *Types) Explicit(r kube.Resource) bool {
	for _, ref := range t.include {
		if Matches(ref, r) {
			return true
		}
	}
	return false
}

// Resolve checks that every reference names at least one of the known types,
// so that `--include-types deploymnets` is an error rather than an empty
// backup.
func (t *Types) Resolve(known []kube.Resource) error {
	var errs []error
	check := func(what string, refs []v1alpha1.TypeRef) {
		for _, ref := range refs {
			found := false
			for _, r := range known {
				if Matches(ref, r) {
					found = true
					break
				}
			}
			if !found {
				errs = append(errs, fmt.Errorf("%s resource type %q: %w", what, ref.String(), ErrUnknownType))
			}
		}
	}
	check("included", t.include)
	check("excluded", t.exclude)
	return errors.Join(errs...)
}

// ErrUnknownType is wrapped by Resolve's errors.
var ErrUnknownType = errors.New("no such resource type is served by the cluster or present in the recovery point")

// Selector is the whole selection of a backup or restore.
type Selector struct {
	Namespaces   *Namespaces
	Types        *Types
	Labels       labels.Selector
	ClusterScope bool
	Secrets      bool
}

// ForBackup builds the selector of a backup configuration.
func ForBackup(c *v1alpha1.BackupConfiguration) (*Selector, error) {
	return build(c.IncludedNamespaces, c.ExcludedNamespaces, c.IncludedResourceTypes, c.ExcludedResourceTypes,
		c.LabelSelectors, c.ClusterScope(), c.Secrets(), true)
}

// ForRestore builds the selector of restore criteria. Restores apply no
// default namespace exclusions: the recovery point already did.
func ForRestore(c *v1alpha1.RestoreCriteria) (*Selector, error) {
	return build(c.IncludedNamespaces, c.ExcludedNamespaces, c.IncludedResourceTypes, c.ExcludedResourceTypes,
		c.LabelSelectors, c.ClusterScope(), true, false)
}

func build(incNS, excNS, incT, excT, sel []string, cluster, secrets, defaultExcludes bool) (*Selector, error) {
	var errs []error
	ns, err := NewNamespaces(incNS, excNS, defaultExcludes)
	errs = append(errs, err)
	ty, err := NewTypes(incT, excT)
	errs = append(errs, err)
	ls, err := v1alpha1.ParseLabelSelectors(sel)
	if err != nil {
		errs = append(errs, fmt.Errorf("label selector %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Selector{Namespaces: ns, Types: ty, Labels: ls, ClusterScope: cluster, Secrets: secrets}, nil
}

// IncludesType reports whether objects of type r are candidates. Cluster-
// scoped types are candidates only with ClusterScope; Namespaces are always
// candidates (a namespace object travels with its contents).
func (s *Selector) IncludesType(r kube.Resource) bool {
	if r.Group == "" && r.Resource == "namespaces" {
		return !s.Types.Excludes(r)
	}
	if !s.Secrets && r.Group == "" && r.Resource == "secrets" {
		return false
	}
	if !r.Namespaced && !s.ClusterScope {
		return false
	}
	return s.Types.Includes(r)
}

// IncludesObject reports whether an object of an included type is selected
// by namespace (namespaced objects) and labels.
func (s *Selector) IncludesObject(namespace string, lbls map[string]string) bool {
	if namespace != "" && !s.Namespaces.Includes(namespace) {
		return false
	}
	return s.Labels.Matches(labels.Set(lbls))
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func containsStar(xs []string) bool { return contains(xs, "*") }

// SplitList splits a comma-separated flag value, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ParseMappings parses `old=new[,old2=new2]` namespace mappings.
func ParseMappings(items []string) (map[string]string, error) {
	out := map[string]string{}
	var errs []error
	for _, it := range items {
		for _, p := range SplitList(it) {
			from, to, ok := strings.Cut(p, "=")
			from, to = strings.TrimSpace(from), strings.TrimSpace(to)
			if !ok || from == "" || to == "" {
				errs = append(errs, fmt.Errorf("namespace mapping %q: want old=new", p))
				continue
			}
			if prev, dup := out[from]; dup && prev != to {
				errs = append(errs, fmt.Errorf("namespace mapping: %q mapped to both %q and %q", from, prev, to))
				continue
			}
			out[from] = to
		}
	}
	return out, errors.Join(errs...)
}

// SortedKeys returns m's keys in order.
func SortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
