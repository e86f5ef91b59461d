package hostpath

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// DiffTrees compares the trees at a and b the way copies must agree and
// returns one line per difference (none when they are faithful copies):
// file type, permission bits, owner, group, modification time (to the
// nanosecond), size, content, symlink target, device number, extended
// attributes, which paths are hard links of each other, and, for sparse
// files, that the copy is no less sparse than the original. The roots' own
// times are compared too. Access times are not: reading a tree changes
// them.
func DiffTrees(a, b string) ([]string, error) {
	d := &differ{linksA: map[inode]string{}, linksB: map[inode]string{}}
	if err := d.walk(a, b, "."); err != nil {
		return nil, err
	}
	return d.diffs, nil
}

type differ struct {
	diffs          []string
	linksA, linksB map[inode]string // inode → first relative path seen
}

func (d *differ) add(rel, format string, args ...any) {
	d.diffs = append(d.diffs, rel+": "+fmt.Sprintf(format, args...))
}

func (d *differ) walk(rootA, rootB, rel string) error {
	pa, pb := filepath.Join(rootA, rel), filepath.Join(rootB, rel)
	var sa, sb unix.Stat_t
	if err := unix.Lstat(pa, &sa); err != nil {
		return fmt.Errorf("stat %s: %w", pa, err)
	}
	if err := unix.Lstat(pb, &sb); err != nil {
		if os.IsNotExist(err) {
			d.add(rel, "missing in %s", rootB)
			return nil
		}
		return fmt.Errorf("stat %s: %w", pb, err)
	}
	ta, tb := sa.Mode&unix.S_IFMT, sb.Mode&unix.S_IFMT
	if ta != tb {
		d.add(rel, "type %#o, copy has %#o", ta, tb)
		return nil
	}
	if ta != unix.S_IFLNK && sa.Mode&0o7777 != sb.Mode&0o7777 {
		d.add(rel, "mode %#o, copy has %#o", sa.Mode&0o7777, sb.Mode&0o7777)
	}
	if sa.Uid != sb.Uid || sa.Gid != sb.Gid {
		d.add(rel, "owner %d:%d, copy has %d:%d", sa.Uid, sa.Gid, sb.Uid, sb.Gid)
	}
	if sa.Mtim != sb.Mtim {
		d.add(rel, "mtime %d.%09d, copy has %d.%09d", sa.Mtim.Sec, sa.Mtim.Nsec, sb.Mtim.Sec, sb.Mtim.Nsec)
	}
	if err := d.xattrs(rel, pa, pb); err != nil {
		return err
	}
	if ta != unix.S_IFDIR {
		fa, seenA := d.linksA[inode{uint64(sa.Dev), sa.Ino}]
		fb, seenB := d.linksB[inode{uint64(sb.Dev), sb.Ino}]
		switch {
		case seenA != seenB || fa != fb:
			d.add(rel, "hard link of %q, copy is a hard link of %q", fa, fb)
		case sa.Nlink > 1 || sb.Nlink > 1:
			d.linksA[inode{uint64(sa.Dev), sa.Ino}] = rel
			d.linksB[inode{uint64(sb.Dev), sb.Ino}] = rel
		}
		if seenA && seenB {
			return nil // content already compared
		}
	}
	switch ta {
	case unix.S_IFDIR:
		na, err := names(pa)
		if err != nil {
			return err
		}
		nb, err := names(pb)
		if err != nil {
			return err
		}
		for _, n := range nb {
			if _, found := slices.BinarySearch(na, n); !found {
				d.add(filepath.Join(rel, n), "not in %s but in the copy", rootA)
			}
		}
		for _, n := range na {
			if err := d.walk(rootA, rootB, filepath.Join(rel, n)); err != nil {
				return err
			}
		}
	case unix.S_IFREG:
		if sa.Size != sb.Size {
			d.add(rel, "size %d, copy has %d", sa.Size, sb.Size)
			return nil
		}
		same, err := sameContent(pa, pb)
		if err != nil {
			return err
		}
		if !same {
			d.add(rel, "content differs")
		}
		// A copy may be sparser than its original (zeros it chose not to
		// allocate), never less: 512-byte blocks, with one block of slack
		// per file system block for the tail.
		if sb.Blocks > sa.Blocks+int64(sb.Blksize/512) {
			d.add(rel, "%d blocks allocated, copy has %d (holes filled)", sa.Blocks, sb.Blocks)
		}
	case unix.S_IFLNK:
		la, err := os.Readlink(pa)
		if err != nil {
			return err
		}
		lb, err := os.Readlink(pb)
		if err != nil {
			return err
		}
		if la != lb {
			d.add(rel, "symlink to %q, copy points to %q", la, lb)
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if sa.Rdev != sb.Rdev {
			d.add(rel, "device %#x, copy has %#x", sa.Rdev, sb.Rdev)
		}
	}
	return nil
}

func (d *differ) xattrs(rel, pa, pb string) error {
	na, err := listXattrs(pa)
	if err != nil {
		return err
	}
	nb, err := listXattrs(pb)
	if err != nil {
		return err
	}
	slices.Sort(na)
	slices.Sort(nb)
	if !slices.Equal(na, nb) {
		d.add(rel, "extended attributes %q, copy has %q", na, nb)
		return nil
	}
	for _, n := range na {
		va, err := getXattr(pa, n)
		if err != nil {
			return err
		}
		vb, err := getXattr(pb, n)
		if err != nil {
			return err
		}
		if !bytes.Equal(va, vb) {
			d.add(rel, "extended attribute %s = %q, copy has %q", n, va, vb)
		}
	}
	return nil
}

func names(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, err
	}
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Name()
	}
	return out, nil
}

func sameContent(a, b string) (bool, error) {
	fa, err := os.OpenFile(a, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.OpenFile(b, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<16), make([]byte, 1<<16)
	for {
		n, errA := io.ReadFull(fa, ba)
		m, errB := io.ReadFull(fb, bb)
		if !bytes.Equal(ba[:n], bb[:m]) {
			return false, nil
		}
		if errA == io.EOF || errA == io.ErrUnexpectedEOF {
			return errB == io.EOF || errB == io.ErrUnexpectedEOF, nil
		}
		if errA != nil {
			return false, errA
		}
		if errB != nil {
			return false, errB
		}
	}
}
