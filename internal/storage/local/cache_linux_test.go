//go:build linux

package local

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/arca-backup/arca/internal/storage"
)

func mincore(m, vec []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		return errno
	}
	return nil
}

// residentPages counts the pages of the file at path in the page cache.
func residentPages(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if err := mincore(m, vec); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// TestSaveAndLoadLeaveNoPageCache: what Save wrote and Load read is not
// left in the page cache, where it would count against the pod's memory.
func TestSaveAndLoadLeaveNoPageCache(t *testing.T) {
	dir := t.TempDir()
	if fs, err := os.ReadFile("/proc/self/mounts"); err == nil && bytes.Contains(fs, []byte(" /tmp tmpfs ")) {
		t.Skip("tmpfs: its pages are the storage and are never dropped")
	}
	b, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 4<<20)
	rand.Read(data)
	h := storage.Handle{Type: storage.PackFile, Name: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
	ctx := context.Background()
	if err := b.Save(ctx, h, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	p, err := b.Path(h)
	if err != nil {
		t.Fatal(err)
	}
	pages := len(data) / os.Getpagesize()
	if n := residentPages(t, p); n > pages/10 {
		t.Errorf("after Save %d of %d pages are cached, want none", n, pages)
	}
	// A read through the cache, for comparison: the test can tell.
	if _, err := os.ReadFile(p); err != nil {
		t.Fatal(err)
	}
	if n := residentPages(t, p); n < pages/2 {
		t.Skipf("a plain read left only %d of %d pages cached: the page cache cannot be observed here", n, pages)
	}
	f, _ := os.Open(p)
	dropCache(f, 0, 0)
	f.Close()
	var got bytes.Buffer
	if err := b.Load(ctx, h, 1<<20, 1<<20, func(rd io.Reader) error { _, err := io.Copy(&got, rd); return err }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data[1<<20:2<<20]) {
		t.Fatal("Load returned other bytes")
	}
	// The range read is dropped; the kernel's read-ahead past it may stay.
	f, _ = os.Open(p)
	m, _ := unix.Mmap(int(f.Fd()), 1<<20, 1<<20, unix.PROT_READ, unix.MAP_SHARED)
	vec := make([]byte, len(m)/os.Getpagesize())
	if err := mincore(m, vec); err != nil {
		t.Fatal(err)
	}
	unix.Munmap(m)
	f.Close()
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	if n > len(vec)/10 {
		t.Errorf("after Load of 1 MiB, %d of its %d pages are cached, want none", n, len(vec))
	}
}
