package repo

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/restic/chunker"
)

// TreeEntry is one object of a resource type in a recovery point.
type TreeEntry struct {
	Group, Version, Resource, Kind string
	Namespace, Name                string
	Blobs                          []ID  // content: one blob for a Kubernetes object
	Size                           int64 // plaintext bytes
}

// Tree is a serialised TreeEntry stream, chunked into tree blobs.
type Tree struct {
	Blobs []ID `json:"blobs"`
	Count int  `json:"count"`
}

// Tree stream (docs/repository-format.md §8):
//
//	stream := version (1 byte, = 1) entry*
//	entry  := str(group) str(version) str(resource) str(kind)
//	          str(namespace) str(name) uvarint(#blobs) blobID (32 bytes)*
//	          uvarint(size)
//	str    := uvarint(len) bytes
const (
	treeVersion   = 1
	maxTreeString = 64 << 10
	maxTreeBlobs  = 1 << 20

	// Tree chunking: 16 KiB min, 256 KiB max, 64 KiB average.
	treeChunkMin  = 16 << 10
	treeChunkMax  = 256 << 10
	treeChunkBits = 16
	// treeFlushAt: buffered stream size at which complete chunks are cut.
	treeFlushAt = 4 * treeChunkMax
)

func appendTreeString(b []byte, s string) []byte {
	b = appendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTreeEntry(b []byte, e *TreeEntry) []byte {
	b = appendTreeString(b, e.Group)
	b = appendTreeString(b, e.Version)
	b = appendTreeString(b, e.Resource)
	b = appendTreeString(b, e.Kind)
	b = appendTreeString(b, e.Namespace)
	b = appendTreeString(b, e.Name)
	b = appendUvarint(b, uint64(len(e.Blobs)))
	for _, id := range e.Blobs {
		b = append(b, id[:]...)
	}
	return appendUvarint(b, uint64(e.Size))
}

// TreeWriter serialises entries of one resource type and stores the stream as
// content-defined chunks, so that an unchanged resource type yields the same
// tree blobs (and stores nothing) on the next backup. Entries should be added
// in a deterministic order (for example the API server's list order). Not
// safe for concurrent use.
type TreeWriter struct {
	treeStream
}

// treeStream is a stream of entries cut into content-defined tree blobs:
// the chunking shared by resource trees (§8) and file trees (§15).
type treeStream struct {
	w     *Writer
	buf   []byte
	chunk *chunker.Chunker
	blobs []ID
	count int
	err   error
}

// NewTree starts a tree.
func (w *Writer) NewTree() *TreeWriter {
	return &TreeWriter{treeStream{w: w, buf: []byte{treeVersion}}}
}

// added counts an entry just appended to buf and stores complete chunks
// once enough is buffered.
func (tw *treeStream) added(ctx context.Context) error {
	tw.count++
	if len(tw.buf) >= treeFlushAt {
		tw.err = tw.cut(ctx, false)
	}
	return tw.err
}

// Add appends an entry.
func (tw *TreeWriter) Add(ctx context.Context, e TreeEntry) error {
	if tw.err != nil {
		return tw.err
	}
	if e.Size < 0 {
		return errors.New("tree entry: negative size")
	}
	for _, s := range []string{e.Group, e.Version, e.Resource, e.Kind, e.Namespace, e.Name} {
		if len(s) > maxTreeString {
			return fmt.Errorf("tree entry: string of %d bytes exceeds %d", len(s), maxTreeString)
		}
	}
	if len(e.Blobs) > maxTreeBlobs {
		return fmt.Errorf("tree entry: %d blobs exceeds %d", len(e.Blobs), maxTreeBlobs)
	}
	tw.buf = appendTreeEntry(tw.buf, &e)
	return tw.added(ctx)
}

// cut stores complete chunks of the buffered stream. Unless final, the last
// chunk is kept: its end depends on bytes not yet added. Restarting the
// chunker at a chunk boundary gives the same boundaries as one pass over the
// whole stream, because the chunker resets its state at every boundary.
func (tw *treeStream) cut(ctx context.Context, final bool) error {
	if g := tw.w.r.gear; g != nil {
		return tw.cutGear(ctx, g, final)
	}
	rd := bytes.NewReader(tw.buf)
	if tw.chunk == nil {
		tw.chunk = chunker.NewWithBoundaries(rd, tw.w.r.cfg.ChunkerPolynomial, treeChunkMin, treeChunkMax)
	} else {
		tw.chunk.ResetWithBoundaries(rd, tw.w.r.cfg.ChunkerPolynomial, treeChunkMin, treeChunkMax)
	}
	tw.chunk.SetAverageBits(treeChunkBits)
	var consumed int
	var scratch []byte
	for {
		c, err := tw.chunk.Next(scratch[:0])
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		scratch = c.Data
		if !final && int(c.Start+c.Length) == len(tw.buf) {
			break // tail: keep for later
		}
		id, err := tw.w.putBlob(ctx, TreeBlob, c.Data)
		if err != nil {
			return err
		}
		tw.blobs = append(tw.blobs, id)
		consumed = int(c.Start + c.Length)
	}
	tw.buf = append(tw.buf[:0], tw.buf[consumed:]...)
	return nil
}

// cutGear is cut for format v3: the gear chunker on the buffer itself. A
// boundary found before the end of the buffered bytes depends only on
// bytes before it, so cutting again later, from the first uncut byte,
// gives the same boundaries as one pass.
func (tw *treeStream) cutGear(ctx context.Context, g *gearTable, final bool) error {
	consumed := 0
	for consumed < len(tw.buf) {
		var s gearScan
		n := s.find(g, &gearTree, tw.buf[consumed:], final)
		if n == 0 {
			break // no boundary in what is buffered: keep it for later
		}
		id, err := tw.w.putBlob(ctx, TreeBlob, tw.buf[consumed:consumed+n])
		if err != nil {
			return err
		}
		tw.blobs = append(tw.blobs, id)
		consumed += n
	}
	tw.buf = append(tw.buf[:0], tw.buf[consumed:]...)
	return nil
}

// Close stores the rest of the stream and returns the tree.
func (tw *TreeWriter) Close(ctx context.Context) (Tree, error) { return tw.close(ctx) }

func (tw *treeStream) close(ctx context.Context) (Tree, error) {
	if tw.err != nil {
		return Tree{}, tw.err
	}
	if tw.count > 0 {
		if err := tw.cut(ctx, true); err != nil {
			tw.err = err
			return Tree{}, err
		}
	}
	tw.err = errors.New("tree writer closed")
	return Tree{Blobs: tw.blobs, Count: tw.count}, nil
}

// treeReader reads the concatenated tree blobs lazily.
type treeReader struct {
	ctx   context.Context
	load  func(context.Context, ID) ([]byte, error)
	blobs []ID
	cur   []byte
}

func (tr *treeReader) Read(p []byte) (int, error) {
	for len(tr.cur) == 0 {
		if len(tr.blobs) == 0 {
			return 0, io.EOF
		}
		b, err := tr.load(tr.ctx, tr.blobs[0])
		if err != nil {
			return 0, fmt.Errorf("tree blob %s: %w", tr.blobs[0].Short(), err)
		}
		tr.blobs = tr.blobs[1:]
		tr.cur = b
	}
	n := copy(p, tr.cur)
	tr.cur = tr.cur[n:]
	return n, nil
}

var errTreeFormat = errors.New("tree: malformed stream")

// decodeTreeStream parses a tree stream and calls fn per entry.
func decodeTreeStream(rd io.Reader, fn func(TreeEntry) error) (int, error) {
	br := bufio.NewReaderSize(rd, 64<<10)
	v, err := br.ReadByte()
	if err == io.EOF {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if v != treeVersion {
		return 0, fmt.Errorf("tree: unknown version %d", v)
	}
	readUvarint := func(max uint64) (uint64, error) {
		var x uint64
		var s uint
		for i := 0; i < 10; i++ {
			c, err := br.ReadByte()
			if err != nil {
				if err == io.EOF {
					return 0, io.ErrUnexpectedEOF
				}
				return 0, err
			}
			if c < 0x80 {
				if i == 9 && c > 1 {
					return 0, errTreeFormat
				}
				x |= uint64(c) << s
				if x > max {
					return 0, errTreeFormat
				}
				return x, nil
			}
			x |= uint64(c&0x7f) << s
			s += 7
		}
		return 0, errTreeFormat
	}
	var sbuf []byte
	// readString returns prev when the string read equals it: type, group,
	// version and kind repeat in every entry of a tree and the namespace in
	// most, so an entry allocates only its name.
	readString := func(prev string) (string, error) {
		n, err := readUvarint(maxTreeString)
		if err != nil {
			return "", err
		}
		if cap(sbuf) < int(n) {
			sbuf = make([]byte, n)
		}
		b := sbuf[:n]
		if _, err := io.ReadFull(br, b); err != nil {
			return "", io.ErrUnexpectedEOF
		}
		if string(b) == prev {
			return prev, nil
		}
		return string(b), nil
	}
	var prev TreeEntry
	count := 0
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return count, nil
		} else if err != nil {
			return count, err
		}
		var e TreeEntry
		strs := [6]*string{&e.Group, &e.Version, &e.Resource, &e.Kind, &e.Namespace, &e.Name}
		prevs := [6]string{prev.Group, prev.Version, prev.Resource, prev.Kind, prev.Namespace, prev.Name}
		for i, p := range strs {
			if *p, err = readString(prevs[i]); err != nil {
				return count, fmt.Errorf("tree entry %d: %w", count, err)
			}
		}
		nb, err := readUvarint(maxTreeBlobs)
		if err != nil {
			return count, fmt.Errorf("tree entry %d: %w", count, err)
		}
		if nb > 0 {
			e.Blobs = make([]ID, 0, min(nb, 1024))
			for i := uint64(0); i < nb; i++ {
				var id ID
				if _, err := io.ReadFull(br, id[:]); err != nil {
					return count, fmt.Errorf("tree entry %d: %w", count, io.ErrUnexpectedEOF)
				}
				e.Blobs = append(e.Blobs, id)
			}
		}
		sz, err := readUvarint(1<<63 - 1)
		if err != nil {
			return count, fmt.Errorf("tree entry %d: %w", count, err)
		}
		e.Size = int64(sz)
		prev = e
		count++
		if err := fn(e); err != nil {
			return count, err
		}
	}
}

// WalkTree calls fn for every entry of t in order. An error from fn stops the
// walk and is returned.
func (r *Repository) WalkTree(ctx context.Context, t Tree, fn func(TreeEntry) error) error {
	return walkTree(ctx, r, t, "tree", decodeTreeStream, fn)
}

// walkTree is the walk of either kind of tree (resource trees, volume file
// trees): decode reads t's blobs in order as one stream, calling fn for
// each entry, and the number of entries must be the manifest's count
// (what names the kind in that error).
func walkTree[E any](ctx context.Context, r *Repository, t Tree, what string, decode func(io.Reader, func(E) error) (int, error), fn func(E) error) error {
	tr := &treeReader{ctx: ctx, load: r.LoadBlob, blobs: t.Blobs}
	n, err := decode(tr, fn)
	if err != nil {
		return err
	}
	if n != t.Count {
		return fmt.Errorf("%s: %d entries, manifest says %d", what, n, t.Count)
	}
	return nil
}
