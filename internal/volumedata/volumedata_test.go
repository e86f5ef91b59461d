package volumedata

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/faulty"
	"github.com/arca-backup/arca/internal/storage/local"
	"github.com/arca-backup/arca/internal/storage/mem"
)

var testKDF = repo.WithKDF(repo.KDFParams{N: 1 << 10, R: 8, P: 1})

func newRepo(t testing.TB, be storage.Backend) *repo.Repository {
	t.Helper()
	r, err := repo.Init(context.Background(), be, "pw", testKDF)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func randBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	mrand.New(mrand.NewSource(seed)).Read(b)
	return b
}

// makeTree builds a directory with every kind of file the mover keeps.
func makeTree(t *testing.T, dir string) {
	t.Helper()
	w := func(p string, data []byte, mode os.FileMode) {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, p), data, mode))
		must(t, os.Chmod(filepath.Join(dir, p), mode))
	}
	w("a/small.txt", []byte("hello volume\n"), 0o644)
	w("a/empty", nil, 0o600)
	w("a/b/c/deep.bin", randBytes(1, 3000), 0o640)
	w("big.bin", randBytes(2, 5<<20+123), 0o755)
	w("setuid", []byte("#!/bin/sh\n"), 0o4755|os.ModeSetuid)
	must(t, os.Chmod(filepath.Join(dir, "setuid"), 0o755|os.ModeSetuid))
	w("x y/ünïcode név", []byte("name with spaces"), 0o644)
	must(t, os.Symlink("a/small.txt", filepath.Join(dir, "link-rel")))
	must(t, os.Symlink("/nonexistent/target", filepath.Join(dir, "link-dangling")))
	must(t, os.Link(filepath.Join(dir, "a/small.txt"), filepath.Join(dir, "hard1")))
	must(t, os.Link(filepath.Join(dir, "a/small.txt"), filepath.Join(dir, "x y/hard2")))
	// Sparse: 64 MiB with two data regions and a trailing hole.
	sp, err := os.Create(filepath.Join(dir, "sparse.img"))
	must(t, err)
	_, err = sp.WriteAt(randBytes(3, 100000), 1<<20)
	must(t, err)
	_, err = sp.WriteAt(randBytes(4, 4096), 40<<20)
	must(t, err)
	must(t, sp.Truncate(64<<20))
	must(t, sp.Close())
	hole, err := os.Create(filepath.Join(dir, "allhole"))
	must(t, err)
	must(t, hole.Truncate(8<<20))
	must(t, hole.Close())
	must(t, unix.Mkfifo(filepath.Join(dir, "fifo"), 0o620))
	if os.Geteuid() == 0 {
		must(t, unix.Mknod(filepath.Join(dir, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(t, os.Lchown(filepath.Join(dir, "a/b"), 1234, 5678))
		must(t, os.Lchown(filepath.Join(dir, "a/small.txt"), 1001, 1002))
		must(t, os.Lchown(filepath.Join(dir, "link-rel"), 1003, 1004))
	}
	if err := unix.Lsetxattr(filepath.Join(dir, "a/small.txt"), "user.arca.test", []byte("value\x00bin"), 0); err != nil {
		t.Logf("no user xattrs here: %v", err)
	}
	must(t, os.Chmod(filepath.Join(dir, "a/b/c"), 0o500)) // read-only dir: restore must still write into it
	// Fixed mtimes, directories last.
	var paths []string
	_ = filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { paths = append(paths, p); return nil })
	for i := len(paths) - 1; i >= 0; i-- {
		ts := unix.NsecToTimespec(time.Date(2020, 1, 2, 3, 4, 5, i*1000, time.UTC).UnixNano())
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, paths[i], []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// describe captures everything the mover promises to keep, per path.
func describe(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint64]string{}
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		must(t, unix.Lstat(p, &st))
		d := fmt.Sprintf("type=%o mode=%o uid=%d gid=%d mtime=%d", st.Mode&unix.S_IFMT, st.Mode&0o7777, st.Uid, st.Gid, st.Mtim.Nano())
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			d += fmt.Sprintf(" nlink=%d", st.Nlink)
		}
		if st.Nlink > 1 && st.Mode&unix.S_IFMT == unix.S_IFREG {
			if first, ok := inodes[st.Ino]; ok {
				d += " sameas=" + first
			} else {
				inodes[st.Ino] = rel
			}
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			must(t, err)
			d += fmt.Sprintf(" size=%d sha=%x", len(data), repo.Hash(data))
			ext, err := dataExtents(p, st.Size)
			must(t, err)
			if ext != nil {
				d += fmt.Sprintf(" extents=%v", ext)
			}
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			d += " -> " + l
		case unix.S_IFCHR, unix.S_IFBLK:
			d += fmt.Sprintf(" rdev=%d", st.Rdev)
		}
		xs, err := readXattrs(p)
		must(t, err)
		for _, x := range xs {
			d += fmt.Sprintf(" xattr %s=%q", x.Name, x.Value)
		}
		out[rel] = d
		return nil
	})
	must(t, err)
	return out
}

func compareTrees(t *testing.T, want, got map[string]string) {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	bad := 0
	for _, k := range keys {
		if got[k] != want[k] {
			t.Errorf("%s:\n  want %s\n  got  %s", k, want[k], got[k])
			bad++
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s restored but not in the source: %s", k, got[k])
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d paths differ", bad, len(keys))
	}
}

func backupCommit(t testing.TB, r *repo.Repository, src, name string) (*repo.RecoveryPoint, *BackupResult) {
	t.Helper()
	ctx := context.Background()
	w, err := r.NewWriter(ctx)
	must(t, err)
	res, err := Backup(ctx, w, src, BackupOptions{Name: name})
	if err != nil {
		_ = w.Abort(ctx)
		t.Fatal(err)
	}
	rp := &repo.RecoveryPoint{Name: name, Started: time.Now(), Finished: time.Now(), VolumeData: []repo.VolumeData{res.Volume}}
	_, err = w.Commit(ctx, rp)
	must(t, err)
	return rp, res
}

func TestBackupRestoreFaithful(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	makeTree(t, src)
	want := describe(t, src)
	r := newRepo(t, mem.New())
	rp, res := backupCommit(t, r, src, "ns/data")
	if len(res.Warnings) > 0 {
		t.Fatalf("warnings: %v", res.Warnings)
	}
	vd := rp.VolumeData[0]
	if vd.Files != int64(len(want)) {
		t.Errorf("files %d, the tree has %d", vd.Files, len(want))
	}
	// Sparse data is stored without its holes.
	if vd.Bytes > 6<<20 {
		t.Errorf("stored %d content bytes: the 64 MiB sparse file's holes were read", vd.Bytes)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	out, err := Restore(ctx, Source{Repo: r, Point: rp.ID.Short(), Data: vd}, dst, RestoreOptions{})
	must(t, err)
	if out.Err() != nil || len(out.Warnings) > 0 {
		t.Fatalf("restore: %v %v", out.Err(), out.Warnings)
	}
	compareTrees(t, want, describe(t, dst))

	// A second backup of the unchanged tree stores nothing new but the
	// manifest's index: the tree and every chunk deduplicate.
	_, res2 := backupCommit(t, r, src, "ns/data")
	if res2.Volume.NewBytes != 0 || res2.Volume.Tree.Blobs[0] != vd.Tree.Blobs[0] {
		t.Fatalf("unchanged second backup stored %d new bytes", res2.Volume.NewBytes)
	}
}

func TestFileLevelAccess(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	makeTree(t, src)
	r := newRepo(t, mem.New())
	rp, _ := backupCommit(t, r, src, "ns/data")
	s := Source{Repo: r, Point: rp.ID.String(), Data: rp.VolumeData[0]}

	var names []string
	must(t, List(ctx, s, "/a", false, func(e repo.FileEntry) error { names = append(names, e.Path+":"+e.Type.String()); return nil }))
	if got := strings.Join(names, " "); got != "a:dir a/b:dir a/empty:file a/small.txt:file" {
		t.Fatalf("ls /a: %s", got)
	}
	names = nil
	must(t, List(ctx, s, "a", true, func(e repo.FileEntry) error { names = append(names, e.Path); return nil }))
	if len(names) != 6 {
		t.Fatalf("ls -R a: %v", names)
	}
	var buf bytes.Buffer
	must(t, Cat(ctx, s, "x y/hard2", &buf)) // a hard link reads its content
	if buf.String() != "hello volume\n" {
		t.Fatalf("cat hard2: %q", buf.String())
	}
	buf.Reset()
	must(t, Cat(ctx, s, "sparse.img", &buf))
	orig, _ := os.ReadFile(filepath.Join(src, "sparse.img"))
	if !bytes.Equal(buf.Bytes(), orig) {
		t.Fatalf("cat sparse.img: %d bytes differ from the original %d", buf.Len(), len(orig))
	}
	for _, p := range []string{"nope", "a/nope", "a/b/c/deep.bin/x"} {
		err := List(ctx, s, p, false, func(repo.FileEntry) error { return nil })
		if !errors.Is(err, ErrPathNotFound) || !strings.Contains(err.Error(), "/"+p) || !strings.Contains(err.Error(), rp.ID.String()) {
			t.Errorf("ls %s: %v", p, err)
		}
		if err := Cat(ctx, s, p, io.Discard); !errors.Is(err, ErrPathNotFound) {
			t.Errorf("cat %s: %v", p, err)
		}
		if _, err := Restore(ctx, s, t.TempDir(), RestoreOptions{Path: p}); !errors.Is(err, ErrPathNotFound) {
			t.Errorf("restore %s: %v", p, err)
		}
	}
	if err := Cat(ctx, s, "a", io.Discard); err == nil || !strings.Contains(err.Error(), "is a dir") {
		t.Errorf("cat a directory: %v", err)
	}

	// Extract a directory: its content lands in the target, faithfully.
	dst := t.TempDir()
	res, err := Restore(ctx, s, filepath.Join(dst, "x"), RestoreOptions{Path: "a/b"})
	must(t, err)
	must(t, res.Err())
	full := describe(t, src)
	want := map[string]string{}
	for k, v := range full {
		if k == "a/b" {
			want["."] = v
		} else if strings.HasPrefix(k, "a/b/") {
			want[strings.TrimPrefix(k, "a/b/")] = v
		}
	}
	compareTrees(t, want, describe(t, filepath.Join(dst, "x")))
	// A hard link whose first name is outside the selection carries the content.
	res, err = Restore(ctx, s, filepath.Join(dst, "y"), RestoreOptions{Path: "x y"})
	must(t, err)
	must(t, res.Err())
	if b, _ := os.ReadFile(filepath.Join(dst, "y", "hard2")); string(b) != "hello volume\n" {
		t.Fatalf("hard2 restored alone: %q", b)
	}
	// One file into an existing directory.
	_, err = Restore(ctx, s, dst, RestoreOptions{Path: "a/small.txt"})
	must(t, err)
	if b, _ := os.ReadFile(filepath.Join(dst, "small.txt")); string(b) != "hello volume\n" {
		t.Fatalf("small.txt: %q", b)
	}
}

func TestBlockVolume(t *testing.T) {
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "disk.img")
	data := randBytes(9, 9<<20+17)
	copy(data[3<<20:], make([]byte, 2<<20)) // zeros in the middle
	must(t, os.WriteFile(img, data, 0o600))
	r := newRepo(t, mem.New())
	rp, res := backupCommit(t, r, img, "ns/raw")
	if !res.Volume.Block || res.Volume.Bytes != int64(len(data)) {
		t.Fatalf("block volume record: %+v", res.Volume)
	}
	s := Source{Repo: r, Point: rp.ID.Short(), Data: rp.VolumeData[0]}
	out := filepath.Join(t.TempDir(), "restored.img")
	_, err := Restore(ctx, s, out, RestoreOptions{})
	must(t, err)
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, data) {
		t.Fatal("block volume differs after restore")
	}
	// A device smaller than the volume is refused before writing, naming both sizes.
	if os.Geteuid() == 0 {
		small := filepath.Join(t.TempDir(), "small.img")
		must(t, os.WriteFile(small, make([]byte, 4<<20), 0o600))
		loop := attachLoop(t, small)
		if loop == "" {
			return
		}
		_, err := Restore(ctx, s, loop, RestoreOptions{})
		if !errors.Is(err, ErrTargetTooSmall) || !strings.Contains(err.Error(), fmt.Sprint(len(data))) || !strings.Contains(err.Error(), fmt.Sprint(4<<20)) {
			t.Fatalf("restore into a 4 MiB device: %v", err)
		}
		b, _ := os.ReadFile(small)
		if !bytes.Equal(b, make([]byte, 4<<20)) {
			t.Fatal("the refused restore wrote to the device")
		}
	}
}

// attachLoop makes a loop device of file ("" if loop devices are not
// available here).
func attachLoop(t *testing.T, file string) string {
	t.Helper()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		t.Logf("no loop devices: %v", err)
		return ""
	}
	defer ctl.Close()
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		t.Logf("no free loop device: %v", err)
		return ""
	}
	dev := fmt.Sprintf("/dev/loop%d", n)
	if _, err := os.Stat(dev); err != nil {
		must(t, unix.Mknod(dev, unix.S_IFBLK|0o660, int(unix.Mkdev(7, uint32(n)))))
	}
	lf, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		t.Logf("open %s: %v", dev, err)
		return ""
	}
	bf, err := os.OpenFile(file, os.O_RDWR, 0)
	must(t, err)
	defer bf.Close()
	if err := unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_SET_FD, int(bf.Fd())); err != nil {
		lf.Close()
		t.Logf("LOOP_SET_FD: %v", err)
		return ""
	}
	t.Cleanup(func() {
		_ = unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_CLR_FD, 0)
		lf.Close()
	})
	return dev
}

func TestTargetTooSmall(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	ctx := context.Background()
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "f"), randBytes(5, 3<<20), 0o644))
	r := newRepo(t, mem.New())
	rp, _ := backupCommit(t, r, src, "ns/x")
	dst := t.TempDir()
	if err := unix.Mount("tmpfs", dst, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dst, 0) })
	_, err := Restore(ctx, Source{Repo: r, Data: rp.VolumeData[0]}, dst, RestoreOptions{})
	if !errors.Is(err, ErrTargetTooSmall) || !strings.Contains(err.Error(), fmt.Sprint(3<<20)) || !strings.Contains(err.Error(), "1.0 MiB") {
		t.Fatalf("restore 3 MiB into a 1 MiB file system: %v", err)
	}
	if ents, _ := os.ReadDir(dst); len(ents) != 0 {
		t.Fatalf("refused restore wrote %d entries", len(ents))
	}
}

// A damaged pack fails the files whose data is in it, naming the file and
// the recovery point; every other file is restored.
func TestCorruptPackRestoresTheRest(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	for i := 0; i < 40; i++ {
		must(t, os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", i)), randBytes(int64(100+i), 200<<10), 0o644))
	}
	be, err := local.Open(t.TempDir())
	must(t, err)
	r, err := repo.Init(ctx, be, "pw", testKDF, repo.WithPackSize(1<<20))
	must(t, err)
	rp, _ := backupCommit(t, r, src, "ns/x")
	// Damage one pack holding file data.
	var victim storage.Handle
	must(t, be.List(ctx, storage.PackFile, func(fi storage.FileInfo) error {
		if victim.Name == "" && fi.Size > 512<<10 {
			victim = storage.Handle{Type: storage.PackFile, Name: fi.Name}
		}
		return nil
	}))
	data, err := storage.ReadAll(ctx, be, victim)
	must(t, err)
	for i := 100; i < len(data)-4096; i += 50000 {
		data[i] ^= 0x55
	}
	must(t, be.Remove(ctx, victim))
	must(t, be.Save(ctx, victim, int64(len(data)), bytes.NewReader(data)))
	r2, err := repo.Open(ctx, be, "pw", testKDF, repo.WithCacheSize(0))
	must(t, err)
	dst := t.TempDir()
	res, err := Restore(ctx, Source{Repo: r2, Point: rp.ID.String(), Data: rp.VolumeData[0]}, dst, RestoreOptions{})
	must(t, err)
	if len(res.Failed) == 0 || len(res.Failed) >= 40 {
		t.Fatalf("%d of 40 files failed; expected some, not all", len(res.Failed))
	}
	for _, f := range res.Failed {
		if !strings.Contains(f.Msg, f.Path) || !strings.Contains(f.Msg, rp.ID.String()) || !strings.Contains(f.Msg, victim.Name[:8]) {
			t.Errorf("failure does not name the file, the recovery point and the pack: %s", f.Msg)
		}
		if _, err := os.Stat(filepath.Join(dst, f.Path)); !os.IsNotExist(err) {
			t.Errorf("%s failed but was left behind", f.Path)
		}
	}
	failed := map[string]bool{}
	for _, f := range res.Failed {
		failed[f.Path] = true
	}
	for i := 0; i < 40; i++ {
		n := fmt.Sprintf("f%02d", i)
		if failed[n] {
			continue
		}
		got, err := os.ReadFile(filepath.Join(dst, n))
		must(t, err)
		if !bytes.Equal(got, randBytes(int64(100+i), 200<<10)) {
			t.Fatalf("%s restored with wrong content", n)
		}
	}
	if err := res.Err(); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d files not restored", len(res.Failed))) {
		t.Fatalf("summary: %v", err)
	}
}

var _ = rand.Read

// The repository becomes unreachable mid-move: the backup fails with the
// storage error and writes no recovery point; once storage is back the
// same backup completes and restores byte for byte. A restore that loses
// the repository fails the files it could not read, naming them.
func TestRepositoryUnreachableMidMove(t *testing.T) {
	ctx := context.Background()
	src, fb, r := thirtyFilesAndFaultyRepo(t)
	fb.Add(faulty.Fault{Op: faulty.OpSave, Type: storage.PackFile, Nth: 3, Kind: faulty.Permanent})
	w, err := r.NewWriter(ctx)
	must(t, err)
	_, err = Backup(ctx, w, src, BackupOptions{Name: "ns/x"})
	if err == nil {
		_, err = w.Commit(ctx, &repo.RecoveryPoint{Name: "x"})
	} else {
		_ = w.Abort(ctx)
	}
	if err == nil || !errors.Is(err, storage.ErrPermanent) {
		t.Fatalf("backup with storage failing: %v, want the storage error", err)
	}
	if rps, err := r.ListRecoveryPoints(ctx); err != nil || len(rps) != 0 {
		t.Fatalf("after the failed move: %d recovery points (%v), want none", len(rps), err)
	}
	fb.Clear()
	rp, _ := backupCommit(t, r, src, "ns/x")
	dst := t.TempDir()
	res, err := Restore(ctx, Source{Repo: r, Point: rp.ID.Short(), Data: rp.VolumeData[0]}, dst, RestoreOptions{})
	must(t, err)
	must(t, res.Err())
	for i := 0; i < 30; i++ {
		got, _ := os.ReadFile(filepath.Join(dst, fmt.Sprintf("f%02d", i)))
		if !bytes.Equal(got, randBytes(int64(i), 300<<10)) {
			t.Fatalf("f%02d differs after the repeated backup", i)
		}
	}
	// Every pack read fails from now on: the file tree cannot be read, and
	// the restore fails before writing, naming the point and the cause.
	r2, err := repo.Open(ctx, fb, "pw", testKDF, repo.WithCacheSize(0))
	must(t, err)
	fb.Add(faulty.Fault{Op: faulty.OpLoad, Type: storage.PackFile, Kind: faulty.Permanent, Probability: 1})
	dst2 := t.TempDir()
	_, err = Restore(ctx, Source{Repo: r2, Point: rp.ID.Short(), Data: rp.VolumeData[0]}, dst2, RestoreOptions{})
	if !errors.Is(err, storage.ErrPermanent) || !strings.Contains(err.Error(), rp.ID.Short()) {
		t.Fatalf("restore with storage gone: %v", err)
	}
	if ents, _ := os.ReadDir(dst2); len(ents) != 0 {
		t.Fatalf("a restore that could not read the tree wrote %d entries", len(ents))
	}
}

// TestRestoreStopsWhenRepositoryGoesAway: the repository fails for good
// mid-restore (every pack read from the 4th on). Without RestoreOptions.Stop
// each remaining file fails on its own (the others are restored); with a
// Stop that judges the storage error fatal, the restore ends at the first
// such failure, returns it, and does not try the files after it.
func TestRestoreStopsWhenRepositoryGoesAway(t *testing.T) {
	ctx := context.Background()
	src, fb, r := thirtyFilesAndFaultyRepo(t)
	rp, _ := backupCommit(t, r, src, "ns/x")
	restore := func(stop func(error) bool) (*RestoreResult, int, error) {
		t.Helper()
		fb.Clear()
		r2, err := repo.Open(ctx, fb, "pw", testKDF, repo.WithCacheSize(0))
		must(t, err)
		fb.Add(faulty.Fault{Op: faulty.OpLoad, Type: storage.PackFile, Nth: 4, Count: -1, Kind: faulty.Permanent})
		dst := t.TempDir()
		res, err := Restore(ctx, Source{Repo: r2, Point: rp.ID.Short(), Data: rp.VolumeData[0]}, dst, RestoreOptions{Writers: 1, Stop: stop})
		ents, _ := os.ReadDir(dst)
		return res, len(ents), err
	}
	res, _, err := restore(nil)
	if err != nil || len(res.Failed) < 2 {
		t.Fatalf("without Stop: %v, %d files failed; want the failures one by one", err, len(res.Failed))
	}
	failedOneByOne := len(res.Failed)
	res, written, err := restore(func(err error) bool { return errors.Is(err, storage.ErrPermanent) })
	if res != nil || !errors.Is(err, storage.ErrPermanent) || !strings.Contains(err.Error(), "restore stopped after") {
		t.Fatalf("with Stop: %+v, %v; want the storage error", res, err)
	}
	if written >= 30 {
		t.Errorf("with Stop: %d entries written, want the restore to stop early", written)
	}
	t.Logf("without Stop %d files failed one by one; with Stop the restore ended after %d entries: %v", failedOneByOne, written, err)
}

// thirtyFilesAndFaultyRepo makes a source of 30 files of 300 KiB and an
// empty repository (packs of 1 MiB) on a fault-injecting in-memory store.
func thirtyFilesAndFaultyRepo(t *testing.T) (string, *faulty.Backend, *repo.Repository) {
	t.Helper()
	src := t.TempDir()
	for i := 0; i < 30; i++ {
		must(t, os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", i)), randBytes(int64(i), 300<<10), 0o644))
	}
	fb := faulty.New(mem.New())
	r, err := repo.Init(context.Background(), fb, "pw", testKDF, repo.WithPackSize(1<<20))
	must(t, err)
	return src, fb, r
}
