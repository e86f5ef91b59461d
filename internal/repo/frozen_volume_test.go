package repo_test

// The frozen volume repository (docs/repository-format.md §15 and
// "Compatibility: frozen repositories"): testdata/volume-v1/repo was written
// once by the code that introduced volume file trees (format v2 envelopes,
// file-tree stream version 1) and is committed. Every later version must
// read its file trees and contents as stated in frozenVolumes below.
//
//	go test ./internal/repo -run TestFrozenVolumeGenerate -count=1 -v -args -regenerate-volume
//
// (only if the frozen content must change, which should be never; then
// update frozenVolumePoint from the log.)

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/local"
)

var regenerateVolume = flag.Bool("regenerate-volume", false, "rewrite internal/repo/testdata/volume-v1/repo (TestFrozenVolumeGenerate)")

const (
	frozenVolumeDir      = "testdata/volume-v1/repo"
	frozenVolumePassword = "frozen volume password"
	// frozenVolumePoint is the recovery point's ID, from the generator's log.
	frozenVolumePoint = "3f345f60b39117623f38e52c0192d6abe13fbf7cc8c1596867fcef9da7e4718d"
)

// frozenBytes is deterministic content defined here (SHA-256 in counter
// mode), so that it does not depend on any library's random generator.
func frozenBytes(seed string, n int) []byte {
	out := make([]byte, 0, n+32)
	var ctr [8]byte
	for i := uint64(0); len(out) < n; i++ {
		binary.LittleEndian.PutUint64(ctr[:], i)
		s := sha256.Sum256(append([]byte(seed), ctr[:]...))
		out = append(out, s[:]...)
	}
	return out[:n]
}

type frozenFile struct {
	e       repo.FileEntry // Blobs left empty: filled from content
	content []byte         // the stored content (a sparse file: its extents' bytes)
}

var frozenT0 = time.Date(2026, 11, 1, 2, 3, 4, 567890123, time.UTC).UnixNano()

// frozenVolumes is the content of the frozen volume repository: one
// recovery point with a file-system volume holding every entry type and a
// block volume.
func frozenVolumes() map[string][]frozenFile {
	fs := []frozenFile{
		{e: repo.FileEntry{Type: repo.FileDir, Path: "", Mode: 0o755, MTime: frozenT0}},
		{e: repo.FileEntry{Type: repo.FileDir, Path: "data", Mode: 0o700, UID: 999, GID: 999, MTime: frozenT0 + 1}},
		{e: repo.FileEntry{Type: repo.FileRegular, Path: "data/allhole", Mode: 0o600, UID: 999, GID: 999, MTime: frozenT0, Size: 1 << 20, Extents: []repo.Extent{}}},
		{e: repo.FileEntry{Type: repo.FileRegular, Path: "data/big.bin", Mode: 0o644, UID: 999, GID: 999, MTime: frozenT0 + 2, Size: 700<<10 + 5},
			content: frozenBytes("big", 700<<10+5)},
		{e: repo.FileEntry{Type: repo.FileRegular, Path: "data/empty", Mode: 0o600, MTime: frozenT0}},
		{e: repo.FileEntry{Type: repo.FileRegular, Path: "data/sparse.img", Mode: 0o660, UID: 999, GID: 5, MTime: frozenT0, Size: 16 << 20,
			Extents: []repo.Extent{{Offset: 4096, Length: 5000}, {Offset: 8 << 20, Length: 100}}}, content: frozenBytes("sparse", 5100)},
		{e: repo.FileEntry{Type: repo.FileDir, Path: "dev", Mode: 0o755, MTime: -1_000_000_000_123}},
		{e: repo.FileEntry{Type: repo.FileFIFO, Path: "dev/fifo", Mode: 0o620, MTime: frozenT0}},
		{e: repo.FileEntry{Type: repo.FileCharDevice, Path: "dev/null", Mode: 0o666, MTime: frozenT0, Rdev: 1<<8 | 3}},
		{e: repo.FileEntry{Type: repo.FileSocket, Path: "dev/sock", Mode: 0o777, MTime: frozenT0}},
		{e: repo.FileEntry{Type: repo.FileDir, Path: "etc", Mode: 0o750, UID: 1000, GID: 1000, MTime: frozenT0,
			Xattrs: []repo.Xattr{{Name: "user.dir", Value: []byte{0, 1, 2}}}}},
		{e: repo.FileEntry{Type: repo.FileRegular, Path: "etc/app.conf", Mode: 0o4755, UID: 1000, GID: 1000, MTime: frozenT0 + 3, Size: 10,
			Xattrs: []repo.Xattr{{Name: "security.selinux", Value: []byte("system_u:object_r:etc_t:s0\x00")}, {Name: "user.note", Value: []byte("frozen")}}},
			content: []byte("key=value\n")},
		{e: repo.FileEntry{Type: repo.FileHardlink, Path: "etc/hard", Link: "etc/app.conf"}},
		{e: repo.FileEntry{Type: repo.FileSymlink, Path: "etc/link", UID: 1000, GID: 1000, MTime: frozenT0, Link: "app.conf"}},
		{e: repo.FileEntry{Type: repo.FileSymlink, Path: "etc/ünïcode name", MTime: frozenT0, Link: "/absolute/dangling"}},
	}
	blk := []frozenFile{{e: repo.FileEntry{Type: repo.FileBlockVolume, Size: 300<<10 + 7}, content: frozenBytes("block", 300<<10+7)}}
	return map[string][]frozenFile{"shop/data": fs, "shop/raw": blk}
}

func TestFrozenVolumeGenerate(t *testing.T) {
	if !*regenerateVolume {
		t.Skip("run with -args -regenerate-volume to rewrite testdata/volume-v1/repo")
	}
	ctx := context.Background()
	if err := os.RemoveAll(frozenVolumeDir); err != nil {
		t.Fatal(err)
	}
	be, err := local.Create(frozenVolumeDir)
	if err != nil {
		t.Fatal(err)
	}
	clock := repo.ClockFunc(func() time.Time { return time.Date(2026, 12, 1, 4, 0, 0, 0, time.UTC) })
	r, err := repo.Init(ctx, be, frozenVolumePassword, repo.WithKDF(frozenKDF), repo.WithClock(clock), repo.WithPackSize(256<<10))
	if err != nil {
		t.Fatal(err)
	}
	w, err := r.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rp := &repo.RecoveryPoint{Name: "frozen volumes", Started: time.Date(2026, 12, 1, 4, 0, 0, 0, time.UTC),
		Finished: time.Date(2026, 12, 1, 4, 0, 1, 0, time.UTC), Tags: map[string]string{"arca.io/volume": "shop/data"}}
	for _, name := range []string{"shop/data", "shop/raw"} {
		ft := w.NewFileTree()
		vd := repo.VolumeData{Name: name, Block: name == "shop/raw"}
		for _, f := range frozenVolumes()[name] {
			e := f.e
			if len(f.content) > 0 {
				ids, n, err := w.PutStream(ctx, bytes.NewReader(f.content))
				if err != nil || n != int64(len(f.content)) {
					t.Fatal(err)
				}
				e.Blobs = ids
			}
			if err := ft.Add(ctx, e); err != nil {
				t.Fatal(err)
			}
			vd.Files++
			vd.Bytes += int64(len(f.content))
		}
		if vd.Tree, err = ft.Close(ctx); err != nil {
			t.Fatal(err)
		}
		rp.VolumeData = append(rp.VolumeData, vd)
	}
	id, err := w.Commit(ctx, rp)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("frozenVolumePoint = %q", id)
}

func TestFrozenVolumeRepo(t *testing.T) {
	ctx := context.Background()
	be, err := local.Open(frozenVolumeDir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.OpenReader(ctx, be, frozenVolumePassword)
	if err != nil {
		t.Fatalf("the frozen volume repository no longer opens: %v", err)
	}
	rps, err := r.ListRecoveryPoints(ctx)
	if err != nil || len(rps) != 1 || rps[0].ID.String() != frozenVolumePoint {
		t.Fatalf("frozen volume repository: points %v, %v; want the one point %s", rps, err, frozenVolumePoint)
	}
	rp := rps[0]
	want := frozenVolumes()
	if len(rp.VolumeData) != 2 || rp.VolumeData[0].Name != "shop/data" || rp.VolumeData[1].Name != "shop/raw" || !rp.VolumeData[1].Block {
		t.Fatalf("volume records: %+v", rp.VolumeData)
	}
	for _, vd := range rp.VolumeData {
		var got []repo.FileEntry
		if err := r.WalkFileTree(ctx, vd.Tree, func(e repo.FileEntry) error { got = append(got, e); return nil }); err != nil {
			t.Fatalf("volume %s: the file tree (format §15) no longer reads: %v", vd.Name, err)
		}
		wf := want[vd.Name]
		if len(got) != len(wf) {
			t.Fatalf("volume %s: %d entries, want %d", vd.Name, len(got), len(wf))
		}
		for i, e := range got {
			var content []byte
			for _, b := range e.Blobs {
				data, err := r.LoadBlob(ctx, b)
				if err != nil {
					t.Fatalf("volume %s, %q: %v", vd.Name, e.Path, err)
				}
				content = append(content, data...)
			}
			if !bytes.Equal(content, wf[i].content) {
				t.Errorf("volume %s, %q: content of %d bytes differs from the frozen %d bytes", vd.Name, e.Path, len(content), len(wf[i].content))
			}
			e.Blobs = nil
			if !reflect.DeepEqual(e, wf[i].e) {
				t.Errorf("volume %s entry %d:\n got  %+v\n want %+v", vd.Name, i, e, wf[i].e)
			}
		}
	}
	rep, err := r.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("check --read-data of the frozen volume repository: %v %+v", err, rep)
	}
	if fmt.Sprint(rep.RecoveryPoints) != "1" {
		t.Fatalf("check counted %d points", rep.RecoveryPoints)
	}
}
