package modifiers

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arca-backup/arca/api/v1alpha1"
)

func TestApply(t *testing.T) {
	m, err := Compile([]v1alpha1.ResourceModifierRule{
		{Conditions: v1alpha1.ModifierConditions{GroupResource: "deployments.apps", ResourceNameRegex: "web-.*", Namespaces: []string{"prod-*"}, LabelSelector: "tier=fe"},
			Patches: []v1alpha1.JSONPatchOperation{{Op: "replace", Path: "/spec/replicas", Value: json.RawMessage(`1`)}}},
		{Conditions: v1alpha1.ModifierConditions{GroupResource: "*"},
			MergePatches: []json.RawMessage{json.RawMessage(`{"metadata":{"annotations":{"restored":"true"}}}`)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	doc := []byte(`{"metadata":{"name":"web-1"},"spec":{"replicas":3}}`)
	out, n, err := m.Apply(Object{Group: "apps", Resource: "deployments", Namespace: "prod-eu", Name: "web-1", Labels: map[string]string{"tier": "fe"}}, doc)
	if err != nil || n != 2 {
		t.Fatalf("n %d err %v", n, err)
	}
	if !strings.Contains(string(out), `"replicas":1`) || !strings.Contains(string(out), `"restored":"true"`) {
		t.Errorf("out %s", out)
	}
	// Conditions that do not hold.
	for _, o := range []Object{
		{Group: "apps", Resource: "deployments", Namespace: "dev", Name: "web-1", Labels: map[string]string{"tier": "fe"}},
		{Group: "apps", Resource: "deployments", Namespace: "prod-eu", Name: "api", Labels: map[string]string{"tier": "fe"}},
		{Group: "apps", Resource: "deployments", Namespace: "prod-eu", Name: "web-1"},
		{Group: "", Resource: "deployments", Namespace: "prod-eu", Name: "web-1", Labels: map[string]string{"tier": "fe"}},
	} {
		if _, n, _ := m.Apply(o, doc); n != 1 {
			t.Errorf("%+v: %d rules applied, want only the catch-all", o, n)
		}
	}
	bad, _ := Compile([]v1alpha1.ResourceModifierRule{{Conditions: v1alpha1.ModifierConditions{GroupResource: "*"},
		Patches: []v1alpha1.JSONPatchOperation{{Op: "remove", Path: "/spec/missing"}}}})
	if _, _, err := bad.Apply(Object{Resource: "x"}, doc); err == nil || !strings.Contains(err.Error(), "rule 0") {
		t.Errorf("err %v", err)
	}
}

func TestLoad(t *testing.T) {
	f := filepath.Join(t.TempDir(), "mods.yaml")
	os.WriteFile(f, []byte(`version: v1
resourceModifierRules:
- conditions:
    groupResource: configmaps
    resourceNameRegex: "^app-"
  patches:
  - {op: add, path: /data/region, value: "eu"}
`), 0o600)
	m, rules, err := Load(f)
	if err != nil || m.Len() != 1 || len(rules) != 1 {
		t.Fatalf("%v %v", rules, err)
	}
	os.WriteFile(f, []byte("version: v1\nresourceModifierRules:\n- conditions: {groupResource: configmaps}\n  patchez: []\n"), 0o600)
	if _, _, err := Load(f); err == nil {
		t.Error("unknown field accepted")
	}
}
