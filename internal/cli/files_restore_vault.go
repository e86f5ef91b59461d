package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/units"
	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/volumedata"
)

// CodeFilesRestoreTooLarge: a `files restore` through the vault selected
// more data than --max-bytes allows.
const CodeFilesRestoreTooLarge = "FilesRestoreTooLarge"

// DefaultVaultRestoreMaxBytes bounds a `files restore` through the vault:
// every 512 KiB of content is one query answered by the extension (and
// stored in etcd until read), and each window of a file reads the file from
// its start in the repository, so large restores belong to --repo.
const DefaultVaultRestoreMaxBytes = 1 << 30

// vaultFiles reads a vault-tier volume through the vault's API, which asks
// the cluster's extension (RecoveryPointQuery, kind Files): the same trust
// checks and roles as `files ls|cat`.
type vaultFiles struct {
	c             *client.Client
	vault, point  string
	volume        string
	queries, read int64
}

// list returns the entries of a directory (all pages), or the one entry
// of a file.
func (v *vaultFiles) list(ctx context.Context, p string) ([]v1alpha1.QueryFile, error) {
	req := service.FilesRequest{Volume: v.volume, Path: p}
	var out []v1alpha1.QueryFile
	for range maxPages {
		res, err := v.c.RecoveryPointFiles(ctx, v.vault, v.point, req)
		v.queries++
		if err != nil {
			return nil, err
		}
		out = append(out, res.Files...)
		if res.Continue == "" {
			return out, nil
		}
		req.Continue = res.Continue
	}
	return nil, fmt.Errorf("listing %s: more than %d pages", p, maxPages)
}

// readTo writes the content of the file at p into f, window by window;
// windows of zeros are left as holes (f is truncated to the size after).
func (v *vaultFiles) readTo(ctx context.Context, p string, f *os.File) (int64, error) {
	req := service.FilesRequest{Volume: v.volume, Path: p, Read: true}
	var size int64
	for {
		res, err := v.c.RecoveryPointFiles(ctx, v.vault, v.point, req)
		v.queries++
		if err != nil {
			return 0, err
		}
		size = res.Size
		if len(res.Data) > 0 && !allZero(res.Data) {
			if _, err := f.WriteAt(res.Data, req.Offset); err != nil {
				return 0, err
			}
		}
		v.read += int64(len(res.Data))
		req.Offset += int64(len(res.Data))
		if res.EOF || len(res.Data) == 0 {
			break
		}
	}
	return size, f.Truncate(size)
}

func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroWindow))
		if !bytes.Equal(b[:n], zeroWindow[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

var zeroWindow = make([]byte, 64<<10)

// vaultFilesRestore extracts the file or directory at p of a vault-tier
// volume into target through the vault: it lists the selection directory
// by directory, refuses it when its data exceeds maxBytes (naming the
// limit and --repo), then writes directories, files (holes kept),
// symlinks, hard links and FIFOs with their modes, owners (when allowed)
// and modification times, as the --repo path does. Extended attributes
// and device nodes are not in the vault's answer: each is a warning.
func vaultFilesRestore(ctx context.Context, o *PolicyScope, ref *VolumeRef, p, target string, maxBytes int64, stdout, stderr io.Writer) error {
	if ref.RecoveryPoint == "" {
		return &UsageError{errors.New("--recovery-point is required (the vault's recovery point ID; or --repo and a repository ID)")}
	}
	if maxBytes <= 0 {
		return &UsageError{fmt.Errorf("--max-bytes must be positive (default %d)", DefaultVaultRestoreMaxBytes)}
	}
	sel := "/" + strings.Trim(path.Clean("/"+p), "/")
	c, err := o.client()
	if err != nil {
		return err
	}
	start := time.Now()
	v := &vaultFiles{c: c, vault: o.Vault, point: ref.RecoveryPoint, volume: ref.Volume}
	// Pass 1: what the selection holds. A file's listing is itself; a
	// directory's is its children; the directory's own entry is in its
	// parent's listing.
	top, err := v.list(ctx, sel)
	if err != nil {
		return err
	}
	var selected *v1alpha1.QueryFile
	if len(top) == 1 && top[0].Path == sel && top[0].Type != "dir" {
		selected = &top[0]
		top = nil
	} else if sel != "/" {
		siblings, err := v.list(ctx, path.Dir(sel))
		if err != nil {
			return err
		}
		for i := range siblings {
			if siblings[i].Path == sel {
				selected = &siblings[i]
			}
		}
	}
	entries := []v1alpha1.QueryFile{}
	if selected != nil {
		entries = append(entries, *selected)
	}
	var need int64
	if selected != nil && selected.Type == "file" {
		need = selected.Size
	}
	var walk func(children []v1alpha1.QueryFile) error
	walk = func(children []v1alpha1.QueryFile) error {
		for _, e := range children {
			entries = append(entries, e)
			if e.Type == "file" {
				need += e.Size
			}
			if need > maxBytes {
				return fmt.Errorf("%s: %s of volume %s in recovery point %s holds more than %d bytes (%s), the limit of a restore through the vault (--max-bytes); "+
					"restore it from the repository instead: arca recovery-point files restore --repo URL --recovery-point ID --volume %s %s %s",
					CodeFilesRestoreTooLarge, sel, volumeName(ref.Volume), ref.RecoveryPoint, maxBytes, units.Bytes(maxBytes), volumeName(ref.Volume), sel, target)
			}
			if e.Type == "dir" {
				sub, err := v.list(ctx, e.Path)
				if err != nil {
					return err
				}
				if err := walk(sub); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if selected == nil || selected.Type == "dir" {
		if err := walk(top); err != nil {
			return err
		}
	}
	// Reading content needs more than listing (the storage location's
	// data): ask once, before anything is written.
	for _, e := range entries {
		if e.Type == "file" {
			if _, err := v.c.RecoveryPointFiles(ctx, v.vault, v.point, service.FilesRequest{Volume: v.volume, Path: e.Path, Read: true, Length: 1}); err != nil {
				return err
			}
			v.queries++
			break
		}
	}
	// Pass 2: write.
	if selected == nil || selected.Type == "dir" {
		if err := os.MkdirAll(target, 0o700); err != nil {
			return fmt.Errorf("target: %w", err)
		}
	} else if fi, err := os.Stat(target); err == nil && fi.IsDir() {
		target = filepath.Join(target, path.Base(sel))
	}
	dest := func(q string) string {
		if q == sel {
			return target
		}
		return filepath.Join(target, filepath.FromSlash(strings.TrimPrefix(q, strings.TrimSuffix(sel, "/")+"/")))
	}
	within := func(q string) bool { return sel == "/" || q == sel || strings.HasPrefix(q, sel+"/") }
	res := &volumedata.RestoreResult{}
	fail := func(q string, err error) {
		res.Failed = append(res.Failed, volumedata.FileError{Path: q, Err: err, Msg: err.Error()})
	}
	warn := func(q, msg string) { res.Warnings = append(res.Warnings, volumedata.Warning{Path: q, Message: msg}) }
	root := os.Geteuid() == 0
	meta := func(e v1alpha1.QueryFile, dst string) {
		if err := unix.Lchown(dst, int(e.UID), int(e.GID)); err != nil && (root || !errors.Is(err, unix.EPERM)) {
			warn(e.Path, fmt.Sprintf("owner %d:%d not set: %v", e.UID, e.GID, err))
		}
		if e.Type != "symlink" {
			mode, err := strconv.ParseUint(e.Mode, 8, 32)
			if err == nil {
				err = unix.Fchmodat(unix.AT_FDCWD, dst, uint32(mode), 0)
			}
			if err != nil {
				warn(e.Path, fmt.Sprintf("mode %s not set: %v", e.Mode, err))
			}
		}
		mt := e.Modified.UnixNano()
		if e.ModifiedNanos != 0 {
			mt = e.ModifiedNanos
		}
		ts := unix.NsecToTimespec(mt)
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			warn(e.Path, fmt.Sprintf("mtime not set: %v", err))
		}
	}
	pr := NewProgressRenderer(stderr, "restore "+sel)
	var dirs []v1alpha1.QueryFile
	var links []v1alpha1.QueryFile
	var abort error // not about one file (refused, vault unreachable): the restore stops
	writeFile := func(e v1alpha1.QueryFile, dst string) {
		f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			fail(e.Path, fmt.Errorf("create %s: %w", dst, err))
			return
		}
		n, err := v.readTo(ctx, e.Path, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(dst)
			fail(e.Path, err)
			if !fileOnly(err) {
				abort = err
			}
			return
		}
		meta(e, dst)
		res.Files++
		res.Bytes += n
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if abort != nil {
			return fmt.Errorf("files restore through the vault stopped after %d entries (%d bytes) were written into %s: %w", res.Files, res.Bytes, target, abort)
		}
		dst := dest(e.Path)
		switch e.Type {
		case "dir":
			if err := os.Mkdir(dst, 0o700); err != nil && !os.IsExist(err) {
				fail(e.Path, fmt.Errorf("mkdir %s: %w", dst, err))
				continue
			}
			dirs = append(dirs, e)
			res.Files++
		case "file":
			writeFile(e, dst)
		case "hardlink":
			if within("/" + strings.TrimPrefix(e.Link, "/")) {
				links = append(links, e) // linked once every file is written
				continue
			}
			// Its first name is outside the selection: this name holds
			// the content (the vault reads through the link) and the
			// first name's metadata.
			first := "/" + strings.TrimPrefix(e.Link, "/")
			siblings, err := v.list(ctx, path.Dir(first))
			if err != nil {
				fail(e.Path, err)
				continue
			}
			found := false
			for _, f := range siblings {
				if f.Path == first {
					f.Path, found = e.Path, true
					writeFile(f, dst)
				}
			}
			if !found {
				fail(e.Path, fmt.Errorf("hard link %s: its first name %s is not in the volume", e.Path, first))
			}
		case "symlink":
			_ = os.Remove(dst)
			if err := os.Symlink(e.Link, dst); err != nil {
				fail(e.Path, fmt.Errorf("symlink %s: %w", dst, err))
				continue
			}
			meta(e, dst)
			res.Files++
		case "fifo":
			_ = os.Remove(dst)
			if err := unix.Mkfifo(dst, 0o600); err != nil {
				fail(e.Path, fmt.Errorf("mkfifo %s: %w", dst, err))
				continue
			}
			meta(e, dst)
			res.Files++
		case "socket":
			// Made by the program that listens on it.
		default:
			warn(e.Path, fmt.Sprintf("a %s is not restored through the vault (its device number is not in the vault's answer); use --repo", e.Type))
		}
		pr.Update(Progress{Phase: "restore", ItemsDone: res.Files, BytesDone: res.Bytes, BytesTotal: need, Elapsed: time.Since(start)})
	}
	if abort != nil {
		return fmt.Errorf("files restore through the vault stopped after %d entries (%d bytes) were written into %s: %w", res.Files, res.Bytes, target, abort)
	}
	for _, e := range links {
		dst, first := dest(e.Path), dest("/"+strings.TrimPrefix(e.Link, "/"))
		_ = os.Remove(dst)
		if err := os.Link(first, dst); err != nil {
			fail(e.Path, fmt.Errorf("link %s to %s: %w", dst, first, err))
			continue
		}
		res.Files++
	}
	// Directories last, deepest first: writing into a directory changes
	// its mtime, and a read-only mode would refuse the writes.
	for i := len(dirs) - 1; i >= 0; i-- {
		meta(dirs[i], dest(dirs[i].Path))
	}
	if sel == "/" {
		warn("/", "the volume's root directory keeps the target's own mode and times (the vault lists a directory's children, not the root itself)")
	}
	pr.Done(Progress{Phase: "restored", ItemsDone: res.Files, BytesDone: res.Bytes, Elapsed: time.Since(start)})
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "warning: %s: %s\n", w.Path, w.Message)
	}
	fmt.Fprintf(stderr, "%d queries through the vault\n", v.queries)
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", b)
	return res.Err()
}

// fileOnly reports whether err concerns one file (its data could not be
// read: a damaged pack, QueryFailed), so that the rest of the restore
// proceeds, as with --repo.
func fileOnly(err error) bool {
	var ae *client.Error
	return errors.As(err, &ae) && (ae.Code == v1alpha1.CodeQueryFailed || ae.Code == v1alpha1.CodePathNotFound)
}

func volumeName(v string) string {
	if v == "" {
		return "(the point's only volume)"
	}
	return v
}
