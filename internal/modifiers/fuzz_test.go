package modifiers

import (
	"encoding/json"
	"testing"

	"github.com/arca-backup/arca/api/v1alpha1"
)

// Resource modifiers come from restore requests (the vault API, RestoreJob
// specs, `--resource-modifiers` files). Validating, compiling and applying
// them must never panic, whatever the rules and the object; a patch that
// applies leaves valid JSON.
func FuzzModifiers(f *testing.F) {
	doc := []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop","labels":{"app":"web"}},"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"c","image":"nginx:1"}]}}}}`)
	f.Add([]byte(`[{"conditions":{"groupResource":"deployments.apps","resourceNameRegex":"we.*","namespaces":["sh*"],"labelSelector":"app=web"},"patches":[{"op":"replace","path":"/spec/replicas","value":1}]}]`), doc)
	f.Add([]byte(`[{"conditions":{"groupResource":"*"},"mergePatches":[{"metadata":{"labels":{"restored":"yes"}}}]}]`), doc)
	f.Add([]byte(`[{"conditions":{"groupResource":"*"},"patches":[{"op":"move","from":"/spec","path":"/spec/x"}]}]`), doc)
	f.Add([]byte(`[{"conditions":{"groupResource":"*","resourceNameRegex":"(?P<x>a"}}]`), doc)
	f.Add([]byte(`[{"conditions":{"groupResource":"*","labelSelector":"env in (a,b"}}]`), []byte(`[]`))
	f.Add([]byte(`[{"conditions":{"groupResource":"*"},"patches":[{"op":"test","path":"/spec/replicas","value":3},{"op":"remove","path":"/spec/template/spec/containers/0"}]}]`), doc)
	f.Fuzz(func(t *testing.T, rulesJSON, doc []byte) {
		var rules []v1alpha1.ResourceModifierRule
		if json.Unmarshal(rulesJSON, &rules) != nil {
			return
		}
		m, err := Compile(rules)
		if err != nil {
			return
		}
		o := Object{Group: "apps", Resource: "deployments", Namespace: "shop", Name: "web", Labels: map[string]string{"app": "web"}}
		out, n, err := m.Apply(o, doc)
		if err != nil || n == 0 {
			return
		}
		if json.Valid(doc) && !json.Valid(out) {
			t.Fatalf("rules %s turned valid JSON into invalid %q", rulesJSON, out)
		}
	})
}
