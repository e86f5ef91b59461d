package repo

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/arca-backup/arca/internal/storage"
)

// rewrite replaces the content of h by f(content), keeping its name.
func rewrite(t *testing.T, be storage.Backend, h storage.Handle, f func([]byte) []byte) {
	t.Helper()
	ctx := context.Background()
	b, err := storage.ReadAll(ctx, be, h)
	if err != nil {
		t.Fatal(err)
	}
	nb := f(append([]byte(nil), b...))
	if err := be.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(ctx, h, int64(len(nb)), bytes.NewReader(nb)); err != nil {
		t.Fatal(err)
	}
}

func firstBlob(t *testing.T, r *Repository, rp *RecoveryPoint) ID {
	t.Helper()
	var id ID
	err := r.WalkTree(context.Background(), rp.Resources[0].Tree, func(e TreeEntry) error {
		id = e.Blobs[0]
		return errors.New("stop")
	})
	if err == nil || id.IsNull() {
		t.Fatal("no blob")
	}
	return id
}

func TestCheckDamage(t *testing.T) {
	type setup struct {
		r      *Repository
		be     storage.Backend
		a, b   *RecoveryPoint
		blobB  ID // a data blob only b references
		packB  ID // its pack
		indexB ID // the index file written by b's writer
	}
	cases := []struct {
		name     string
		readData bool
		damage   func(t *testing.T, s *setup) string // returns the file that must be named
		loadFail bool                                // LoadBlob(blobB) must fail
	}{
		{"flipped byte in pack", true, func(t *testing.T, s *setup) string {
			loc, _, _, _ := s.r.idx.Load().lookup(s.blobB)
			h := storage.Handle{Type: storage.PackFile, Name: s.packB.String()}
			rewrite(t, s.be, h, func(b []byte) []byte { b[loc.offset+loc.length/2] ^= 0x10; return b })
			return h.String()
		}, true},
		{"missing pack", false, func(t *testing.T, s *setup) string {
			h := storage.Handle{Type: storage.PackFile, Name: s.packB.String()}
			if err := s.be.Remove(context.Background(), h); err != nil {
				t.Fatal(err)
			}
			return h.String()
		}, true},
		{"truncated pack", false, func(t *testing.T, s *setup) string {
			h := storage.Handle{Type: storage.PackFile, Name: s.packB.String()}
			rewrite(t, s.be, h, func(b []byte) []byte { return b[:len(b)-10] })
			return h.String()
		}, false /* data before the cut is intact */},
		{"deleted index", false, func(t *testing.T, s *setup) string {
			if err := s.be.Remove(context.Background(), storage.Handle{Type: storage.IndexFile, Name: s.indexB.String()}); err != nil {
				t.Fatal(err)
			}
			return "index" // the blobs are in no index file
		}, true},
		{"truncated index", false, func(t *testing.T, s *setup) string {
			h := storage.Handle{Type: storage.IndexFile, Name: s.indexB.String()}
			rewrite(t, s.be, h, func(b []byte) []byte { return b[:len(b)/2] })
			return h.String()
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, be, clk := newTestRepo(t)
			ctx := context.Background()
			a, _, _ := writeBackup(t, r, backupSpec{types: 2, objects: 300}, "a")
			idxBefore, _ := r.listIDs(ctx, storage.IndexFile)
			b, _, _ := writeBackup(t, r, backupSpec{types: 2, objects: 300, seed: 7_000_000}, "b")
			idxAfter, _ := r.listIDs(ctx, storage.IndexFile)
			s := &setup{r: r, be: be, a: a, b: b, blobB: firstBlob(t, r, b)}
			_, s.packB, _, _ = r.idx.Load().lookup(s.blobB)
			for id := range idxAfter {
				if _, ok := idxBefore[id]; !ok {
					s.indexB = id
				}
			}
			if rep, err := r.Check(ctx, CheckOptions{ReadData: true}); err != nil || !rep.OK() {
				t.Fatalf("check before damage: %+v %v", rep, err)
			}
			file := tc.damage(t, s)

			r2 := reopen(t, be, clk) // a fresh reader sees the damage
			rep, err := r2.Check(ctx, CheckOptions{ReadData: tc.readData})
			if err != nil {
				t.Fatalf("check: %v", err)
			}
			var found *DamagedFile
			for i := range rep.Damaged {
				if rep.Damaged[i].File == file {
					found = &rep.Damaged[i]
				}
			}
			if found == nil {
				t.Fatalf("check did not name %s: %+v", file, rep.Damaged)
			}
			if !containsID(found.RecoveryPoints, b.ID) || containsID(found.RecoveryPoints, a.ID) {
				t.Fatalf("affected recovery points %v, want exactly b=%s (a=%s)", found.RecoveryPoints, b.ID.Short(), a.ID.Short())
			}
			if containsID(rep.Affected, a.ID) {
				t.Fatalf("recovery point a reported affected: %+v", rep)
			}
			if tc.loadFail {
				if data, err := r2.LoadBlob(ctx, s.blobB); err == nil {
					t.Fatalf("LoadBlob of a damaged blob returned %d bytes and no error", len(data))
				}
			}
		})
	}
}

func TestCheckDamagedManifest(t *testing.T) {
	r, be, clk := newTestRepo(t)
	ctx := context.Background()
	a, _, _ := writeBackup(t, r, backupSpec{types: 1, objects: 10}, "a")
	h := storage.Handle{Type: storage.RecoveryPointFile, Name: a.ID.String()}
	rewrite(t, be, h, func(b []byte) []byte { b[30] ^= 1; return b })
	rep, err := reopen(t, be, clk).Check(ctx, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Damaged) != 1 || rep.Damaged[0].File != h.String() || !containsID(rep.Damaged[0].RecoveryPoints, a.ID) {
		t.Fatalf("report: %+v", rep)
	}
	if _, err := r.FindRecoveryPoint(ctx, a.ID.String()); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("loading a damaged manifest: %v", err)
	}
}

func containsID(ids []ID, id ID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func TestRebuildIndexHeals(t *testing.T) {
	for _, damage := range []string{"delete", "truncate"} {
		t.Run(damage, func(t *testing.T) {
			r, be, clk := newTestRepo(t)
			ctx := context.Background()
			a, ca, _ := writeBackup(t, r, backupSpec{types: 2, objects: 200}, "a")
			idx, _ := r.listIDs(ctx, storage.IndexFile)
			for id := range idx {
				h := storage.Handle{Type: storage.IndexFile, Name: id.String()}
				if damage == "delete" {
					_ = be.Remove(ctx, h)
				} else {
					rewrite(t, be, h, func(b []byte) []byte { return b[:len(b)/3] })
				}
			}
			r2 := reopen(t, be, clk)
			if rep, _ := r2.Check(ctx, CheckOptions{}); rep.OK() {
				t.Fatal("check found no damage")
			}
			rep, err := r2.RebuildIndex(ctx)
			if err != nil || rep.Packs == 0 || len(rep.DamagedPacks) != 0 {
				t.Fatalf("rebuild: %+v %v", rep, err)
			}
			verifyBackup(t, r2, a, ca)
			r3 := reopen(t, be, clk)
			chk, err := r3.Check(ctx, CheckOptions{ReadData: true})
			if err != nil || !chk.OK() {
				t.Fatalf("check after rebuild: %+v %v", chk, err)
			}
			verifyBackup(t, r3, a, ca)
		})
	}
}

// ReadDataShare reads about that share of the packs; without it ReadData reads them all, and without ReadData none.
func TestCheckReadDataShare(t *testing.T) {
	r, _, _ := newTestRepo(t, WithPackSize(32<<10))
	writeBackup(t, r, backupSpec{types: 4, objects: 400}, "a")
	ctx := context.Background()
	all, err := r.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || !all.OK() || all.PacksRead != all.Packs || all.Packs < 20 {
		t.Fatalf("check --read-data: %+v %v", all, err)
	}
	none, err := r.Check(ctx, CheckOptions{})
	if err != nil || none.PacksRead != 0 {
		t.Fatalf("check: %+v %v", none, err)
	}
	for range 5 {
		part, err := r.Check(ctx, CheckOptions{ReadData: true, ReadDataShare: 0.3})
		if err != nil || !part.OK() {
			t.Fatalf("check 30%%: %+v %v", part, err)
		}
		if part.PacksRead == 0 || part.PacksRead >= part.Packs*3/4 {
			t.Fatalf("30%% read %d of %d packs", part.PacksRead, part.Packs)
		}
	}
}
