package hostpath

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// SampleSparseSize is the apparent size of the sparse file WriteSampleTree
// writes; it holds only two 4 KiB data blocks.
const SampleSparseSize = 64 << 20

// WriteSampleTree fills dir (which must exist) with one entry of every kind
// a copy must keep: regular files (empty, text, 1 MiB of varied bytes,
// setuid, no permissions at all), nested directories with their own mode,
// owner and mtime, absolute, relative and dangling symlinks, a file with
// three hard links in two directories, a sparse file, a fifo, extended
// attributes on a file and a directory, and odd names. Owners are set to
// uids and gids that exist nowhere, times to fixed nanosecond values. It
// needs root (chown). Tests compare copies of it with DiffTrees.
func WriteSampleTree(dir string) error {
	w := &sampleWriter{root: dir}
	w.file("empty", nil, 0o644)
	w.file("hello.txt", []byte("hello, volume\n"), 0o644)
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>8)
	}
	w.file("data/big.bin", big, 0o640)
	w.file("data/setuid", []byte("#!/bin/sh\n"), 0o4755)
	w.file("data/locked", []byte("no access"), 0o000)
	w.file("name with spaces and \u00e9", []byte("odd name"), 0o600)
	w.mkdir("data/deep/er/est", 0o711)
	w.file("data/deep/er/est/leaf", []byte("leaf"), 0o444)
	w.mkdir("private", 0o700)
	w.mkdir("sticky", 0o1777)

	w.file("links/original", []byte("linked content"), 0o664)
	w.link("links/original", "links/second")
	w.link("links/original", "data/third")
	w.symlink("original", "links/relative")
	w.symlink("/etc/hostname", "links/absolute")
	w.symlink("does/not/exist", "links/dangling")
	w.symlink("../data", "links/dir")

	w.sparse("sparse.img")
	w.do("fifo", func(p string) error { return unix.Mkfifo(p, 0o620) })

	w.do("hello.txt", func(p string) error { return unix.Setxattr(p, "user.arca.checksum", []byte("sha256:abc"), 0) })
	w.do("data", func(p string) error { return unix.Setxattr(p, "user.arca.dir", []byte{0, 1, 2, 0xff}, 0) })

	// Owners and times last, deepest first, so nothing changes them later.
	owners := map[string][2]int{
		"hello.txt": {1001, 1001}, "data/big.bin": {2000, 3000}, "data/setuid": {0, 50},
		"private": {4242, 4343}, "links/original": {1500, 1600}, "links/relative": {1700, 1800},
		"sparse.img": {65534, 65534}, "data/deep/er": {77, 88},
	}
	for rel, o := range owners {
		w.do(rel, func(p string) error { return unix.Lchown(p, o[0], o[1]) })
	}
	// chown cleared the setuid bit.
	w.do("data/setuid", func(p string) error { return unix.Chmod(p, 0o4755) })
	base := time.Date(2024, 2, 29, 13, 14, 15, 123456789, time.UTC)
	for i, rel := range []string{
		"data/deep/er/est/leaf", "data/deep/er/est", "data/deep/er", "data/deep", "data/big.bin", "data/setuid",
		"data/locked", "data/third", "links/relative", "links/absolute", "links/dangling", "links/dir", "links",
		"sparse.img", "fifo", "hello.txt", "empty", "private", "sticky", "data", ".",
	} {
		ts := base.Add(time.Duration(i) * (time.Hour + 1))
		w.do(rel, func(p string) error {
			t := unix.NsecToTimespec(ts.UnixNano())
			return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{t, t}, unix.AT_SYMLINK_NOFOLLOW)
		})
	}
	return w.err
}

type sampleWriter struct {
	root string
	err  error
}

func (w *sampleWriter) do(rel string, f func(path string) error) {
	if w.err != nil {
		return
	}
	if err := f(filepath.Join(w.root, rel)); err != nil {
		w.err = fmt.Errorf("sample tree: %s: %w", rel, err)
	}
}

func (w *sampleWriter) mkdir(rel string, mode uint32) {
	w.do(rel, func(p string) error {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		return unix.Chmod(p, mode)
	})
}

func (w *sampleWriter) file(rel string, data []byte, mode uint32) {
	w.do(rel, func(p string) error {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return err
		}
		return unix.Chmod(p, mode)
	})
}

func (w *sampleWriter) link(from, to string) {
	w.do(to, func(p string) error { return os.Link(filepath.Join(w.root, from), p) })
}

func (w *sampleWriter) symlink(target, rel string) {
	w.do(rel, func(p string) error { return os.Symlink(target, p) })
}

// sparse writes a file of SampleSparseSize bytes with data only in its
// first and middle 4 KiB.
func (w *sampleWriter) sparse(rel string) {
	w.do(rel, func(p string) error {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		block := bytes.Repeat([]byte("sparse!\n"), 512)
		if _, err := f.WriteAt(block, 0); err != nil {
			return err
		}
		if _, err := f.WriteAt(block, SampleSparseSize/2); err != nil {
			return err
		}
		return f.Truncate(SampleSparseSize)
	})
}
