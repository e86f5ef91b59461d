package repo

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// FileType is the kind of a file-tree entry (docs/repository-format.md §15).
type FileType uint8

// File types. The numbers are the format's; never renumber them.
const (
	FileDir         FileType = 1
	FileRegular     FileType = 2
	FileSymlink     FileType = 3
	FileHardlink    FileType = 4 // another name of an earlier regular file: Link is its path
	FileFIFO        FileType = 5
	FileCharDevice  FileType = 6
	FileBlockDevice FileType = 7
	FileSocket      FileType = 8
	FileBlockVolume FileType = 9 // a block-mode volume read as one stream; the tree's only entry
)

func (t FileType) String() string {
	switch t {
	case FileDir:
		return "dir"
	case FileRegular:
		return "file"
	case FileSymlink:
		return "symlink"
	case FileHardlink:
		return "hardlink"
	case FileFIFO:
		return "fifo"
	case FileCharDevice:
		return "chardev"
	case FileBlockDevice:
		return "blockdev"
	case FileSocket:
		return "socket"
	case FileBlockVolume:
		return "block-volume"
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// Extent is a data region of a sparse file; bytes outside every extent
// are holes (read as zeros).
type Extent struct {
	Offset, Length int64
}

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value []byte
}

// FileEntry is one file of a volume's file tree.
type FileEntry struct {
	Type FileType
	// Path is relative to the volume's root, '/'-separated, without "." or
	// ".." components; "" is the root directory itself.
	Path     string
	Mode     uint32 // permission bits with setuid, setgid, sticky (mask 07777)
	UID, GID uint32
	MTime    int64 // nanoseconds since the Unix epoch
	Size     int64 // regular file or block volume: length in bytes; others 0
	// Link: a symlink's target; a hard link's Path of the entry that holds
	// the content.
	Link   string
	Rdev   uint64 // device number of a character or block device
	Xattrs []Xattr
	// Extents: nil for a file stored whole, [0, Size); for a sparse file
	// its data regions, ascending (empty: all hole).
	Extents []Extent
	Blobs   []ID // the content (the extents' bytes concatenated), content-defined chunks
}

// DataBytes is the number of content bytes stored for the entry.
func (e *FileEntry) DataBytes() int64 {
	if e.Type != FileRegular && e.Type != FileBlockVolume {
		return 0
	}
	if e.Extents == nil {
		return e.Size
	}
	var n int64
	for _, x := range e.Extents {
		n += x.Length
	}
	return n
}

// VolumeData is one volume's file tree in a recovery point (manifest field
// volumeData), with what the mover measured.
type VolumeData struct {
	// Name says which volume: "namespace/claim" for a PVC, or what the writer chose.
	Name  string `json:"name"`
	Block bool   `json:"block,omitempty"`
	Tree  Tree   `json:"tree"` // a file-tree stream (§15)
	// Statistics (informative; readers do not rely on them).
	Files           int64   `json:"files"`
	Bytes           int64   `json:"bytes"`
	NewBytes        int64   `json:"newBytes"`
	DurationSeconds float64 `json:"durationSeconds"`
}

// File-tree stream (docs/repository-format.md §15):
//
//	stream := version (1 byte, = 1) entry*
//	entry  := type (1 byte) str(path) uvarint(mode) uvarint(uid) uvarint(gid)
//	          varint(mtime) uvarint(size) str(link) uvarint(rdev)
//	          uvarint(#xattrs) (str(name) str(value))*
//	          uvarint(sparse) (uvarint(offset) uvarint(length))*   sparse = 0 or 1 + #extents
//	          uvarint(#blobs) blobID*
const (
	fileTreeVersion = 1
	maxFileString   = 64 << 10
	maxFileXattrs   = 1 << 10
	maxFileExtents  = 1 << 24
	maxFileBlobs    = 1 << 24
)

// ValidFilePath reports whether p is a path a file-tree entry may carry.
func ValidFilePath(p string) bool {
	if p == "" {
		return true
	}
	if len(p) > maxFileString || strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) {
		return false
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	return true
}

func appendFileEntry(b []byte, e *FileEntry) []byte {
	b = append(b, byte(e.Type))
	b = appendTreeString(b, e.Path)
	b = appendUvarint(b, uint64(e.Mode))
	b = appendUvarint(b, uint64(e.UID))
	b = appendUvarint(b, uint64(e.GID))
	b = binary.AppendVarint(b, e.MTime)
	b = appendUvarint(b, uint64(e.Size))
	b = appendTreeString(b, e.Link)
	b = appendUvarint(b, e.Rdev)
	b = appendUvarint(b, uint64(len(e.Xattrs)))
	for _, x := range e.Xattrs {
		b = appendTreeString(b, x.Name)
		b = appendUvarint(b, uint64(len(x.Value)))
		b = append(b, x.Value...)
	}
	// 0: not sparse (Extents nil); n ≥ 1: sparse with n-1 extents.
	if e.Extents == nil {
		b = appendUvarint(b, 0)
	} else {
		b = appendUvarint(b, uint64(len(e.Extents))+1)
	}
	for _, x := range e.Extents {
		b = appendUvarint(b, uint64(x.Offset))
		b = appendUvarint(b, uint64(x.Length))
	}
	b = appendUvarint(b, uint64(len(e.Blobs)))
	for _, id := range e.Blobs {
		b = append(b, id[:]...)
	}
	return b
}

func (e *FileEntry) validate() error {
	if e.Type < FileDir || e.Type > FileBlockVolume {
		return fmt.Errorf("unknown file type %d", e.Type)
	}
	if !ValidFilePath(e.Path) {
		return fmt.Errorf("invalid path %q", e.Path)
	}
	if e.Mode&^07777 != 0 {
		return fmt.Errorf("%s: mode %o has bits beyond 07777", e.Path, e.Mode)
	}
	if e.Size < 0 {
		return fmt.Errorf("%s: negative size", e.Path)
	}
	if len(e.Link) > maxFileString {
		return fmt.Errorf("%s: link of %d bytes", e.Path, len(e.Link))
	}
	if len(e.Xattrs) > maxFileXattrs {
		return fmt.Errorf("%s: %d xattrs exceeds %d", e.Path, len(e.Xattrs), maxFileXattrs)
	}
	for _, x := range e.Xattrs {
		if len(x.Name) > maxFileString || len(x.Value) > maxFileString {
			return fmt.Errorf("%s: xattr %q too long", e.Path, x.Name)
		}
	}
	if len(e.Extents) > maxFileExtents || len(e.Blobs) > maxFileBlobs {
		return fmt.Errorf("%s: too many extents or blobs", e.Path)
	}
	end := int64(0)
	for _, x := range e.Extents {
		if x.Offset < end || x.Length <= 0 || x.Offset+x.Length > e.Size || x.Offset+x.Length < x.Offset {
			return fmt.Errorf("%s: extents not ascending, empty or past the size", e.Path)
		}
		end = x.Offset + x.Length
	}
	if e.Type == FileHardlink && !ValidFilePath(e.Link) {
		return fmt.Errorf("%s: hard link to invalid path %q", e.Path, e.Link)
	}
	return nil
}

// FileTreeWriter serialises a volume's file tree and stores it as tree
// blobs (content-defined, so an unchanged tree stores nothing new). Entries
// MUST be added in the order of §15: depth first, a directory before its
// children, siblings by byte-wise name. Not safe for concurrent use.
type FileTreeWriter struct {
	treeStream
	last string
	any  bool
}

// NewFileTree starts a file tree.
func (w *Writer) NewFileTree() *FileTreeWriter {
	return &FileTreeWriter{treeStream: treeStream{w: w, buf: []byte{fileTreeVersion}}}
}

// Add appends an entry; it must sort after the previous one (§15).
func (tw *FileTreeWriter) Add(ctx context.Context, e FileEntry) error {
	if tw.err != nil {
		return tw.err
	}
	if err := e.validate(); err != nil {
		return fmt.Errorf("file tree: %w", err)
	}
	if tw.any && ComparePaths(tw.last, e.Path) >= 0 {
		return fmt.Errorf("file tree: %q added after %q (entries must be in tree order)", e.Path, tw.last)
	}
	tw.last, tw.any = e.Path, true
	tw.buf = appendFileEntry(tw.buf, &e)
	return tw.added(ctx)
}

// Close stores the rest of the stream and returns the tree.
func (tw *FileTreeWriter) Close(ctx context.Context) (Tree, error) { return tw.close(ctx) }

// ComparePaths orders file-tree paths: component by component, each
// compared byte-wise, so that a directory's subtree is contiguous and
// follows the directory.
func ComparePaths(a, b string) int {
	for {
		if a == b {
			return 0
		}
		if a == "" {
			return -1
		}
		if b == "" {
			return 1
		}
		ca, ra, _ := strings.Cut(a, "/")
		cb, rb, _ := strings.Cut(b, "/")
		if ca != cb {
			return strings.Compare(ca, cb)
		}
		a, b = ra, rb
	}
}

var errFileTreeFormat = errors.New("file tree: malformed stream")

// decodeFileTree parses a file-tree stream and calls fn per entry.
func decodeFileTree(rd io.Reader, fn func(FileEntry) error) (int, error) {
	br := bufio.NewReaderSize(rd, 64<<10)
	v, err := br.ReadByte()
	if err == io.EOF {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if v != fileTreeVersion {
		return 0, fmt.Errorf("file tree: unknown version %d", v)
	}
	uv := func(max uint64) (uint64, error) {
		x, err := binary.ReadUvarint(br)
		if err != nil {
			if err == io.EOF {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, errFileTreeFormat
		}
		if x > max {
			return 0, errFileTreeFormat
		}
		return x, nil
	}
	bytesField := func() ([]byte, error) {
		n, err := uv(maxFileString)
		if err != nil {
			return nil, err
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, io.ErrUnexpectedEOF
		}
		return b, nil
	}
	count := 0
	var last string
	for {
		t, err := br.ReadByte()
		if err == io.EOF {
			return count, nil
		}
		if err != nil {
			return count, err
		}
		e := FileEntry{Type: FileType(t)}
		fail := func(err error) (int, error) {
			return count, fmt.Errorf("file tree entry %d: %w", count, err)
		}
		var b []byte
		if b, err = bytesField(); err != nil {
			return fail(err)
		}
		e.Path = string(b)
		var x uint64
		if x, err = uv(07777); err != nil {
			return fail(err)
		}
		e.Mode = uint32(x)
		if x, err = uv(1<<32 - 1); err != nil {
			return fail(err)
		}
		e.UID = uint32(x)
		if x, err = uv(1<<32 - 1); err != nil {
			return fail(err)
		}
		e.GID = uint32(x)
		if e.MTime, err = binary.ReadVarint(br); err != nil {
			return fail(errFileTreeFormat)
		}
		if x, err = uv(1<<63 - 1); err != nil {
			return fail(err)
		}
		e.Size = int64(x)
		if b, err = bytesField(); err != nil {
			return fail(err)
		}
		e.Link = string(b)
		if e.Rdev, err = uv(1<<64 - 1); err != nil {
			return fail(err)
		}
		if x, err = uv(maxFileXattrs); err != nil {
			return fail(err)
		}
		for i := uint64(0); i < x; i++ {
			var xa Xattr
			if b, err = bytesField(); err != nil {
				return fail(err)
			}
			xa.Name = string(b)
			if xa.Value, err = bytesField(); err != nil {
				return fail(err)
			}
			e.Xattrs = append(e.Xattrs, xa)
		}
		if x, err = uv(maxFileExtents + 1); err != nil {
			return fail(err)
		}
		if x > 0 {
			x--
			e.Extents = make([]Extent, 0, min(x, 1024))
		}
		for i := uint64(0); i < x; i++ {
			off, err := uv(1<<63 - 1)
			if err != nil {
				return fail(err)
			}
			l, err := uv(1<<63 - 1)
			if err != nil {
				return fail(err)
			}
			e.Extents = append(e.Extents, Extent{Offset: int64(off), Length: int64(l)})
		}
		if x, err = uv(maxFileBlobs); err != nil {
			return fail(err)
		}
		if x > 0 {
			e.Blobs = make([]ID, 0, min(x, 1024))
		}
		for i := uint64(0); i < x; i++ {
			var id ID
			if _, err := io.ReadFull(br, id[:]); err != nil {
				return fail(io.ErrUnexpectedEOF)
			}
			e.Blobs = append(e.Blobs, id)
		}
		if err := e.validate(); err != nil {
			return fail(err)
		}
		if count > 0 && ComparePaths(last, e.Path) >= 0 {
			return fail(fmt.Errorf("%q follows %q: not in tree order", e.Path, last))
		}
		last = e.Path
		count++
		if err := fn(e); err != nil {
			return count, err
		}
	}
}

// WalkFileTree calls fn for every entry of a file tree in order. An error
// from fn stops the walk and is returned.
func (r *Repository) WalkFileTree(ctx context.Context, t Tree, fn func(FileEntry) error) error {
	return walkTree(ctx, r, t, "file tree", decodeFileTree, fn)
}

// treeRef is one tree a recovery point references, with the walk that
// yields the content blobs its entries reference.
type treeRef struct {
	tree Tree
	file bool
}

// trees lists every tree of rp: resource trees, then volume file trees.
func (rp *RecoveryPoint) trees() []treeRef {
	out := make([]treeRef, 0, len(rp.Resources)+len(rp.VolumeData))
	for _, rt := range rp.Resources {
		out = append(out, treeRef{tree: rt.Tree})
	}
	for _, vd := range rp.VolumeData {
		out = append(out, treeRef{tree: vd.Tree, file: true})
	}
	return out
}

// walkRef calls fn with each entry's content blobs and content size.
func (r *Repository) walkRef(ctx context.Context, t treeRef, fn func(blobs []ID, size int64)) error {
	if t.file {
		return r.WalkFileTree(ctx, t.tree, func(e FileEntry) error {
			fn(e.Blobs, e.DataBytes())
			return nil
		})
	}
	return r.WalkTree(ctx, t.tree, func(e TreeEntry) error {
		fn(e.Blobs, e.Size)
		return nil
	})
}
