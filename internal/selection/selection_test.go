package selection

import (
	"testing"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/kube"
)

func TestNamespaces(t *testing.T) {
	n, err := NewNamespaces([]string{"team-*", "kube-system"}, []string{"team-legacy"}, true)
	if err != nil {
		t.Fatal(err)
	}
	for ns, want := range map[string]bool{"team-a": true, "team-legacy": false, "kube-system": true, "kube-public": false, "other": false} {
		if got := n.Includes(ns); got != want {
			t.Errorf("%s: %v, want %v", ns, got, want)
		}
	}
	all, _ := NewNamespaces(nil, nil, true)
	if all.Includes("kube-node-lease") || !all.Includes("default") || !all.All() {
		t.Error("defaults")
	}
	if lit := n.Literals(); len(lit) != 1 || lit[0] != "kube-system" {
		t.Errorf("literals %v", lit)
	}
	if _, err := NewNamespaces([]string{"Bad!"}, nil, false); err == nil {
		t.Error("bad namespace accepted")
	}
}

func TestTypes(t *testing.T) {
	deploy := kube.Resource{Group: "apps", Version: "v1", Resource: "deployments", Kind: "Deployment", Namespaced: true}
	secret := kube.Resource{Version: "v1", Resource: "secrets", Kind: "Secret", Namespaced: true}
	extDeploy := kube.Resource{Group: "example.com", Version: "v1", Resource: "deployments", Kind: "Deployment", Namespaced: true}
	ty, err := NewTypes([]string{"deployments.apps", "Secret"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !ty.Includes(deploy) || !ty.Includes(secret) || ty.Includes(extDeploy) {
		t.Error("include by resource.group and kind")
	}
	ex, _ := NewTypes(nil, []string{"secrets"})
	if ex.Includes(secret) || !ex.Includes(deploy) {
		t.Error("exclude")
	}
	if err := ty.Resolve([]kube.Resource{deploy}); err == nil {
		t.Error("unknown type Secret resolved")
	}
	if err := ty.Resolve([]kube.Resource{deploy, secret}); err != nil {
		t.Error(err)
	}
}

func TestSelectorScopes(t *testing.T) {
	s, err := ForBackup(&v1alpha1.BackupConfiguration{IncludeClusterScopeResources: v1alpha1.Bool(false), IncludeSecrets: v1alpha1.Bool(false)})
	if err != nil {
		t.Fatal(err)
	}
	pv := kube.Resource{Version: "v1", Resource: "persistentvolumes", Kind: "PersistentVolume"}
	ns := kube.Resource{Version: "v1", Resource: "namespaces", Kind: "Namespace"}
	secret := kube.Resource{Version: "v1", Resource: "secrets", Kind: "Secret", Namespaced: true}
	if s.IncludesType(pv) || !s.IncludesType(ns) || s.IncludesType(secret) {
		t.Error("cluster scope off keeps namespaces only; secrets off")
	}
}

func TestParseMappings(t *testing.T) {
	m, err := ParseMappings([]string{"a=b,c=d", "e=f"})
	if err != nil || len(m) != 3 || m["c"] != "d" {
		t.Fatalf("%v %v", m, err)
	}
	for _, bad := range []string{"a", "=b", "a=", "a=b,a=c"} {
		if _, err := ParseMappings([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestExtensionNamespaceExcludedByDefault: a backup of "everything" leaves
// out the extension's namespace, which holds the Secret with the repository
// password and cloud keys; naming it (or a pattern given explicitly as a
// literal) brings it back, and a wildcard never does.
func TestExtensionNamespaceExcludedByDefault(t *testing.T) {
	all, err := ForBackup(&v1alpha1.BackupConfiguration{})
	if err != nil {
		t.Fatal(err)
	}
	if all.IncludesObject(v1alpha1.ExtensionNamespace, nil) {
		t.Fatalf("a default backup includes %s", v1alpha1.ExtensionNamespace)
	}
	if !all.IncludesObject("shop", nil) {
		t.Fatal("a default backup leaves out an ordinary namespace")
	}
	star, err := ForBackup(&v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"*", "arca-*"}})
	if err != nil {
		t.Fatal(err)
	}
	if star.IncludesObject(v1alpha1.ExtensionNamespace, nil) {
		t.Fatalf("a wildcard reaches %s", v1alpha1.ExtensionNamespace)
	}
	named, err := ForBackup(&v1alpha1.BackupConfiguration{IncludedNamespaces: []string{v1alpha1.ExtensionNamespace}})
	if err != nil {
		t.Fatal(err)
	}
	if !named.IncludesObject(v1alpha1.ExtensionNamespace, nil) {
		t.Fatalf("naming %s does not include it", v1alpha1.ExtensionNamespace)
	}
}
