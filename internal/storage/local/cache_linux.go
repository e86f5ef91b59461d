//go:build linux

package local

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCache asks the kernel to drop the cached pages of f in [off, off+n)
// (n = 0: to the end). A repository's files are written once and read back
// rarely, so keeping them cached only takes memory from the applications on
// the node, and from the extension: page cache counts against the memory
// cgroup of the pod that touched it (a 100,000-object backup wrote 58 MiB of
// packs, which stayed charged to the extension's pod). Written pages must be
// clean (fsynced) to be dropped. Advice only: errors are ignored.
func dropCache(f *os.File, off, n int64) {
	_ = unix.Fadvise(int(f.Fd()), off, n, unix.FADV_DONTNEED)
}
