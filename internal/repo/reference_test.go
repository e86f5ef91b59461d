package repo

import (
	"context"
	"strings"
	"testing"

	"github.com/arca-backup/arca/internal/storage"
)

// TestWriterReference: a writer opened before another handle committed a
// tree can name that tree once Reference has reloaded the index; the tree's
// pack becomes a dependency Commit checks, and an unknown tree is refused.
func TestWriterReference(t *testing.T) {
	ctx := context.Background()
	a, be, clk := newTestRepo(t)
	w, err := a.NewWriter(ctx) // opened before the other writer stores anything
	if err != nil {
		t.Fatal(err)
	}
	b := reopen(t, be, clk)
	bw, err := b.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, err := bw.PutBlob(ctx, []byte("a volume's file-tree stream"))
	if err != nil {
		t.Fatal(err)
	}
	tree := Tree{Blobs: []ID{id}, Count: 1}
	if _, err := bw.Commit(ctx, &RecoveryPoint{Name: "holder", VolumeData: []VolumeData{{Name: "ns/claim", Tree: tree}}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Reference(ctx, Tree{Blobs: []ID{Hash([]byte("never stored"))}}); err == nil || !strings.Contains(err.Error(), "in no index file") {
		t.Fatalf("unknown tree blob: %v", err)
	}
	if err := w.Reference(ctx, tree); err != nil {
		t.Fatal(err)
	}
	if len(w.deps) != 1 {
		t.Fatalf("deps %v: want the tree's pack", w.deps)
	}
	// The pack disappears (a prune that could not see the lock): the commit refuses.
	packs, err := a.listIDs(ctx, storage.PackFile)
	if err != nil || len(packs) != 1 {
		t.Fatalf("packs %v %v", packs, err)
	}
	w2, err := a.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w2.Reference(ctx, tree); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(ctx, &RecoveryPoint{Name: "main", VolumeData: []VolumeData{{Name: "ns/claim", Tree: tree}}}); err != nil {
		t.Fatalf("commit naming the referenced tree: %v", err)
	}
	for p := range packs {
		if err := be.Remove(ctx, storage.Handle{Type: storage.PackFile, Name: p.String()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w2.Commit(ctx, &RecoveryPoint{Name: "after prune", VolumeData: []VolumeData{{Name: "ns/claim", Tree: tree}}}); err == nil {
		t.Fatal("commit naming a tree whose pack is gone succeeded")
	}
}
