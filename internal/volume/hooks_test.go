package volume_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/arca-backup/arca/internal/volume"
)

// pointHooks records what the Snapshotter tells a SnapshotHooks, with the
// VolumeSnapshots that exist at each moment.
type pointHooks struct {
	t      *testing.T
	ns     string
	events []string
	err    error // returned by BeforeSnapshots
}

func (h *pointHooks) snapshots() map[string]bool {
	l, err := snaps.SnapshotV1().VolumeSnapshots(h.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]bool{}
	for _, vs := range l.Items {
		if vs.DeletionTimestamp != nil {
			continue // an earlier backup's, secured and being deleted
		}
		// cut: the driver took it (creationTime), as the interface promises
		out[*vs.Spec.Source.PersistentVolumeClaimName] = vs.Status != nil && vs.Status.CreationTime != nil
	}
	return out
}

func (h *pointHooks) BeforeSnapshots(_ context.Context, claims []types.NamespacedName) error {
	h.events = append(h.events, fmt.Sprintf("before %v (snapshots existing: %d)", claims, len(h.snapshots())))
	return h.err
}

func (h *pointHooks) SnapshotCut(_ context.Context, claim types.NamespacedName) {
	cut, ok := h.snapshots()[claim.Name]
	h.events = append(h.events, fmt.Sprintf("cut %s (exists %v, creationTime %v)", claim, ok, cut))
}

// TestSnapshotHookPoint: BeforeSnapshots gets exactly the claims about to
// be snapshotted before any VolumeSnapshot exists; SnapshotCut comes once
// per claim while its VolumeSnapshot has a creation time; an error from
// BeforeSnapshots stops the backup before any snapshot is made.
func TestSnapshotHookPoint(t *testing.T) {
	ctx := ctxT(t)
	const ns = "hookpoint"
	createNS(t, ctx, ns)
	createPVC(t, ctx, ns, claim("a", csi.StorageClass, "1Gi", nil))
	createPVC(t, ctx, ns, claim("b", csi.StorageClass, "1Gi", nil))
	createPVC(t, ctx, ns, claim("skipped", csi.StorageClass, "1Gi", map[string]string{volume.AnnExcludeFromBackup: "true"}))
	for _, n := range []string{"a", "b", "skipped"} {
		waitBound(t, ctx, ns, n)
	}
	r := newRepo(t, ctx)
	h := &pointHooks{t: t, ns: ns}
	_, recs := runBackup(t, ctx, r, volume.SnapshotOptions{Timeout: time.Minute, Hooks: h}, ns)
	t.Cleanup(func() { cleanupContents(t, recs) })
	got := strings.Join(h.events, "\n")
	want := strings.Join([]string{
		"before [hookpoint/a hookpoint/b] (snapshots existing: 0)",
		"cut hookpoint/a (exists true, creationTime true)",
		"cut hookpoint/b (exists true, creationTime true)",
	}, "\n")
	// a and b may be cut in either order.
	if len(h.events) != 3 || h.events[0] != strings.Split(want, "\n")[0] || !strings.Contains(got, strings.Split(want, "\n")[1]) || !strings.Contains(got, strings.Split(want, "\n")[2]) {
		t.Errorf("events:\n%s\nwant (cuts in any order):\n%s", got, want)
	}
	if len(recs.Snapshots) != 2 {
		t.Errorf("records %+v", recs)
	}

	// A refusal before the snapshots: none is made, the error is returned.
	refuse := errors.New("frozen pod refused")
	h = &pointHooks{t: t, ns: ns, err: refuse}
	s, err := volume.NewSnapshotter(cp.Config(), volume.SnapshotOptions{Timeout: time.Minute, Hooks: h, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	before := driverSnapshots(t, ctx)
	_, _, err = s.SnapshotVolumes(ctx, []types.NamespacedName{{Namespace: ns, Name: "a"}})
	if !errors.Is(err, refuse) {
		t.Fatalf("SnapshotVolumes: %v, want the hooks' error", err)
	}
	if n := len(h.snapshots()); n != 0 {
		t.Errorf("%d VolumeSnapshots made after the hooks refused", n)
	}
	if after := driverSnapshots(t, ctx); len(after) != len(before) {
		t.Errorf("driver snapshots %d → %d after the hooks refused", len(before), len(after))
	}
	if len(h.events) != 1 {
		t.Errorf("events after a refusal: %v", h.events)
	}
}
