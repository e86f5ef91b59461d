package cli

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestChownTree: everything under the root, the root included, ends up
// owned by the uid; what already is is left alone.
func TestChownTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "data", "ab"), 0o755)
	os.WriteFile(filepath.Join(root, "data", "ab", "pack"), []byte("x"), 0o644)
	os.Symlink("/etc/passwd", filepath.Join(root, "link"))
	n, err := ChownTree(root, 4242)
	if err != nil || n != 5 {
		t.Fatalf("ChownTree: %d %v", n, err)
	}
	for _, p := range []string{root, filepath.Join(root, "data", "ab", "pack"), filepath.Join(root, "link")} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 4242 || st.Gid != 4242 {
			t.Errorf("%s owned by %d:%d", p, st.Uid, st.Gid)
		}
	}
	if fi, _ := os.Stat("/etc/passwd"); fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatal("the symlink's target was changed")
	}
	// A directory the uid owns is not entered: what is in it is the
	// extension's (and with CAP_CHOWN alone its 0700 directories are closed).
	os.WriteFile(filepath.Join(root, "data", "ab", "by-root"), []byte("x"), 0o644)
	if n, err := ChownTree(root, 4242); err != nil || n != 0 {
		t.Fatalf("second run changed %d: %v", n, err)
	}
}
