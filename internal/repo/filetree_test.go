package repo

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/arca-backup/arca/internal/storage"
)

func sampleFileEntries(t *testing.T, w *Writer, n int) []FileEntry {
	t.Helper()
	ctx := context.Background()
	es := []FileEntry{{Type: FileDir, Path: "", Mode: 0o755, MTime: -5}}
	for i := 0; i < n; i++ {
		dir := fmt.Sprintf("d%04d", i)
		id, err := w.PutBlob(ctx, object(i, 100+i))
		if err != nil {
			t.Fatal(err)
		}
		es = append(es,
			FileEntry{Type: FileDir, Path: dir, Mode: 0o700, UID: 1000, GID: 1000, MTime: int64(i) * 1e9},
			FileEntry{Type: FileRegular, Path: dir + "/a", Mode: 0o4755, Size: int64(100 + i), Blobs: []ID{id},
				Xattrs: []Xattr{{Name: "user.k", Value: []byte("v")}}},
			FileEntry{Type: FileHardlink, Path: dir + "/b", Link: dir + "/a"},
			FileEntry{Type: FileRegular, Path: dir + "/sparse", Size: 1 << 30, Extents: []Extent{{Offset: 4096, Length: int64(100 + i)}}, Blobs: []ID{id}},
			FileEntry{Type: FileRegular, Path: dir + "/sparse0", Size: 1 << 20, Extents: []Extent{}},
			FileEntry{Type: FileSymlink, Path: dir + "/z", Link: "../elsewhere"},
			FileEntry{Type: FileCharDevice, Path: dir + "/zz", Rdev: 1<<8 | 3},
		)
	}
	return es
}

func TestFileTreeRoundTripAndPrune(t *testing.T) {
	ctx := context.Background()
	r, be, clk := newTestRepo(t)
	w, err := r.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	es := sampleFileEntries(t, w, 2000)
	ft := w.NewFileTree()
	for _, e := range es {
		if err := ft.Add(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	tree, err := ft.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tree.Blobs) < 2 {
		t.Fatalf("tree of %d entries in %d blobs: expected several chunks", len(es), len(tree.Blobs))
	}
	rp := &RecoveryPoint{Name: "vol", VolumeData: []VolumeData{{Name: "ns/pvc", Tree: tree, Files: int64(len(es))}}}
	if _, err := w.Commit(ctx, rp); err != nil {
		t.Fatal(err)
	}
	r2 := reopen(t, be, clk)
	got, err := r2.LoadRecoveryPoint(ctx, rp.ID)
	if err != nil {
		t.Fatal(err)
	}
	var back []FileEntry
	if err := r2.WalkFileTree(ctx, got.VolumeData[0].Tree, func(e FileEntry) error { back = append(back, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, es) {
		t.Fatalf("file tree did not round-trip: %d entries back, %d in; first %+v", len(back), len(es), back[:2])
	}
	// Prune must keep the content blobs the file tree references.
	if _, err := r2.Prune(ctx, PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, e := range back {
		for _, b := range e.Blobs {
			if _, err := r2.LoadBlob(ctx, b); err != nil {
				t.Fatalf("after prune, blob of %s: %v", e.Path, err)
			}
		}
	}
	st, err := r2.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.LogicalBytes < 2*int64(100*2000) {
		t.Fatalf("stats logical bytes %d do not count the file contents", st.LogicalBytes)
	}
	// Check names the damaged pack of a file's content and the point.
	var pack ID
	for _, e := range back {
		if len(e.Blobs) > 0 {
			_, pack, _, _ = r2.idx.Load().lookup(e.Blobs[0])
			break
		}
	}
	h := storage.Handle{Type: storage.PackFile, Name: pack.String()}
	data, err := storage.ReadAll(ctx, be, h)
	if err != nil {
		t.Fatal(err)
	}
	data[10] ^= 0xff
	if err := be.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(ctx, h, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	rep, err := r2.Check(ctx, CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Affected) != 1 || rep.Affected[0] != rp.ID {
		t.Fatalf("check after damaging a volume-data pack: %+v", rep)
	}
}

func TestFileTreeRejectsBadEntries(t *testing.T) {
	ctx := context.Background()
	r, _, _ := newTestRepo(t)
	w, err := r.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Abort(ctx) }()
	for _, tc := range []struct {
		prev, e FileEntry
		want    string
	}{
		{FileEntry{Type: FileDir, Path: "b"}, FileEntry{Type: FileDir, Path: "a"}, "tree order"},
		{FileEntry{Type: FileDir, Path: "a"}, FileEntry{Type: FileRegular, Path: "a/../x"}, "invalid path"},
		{FileEntry{Type: FileDir, Path: "a"}, FileEntry{Type: FileRegular, Path: "/etc/passwd"}, "invalid path"},
		{FileEntry{Type: FileDir, Path: "a"}, FileEntry{Type: FileRegular, Path: "a/x", Size: 10, Extents: []Extent{{Offset: 5, Length: 10}}}, "extents"},
		{FileEntry{Type: FileDir, Path: "a"}, FileEntry{Type: 42, Path: "a/x"}, "unknown file type"},
	} {
		ft := w.NewFileTree()
		if err := ft.Add(ctx, tc.prev); err != nil {
			t.Fatal(err)
		}
		err := ft.Add(ctx, tc.e)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Add(%+v) after %q: %v, want %q", tc.e, tc.prev.Path, err, tc.want)
		}
	}
	// The order: a directory's subtree before its next sibling.
	for _, p := range [][2]string{{"", "a"}, {"a", "a/b"}, {"a/b", "a-c"}, {"a/z/y", "a0"}} {
		if ComparePaths(p[0], p[1]) >= 0 {
			t.Errorf("ComparePaths(%q, %q) >= 0", p[0], p[1])
		}
	}
}
