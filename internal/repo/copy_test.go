package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/faulty"
	"github.com/arca-backup/arca/internal/storage/mem"
)

// newTarget makes a second repository with its own password (and so its
// own master key), behind a fault decorator that counts its calls.
func newTarget(t *testing.T, clk Clock) (*Repository, *faulty.Backend) {
	t.Helper()
	be := faulty.New(mem.New())
	r, err := Init(context.Background(), be, "target-secret", testOpts(clk)...)
	if err != nil {
		t.Fatal(err)
	}
	return r, be
}

func TestCopy(t *testing.T) {
	ctx := context.Background()
	src, _, clk := newTestRepo(t)
	rp1, c1, _ := writeBackup(t, src, backupSpec{types: 3, objects: 200, seed: 1}, "first")
	rp2, c2, _ := writeBackup(t, src, backupSpec{types: 3, objects: 200, seed: 2}, "second")
	dst, dbe := newTarget(t, clk)

	rep, err := Copy(ctx, src.ReadOnly(), dst, []ID{rp1.ID, rp2.ID}, CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Copied != 2 || rep.Skipped != 0 || rep.NewBlobs == 0 {
		t.Fatalf("report %+v: want 2 points copied with their blobs", rep)
	}

	// The target opens with its own password, not the source's, and holds
	// both points, tagged with their origin, with every object intact.
	if _, err := Open(ctx, dbe, "secret", testOpts(clk)...); err == nil || !strings.Contains(err.Error(), "wrong password") {
		t.Fatalf("target opened with the source's password: %v", err)
	}
	d2, err := Open(ctx, dbe, "target-secret", testOpts(clk)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		rp      *RecoveryPoint
		content map[string][]byte
	}{{rp1, c1}, {rp2, c2}} {
		got, err := FindOrigin(ctx, d2.ReadOnly(), c.rp.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID == c.rp.ID {
			t.Fatalf("the copy has the source's manifest ID %s: was it re-encrypted?", got.ID.Short())
		}
		if got.Tags[OriginTag] != c.rp.ID.String() || got.Name != c.rp.Name || got.Summary.Items != c.rp.Summary.Items {
			t.Fatalf("copy of %s: name %q, tags %v, items %d", c.rp.ID.Short(), got.Name, got.Tags, got.Summary.Items)
		}
		verifyBackup(t, d2, got, c.content)
	}
	chk, err := d2.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || !chk.OK() {
		t.Fatalf("check of the target: %v %+v", err, chk)
	}

	// A second copy sends nothing: no call saves a file in the target.
	saves := dbe.Calls(faulty.OpSave)
	rep, err = Copy(ctx, src.ReadOnly(), dst, []ID{rp1.ID, rp2.ID}, CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Copied != 0 || rep.Skipped != 2 || rep.NewBlobs != 0 || rep.StoredBytes != 0 {
		t.Fatalf("second copy: %+v, want both points skipped and nothing stored", rep)
	}
	if n := dbe.Calls(faulty.OpSave) - saves; n != 0 {
		t.Fatalf("second copy saved %d files in the target", n)
	}

	// A copy of the copy keeps the first origin, and copying back to the
	// source finds the originals there.
	third, _ := newTarget(t, clk)
	if _, err := Copy(ctx, d2, third, []ID{rp1.ID}, CopyOptions{}); err == nil {
		// rp1.ID is the source's ID, not d2's: d2 has no manifest by that name.
		t.Fatal("copy of an ID the source does not hold succeeded")
	}
	c1d2, _ := FindOrigin(ctx, d2, rp1.ID)
	if _, err := Copy(ctx, d2, third, []ID{c1d2.ID}, CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := FindOrigin(ctx, third, rp1.ID)
	if err != nil || got.Origin() != rp1.ID {
		t.Fatalf("copy of a copy: %v, origin %v", err, got)
	}
	rep, err = Copy(ctx, d2, src, []ID{c1d2.ID}, CopyOptions{})
	if err != nil || rep.Skipped != 1 {
		t.Fatalf("copy back to the source: %v %+v, want skipped", err, rep)
	}
	if _, err := Copy(ctx, src, src, []ID{rp1.ID}, CopyOptions{}); err == nil || !strings.Contains(err.Error(), "same repository") {
		t.Fatalf("copy into itself: %v", err)
	}
}

// TestCopySharesBlobs: blobs the target already holds (from its own
// backups of the same content) are not sent again: IDs are plaintext
// hashes, equal in both repositories. Only tree blobs may be sent: each
// repository chunks its tree streams with its own chunker polynomial, so
// the same stream can be cut at other boundaries in the target.
func TestCopySharesBlobs(t *testing.T) {
	ctx := context.Background()
	src, _, clk := newTestRepo(t)
	rp, content, _ := writeBackup(t, src, backupSpec{types: 2, objects: 300, seed: 7}, "p")
	dst, _ := newTarget(t, clk)
	_, _, st := writeBackup(t, dst, backupSpec{types: 2, objects: 300, seed: 7}, "same content, written directly")
	rep, err := Copy(ctx, src, dst, []ID{rp.ID}, CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var treeBlobs int64
	for _, rt := range rp.Resources {
		treeBlobs += int64(len(rt.Tree.Blobs))
	}
	if rep.Copied != 1 || rep.NewBlobs > treeBlobs {
		t.Fatalf("copy of content the target holds sent %d blobs, more than the point's %d tree blobs (direct backup wrote %d): %+v",
			rep.NewBlobs, treeBlobs, st.NewBlobs, rep)
	}
	got, err := FindOrigin(ctx, dst, rp.ID)
	if err != nil {
		t.Fatal(err)
	}
	verifyBackup(t, dst, got, content)
}

// TestCopyInterrupted: a copy that fails while writing the target leaves
// no manifest there (packs at most, which prune removes), and a rerun
// completes.
func TestCopyInterrupted(t *testing.T) {
	ctx := context.Background()
	src, _, clk := newTestRepo(t)
	rp, content, _ := writeBackup(t, src, backupSpec{types: 3, objects: 400, seed: 3}, "p")
	for _, ft := range []storage.FileType{storage.PackFile, storage.IndexFile, storage.RecoveryPointFile} {
		t.Run(string(ft), func(t *testing.T) {
			dst, dbe := newTarget(t, clk)
			dbe.Add(faulty.Fault{Op: faulty.OpSave, Type: ft, Nth: 2, Count: -1, Kind: faulty.Permanent})
			if ft != storage.PackFile {
				dbe.Clear()
				dbe.Add(faulty.Fault{Op: faulty.OpSave, Type: ft, Nth: 1, Count: -1, Kind: faulty.Permanent})
			}
			_, err := Copy(ctx, src, dst, []ID{rp.ID}, CopyOptions{})
			if err == nil || !errors.Is(err, storage.ErrPermanent) {
				t.Fatalf("copy with failing %s saves: %v", ft, err)
			}
			if len(dbe.Injected()) == 0 {
				t.Fatal("no fault was injected")
			}
			dbe.Clear()
			after := snapshotFiles(t, dbe)
			for f := range after {
				if strings.HasPrefix(f, string(storage.RecoveryPointFile)+"/") {
					t.Fatalf("interrupted copy left manifest %s", f)
				}
			}
			r2, err := Open(ctx, dbe, "target-secret", testOpts(clk)...)
			if err != nil {
				t.Fatal(err)
			}
			if rps, err := r2.ListRecoveryPoints(ctx); err != nil || len(rps) != 0 {
				t.Fatalf("target lists %d points (%v) after an interrupted copy", len(rps), err)
			}
			rep, err := Copy(ctx, src, r2, []ID{rp.ID}, CopyOptions{})
			if err != nil || rep.Copied != 1 {
				t.Fatalf("rerun: %v %+v", err, rep)
			}
			got, err := FindOrigin(ctx, r2, rp.ID)
			if err != nil {
				t.Fatal(err)
			}
			verifyBackup(t, r2, got, content)
			if chk, err := r2.Check(ctx, CheckOptions{ReadData: true}); err != nil || !chk.OK() {
				t.Fatalf("check after rerun: %v %+v", err, chk)
			}
		})
	}
}

// TestCopyHoldsSourceLock: a prune of the source cannot run while a copy
// reads it (it would remove data the copy is about to send).
func TestCopyHoldsSourceLock(t *testing.T) {
	ctx := context.Background()
	src, _, clk := newTestRepo(t)
	rp, _, _ := writeBackup(t, src, backupSpec{types: 1, objects: 50, seed: 1}, "p")
	dst, _ := newTarget(t, clk)
	pruned := false
	_, err := Copy(ctx, src, dst, []ID{rp.ID}, CopyOptions{Progress: func(CopiedPoint) {
		_, perr := src.Prune(ctx, PruneOptions{})
		pruned = perr == nil
		if !errors.Is(perr, ErrLocked) {
			t.Errorf("prune of the source during a copy: %v, want ErrLocked", perr)
		}
	}})
	if err != nil || pruned {
		t.Fatalf("copy: %v, pruned during the copy: %v", err, pruned)
	}
	if _, err := src.Prune(ctx, PruneOptions{}); err != nil {
		t.Fatalf("prune after the copy: %v", err)
	}
}

// TestCopyVolumeData: a vault-tier point's volume file trees and file
// contents travel with it (the walk prune uses finds them), and the copy
// reads back entry for entry, content for content.
func TestCopyVolumeData(t *testing.T) {
	ctx := context.Background()
	src, _, clk := newTestRepo(t)
	w, err := src.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	es := sampleFileEntries(t, w, 500)
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
	rp := &RecoveryPoint{Name: "vol", VolumeData: []VolumeData{{Name: "ns/pvc", Tree: tree, Files: int64(len(es))}}}
	if _, err := w.Commit(ctx, rp); err != nil {
		t.Fatal(err)
	}
	dst, _ := newTarget(t, clk)
	rep, err := Copy(ctx, src, dst, []ID{rp.ID}, CopyOptions{})
	if err != nil || rep.Copied != 1 {
		t.Fatalf("copy: %v %+v", err, rep)
	}
	got, err := FindOrigin(ctx, dst, rp.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.VolumeData) != 1 || got.VolumeData[0].Name != "ns/pvc" {
		t.Fatalf("copied point's volume data: %+v", got.VolumeData)
	}
	i := 0
	err = dst.WalkFileTree(ctx, got.VolumeData[0].Tree, func(e FileEntry) error {
		want := es[i]
		i++
		if e.Path != want.Path || e.Type != want.Type || e.Size != want.Size || len(e.Blobs) != len(want.Blobs) {
			return fmt.Errorf("entry %d: %+v, want %+v", i, e, want)
		}
		for j, b := range e.Blobs {
			d, err := dst.LoadBlob(ctx, b)
			if err != nil {
				return fmt.Errorf("%s: %w", e.Path, err)
			}
			s, _ := src.LoadBlob(ctx, want.Blobs[j])
			if !bytes.Equal(d, s) {
				return fmt.Errorf("%s: content differs", e.Path)
			}
		}
		return nil
	})
	if err != nil || i != len(es) {
		t.Fatalf("walk of the copied file tree: %v (%d of %d entries)", err, i, len(es))
	}
	if chk, err := dst.Check(ctx, CheckOptions{ReadData: true}); err != nil || !chk.OK() {
		t.Fatalf("check: %v %+v", err, chk)
	}
}
