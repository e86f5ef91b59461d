// Package modifiers applies resource modifier rules to objects being
// restored: each rule has conditions (group/resource, name regex,
// namespaces, label selector) and rewrites matching objects with JSON Patch
// (RFC 6902) operations, then JSON merge patches (RFC 7386).
package modifiers

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/arca-backup/arca/api/v1alpha1"
)

// Modifiers is a compiled list of rules.
type Modifiers struct{ rules []rule }

type rule struct {
	groupResource string
	name          *regexp.Regexp
	namespaces    []string
	selector      labels.Selector
	patch         jsonpatch.Patch
	merges        [][]byte
}

// Compile validates and compiles rules.
func Compile(rules []v1alpha1.ResourceModifierRule) (*Modifiers, error) {
	m := &Modifiers{}
	var errs []error
	for i := range rules {
		r := &rules[i]
		if err := r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("resource modifier rule %d: %w", i, err))
			continue
		}
		c := rule{groupResource: r.Conditions.GroupResource, namespaces: r.Conditions.Namespaces}
		if r.Conditions.ResourceNameRegex != "" {
			c.name = regexp.MustCompile("^(?:" + r.Conditions.ResourceNameRegex + ")$")
		}
		sel, _ := v1alpha1.ParseLabelSelectors([]string{r.Conditions.LabelSelector})
		c.selector = sel
		if len(r.Patches) > 0 {
			raw, err := json.Marshal(r.Patches)
			if err != nil {
				errs = append(errs, fmt.Errorf("resource modifier rule %d: %w", i, err))
				continue
			}
			p, err := jsonpatch.DecodePatch(raw)
			if err != nil {
				errs = append(errs, fmt.Errorf("resource modifier rule %d: patches: %w", i, err))
				continue
			}
			c.patch = p
		}
		for _, mp := range r.MergePatches {
			c.merges = append(c.merges, []byte(mp))
		}
		m.rules = append(m.rules, c)
	}
	return m, errors.Join(errs...)
}

// Load reads a resource modifiers file (YAML or JSON) and compiles it.
func Load(file string) (*Modifiers, []v1alpha1.ResourceModifierRule, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, fmt.Errorf("read resource modifiers: %w", err)
	}
	var rm v1alpha1.ResourceModifiers
	if err := yaml.UnmarshalStrict(data, &rm); err != nil {
		return nil, nil, fmt.Errorf("resource modifiers %s: %w", file, err)
	}
	if err := rm.Validate(); err != nil {
		return nil, nil, fmt.Errorf("resource modifiers %s: %w", file, err)
	}
	m, err := Compile(rm.Rules)
	return m, rm.Rules, err
}

// Len is the number of rules.
func (m *Modifiers) Len() int {
	if m == nil {
		return 0
	}
	return len(m.rules)
}

// Object identifies the object a rule's conditions are tested against.
type Object struct {
	Group, Resource string
	Namespace, Name string // source namespace, before mapping
	Labels          map[string]string
}

func (r *rule) matches(o Object) bool {
	if r.groupResource != "*" {
		gr := o.Resource
		if o.Group != "" {
			gr += "." + o.Group
		}
		if gr != r.groupResource {
			return false
		}
	}
	if r.name != nil && !r.name.MatchString(o.Name) {
		return false
	}
	if len(r.namespaces) > 0 {
		ok := false
		for _, p := range r.namespaces {
			if m, _ := path.Match(p, o.Namespace); m {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return r.selector.Matches(labels.Set(o.Labels))
}

// Apply runs every matching rule on the JSON document doc and returns the
// result and how many rules applied. A failing operation (a `test` that does
// not hold, a path that does not exist) is an error naming the rule.
func (m *Modifiers) Apply(o Object, doc []byte) ([]byte, int, error) {
	if m == nil {
		return doc, 0, nil
	}
	n := 0
	for i := range m.rules {
		r := &m.rules[i]
		if !r.matches(o) {
			continue
		}
		n++
		if r.patch != nil {
			out, err := r.patch.Apply(doc)
			if err != nil {
				return nil, n, fmt.Errorf("resource modifier rule %d: json patch: %w", i, err)
			}
			doc = out
		}
		for j, mp := range r.merges {
			out, err := jsonpatch.MergePatch(doc, mp)
			if err != nil {
				return nil, n, fmt.Errorf("resource modifier rule %d: merge patch %d: %w", i, j, err)
			}
			doc = out
		}
	}
	return doc, n, nil
}
