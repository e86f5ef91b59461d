package restore_test

import (
	"context"
	"encoding/json"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/restore"
)

func TestResourceModifiers(t *testing.T) {
	ctx := context.Background()
	c := kc(t)
	if err := c.Apply(ctx, parse(t, smallApp("mod-src")), ""); err != nil {
		t.Fatal(err)
	}
	r := newRepo(t)
	rp := doBackup(t, r, v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"mod-src"}, IncludeClusterScopeResources: v1alpha1.Bool(false)})
	crit := v1alpha1.RestoreCriteria{
		NamespaceMappings: map[string]string{"mod-src": "mod-dst"},
		ResourceModifiers: []v1alpha1.ResourceModifierRule{
			{
				Conditions: v1alpha1.ModifierConditions{GroupResource: "deployments.apps", ResourceNameRegex: "w.b", Namespaces: []string{"mod-*"}},
				Patches: []v1alpha1.JSONPatchOperation{
					{Op: "replace", Path: "/spec/replicas", Value: json.RawMessage(`1`)},
					{Op: "replace", Path: "/spec/template/spec/containers/0/image", Value: json.RawMessage(`"mirror.example.com/web:1"`)},
				},
			},
			{
				Conditions:   v1alpha1.ModifierConditions{GroupResource: "configmaps", LabelSelector: "tier=frontend"},
				MergePatches: []json.RawMessage{json.RawMessage(`{"metadata":{"labels":{"restored":"yes"}},"data":{"color":null,"shade":"navy"}}`)},
			},
		},
	}
	res := doRestore(t, r, rp, crit)
	if res.Summary[restore.Failed] != 0 {
		t.Fatalf("failures: %v", res.Failures())
	}
	d, err := c.Dyn.Resource(gvrDeploy).Namespace("mod-dst").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n, _, _ := unstructuredInt(d.Object, "spec", "replicas"); n != 1 {
		t.Errorf("replicas %d, want 1", n)
	}
	cs := d.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)
	if img := cs[0].(map[string]any)["image"]; img != "mirror.example.com/web:1" {
		t.Errorf("image %v", img)
	}
	cm, err := c.Dyn.Resource(gvrCM).Namespace("mod-dst").Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data := cm.Object["data"].(map[string]any)
	if _, has := data["color"]; has || data["shade"] != "navy" || cm.GetLabels()["restored"] != "yes" {
		t.Errorf("merge patch not applied: data %v labels %v", data, cm.GetLabels())
	}
	other, err := c.Dyn.Resource(gvrCM).Namespace("mod-dst").Get(ctx, "db-settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if other.GetLabels()["restored"] != "" {
		t.Error("rule applied to an object its label selector excludes")
	}

	// A failing operation fails the item, naming the rule.
	bad := v1alpha1.RestoreCriteria{
		NamespaceMappings:     map[string]string{"mod-src": "mod-bad"},
		IncludedResourceTypes: []string{"configmaps"},
		ResourceModifiers: []v1alpha1.ResourceModifierRule{{
			Conditions: v1alpha1.ModifierConditions{GroupResource: "configmaps", ResourceNameRegex: "settings"},
			Patches:    []v1alpha1.JSONPatchOperation{{Op: "test", Path: "/data/color", Value: json.RawMessage(`"green"`)}},
		}},
	}
	res, err = restore.Run(ctx, cfg(), rp, r, restore.Options{Criteria: bad})
	if err == nil || res.Summary[restore.Failed] != 1 {
		t.Fatalf("err %v, summary %v: want one failed item", err, res.Summary)
	}
	t.Logf("modifier failure: %v", err)
}
