//go:build !linux

package local

import "os"

// dropCache is Linux-only (posix_fadvise DONTNEED; see cache_linux.go).
func dropCache(f *os.File, off, n int64) {}
