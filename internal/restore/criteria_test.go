package restore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/backup"
	"github.com/arca-backup/arca/internal/restore"
)

var (
	gvrCM     = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	gvrNS     = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	gvrPV     = schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumes"}
	gvrRB     = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}
	gvrDeploy = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
)

func smallApp(ns string) string {
	return fmt.Sprintf(`
apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: app, namespace: %[1]s, labels: {app: web}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: app-view, namespace: %[1]s, labels: {app: web}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: %[1]s-reader}
subjects: [{kind: ServiceAccount, name: app, namespace: %[1]s}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: %[1]s-reader}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [get]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: %[1]s, labels: {app: web, tier: frontend, env: a}}
data: {color: blue}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: db-settings, namespace: %[1]s, labels: {app: web, tier: db, env: c}}
data: {pool: "5"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: frozen, namespace: %[1]s, labels: {app: other}}
immutable: true
data: {version: "1"}
---
apiVersion: v1
kind: Secret
metadata: {name: token, namespace: %[1]s, labels: {app: web}}
stringData: {token: abc}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %[1]s, labels: {app: web, env: b}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "example.com/web:1"}]
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: %[1]s-vol}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /tmp/%[1]s}
  claimRef: {namespace: %[1]s, name: claim}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: claim, namespace: %[1]s}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: %[1]s-vol
  resources: {requests: {storage: 1Gi}}
`, ns)
}

func TestNamespaceMapping(t *testing.T) {
	ctx := context.Background()
	c := kc(t)
	objs := parse(t, smallApp("map-src"))
	if err := c.Apply(ctx, objs, ""); err != nil {
		t.Fatal(err)
	}
	r := newRepo(t)
	rp := doBackup(t, r, v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"map-src"}})
	if rp.Summary.Counts["persistentvolumes"] != 1 {
		t.Fatalf("PV of the included PVC not in the backup: %v", rp.Summary.Counts)
	}
	// The source goes away (a bound PV cannot be deleted), so that the
	// mapped copy can take the PV's name.
	nss, clusterObjs := clusterScoped(objs)
	if err := c.DeleteAndWait(ctx, nss, "", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteAndWait(ctx, clusterObjs, "", time.Minute); err != nil {
		t.Fatal(err)
	}
	// The PV is cluster-scoped: restored only when asked for.
	res := doRestore(t, r, rp, v1alpha1.RestoreCriteria{NamespaceMappings: map[string]string{"map-src": "map-dst"}, IncludeClusterScopeResources: v1alpha1.Bool(true)})
	if res.Summary[restore.Failed] != 0 {
		t.Fatalf("failures: %v", res.Failures())
	}
	if _, err := c.Dyn.Resource(gvrNS).Get(ctx, "map-dst", metav1.GetOptions{}); err != nil {
		t.Fatalf("target namespace: %v", err)
	}
	for _, name := range []string{"settings", "db-settings", "frozen"} {
		if _, err := c.Dyn.Resource(gvrCM).Namespace("map-dst").Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("configmap %s in map-dst: %v", name, err)
		}
	}
	rb, err := c.Dyn.Resource(gvrRB).Namespace("map-dst").Get(ctx, "app-view", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	subjects := rb.Object["subjects"].([]any)
	if ns := subjects[0].(map[string]any)["namespace"]; ns != "map-dst" {
		t.Errorf("RoleBinding subject namespace %v, want map-dst", ns)
	}
	pv, err := c.Dyn.Resource(gvrPV).Get(ctx, "map-src-vol", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ns, _, _ := unstructuredString(pv.Object, "spec", "claimRef", "namespace"); ns != "map-dst" {
		t.Errorf("PV claimRef namespace %q, want map-dst", ns)
	}
	waitBound(t, "map-dst", "claim")
	for it := range res.Items.All() {
		if it.Namespace == "map-dst" && it.SourceNamespace != "map-src" {
			t.Errorf("%s: source namespace %q", it.Ref(), it.SourceNamespace)
		}
	}
}

// TestClusterScopedOnlyWhenAsked: a restore writes cluster-scoped objects
// only with includeClusterScopeResources, and names every RBAC and
// admission object it writes in a warning.
func TestClusterScopedOnlyWhenAsked(t *testing.T) {
	ctx := context.Background()
	c := kc(t)
	objs := parse(t, smallApp("csa")+`
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: csa-hooks}
`)
	if err := c.Apply(ctx, objs, "default"); err != nil {
		t.Fatal(err)
	}
	r := newRepo(t)
	rp := doBackup(t, r, v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"csa"}})
	for _, want := range []string{"clusterroles.rbac.authorization.k8s.io", "validatingwebhookconfigurations.admissionregistration.k8s.io"} {
		if rp.Summary.Counts[want] == 0 {
			t.Fatalf("backup has no %s: %v", want, rp.Summary.Counts)
		}
	}
	nss, clusterObjs := clusterScoped(objs)
	if err := c.DeleteAndWait(ctx, nss, "", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteAndWait(ctx, clusterObjs, "", time.Minute); err != nil {
		t.Fatal(err)
	}
	gvrCR := schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}
	gvrVWC := schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"}
	warned := func(res *restore.Result) map[string]string {
		out := map[string]string{}
		for _, w := range res.Warnings {
			if w.Code == v1alpha1.CodeRBACObjectRestored || w.Code == v1alpha1.CodeAdmissionObjectRestored {
				out[w.Object] = w.Code + ": " + w.Message
			}
		}
		return out
	}

	// Default: the namespace and its contents, no cluster-scoped object.
	res := doRestore(t, r, rp, v1alpha1.RestoreCriteria{IncludedNamespaces: []string{"csa"}})
	if _, err := c.Dyn.Resource(gvrCR).Get(ctx, "csa-reader", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ClusterRole csa-reader restored without includeClusterScopeResources (get: %v)", err)
	}
	if _, err := c.Dyn.Resource(gvrVWC).Get(ctx, "csa-hooks", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ValidatingWebhookConfiguration csa-hooks restored without includeClusterScopeResources (get: %v)", err)
	}
	if _, err := c.Dyn.Resource(gvrCM).Namespace("csa").Get(ctx, "settings", metav1.GetOptions{}); err != nil {
		t.Errorf("namespaced content not restored: %v", err)
	}
	for it := range res.Items.All() {
		if it.Resource == "clusterroles" && it.Name == "csa-reader" && it.Action != restore.SkippedFiltered {
			t.Errorf("%s: %s, want SkippedFiltered", it.Ref(), it.Action)
		}
	}
	w := warned(res)
	if got := w["rolebindings.rbac.authorization.k8s.io csa/app-view"]; !strings.Contains(got, "RBACObjectRestored: restored RBAC object RoleBinding rolebindings.rbac.authorization.k8s.io csa/app-view: it grants permissions") {
		t.Errorf("RoleBinding warning %q (all: %v)", got, w)
	}
	if len(w) != 1 {
		t.Errorf("warnings for RBAC/admission objects: %v, want only the RoleBinding's", w)
	}

	// Asked for: the ClusterRole and the webhook configuration come back,
	// each named in a warning.
	res = doRestore(t, r, rp, v1alpha1.RestoreCriteria{IncludedNamespaces: []string{"csa"}, IncludeClusterScopeResources: v1alpha1.Bool(true)})
	if _, err := c.Dyn.Resource(gvrCR).Get(ctx, "csa-reader", metav1.GetOptions{}); err != nil {
		t.Errorf("ClusterRole csa-reader: %v", err)
	}
	if _, err := c.Dyn.Resource(gvrVWC).Get(ctx, "csa-hooks", metav1.GetOptions{}); err != nil {
		t.Errorf("ValidatingWebhookConfiguration csa-hooks: %v", err)
	}
	w = warned(res)
	if got := w["clusterroles.rbac.authorization.k8s.io csa-reader"]; !strings.Contains(got, "RBACObjectRestored: restored RBAC object ClusterRole") {
		t.Errorf("ClusterRole warning %q (all: %v)", got, w)
	}
	if got := w["validatingwebhookconfigurations.admissionregistration.k8s.io csa-hooks"]; !strings.Contains(got, "AdmissionObjectRestored: restored admission object ValidatingWebhookConfiguration") {
		t.Errorf("webhook configuration warning %q (all: %v)", got, w)
	}
	if _, ok := w["rolebindings.rbac.authorization.k8s.io csa/app-view"]; ok {
		t.Errorf("the RoleBinding existed (skipped), yet was warned about: %v", w)
	}
}

func TestConflictSkipAndPatch(t *testing.T) {
	ctx := context.Background()
	c := kc(t)
	if err := c.Apply(ctx, parse(t, smallApp("conflict")), ""); err != nil {
		t.Fatal(err)
	}
	r := newRepo(t)
	rp := doBackup(t, r, v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"conflict"}, IncludeClusterScopeResources: v1alpha1.Bool(false)})

	// Change the live objects: a mutable field, and an immutable one.
	cms := c.Dyn.Resource(gvrCM).Namespace("conflict")
	if _, err := cms.Patch(ctx, "settings", "application/merge-patch+json", []byte(`{"data":{"color":"red"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Dyn.Resource(gvrDeploy).Namespace("conflict").Patch(ctx, "web", "application/merge-patch+json", []byte(`{"spec":{"replicas":5}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "frozen", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	frozen := parse(t, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"frozen","namespace":"conflict"},"immutable":true,"data":{"version":"2"}}`)
	if err := c.Apply(ctx, frozen, ""); err != nil {
		t.Fatal(err)
	}

	// Skip: nothing changes.
	res := doRestore(t, r, rp, v1alpha1.RestoreCriteria{ConflictPolicy: v1alpha1.ConflictSkip})
	for it := range res.Items.All() {
		if it.Action != restore.SkippedExists && it.Action != restore.SkippedOwned {
			t.Errorf("skip: %s: %s %s", it.Ref(), it.Action, it.Reason)
		}
	}
	cm, _ := cms.Get(ctx, "settings", metav1.GetOptions{})
	if v, _, _ := unstructuredString(cm.Object, "data", "color"); v != "red" {
		t.Errorf("skip changed the live object: color %q", v)
	}

	// Patch: mutable fields back to the backup, immutable differences fail by name.
	res, err := restore.Run(ctx, cfg(), rp, r, restore.Options{Criteria: v1alpha1.RestoreCriteria{ConflictPolicy: v1alpha1.ConflictPatch}})
	var failed *restore.ItemsFailedError
	if !errors.As(err, &failed) {
		t.Fatalf("patch restore: err %v, want ItemsFailedError", err)
	}
	if len(failed.Items) != 1 || failed.Items[0].Name != "frozen" || !strings.Contains(failed.Items[0].Reason, "immutable") {
		t.Fatalf("failures %+v, want configmap frozen with an immutable-field reason", failed.Items)
	}
	if !strings.Contains(err.Error(), "configmaps conflict/frozen") {
		t.Errorf("error does not name the item: %v", err)
	}
	actions := map[string]restore.Action{}
	for it := range res.Items.All() {
		actions[it.Ref()] = it.Action
	}
	if a := actions["configmaps conflict/settings"]; a != restore.Patched {
		t.Errorf("settings: %s, want Patched", a)
	}
	if a := actions["deployments.apps conflict/web"]; a != restore.Patched {
		t.Errorf("deployment: %s, want Patched", a)
	}
	if a := actions["secrets conflict/token"]; a != restore.Unchanged && a != restore.Patched {
		t.Errorf("unchanged secret: %s", a)
	}
	cm, _ = cms.Get(ctx, "settings", metav1.GetOptions{})
	if v, _, _ := unstructuredString(cm.Object, "data", "color"); v != "blue" {
		t.Errorf("patch did not restore color: %q", v)
	}
	d, _ := c.Dyn.Resource(gvrDeploy).Namespace("conflict").Get(ctx, "web", metav1.GetOptions{})
	if n, _, _ := unstructuredInt(d.Object, "spec", "replicas"); n != 2 {
		t.Errorf("replicas %d, want 2", n)
	}
}

func TestFiltersAndDryRun(t *testing.T) {
	ctx := context.Background()
	c := kc(t)
	for _, ns := range []string{"filt-a", "filt-b", "other-c"} {
		objs := parse(t, smallApp(ns))
		if err := c.Apply(ctx, objs, ""); err != nil {
			t.Fatal(err)
		}
	}
	r := newRepo(t)
	type obj = string
	contents := func(rpc v1alpha1.BackupConfiguration) map[obj]bool {
		t.Helper()
		rp := doBackup(t, r, rpc)
		out := map[obj]bool{}
		for _, tr := range rp.Resources {
			if err := r.WalkTree(ctx, tr.Tree, func(e repoEntry) error {
				out[tr.Resource+" "+e.Namespace+"/"+e.Name] = true
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	cases := []struct {
		name    string
		cfg     v1alpha1.BackupConfiguration
		want    []string
		notWant []string
	}{
		{"namespace glob", v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"filt-*"}},
			[]string{"configmaps filt-a/settings", "configmaps filt-b/settings", "namespaces /filt-a"}, []string{"configmaps other-c/settings", "namespaces /other-c"}},
		{"exclude namespace", v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"filt-*", "other-c"}, ExcludedNamespaces: []string{"filt-b"}},
			[]string{"configmaps filt-a/settings", "configmaps other-c/settings"}, []string{"configmaps filt-b/settings"}},
		{"types by resource.group and kind", v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"filt-a"}, IncludedResourceTypes: []string{"deployments.apps", "Secret"}},
			[]string{"deployments filt-a/web", "secrets filt-a/token"}, []string{"configmaps filt-a/settings", "serviceaccounts filt-a/app"}},
		{"exclude types", v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"filt-a"}, ExcludedResourceTypes: []string{"configmaps", "deployments.apps"}},
			[]string{"secrets filt-a/token", "serviceaccounts filt-a/app"}, []string{"configmaps filt-a/settings", "deployments filt-a/web"}},
		{"selector equality", v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"filt-a"}, LabelSelectors: []string{"app=web;tier!=db"}},
			[]string{"configmaps filt-a/settings", "deployments filt-a/web", "secrets filt-a/token"}, []string{"configmaps filt-a/db-settings", "configmaps filt-a/frozen"}},
		{"selector set-based", v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"filt-a"}, LabelSelectors: []string{"env in (a,b)"}},
			[]string{"configmaps filt-a/settings", "deployments filt-a/web"}, []string{"configmaps filt-a/db-settings", "secrets filt-a/token"}},
		{"no cluster resources", v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"filt-a"}, IncludeClusterScopeResources: v1alpha1.Bool(false)},
			[]string{"configmaps filt-a/settings", "namespaces /filt-a"}, []string{"persistentvolumes /filt-a-vol"}},
		{"cluster dependencies", v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"filt-a"}, IncludedResourceTypes: []string{"persistentvolumeclaims", "rolebindings"}},
			[]string{"persistentvolumes /filt-a-vol", "clusterroles /filt-a-reader"}, []string{"persistentvolumes /filt-b-vol", "configmaps filt-a/settings"}},
		{"no secrets", v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"filt-a"}, IncludeSecrets: v1alpha1.Bool(false)},
			[]string{"configmaps filt-a/settings"}, []string{"secrets filt-a/token"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := contents(tc.cfg)
			for _, w := range tc.want {
				if !got[w] {
					t.Errorf("missing %s", w)
				}
			}
			for _, w := range tc.notWant {
				if got[w] {
					t.Errorf("unexpected %s", w)
				}
			}
		})
	}

	// Restore filters and dry run: restore filt-a and filt-b into new
	// namespaces, first as a dry run, then for real; the plans must match.
	rp := doBackup(t, r, v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"filt-*", "other-c"}, IncludeClusterScopeResources: v1alpha1.Bool(false)})
	crit := v1alpha1.RestoreCriteria{
		IncludedNamespaces: []string{"filt-*"}, ExcludedResourceTypes: []string{"Secret"}, LabelSelectors: []string{"app in (web)"},
		NamespaceMappings: map[string]string{"filt-a": "dry-a", "filt-b": "dry-b"},
	}
	dry := crit
	dry.DryRun = true
	plan := doRestore(t, r, rp, dry)
	if _, err := c.Dyn.Resource(gvrNS).Get(ctx, "dry-a", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("dry run created namespace dry-a (err %v)", err)
	}
	real := doRestore(t, r, rp, crit)
	if plan.Items.Len() != real.Items.Len() {
		t.Fatalf("dry run has %d items, real run %d", plan.Items.Len(), real.Items.Len())
	}
	planned := map[string]restore.Action{}
	for it := range plan.Items.All() {
		planned[it.Ref()] = it.Action
	}
	for it := range real.Items.All() {
		if planned[it.Ref()] != it.Action {
			t.Errorf("%s: dry run %s, real %s (%s)", it.Ref(), planned[it.Ref()], it.Action, it.Reason)
		}
	}
	actions := map[string]restore.Action{}
	for it := range real.Items.All() {
		actions[it.Ref()] = it.Action
	}
	for ref, want := range map[string]restore.Action{
		"configmaps dry-a/settings":   restore.Created,
		"configmaps dry-b/settings":   restore.Created,
		"configmaps other-c/settings": restore.SkippedFiltered,
		"secrets dry-a/token":         restore.SkippedFiltered,
		"configmaps dry-a/frozen":     restore.SkippedFiltered, // app=other
		"namespaces dry-a":            restore.Created,
	} {
		if actions[ref] != want {
			t.Errorf("%s: %s, want %s", ref, actions[ref], want)
		}
	}
	t.Logf("plan: %v; real: %v", plan.Summary, real.Summary)
}

func TestInvalidInputFailsBeforeWriting(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t)
	bad := []v1alpha1.BackupConfiguration{
		{LabelSelectors: []string{"app=web;tier!!=db"}},
		{IncludedResourceTypes: []string{"deploymnets.apps"}},
		{IncludedNamespaces: []string{"Bad_Name"}},
	}
	for _, cfgb := range bad {
		_, err := backup.Run(ctx, cfg(), r, backup.Options{Config: cfgb})
		var ce *backup.ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%+v: err %v, want ConfigError", cfgb, err)
			continue
		}
		t.Logf("backup error: %v", err)
	}
	if rps, err := r.ListRecoveryPoints(ctx); err != nil || len(rps) != 0 {
		t.Fatalf("recovery points after invalid backups: %d (%v)", len(rps), err)
	}
	rp := doBackup(t, r, v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"default"}})
	badCrit := []v1alpha1.RestoreCriteria{
		{LabelSelectors: []string{"env in (a"}},
		{NamespaceMappings: map[string]string{"a": "B!"}},
		{NamespaceMappings: map[string]string{"a": "x", "b": "x"}},
		{IncludedResourceTypes: []string{"nosuchthings"}},
		{ConflictPolicy: "Overwrite"},
	}
	c := kc(t)
	before, err := c.Dyn.Resource(gvrNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cr := range badCrit {
		_, err := restore.Run(ctx, cfg(), rp, r, restore.Options{Criteria: cr})
		var ce *restore.CriteriaError
		if !errors.As(err, &ce) {
			t.Errorf("%+v: err %v, want CriteriaError", cr, err)
			continue
		}
		t.Logf("restore error: %v", err)
	}
	after, err := c.Dyn.Resource(gvrNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Items) != len(before.Items) {
		t.Errorf("namespaces changed: %d → %d", len(before.Items), len(after.Items))
	}
}

// TestSensitiveWarningsBounded: a restore that writes more RBAC objects
// than MaxSensitiveWarnings names the first ones and counts the rest in
// one more warning; every object is still restored.
func TestSensitiveWarningsBounded(t *testing.T) {
	ctx := context.Background()
	c := kc(t)
	const n = restore.MaxSensitiveWarnings + 5
	doc := "apiVersion: v1\nkind: Namespace\nmetadata: {name: cap-src}\n"
	for i := range n {
		doc += fmt.Sprintf("---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r-%03d, namespace: cap-src}\nrules: []\n", i)
	}
	if err := c.Apply(ctx, parse(t, doc), "default"); err != nil {
		t.Fatal(err)
	}
	r := newRepo(t)
	rp := doBackup(t, r, v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"cap-src"}, IncludeClusterScopeResources: v1alpha1.Bool(false)})
	res := doRestore(t, r, rp, v1alpha1.RestoreCriteria{NamespaceMappings: map[string]string{"cap-src": "cap-dst"}})
	named, summary := 0, ""
	for _, w := range res.Warnings {
		if w.Code != v1alpha1.CodeRBACObjectRestored {
			continue
		}
		if w.Object == "" {
			summary = w.Message
		} else {
			named++
		}
	}
	if named != restore.MaxSensitiveWarnings || !strings.Contains(summary, "and 5 more RBAC or admission objects restored") {
		t.Errorf("%d named warnings, summary %q; want %d and 'and 5 more'", named, summary, restore.MaxSensitiveWarnings)
	}
	gvrRole := schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}
	l, err := c.Dyn.Resource(gvrRole).Namespace("cap-dst").List(ctx, metav1.ListOptions{})
	if err != nil || len(l.Items) != n {
		t.Errorf("restored roles: %d, %v; want %d", len(l.Items), err, n)
	}
}

// TestVolumesTravelWithClaims: without includeClusterScopeResources a
// PersistentVolume is restored when the namespace of its claim is restored,
// and skipped, named as filtered, when it is not.
func TestVolumesTravelWithClaims(t *testing.T) {
	ctx := context.Background()
	c := kc(t)
	objs := parse(t, `
apiVersion: v1
kind: Namespace
metadata: {name: pvt}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: pvt}
data: {a: "1"}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pvt-mine}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {path: /tmp/pvt-mine}
  claimRef: {namespace: pvt, name: data}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pvt-theirs}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {path: /tmp/pvt-theirs}
  claimRef: {namespace: pvt-other, name: data}
`)
	if err := c.Apply(ctx, objs, "default"); err != nil {
		t.Fatal(err)
	}
	nss, clusterObjs := clusterScoped(objs)
	t.Cleanup(func() {
		_ = c.DeleteAndWait(ctx, clusterObjs, "", time.Minute)
		_ = c.DeleteAndWait(ctx, nss, "", time.Minute)
	})
	r := newRepo(t)
	rp := doBackup(t, r, v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"pvt"}})
	if rp.Summary.Counts["persistentvolumes"] < 2 {
		t.Fatalf("backup holds %d PersistentVolumes, want both: %v", rp.Summary.Counts["persistentvolumes"], rp.Summary.Counts)
	}
	if err := c.DeleteAndWait(ctx, clusterObjs, "", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteAndWait(ctx, nss, "", time.Minute); err != nil {
		t.Fatal(err)
	}
	res := doRestore(t, r, rp, v1alpha1.RestoreCriteria{IncludedNamespaces: []string{"pvt"}})
	pvs := schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumes"}
	if _, err := c.Dyn.Resource(pvs).Get(ctx, "pvt-mine", metav1.GetOptions{}); err != nil {
		t.Errorf("the volume of a claim in a restored namespace was not restored: %v", err)
	}
	if _, err := c.Dyn.Resource(pvs).Get(ctx, "pvt-theirs", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the volume of a claim in another namespace was restored without includeClusterScopeResources (get: %v)", err)
	}
	found := false
	for it := range res.Items.All() {
		if it.Resource == "persistentvolumes" && it.Name == "pvt-theirs" {
			found = true
			if it.Action != restore.SkippedFiltered || !strings.Contains(it.Reason, "restored with its claim") {
				t.Errorf("%s: %s %q, want SkippedFiltered naming its claim", it.Ref(), it.Action, it.Reason)
			}
		}
	}
	if !found {
		t.Error("the restore result does not list pvt-theirs")
	}
}
