package restore_test

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/restore"
)

// TestRoundTrip backs up a realistic fixture, deletes it from the cluster
// (namespaces and cluster objects, waiting until they are gone), restores
// it and checks that every object came back equal.
func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := kc(t)
	objs := load(t, "testdata/fixture.yaml")
	if err := c.Apply(ctx, objs, "default"); err != nil {
		t.Fatal(err)
	}
	r := newRepo(t)
	// Let the controllers settle (bindings, replica sets) before the backup.
	waitBound(t, "shop", "data")
	rp1 := doBackup(t, r, v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"shop", "blog", "data"}})
	for _, want := range []string{"deployments.apps", "statefulsets.apps", "daemonsets.apps", "services", "ingresses.networking.k8s.io",
		"configmaps", "secrets", "serviceaccounts", "roles.rbac.authorization.k8s.io", "rolebindings.rbac.authorization.k8s.io",
		"clusterroles.rbac.authorization.k8s.io", "clusterrolebindings.rbac.authorization.k8s.io", "networkpolicies.networking.k8s.io",
		"horizontalpodautoscalers.autoscaling", "poddisruptionbudgets.policy", "jobs.batch", "cronjobs.batch",
		"persistentvolumeclaims", "persistentvolumes", "storageclasses.storage.k8s.io", "ingressclasses.networking.k8s.io",
		"customresourcedefinitions.apiextensions.k8s.io", "widgets.example.com", "namespaces", "limitranges", "resourcequotas"} {
		if rp1.Summary.Counts[want] == 0 {
			t.Errorf("backup has no %s (counts %v)", want, rp1.Summary.Counts)
		}
	}
	if n := rp1.Summary.Counts["widgets.example.com"]; n != 2 {
		t.Errorf("widgets: %d, want 2", n)
	}
	if n := rp1.Summary.Counts["namespaces"]; n != 3 {
		t.Errorf("namespaces: %d, want 3", n)
	}
	for _, w := range rp1.Summary.Warnings {
		t.Logf("backup warning %s %s: %s", w.Code, w.Object, w.Message)
	}

	namespaces, clusterObjs := clusterScoped(objs)
	if err := c.DeleteAndWait(ctx, namespaces, "", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteAndWait(ctx, clusterObjs, "", 2*time.Minute); err != nil {
		t.Fatal(err)
	}

	res := doRestore(t, r, rp1, v1alpha1.RestoreCriteria{IncludeClusterScopeResources: v1alpha1.Bool(true)})
	t.Logf("restore summary: %v", res.Summary)
	if res.Summary[restore.Failed] != 0 {
		t.Fatalf("failures: %v", res.Failures())
	}
	if res.Summary[restore.Created] == 0 {
		t.Fatal("nothing created")
	}
	for it := range res.Items.All() {
		if it.Resource == "replicasets" && it.Action != restore.SkippedOwned {
			t.Errorf("%s: %s, want SkippedOwned (left to its Deployment)", it.Ref(), it.Action)
		}
	}
	// Restored objects carry the restore's labels.
	cm, err := c.Dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace("shop").Get(ctx, "web-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.GetLabels()[v1alpha1.LabelRestore] != res.Name || cm.GetLabels()[v1alpha1.LabelRecoveryPoint] != rp1.ID.String()[:32] {
		t.Errorf("restore labels missing: %v", cm.GetLabels())
	}
	waitBound(t, "shop", "data")
	rp2 := doBackup(t, r, v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"shop", "blog", "data"}})
	assertSameContent(t, r, rp1, rp2)
}

// waitBound waits until PVC ns/name is Bound.
func waitBound(t *testing.T, ns, name string) {
	t.Helper()
	c := kc(t)
	res := c.Dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}).Namespace(ns)
	wait(t, "PVC "+ns+"/"+name+" Bound", time.Minute, func() bool {
		pvc, err := res.Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		phase, _, _ := unstructuredString(pvc.Object, "status", "phase")
		return phase == "Bound"
	})
}
