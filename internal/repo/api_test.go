package repo

import (
	"context"
	"testing"
)

// A Reader reads everything a restore needs, and nothing on it writes:
// not even a type assertion reaches the writing methods of *Repository.
func TestReadOnlyViewCannotWrite(t *testing.T) {
	ctx := context.Background()
	w, be, clk := newTestRepo(t)
	rp, objs, _ := writeBackup(t, w, backupSpec{types: 2, objects: 5, seed: 1}, "a")

	rd, err := OpenReader(ctx, be, "secret", testOpts(clk)...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rd.FindRecoveryPoint(ctx, "latest")
	if err != nil || got.ID != rp.ID {
		t.Fatalf("latest = %v, %v; want %s", got, err, rp.ID.Short())
	}
	n := 0
	for _, rt := range got.Resources {
		if err := rd.WalkTree(ctx, rt.Tree, func(e TreeEntry) error {
			b, err := rd.LoadBlob(ctx, e.Blobs[0])
			if err != nil {
				return err
			}
			if string(b) != string(objs[e.Name]) {
				t.Errorf("%s: content differs", e.Name)
			}
			n++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if n != 10 {
		t.Errorf("read %d objects, want 10", n)
	}
	if rep, err := rd.Check(ctx, CheckOptions{}); err != nil || !rep.OK() {
		t.Fatalf("check: %v %+v", err, rep)
	}

	for name, v := range map[string]any{"OpenReader": rd, "ReadOnly": w.ReadOnly()} {
		if _, ok := v.(*Repository); ok {
			t.Errorf("%s: the Reader is a *Repository", name)
		}
		if _, ok := v.(interface {
			NewWriter(context.Context) (*Writer, error)
		}); ok {
			t.Errorf("%s: the Reader has NewWriter", name)
		}
		if _, ok := v.(interface {
			Prune(context.Context, PruneOptions) (*PruneReport, error)
		}); ok {
			t.Errorf("%s: the Reader has Prune", name)
		}
		if _, ok := v.(interface {
			Forget(context.Context, []ID) error
		}); ok {
			t.Errorf("%s: the Reader has Forget", name)
		}
		if _, ok := v.(interface {
			AddKey(context.Context, string) (ID, error)
		}); ok {
			t.Errorf("%s: the Reader has AddKey", name)
		}
	}
}
