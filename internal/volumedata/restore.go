package volumedata

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/units"
)

// ErrPathNotFound: the path is not in the volume.
var ErrPathNotFound = errors.New("path not found in the volume")

// ErrTargetTooSmall: the target cannot hold the data; nothing was written.
var ErrTargetTooSmall = errors.New("target too small")

// Source names what is being read, for errors: the recovery point and the
// volume.
type Source struct {
	Repo  repo.Reader
	Point string // recovery point ID (for messages)
	Data  repo.VolumeData
}

func (s Source) String() string {
	if s.Point == "" {
		return fmt.Sprintf("volume %s", s.Data.Name)
	}
	return fmt.Sprintf("volume %s of recovery point %s", s.Data.Name, s.Point)
}

// RestoreOptions tune Restore.
type RestoreOptions struct {
	// Path selects a file or directory of the volume ("" or "/": all). The
	// selected entry is restored as target itself: a directory's content
	// goes into target, a file becomes target (or target/<name> when
	// target is an existing directory).
	Path string
	// Writers is the number of files written at once (default 4 × GOMAXPROCS).
	Writers       int
	Progress      func(Progress)
	ProgressEvery time.Duration
	// Stop, when set, tells which errors end the whole restore rather
	// than one file (the repository unreachable: every other file would
	// fail the same way, each after its own retries). Restore then
	// returns that error.
	Stop func(error) bool
}

// FileError is a file a restore could not write; the rest proceeds.
type FileError struct {
	Path string `json:"path"`
	Err  error  `json:"-"`
	Msg  string `json:"error"`
}

func (e FileError) Error() string { return e.Msg }

// RestoreResult says what a restore did.
type RestoreResult struct {
	Files    int64       `json:"files"`
	Bytes    int64       `json:"bytes"`
	Failed   []FileError `json:"failed,omitempty"`
	Warnings []Warning   `json:"warnings,omitempty"`
}

// Err summarises failed files as one error (nil if none failed).
func (r *RestoreResult) Err() error {
	if len(r.Failed) == 0 {
		return nil
	}
	msgs := make([]string, 0, min(len(r.Failed), 10))
	for i, f := range r.Failed {
		if i == 10 {
			msgs = append(msgs, fmt.Sprintf("… and %d more", len(r.Failed)-10))
			break
		}
		msgs = append(msgs, f.Msg)
	}
	return fmt.Errorf("%d files not restored (the others are): %s", len(r.Failed), strings.Join(msgs, "; "))
}

// cleanPath turns a user's path into a file-tree path.
func cleanPath(p string) (string, error) {
	p = strings.Trim(path.Clean("/"+p), "/")
	if !repo.ValidFilePath(p) {
		return "", fmt.Errorf("invalid path %q", p)
	}
	return p, nil
}

func within(p, sel string) bool {
	return sel == "" || p == sel || strings.HasPrefix(p, sel+"/")
}

var errStop = errors.New("stop")

// Find returns the entry at p.
func Find(ctx context.Context, src Source, p string) (repo.FileEntry, error) {
	p, err := cleanPath(p)
	if err != nil {
		return repo.FileEntry{}, err
	}
	var found *repo.FileEntry
	err = src.Repo.WalkFileTree(ctx, src.Data.Tree, func(e repo.FileEntry) error {
		if e.Path == p {
			found = &e
			return errStop
		}
		if repo.ComparePaths(e.Path, p) > 0 {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return repo.FileEntry{}, fmt.Errorf("%s: %w", src, err)
	}
	if found == nil {
		return repo.FileEntry{}, fmt.Errorf("%q in %s: %w", "/"+p, src, ErrPathNotFound)
	}
	return *found, nil
}

// List calls fn for the entry at p and, if it is a directory, for its
// children (every descendant with recursive).
func List(ctx context.Context, src Source, p string, recursive bool, fn func(repo.FileEntry) error) error {
	p, err := cleanPath(p)
	if err != nil {
		return err
	}
	seen := false
	err = src.Repo.WalkFileTree(ctx, src.Data.Tree, func(e repo.FileEntry) error {
		if !within(e.Path, p) {
			if seen || repo.ComparePaths(e.Path, p) > 0 {
				return errStop
			}
			return nil
		}
		seen = true
		if e.Path != p && !recursive && path.Dir("/"+e.Path) != "/"+p {
			return nil
		}
		return fn(e)
	})
	if err != nil && !errors.Is(err, errStop) {
		return err
	}
	if !seen {
		return fmt.Errorf("%q in %s: %w", "/"+p, src, ErrPathNotFound)
	}
	return nil
}

// Cat writes the content of the regular file (or hard link, or block
// volume) at p to out, holes as zeros.
func Cat(ctx context.Context, src Source, p string, out io.Writer) error {
	e, err := Find(ctx, src, p)
	if err != nil {
		return err
	}
	if e.Type == repo.FileHardlink {
		if e, err = Find(ctx, src, e.Link); err != nil {
			return err
		}
	}
	if e.Type != repo.FileRegular && e.Type != repo.FileBlockVolume {
		return fmt.Errorf("%q in %s is a %s, not a file", "/"+e.Path, src, e.Type)
	}
	return writeContent(ctx, src, &e, &streamSink{w: out}, nil)
}

// sink receives a file's content at offsets in ascending order.
type sink interface {
	WriteAt(p []byte, off int64) (int, error)
}

// streamSink turns ascending WriteAt calls into a stream, filling holes
// with zeros.
type streamSink struct {
	w   io.Writer
	pos int64
}

var zeros = make([]byte, 64<<10)

func (s *streamSink) zeroTo(off int64) error {
	for s.pos < off {
		n := min(int64(len(zeros)), off-s.pos)
		if _, err := s.w.Write(zeros[:n]); err != nil {
			return err
		}
		s.pos += n
	}
	return nil
}

func (s *streamSink) WriteAt(p []byte, off int64) (int, error) {
	if err := s.zeroTo(off); err != nil {
		return 0, err
	}
	n, err := s.w.Write(p)
	s.pos += int64(n)
	return n, err
}

// blobBufs recycles the buffers blobs are read and decrypted into. A
// restore reads about its size in blobs; a new buffer per blob costs its
// zeroing (as much CPU as hashing it) and garbage. Sizes are rounded up to
// a quarter of a power of two (at most 25 % slack); larger than
// maxPooledBuf is allocated and left to the collector.
var blobBufs bufPool

const (
	minPooledBuf  = 4 << 10
	maxPooledBuf  = 16 << 20
	bufClassShift = 12 // log2(minPooledBuf)
)

type bufPool struct {
	// classes[0] holds minPooledBuf; then four classes per power of two
	// up to maxPooledBuf.
	classes [1 + 4*(24-bufClassShift)]sync.Pool
}

// bufClass returns the class of a buffer of at least n bytes and its size.
func bufClass(n int) (int, int) {
	if n <= minPooledBuf {
		return 0, minPooledBuf
	}
	e := bits.Len(uint(n - 1)) // 2^(e-1) < n <= 2^e
	step := 1 << (e - 3)
	k := (n + step - 1) / step // 5..8 quarters of 2^(e-1)... in steps of 2^(e-3)
	return 1 + 4*(e-1-bufClassShift) + (k - 5), k * step
}

// get returns a buffer with capacity of at least n.
func (p *bufPool) get(n int) []byte {
	if n > maxPooledBuf {
		return make([]byte, n)
	}
	c, size := bufClass(n)
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, size)
}

// put gives back a buffer from get.
func (p *bufPool) put(b []byte) {
	if cap(b) > maxPooledBuf || cap(b) < minPooledBuf {
		return
	}
	c, size := bufClass(cap(b))
	if size != cap(b) { // not one of ours
		return
	}
	b = b[:0]
	p.classes[c].Put(&b)
}

// writeContent loads e's blobs (a few ahead, in parallel) and writes them
// at their file offsets; for a stream sink, zeros up to the size.
func writeContent(ctx context.Context, src Source, e *repo.FileEntry, out sink, bytes *atomic.Int64) error {
	exts := e.Extents
	if exts == nil && e.Size > 0 {
		exts = []repo.Extent{{Offset: 0, Length: e.Size}}
	}
	type load struct {
		data []byte
		buf  []byte // data's storage, recycled once data is written
		err  error
		done chan struct{}
	}
	const ahead = 4
	loads := make([]*load, len(e.Blobs))
	start := func(i int) {
		l := &load{done: make(chan struct{})}
		loads[i] = l
		go func() {
			defer close(l.done)
			l.data, l.err = src.Repo.LoadBlobTo(ctx, e.Blobs[i], func(n int) []byte {
				if l.buf != nil { // a retry: the first buffer is not in use
					blobBufs.put(l.buf)
				}
				l.buf = blobBufs.get(n)
				return l.buf
			})
		}()
	}
	for i := 0; i < min(ahead, len(e.Blobs)); i++ {
		start(i)
	}
	defer func() { // let started loads finish before returning
		for _, l := range loads {
			if l != nil {
				<-l.done
				if l.buf != nil {
					blobBufs.put(l.buf)
				}
			}
		}
	}()
	xi, xoff := 0, int64(0) // current extent and offset within it
	for i := range e.Blobs {
		if i+ahead < len(e.Blobs) {
			start(i + ahead)
		}
		l := loads[i]
		<-l.done
		if l.err != nil {
			return fmt.Errorf("%q in %s: %w", "/"+e.Path, src, l.err)
		}
		data := l.data
		for len(data) > 0 {
			if xi >= len(exts) {
				return fmt.Errorf("%q in %s: content longer than its extents", "/"+e.Path, src)
			}
			x := exts[xi]
			n := min(int64(len(data)), x.Length-xoff)
			if _, err := out.WriteAt(data[:n], x.Offset+xoff); err != nil {
				return fmt.Errorf("write %q: %w", "/"+e.Path, err)
			}
			if bytes != nil {
				bytes.Add(n)
			}
			data = data[n:]
			xoff += n
			if xoff == x.Length {
				xi, xoff = xi+1, 0
			}
		}
		loads[i] = nil
		if l.buf != nil {
			blobBufs.put(l.buf)
		}
	}
	if xi < len(exts) {
		return fmt.Errorf("%q in %s: content shorter than its size", "/"+e.Path, src)
	}
	if s, ok := out.(*streamSink); ok {
		return s.zeroTo(e.Size)
	}
	return nil
}

// fileSink writes into a file and starts the write-back of what it wrote
// every writebackEvery bytes (sync_file_range, without waiting): the data
// goes to disk while the restore decrypts the next blobs, rather than all
// at the end, when the file system is synced or unmounted. It also keeps
// the dirty pages (which a pod's memory limit counts) few.
type fileSink struct {
	f        *os.File
	from, to int64 // written, write-back not started
}

const (
	writebackEvery = 2 << 20
	// writebackMin: a file's last bytes are sent on when at least this
	// many; smaller files are left to the kernel, which writes many of
	// them in one go.
	writebackMin = 128 << 10
)

func (s *fileSink) WriteAt(p []byte, off int64) (int, error) {
	n, err := s.f.WriteAt(p, off)
	if s.to == s.from {
		s.from = off
	}
	s.to = off + int64(n)
	if err == nil && s.to-s.from >= writebackEvery {
		s.writeback()
	}
	return n, err
}

// flush starts the write-back of the rest, if worth it.
func (s *fileSink) flush() {
	if s.to-s.from >= writebackMin {
		s.writeback()
	}
}

func (s *fileSink) writeback() {
	// Advisory: an error (a file system without it) only means the
	// kernel writes the pages back later, as it would anyway.
	_ = unix.SyncFileRange(int(s.f.Fd()), s.from, s.to-s.from, unix.SYNC_FILE_RANGE_WRITE)
	s.from = s.to
}

// Restore writes the selected part of a stored volume into target: a
// directory (created if missing), or for a block volume a block device or
// file. Before writing it checks that the target has room for the data
// and refuses otherwise, naming both sizes. A file whose data cannot be
// read (a damaged pack) is reported in the result and removed; the rest of
// the restore proceeds.
func Restore(ctx context.Context, src Source, target string, opts RestoreOptions) (*RestoreResult, error) {
	start := time.Now()
	sel, err := cleanPath(opts.Path)
	if err != nil {
		return nil, err
	}
	if opts.Writers <= 0 {
		opts.Writers = 4 * runtime.GOMAXPROCS(0)
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = time.Second
	}
	// Pass 1: is the path there, how much data is selected, which hard
	// links point outside the selection.
	var need int64
	var found bool
	var selected repo.FileEntry
	outside := map[string]bool{}
	err = src.Repo.WalkFileTree(ctx, src.Data.Tree, func(e repo.FileEntry) error {
		if !within(e.Path, sel) {
			if found || repo.ComparePaths(e.Path, sel) > 0 {
				return errStop
			}
			return nil
		}
		if !found {
			selected = e
		}
		found = true
		need += e.DataBytes()
		if e.Type == repo.FileHardlink && !within(e.Link, sel) {
			outside[e.Link] = true
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	if !found {
		return nil, fmt.Errorf("%q in %s: %w", "/"+sel, src, ErrPathNotFound)
	}
	if selected.Type == repo.FileBlockVolume {
		return restoreBlock(ctx, src, selected, target, opts, start)
	}
	if selected.Type == repo.FileDir {
		if err := os.MkdirAll(target, 0o700); err != nil {
			return nil, fmt.Errorf("target: %w", err)
		}
	} else if fi, err := os.Stat(target); err == nil && fi.IsDir() {
		target = filepath.Join(target, path.Base("/"+sel))
	}
	if err := checkRoom(target, need); err != nil {
		return nil, err
	}
	rs := &restorer{src: src, sel: sel, target: target, opts: opts, outside: outside, kept: map[string]repo.FileEntry{},
		res: &RestoreResult{}, root: os.Geteuid() == 0}
	var files atomic.Int64
	stop := startProgress(opts.Progress, opts.ProgressEvery, start, &files, &rs.bytes, func() int64 { return need })
	rctx, cancel := context.WithCancel(ctx)
	rs.cancel = cancel
	err = rs.run(rctx, &files)
	cancel()
	stop()
	if rs.stopErr != nil {
		return nil, fmt.Errorf("%s: restore stopped after %d entries were handled, at the first repository failure: %w", src, files.Load(), rs.stopErr)
	}
	if err != nil {
		return nil, err
	}
	// Durable before success is reported: the workload starts on this
	// volume next, and a node that crashes before its write-back would
	// otherwise lose data the job called restored.
	if err := flushFS(target); err != nil {
		return nil, fmt.Errorf("target %s: data written but not flushed to disk: %w; run the restore again", target, err)
	}
	rs.res.Files = files.Load()
	rs.res.Bytes = rs.bytes.Load()
	return rs.res, nil
}

// flushFS flushes the file system holding target (syncfs(2)).
func flushFS(target string) error {
	f, err := os.Open(target)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	return unix.Syncfs(int(f.Fd()))
}

// checkRoom refuses a restore whose data does not fit into the free space
// of target's file system.
func checkRoom(target string, need int64) error {
	dir := target
	for {
		var fs unix.Statfs_t
		err := unix.Statfs(dir, &fs)
		if err == nil {
			free := int64(fs.Bavail) * int64(fs.Bsize)
			if need > free {
				return fmt.Errorf("%w: the data needs %d bytes (%s), the target %s has %d bytes (%s) free; restore into a larger volume",
					ErrTargetTooSmall, need, units.Bytes(need), target, free, units.Bytes(free))
			}
			return nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}

func restoreBlock(ctx context.Context, src Source, e repo.FileEntry, target string, opts RestoreOptions, start time.Time) (*RestoreResult, error) {
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			return nil, fmt.Errorf("target %s: size: %w", target, err)
		}
		if size < e.Size {
			return nil, fmt.Errorf("%w: the block volume holds %d bytes (%s), the target device %s holds %d bytes (%s); restore into a larger volume",
				ErrTargetTooSmall, e.Size, units.Bytes(e.Size), target, size, units.Bytes(size))
		}
	} else if err := checkRoom(target, e.Size); err != nil {
		return nil, err
	}
	var files, bytes atomic.Int64
	stop := startProgress(opts.Progress, opts.ProgressEvery, start, &files, &bytes, func() int64 { return e.Size })
	err = writeContent(ctx, src, &e, &fileSink{f: f}, &bytes)
	if err == nil {
		err = f.Sync()
	}
	files.Add(1)
	stop()
	if err != nil {
		return nil, err
	}
	return &RestoreResult{Files: 1, Bytes: bytes.Load()}, nil
}

type restorer struct {
	src     Source
	sel     string
	target  string
	opts    RestoreOptions
	outside map[string]bool           // hard-link targets outside the selection
	kept    map[string]repo.FileEntry // their entries, met during the walk
	res     *RestoreResult
	root    bool
	bytes   atomic.Int64

	mu   sync.Mutex
	dirs []repo.FileEntry // metadata applied last, deepest first
	// stopErr is the first error opts.Stop judged fatal; cancel ends the
	// walk and the writers.
	stopErr error
	cancel  context.CancelFunc
}

func (rs *restorer) fail(p string, err error) {
	if rs.opts.Stop != nil && rs.opts.Stop(err) {
		rs.mu.Lock()
		if rs.stopErr == nil {
			rs.stopErr = err
		}
		rs.mu.Unlock()
		rs.cancel()
		return
	}
	rs.mu.Lock()
	rs.res.Failed = append(rs.res.Failed, FileError{Path: p, Err: err, Msg: err.Error()})
	rs.mu.Unlock()
}

func (rs *restorer) warn(p, msg string) {
	rs.mu.Lock()
	rs.res.Warnings = append(rs.res.Warnings, Warning{Path: p, Message: msg})
	rs.mu.Unlock()
}

// dest maps a stored path to where it is written.
func (rs *restorer) dest(p string) string {
	if p == rs.sel {
		return rs.target
	}
	rel := p
	if rs.sel != "" {
		rel = strings.TrimPrefix(p, rs.sel+"/")
	}
	return filepath.Join(rs.target, filepath.FromSlash(rel))
}

type fileJob struct {
	e repo.FileEntry
}

func (rs *restorer) run(ctx context.Context, files *atomic.Int64) error {
	jobs := make(chan fileJob, rs.opts.Writers)
	var wg sync.WaitGroup
	streams := make(chan struct{}, maxStreams)
	for i := 0; i < rs.opts.Writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if len(j.e.Blobs) > 1 { // a large file: blobs loaded ahead (memory)
					streams <- struct{}{}
					rs.writeFile(ctx, j)
					<-streams
					files.Add(1)
					continue
				}
				rs.writeFile(ctx, j)
				files.Add(1)
			}
		}()
	}
	var links [][2]string // hard links: first name, this name
	err := rs.src.Repo.WalkFileTree(ctx, rs.src.Data.Tree, func(e repo.FileEntry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !within(e.Path, rs.sel) {
			if rs.outside[e.Path] {
				rs.kept[e.Path] = e
			}
			if repo.ComparePaths(e.Path, rs.sel) > 0 {
				return errStop
			}
			return nil
		}
		dst := rs.dest(e.Path)
		switch e.Type {
		case repo.FileDir:
			if err := os.Mkdir(dst, 0o700); err != nil && !os.IsExist(err) {
				rs.fail(e.Path, fmt.Errorf("mkdir %s: %w", dst, err))
				return nil
			}
			rs.mu.Lock()
			rs.dirs = append(rs.dirs, e)
			rs.mu.Unlock()
			files.Add(1)
		case repo.FileRegular:
			// The writers create the file: for many small files creating
			// them is most of the work.
			select {
			case jobs <- fileJob{e: e}:
			case <-ctx.Done():
				return ctx.Err()
			}
		case repo.FileHardlink:
			if k, ok := rs.kept[e.Link]; ok {
				// The first name is outside the selection: this one holds the content.
				k.Path = e.Path
				rs.kept[e.Link] = repo.FileEntry{Type: repo.FileHardlink, Path: e.Path} // later names link here
				select {
				case jobs <- fileJob{e: k}:
				case <-ctx.Done():
					return ctx.Err()
				}
				return nil
			}
			first := e.Link
			if k, ok := rs.kept[e.Link]; ok && k.Type == repo.FileHardlink {
				first = k.Path
			}
			// Linked once the writers have created every file.
			links = append(links, [2]string{first, e.Path})
		default:
			_ = os.Remove(dst)
			if err := rs.makeSpecial(e, dst); err != nil {
				rs.fail(e.Path, err)
				return nil
			}
			rs.applyMeta(e, dst, nil)
			files.Add(1)
		}
		return nil
	})
	close(jobs)
	wg.Wait()
	if err != nil && !errors.Is(err, errStop) {
		return fmt.Errorf("%s: %w", rs.src, err)
	}
	for _, l := range links {
		dst := rs.dest(l[1])
		_ = os.Remove(dst)
		if err := os.Link(rs.dest(l[0]), dst); err != nil {
			rs.fail(l[1], fmt.Errorf("link %s to %s: %w", dst, rs.dest(l[0]), err))
			continue
		}
		files.Add(1)
	}
	// Directories last, deepest first: writing into a directory changes
	// its mtime, and a read-only mode would refuse the writes.
	for i := len(rs.dirs) - 1; i >= 0; i-- {
		rs.applyMeta(rs.dirs[i], rs.dest(rs.dirs[i].Path), nil)
	}
	return ctx.Err()
}

func (rs *restorer) makeSpecial(e repo.FileEntry, dst string) error {
	switch e.Type {
	case repo.FileSymlink:
		if err := os.Symlink(e.Link, dst); err != nil {
			return fmt.Errorf("symlink %s: %w", dst, err)
		}
	case repo.FileFIFO:
		if err := unix.Mkfifo(dst, 0o600); err != nil {
			return fmt.Errorf("mkfifo %s: %w", dst, err)
		}
	case repo.FileCharDevice, repo.FileBlockDevice:
		mode := uint32(unix.S_IFCHR)
		if e.Type == repo.FileBlockDevice {
			mode = unix.S_IFBLK
		}
		if err := unix.Mknod(dst, mode|0o600, int(e.Rdev)); err != nil {
			return fmt.Errorf("mknod %s: %w", dst, err)
		}
	case repo.FileSocket:
		// A socket is made by the program that listens on it.
		return nil
	default:
		return fmt.Errorf("%s: cannot restore a %s here", dst, e.Type)
	}
	return nil
}

// writeFile writes a regular file's content and metadata; on failure it
// removes the file and records the error.
func (rs *restorer) writeFile(ctx context.Context, j fileJob) {
	dst := rs.dest(j.e.Path)
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		rs.fail(j.e.Path, fmt.Errorf("create %s: %w", dst, err))
		return
	}
	fs := &fileSink{f: f}
	err = writeContent(ctx, rs.src, &j.e, fs, &rs.bytes)
	if err == nil {
		fs.flush()
	}
	if err == nil && j.e.Extents != nil {
		err = f.Truncate(j.e.Size) // trailing holes
	}
	if err == nil {
		rs.applyMeta(j.e, dst, f)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(dst)
		rs.fail(j.e.Path, err)
		return
	}
	rs.setTimes(j.e, dst)
}

// applyMeta sets owner, mode, xattrs and (except for open regular files,
// whose close would not change it but whose writer sets it after close)
// the modification time.
func (rs *restorer) applyMeta(e repo.FileEntry, dst string, f *os.File) {
	chown := func() error { return unix.Lchown(dst, int(e.UID), int(e.GID)) }
	chmod := func() error { return unix.Fchmodat(unix.AT_FDCWD, dst, e.Mode, 0) }
	setx := func(name string, v []byte) error { return unix.Lsetxattr(dst, name, v, 0) }
	if f != nil { // by descriptor: no path lookups
		fd := int(f.Fd())
		chown = func() error { return unix.Fchown(fd, int(e.UID), int(e.GID)) }
		chmod = func() error { return unix.Fchmod(fd, e.Mode) }
		setx = func(name string, v []byte) error { return unix.Fsetxattr(fd, name, v, 0) }
	}
	if err := chown(); err != nil {
		if rs.root || !errors.Is(err, unix.EPERM) {
			rs.warn(e.Path, fmt.Sprintf("owner %d:%d not set: %v", e.UID, e.GID, err))
		}
	}
	for _, x := range e.Xattrs {
		if err := setx(x.Name, x.Value); err != nil {
			rs.warn(e.Path, fmt.Sprintf("xattr %s not set: %v", x.Name, err))
		}
	}
	if e.Type != repo.FileSymlink {
		// After chown, which clears setuid and setgid.
		if err := chmod(); err != nil {
			rs.warn(e.Path, fmt.Sprintf("mode %o not set: %v", e.Mode, err))
		}
	}
	if f == nil {
		rs.setTimes(e, dst)
	}
}

func (rs *restorer) setTimes(e repo.FileEntry, dst string) {
	ts := unix.NsecToTimespec(e.MTime)
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		rs.warn(e.Path, fmt.Sprintf("mtime not set: %v", err))
	}
}
