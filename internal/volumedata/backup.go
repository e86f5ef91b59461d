// Package volumedata moves a volume's files between a directory (or a
// block device) and the repository: the vault tier's data mover. A volume
// is stored as a file tree (docs/repository-format.md §15) whose file
// contents are content-defined chunks, so versions, volumes and clusters
// sharing a repository share their data. The package also gives
// file-level access to a stored volume: list, read, extract.
package volumedata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/restic/chunker"
	"golang.org/x/sys/unix"

	"github.com/arca-backup/arca/internal/repo"
)

// Progress is what a move has done so far. TotalBytes is an estimate for
// a backup (the file system's used bytes) and exact for a restore.
type Progress struct {
	Files      int64
	Bytes      int64
	TotalBytes int64
	Elapsed    time.Duration
}

// Rate is bytes per second so far.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Bytes) / p.Elapsed.Seconds()
}

// ETA estimates the time left (0 when unknown).
func (p Progress) ETA() time.Duration {
	r := p.Rate()
	if r <= 0 || p.TotalBytes <= p.Bytes {
		return 0
	}
	return time.Duration(float64(p.TotalBytes-p.Bytes) / r * float64(time.Second))
}

// BackupOptions tune Backup.
type BackupOptions struct {
	// Name is recorded as the volume's name ("namespace/claim").
	Name string
	// Readers is the number of files read at once (default 4 × GOMAXPROCS).
	Readers int
	// Progress, if set, is called about every ProgressEvery (default 1 s)
	// and once at the end.
	Progress      func(Progress)
	ProgressEvery time.Duration
}

// Warning is something a move could not carry over faithfully.
type Warning struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// BackupResult is the stored volume and what could not be stored faithfully.
type BackupResult struct {
	Volume   repo.VolumeData
	Warnings []Warning
}

// smallFile: files up to this size are read whole and stored as one blob,
// which is exactly what content-defined chunking yields for them (the
// chunker's minimum chunk), without a stream pipeline per file.
const smallFile = chunker.MinSize

// maxStreams bounds the large files moved at once, in backup and restore:
// each holds up to a few 8 MiB chunks (the mover's memory budget).
const maxStreams = 2

// item is one entry on its way into the file tree, in tree order.
type item struct {
	e    repo.FileEntry
	abs  string
	done chan struct{} // closed when e.Blobs is filled (content entries only)
	err  error
	warn string
}

// Backup stores the file tree under source (a directory, or a block device
// for a block-mode volume) through w and returns its record. It does not
// commit: the caller puts the record into a recovery point. Files are read
// by several goroutines; entries are written in tree order, so an
// unchanged volume gives the same tree blobs and stores nothing new.
func Backup(ctx context.Context, w *repo.Writer, source string, opts BackupOptions) (*BackupResult, error) {
	start := time.Now()
	newBefore := w.Stats().NewBytes
	var st unix.Stat_t
	if err := unix.Stat(source, &st); err != nil {
		return nil, fmt.Errorf("volume source %s: %w", source, err)
	}
	if opts.Readers <= 0 {
		opts.Readers = 4 * runtime.GOMAXPROCS(0)
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = time.Second
	}
	var files, bytes atomic.Int64
	var total int64
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		var fs unix.Statfs_t
		if unix.Statfs(source, &fs) == nil {
			total = int64(fs.Blocks-fs.Bfree) * int64(fs.Bsize)
		}
	}
	stopProgress := startProgress(opts.Progress, opts.ProgressEvery, start, &files, &bytes, func() int64 { return total })

	res := &BackupResult{Volume: repo.VolumeData{Name: opts.Name}}
	var (
		tree repo.Tree
		err  error
	)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		tree, err = backupDir(ctx, w, source, opts, &files, &bytes, res)
	case unix.S_IFBLK, unix.S_IFREG:
		res.Volume.Block = true
		tree, err = backupBlock(ctx, w, source, &files, &bytes)
	default:
		err = fmt.Errorf("volume source %s is neither a directory nor a block device", source)
	}
	stopProgress()
	if err != nil {
		return nil, err
	}
	res.Volume.Tree = tree
	res.Volume.Files = files.Load()
	res.Volume.Bytes = bytes.Load()
	res.Volume.NewBytes = w.Stats().NewBytes - newBefore
	res.Volume.DurationSeconds = time.Since(start).Seconds()
	return res, nil
}

// startProgress calls fn every period until the returned stop is called,
// and once more then.
func startProgress(fn func(Progress), every time.Duration, start time.Time, files, bytes *atomic.Int64, total func() int64) func() {
	if fn == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	report := func() {
		fn(Progress{Files: files.Load(), Bytes: bytes.Load(), TotalBytes: total(), Elapsed: time.Since(start)})
	}
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				report()
			case <-done:
				return
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		report()
	}
}

// backupBlock stores a block device (or an image file) as one stream.
func backupBlock(ctx context.Context, w *repo.Writer, source string, files, bytes *atomic.Int64) (repo.Tree, error) {
	f, err := os.Open(source)
	if err != nil {
		return repo.Tree{}, fmt.Errorf("block volume: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return repo.Tree{}, fmt.Errorf("block volume %s: size: %w", source, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return repo.Tree{}, err
	}
	ids, n, err := w.PutStream(ctx, &countingReader{r: f, n: bytes})
	if err != nil {
		return repo.Tree{}, fmt.Errorf("block volume %s: %w", source, err)
	}
	if n != size {
		return repo.Tree{}, fmt.Errorf("block volume %s: read %d bytes, its size is %d", source, n, size)
	}
	files.Add(1)
	ft := w.NewFileTree()
	if err := ft.Add(ctx, repo.FileEntry{Type: repo.FileBlockVolume, Size: size, Blobs: ids}); err != nil {
		return repo.Tree{}, err
	}
	return ft.Close(ctx)
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type inode struct{ dev, ino uint64 }

// backupDir walks source in tree order (a goroutine), has readers store
// file contents in parallel, and adds the entries to the file tree in
// order as their contents complete.
func backupDir(ctx context.Context, w *repo.Writer, source string, opts BackupOptions, files, bytes *atomic.Int64, res *BackupResult) (repo.Tree, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ordered := make(chan *item, 4096)
	work := make(chan *item)
	var walkErr error
	go func() {
		defer close(ordered)
		defer close(work)
		walkErr = walk(ctx, source, ordered, work)
	}()
	var wg sync.WaitGroup
	streams := make(chan struct{}, maxStreams)
	for i := 0; i < opts.Readers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				it.err = storeContent(ctx, w, it, bytes, streams)
				close(it.done)
			}
		}()
	}
	defer wg.Wait()
	ft := w.NewFileTree()
	var firstErr error
	for it := range ordered {
		if firstErr != nil {
			continue // drain: the walker stops on the cancelled context
		}
		if it.done != nil {
			select {
			case <-it.done:
			case <-ctx.Done():
				firstErr = ctx.Err()
				cancel()
				continue
			}
		}
		if it.err != nil {
			firstErr = it.err
			cancel()
			continue
		}
		if it.warn != "" {
			res.Warnings = append(res.Warnings, Warning{Path: it.e.Path, Message: it.warn})
		}
		if err := ft.Add(ctx, it.e); err != nil {
			firstErr = err
			cancel()
			continue
		}
		files.Add(1)
	}
	if firstErr == nil && walkErr != nil {
		firstErr = walkErr
	}
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return repo.Tree{}, firstErr
	}
	return ft.Close(ctx)
}

// walk sends every entry under root in tree order to ordered, and the
// regular files with content also to work.
func walk(ctx context.Context, root string, ordered, work chan<- *item) error {
	links := map[inode]string{}
	send := func(it *item) error {
		select {
		case ordered <- it:
		case <-ctx.Done():
			return ctx.Err()
		}
		if it.done != nil {
			select {
			case work <- it:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	var visit func(rel, abs string) error
	visit = func(rel, abs string) error {
		it, err := statEntry(rel, abs, links)
		if err != nil {
			return err
		}
		if err := send(it); err != nil {
			return err
		}
		if it.e.Type != repo.FileDir {
			return nil
		}
		names, err := readDirNames(abs)
		if err != nil {
			return fmt.Errorf("read directory %s: %w", abs, err)
		}
		for _, n := range names {
			r := n
			if rel != "" {
				r = rel + "/" + n
			}
			if err := visit(r, filepath.Join(abs, n)); err != nil {
				return err
			}
		}
		return nil
	}
	return visit("", root)
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// statEntry describes one file: type, metadata, xattrs, and for a regular
// file its data extents (holes skipped) or a hard link to an earlier name.
func statEntry(rel, abs string, links map[inode]string) (*item, error) {
	var st unix.Stat_t
	if err := unix.Lstat(abs, &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", abs, err)
	}
	it := &item{abs: abs, e: repo.FileEntry{
		Path: rel, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid,
		MTime: st.Mtim.Sec*1e9 + st.Mtim.Nsec,
	}}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		it.e.Type = repo.FileDir
	case unix.S_IFREG:
		it.e.Type = repo.FileRegular
		if st.Nlink > 1 {
			k := inode{uint64(st.Dev), st.Ino}
			if first, ok := links[k]; ok {
				it.e = repo.FileEntry{Type: repo.FileHardlink, Path: rel, Link: first}
				return it, nil
			}
			links[k] = rel
		}
		it.e.Size = st.Size
		if st.Size > 0 {
			it.done = make(chan struct{})
			if st.Blocks*512 < st.Size {
				ext, err := dataExtents(abs, st.Size)
				if err != nil {
					return nil, fmt.Errorf("find holes in %s: %w", abs, err)
				}
				it.e.Extents = ext
			}
		}
	case unix.S_IFLNK:
		it.e.Type = repo.FileSymlink
		target, err := os.Readlink(abs)
		if err != nil {
			return nil, fmt.Errorf("read link %s: %w", abs, err)
		}
		it.e.Link = target
	case unix.S_IFIFO:
		it.e.Type = repo.FileFIFO
	case unix.S_IFCHR:
		it.e.Type = repo.FileCharDevice
		it.e.Rdev = uint64(st.Rdev)
	case unix.S_IFBLK:
		it.e.Type = repo.FileBlockDevice
		it.e.Rdev = uint64(st.Rdev)
	case unix.S_IFSOCK:
		it.e.Type = repo.FileSocket
	default:
		return nil, fmt.Errorf("%s: unknown file type %o", abs, st.Mode&unix.S_IFMT)
	}
	xs, err := readXattrs(abs)
	if err != nil {
		it.warn = fmt.Sprintf("extended attributes not read: %v", err)
	}
	it.e.Xattrs = xs
	return it, nil
}

// dataExtents lists a file's data regions with SEEK_DATA / SEEK_HOLE. A
// file that is all data gives nil.
func dataExtents(path string, size int64) ([]repo.Extent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fd := int(f.Fd())
	var out []repo.Extent
	off := int64(0)
	for off < size {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole remains
		}
		if err != nil {
			return nil, err
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		hole = min(hole, size)
		if hole > data {
			out = append(out, repo.Extent{Offset: data, Length: hole - data})
		}
		off = hole
	}
	if len(out) == 1 && out[0].Offset == 0 && out[0].Length == size {
		return nil, nil
	}
	if out == nil {
		out = []repo.Extent{} // all hole: no content, but not "all data"
	}
	return out, nil
}

// readXattrs returns a file's extended attributes sorted by name (none:
// nil). A file system without xattr support gives nil, no error.
func readXattrs(path string) ([]repo.Xattr, error) {
	buf := make([]byte, 1024)
	var n int
	var err error
	for {
		n, err = unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		break
	}
	if errors.Is(err, unix.ENOTSUP) || n == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := splitNul(buf[:n])
	sort.Strings(names)
	var out []repo.Xattr
	val := make([]byte, 4096)
	for _, name := range names {
		var m int
		for {
			m, err = unix.Lgetxattr(path, name, val)
			if errors.Is(err, unix.ERANGE) {
				val = make([]byte, len(val)*4)
				continue
			}
			break
		}
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return out, fmt.Errorf("xattr %s: %w", name, err)
		}
		out = append(out, repo.Xattr{Name: name, Value: append([]byte(nil), val[:m]...)})
	}
	return out, nil
}

func splitNul(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			if i > start {
				out = append(out, string(b[start:i]))
			}
			start = i + 1
		}
	}
	return out
}

var smallBufs = sync.Pool{New: func() any { b := make([]byte, smallFile); return &b }}

// storeContent stores a regular file's data: small files whole as one
// blob, others (and sparse ones) through the content-defined chunker.
func storeContent(ctx context.Context, w *repo.Writer, it *item, bytes *atomic.Int64, streams chan struct{}) error {
	f, err := os.Open(it.abs)
	if err != nil {
		return fmt.Errorf("open %s: %w", it.abs, err)
	}
	defer f.Close()
	e := &it.e
	if e.Extents == nil && e.Size <= smallFile {
		bp := smallBufs.Get().(*[]byte)
		defer smallBufs.Put(bp)
		buf := (*bp)[:e.Size]
		n, err := io.ReadFull(f, buf)
		if err != nil {
			return fmt.Errorf("read %s: %w (%d of %d bytes: did the file change during the backup?)", it.abs, err, n, e.Size)
		}
		id, err := w.PutBlob(ctx, buf)
		if err != nil {
			return fmt.Errorf("store %s: %w", it.abs, err)
		}
		e.Blobs = []repo.ID{id}
		bytes.Add(int64(n))
		return nil
	}
	// Large files go through PutStream, which chunks, compresses and
	// encrypts in parallel itself; a few at once keep both cores busy,
	// more would only hold more 8 MiB chunks in memory.
	select {
	case streams <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-streams }()
	var rd io.Reader = f
	want := e.Size
	if e.Extents != nil {
		rs := make([]io.Reader, len(e.Extents))
		want = 0
		for i, x := range e.Extents {
			rs[i] = io.NewSectionReader(f, x.Offset, x.Length)
			want += x.Length
		}
		rd = io.MultiReader(rs...)
	}
	ids, n, err := w.PutStream(ctx, &countingReader{r: io.LimitReader(rd, want), n: bytes})
	if err != nil {
		return fmt.Errorf("store %s: %w", it.abs, err)
	}
	if n != want {
		return fmt.Errorf("read %s: %d of %d bytes (did the file change during the backup?)", it.abs, n, want)
	}
	e.Blobs = ids
	return nil
}

// WarnFileNotFaithful is the warning code of a file whose data was stored
// but one of whose attributes (extended attributes) could not be read.
const WarnFileNotFaithful = "VolumeFileNotFaithful"

// MoverResult is what `arca datamover backup` prints (JSON) and writes to
// its --result-file (in a data-mover pod, the container's termination
// message, which the extension reads): the holder recovery point that
// holds the volume, and the volume's record.
type MoverResult struct {
	RecoveryPoint string          `json:"recoveryPoint"`
	Volume        repo.VolumeData `json:"volume"`
	Warnings      []Warning       `json:"warnings,omitempty"`
	// WarningsOmitted counts warnings left out to fit a termination
	// message (MaxResultBytes).
	WarningsOmitted int `json:"warningsOmitted,omitempty"`
}

// MaxResultBytes bounds the result file: the kubelet keeps at most 4096
// bytes of a termination message.
const MaxResultBytes = 4000

// Fit drops warnings from the end until the JSON encoding is at most max
// bytes, counting them in WarningsOmitted.
func (r MoverResult) Fit(max int) ([]byte, error) {
	for {
		b, err := json.Marshal(r)
		if err != nil || len(b) <= max || len(r.Warnings) == 0 {
			return b, err
		}
		r.Warnings = r.Warnings[:len(r.Warnings)-1]
		r.WarningsOmitted++
	}
}

// MoverProgressLine is one line of `arca datamover backup --progress-json`
// on stderr: {"moverProgress":{…}}.
type MoverProgressLine struct {
	Progress *MoverProgress `json:"moverProgress"`
}

// MoverProgress is a mover's progress as it reports it.
type MoverProgress struct {
	Files      int64 `json:"files"`
	Bytes      int64 `json:"bytes"`
	TotalBytes int64 `json:"totalBytes"`
}
