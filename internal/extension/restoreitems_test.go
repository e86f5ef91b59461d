package extension

import (
	"fmt"
	"testing"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/restore"
)

// TestRestoreItems: a RestoreJob's status lists what was not simply created,
// failures first, at most MaxItemResults of them.
func TestRestoreItems(t *testing.T) {
	res := &restore.Result{}
	add := func(name string, a restore.Action, reason string) {
		res.Items.Append(restore.Item{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespace: "app", Name: name, Tier: 8, Action: a, Reason: reason})
	}
	add("made", restore.Created, "")
	add("other", restore.SkippedFiltered, "not selected by the restore criteria")
	add("there", restore.SkippedExists, "")
	add("broken", restore.Failed, "create: refused")
	got := restoreItems(res)
	want := []v1alpha1.RestoreItemResult{
		{Object: "configmaps app/broken", Action: "Failed", Reason: "create: refused"},
		{Object: "configmaps app/there", Action: "SkippedExists"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("items %+v, want %+v", got, want)
	}

	for i := 0; i < v1alpha1.MaxItemResults+10; i++ {
		add(fmt.Sprintf("skipped-%03d", i), restore.SkippedExists, "")
		add(fmt.Sprintf("failed-%03d", i), restore.Failed, "create: refused")
	}
	got = restoreItems(res)
	if len(got) != v1alpha1.MaxItemResults {
		t.Fatalf("%d items, want %d", len(got), v1alpha1.MaxItemResults)
	}
	for i, it := range got {
		if it.Action != "Failed" {
			t.Fatalf("item %d is %+v: failures must come first", i, it)
		}
	}
}
