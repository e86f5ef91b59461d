package selection

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/kube"
)

// Namespace mappings, namespace patterns, label selectors and type
// references come from flags, BackupJob/RestoreJob specs and vault requests.

func FuzzParseMappings(f *testing.F) {
	for _, s := range []string{"shop=shop-restored", "a=b,c=d", "a=b,a=c", "a=", "=b", "a=b=c", " a = b ,, ", "kube-system=x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMappings([]string{s})
		if err != nil {
			return
		}
		for from, to := range m {
			if from == "" || to == "" || strings.ContainsAny(from+to, ",") || from != strings.TrimSpace(from) || to != strings.TrimSpace(to) {
				t.Fatalf("ParseMappings(%q) accepted mapping %q=%q", s, from, to)
			}
		}
	})
}

// FuzzRestoreCriteria decodes restore criteria as the vault API and the
// RestoreJob spec carry them, validates them and builds the selector the
// restore uses. Criteria that pass validation must build a selector without
// error: validation is the only gate.
func FuzzRestoreCriteria(f *testing.F) {
	f.Add([]byte(`{"includedNamespaces":["shop","db-*"],"excludedResourceTypes":["secrets"],"labelSelectors":["app=web;tier in (a,b)"],"namespaceMappings":{"shop":"shop-2"}}`))
	f.Add([]byte(`{"includedResourceTypes":["deployments.apps","Secret.core","*"],"excludedNamespaces":["[a-"]}`))
	f.Add([]byte(`{"includedNamespaces":["*"],"namespaceMappings":{"a":"b","c":"b"}}`))
	f.Add([]byte(`{"labelSelectors":["env notin (prod)","!legacy"]}`))
	r := []kube.Resource{
		{Group: "apps", Version: "v1", Resource: "deployments", Kind: "Deployment", Namespaced: true},
		{Version: "v1", Resource: "secrets", Kind: "Secret", Namespaced: true},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c v1alpha1.RestoreCriteria
		if json.Unmarshal(data, &c) != nil {
			return
		}
		if c.Validate() != nil {
			return
		}
		s, err := ForRestore(&c)
		if err != nil {
			t.Fatalf("criteria %s pass validation but the selector fails: %v", data, err)
		}
		for _, res := range r {
			s.IncludesType(res)
		}
		s.IncludesObject("shop", map[string]string{"app": "web", "env": "dev"})
	})
}

func FuzzBackupConfiguration(f *testing.F) {
	f.Add([]byte(`{"includedNamespaces":["shop"],"excludedResourceTypes":["events","events.events.k8s.io"],"labelSelectors":["app=web"],"snapshotVolumes":true}`))
	f.Add([]byte(`{"includedNamespaces":["a?"],"includedResourceTypes":["Deployment.apps"],"includeClusterScopedResources":true}`))
	f.Add([]byte(`{"labelSelectors":["a=(b"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c v1alpha1.BackupConfiguration
		if json.Unmarshal(data, &c) != nil {
			return
		}
		if c.Validate() != nil {
			return
		}
		if _, err := ForBackup(&c); err != nil {
			t.Fatalf("configuration %s passes validation but the selector fails: %v", data, err)
		}
	})
}
