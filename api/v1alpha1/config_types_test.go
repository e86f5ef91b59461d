package v1alpha1

import (
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

func TestBackupConfigurationValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  BackupConfiguration
		err  string // substring; empty means valid
	}{
		{"zero value", BackupConfiguration{}, ""},
		{"globs and types", BackupConfiguration{IncludedNamespaces: []string{"team-*", "app?", "prod"}, IncludedResourceTypes: []string{"deployments.apps", "Secret", "ingresses.networking.k8s.io", "*"}}, ""},
		{"selectors", BackupConfiguration{LabelSelectors: []string{"app=web;tier!=db", "env in (a,b)", "!legacy"}}, ""},
		{"bad namespace", BackupConfiguration{IncludedNamespaces: []string{"Prod_1"}}, `includedNamespaces[0]: "Prod_1" is not a namespace name`},
		{"bad glob", BackupConfiguration{ExcludedNamespaces: []string{"team-["}}, `excludedNamespaces[0]: "team-[": bad glob pattern`},
		{"bad type", BackupConfiguration{IncludedResourceTypes: []string{"deploy ments"}}, `includedResourceTypes[0]: "deploy ments"`},
		{"bad group", BackupConfiguration{ExcludedResourceTypes: []string{"widgets.Example_com"}}, `excludedResourceTypes[0]: "widgets.Example_com": group`},
		{"bad selector", BackupConfiguration{LabelSelectors: []string{"app=web;tier!!=db"}}, `labelSelectors: "tier!!=db"`},
		{"hook without name", BackupConfiguration{BackupHookReferences: []NamespacedName{{Namespace: "a"}}}, "backupHookReferences[0]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.err == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want it to contain %q", err, tc.err)
			}
		})
	}
}

func TestRestoreCriteriaValidate(t *testing.T) {
	cases := []struct {
		name string
		c    RestoreCriteria
		err  string
	}{
		{"zero value", RestoreCriteria{}, ""},
		{"mapping", RestoreCriteria{NamespaceMappings: map[string]string{"a": "b"}, ConflictPolicy: ConflictPatch}, ""},
		{"mapping target invalid", RestoreCriteria{NamespaceMappings: map[string]string{"a": "B!"}}, `target "B!" (of "a") is not a namespace name`},
		{"mapping collision", RestoreCriteria{NamespaceMappings: map[string]string{"a": "x", "b": "x"}}, `"a" and "b" both map to "x"`},
		{"storage class mapping", RestoreCriteria{StorageClassMappings: map[string]string{"managed-csi": "fast.example.com", "b": "fast.example.com"}}, ""},
		{"storage class mapping source invalid", RestoreCriteria{StorageClassMappings: map[string]string{"Old_SC": "new"}}, `storageClassMappings: source "Old_SC" is not a storage class name`},
		{"storage class mapping target invalid", RestoreCriteria{StorageClassMappings: map[string]string{"old": ""}}, `storageClassMappings: target "" (of "old") is not a storage class name`},
		{"conflict policy", RestoreCriteria{ConflictPolicy: "Overwrite"}, `conflictPolicy: "Overwrite" is not Skip or Patch`},
		{"pv mode", RestoreCriteria{PersistentVolumeRestoreMode: "Maybe"}, "persistentVolumeRestoreMode"},
		{"modifier without patches", RestoreCriteria{ResourceModifiers: []ResourceModifierRule{{Conditions: ModifierConditions{GroupResource: "configmaps"}}}}, "resourceModifiers[0]: no patches"},
		{"modifier bad op", RestoreCriteria{ResourceModifiers: []ResourceModifierRule{{Conditions: ModifierConditions{GroupResource: "*"},
			Patches: []JSONPatchOperation{{Op: "frobnicate", Path: "/a"}}}}}, `patches[0].op: "frobnicate"`},
		{"modifier bad path", RestoreCriteria{ResourceModifiers: []ResourceModifierRule{{Conditions: ModifierConditions{GroupResource: "*"},
			Patches: []JSONPatchOperation{{Op: "remove", Path: "spec"}}}}}, "not a JSON pointer"},
		{"modifier bad regex", RestoreCriteria{ResourceModifiers: []ResourceModifierRule{{Conditions: ModifierConditions{GroupResource: "*", ResourceNameRegex: "("},
			MergePatches: []json.RawMessage{json.RawMessage(`{}`)}}}}, "resourceNameRegex"},
		{"modifier group resource", RestoreCriteria{ResourceModifiers: []ResourceModifierRule{{Conditions: ModifierConditions{GroupResource: "Deployments.Apps"},
			MergePatches: []json.RawMessage{json.RawMessage(`{}`)}}}}, "groupResource"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			if tc.err == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want it to contain %q", err, tc.err)
			}
		})
	}
}

func TestParseLabelSelectors(t *testing.T) {
	sel, err := ParseLabelSelectors([]string{"app=web;tier!=db", "env in (a,b)"})
	if err != nil {
		t.Fatal(err)
	}
	for set, want := range map[string]bool{
		"app=web,tier=fe,env=a": true,
		"app=web,env=b":         true,
		"app=web,tier=db,env=a": false,
		"app=web,env=c":         false,
		"app=api,env=a":         false,
	} {
		ls, _ := labels.ConvertSelectorToLabelsMap(set)
		if got := sel.Matches(ls); got != want {
			t.Errorf("%s: %v, want %v", set, got, want)
		}
	}
}

func TestParseTypeRef(t *testing.T) {
	for in, want := range map[string]TypeRef{
		"deployments.apps":          {Name: "deployments", Group: "apps", GroupGiven: true},
		"Secret":                    {Name: "Secret"},
		"Ingress.networking.k8s.io": {Name: "Ingress", Group: "networking.k8s.io", GroupGiven: true},
		"configmaps.core":           {Name: "configmaps", GroupGiven: true},
	} {
		got, err := ParseTypeRef(in)
		if err != nil || got != want {
			t.Errorf("%s: %+v %v, want %+v", in, got, err, want)
		}
	}
}

func TestDefaults(t *testing.T) {
	var b BackupConfiguration
	if !b.ClusterScope() || !b.Secrets() || !b.Snapshots() {
		t.Error("defaults must be true")
	}
	b.IncludeSecrets = Bool(false)
	if b.Secrets() {
		t.Error("explicit false ignored")
	}
	var r RestoreCriteria
	if r.Conflict() != ConflictSkip || r.ClusterScope() {
		t.Error("restore defaults")
	}
}
