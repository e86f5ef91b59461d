package repo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/restic/chunker"

	"github.com/arca-backup/arca/internal/storage"
)

// ErrWriterClosed is returned by Writer methods after Commit or Abort.
var ErrWriterClosed = errors.New("writer already committed or aborted")

// WriterStats counts what a Writer did.
type WriterStats struct {
	NewBlobs       int64 `json:"newBlobs"`
	DuplicateBlobs int64 `json:"duplicateBlobs"`
	LogicalBytes   int64 `json:"logicalBytes"` // plaintext passed in, duplicates included
	NewBytes       int64 `json:"newBytes"`     // plaintext of new blobs
	StoredBytes    int64 `json:"storedBytes"`  // bytes saved to storage: packs, index, manifest
	Packs          int64 `json:"packs"`
	// RetainedPacks: reused packs whose object lock was extended at commit
	// (storage with object lock only).
	RetainedPacks int64 `json:"retainedPacks,omitempty"`
}

// Writer writes one recovery point. PutBlob and PutStream are safe for
// concurrent use; memory is bounded by (open packs + uploaders + 1) packs
// plus the chunk buffers of PutStream.
type Writer struct {
	r      *Repository
	lock   *heldLock
	ctx    context.Context // uploads; cancelled by Abort
	cancel context.CancelFunc

	mu      sync.Mutex
	pending map[ID]struct{} // blobs accepted by this writer
	closed  bool
	// Packs being filled: a goroutine adding a blob takes a permit from
	// open (nOpen of them) and the most recently used idle pack (or makes
	// one), seals the blob straight into its buffer (no copy of the
	// envelope), and puts it back, or hands it to the uploaders once full.
	// So several blobs are sealed at once, each into a pack of its own, a
	// pack's blobs are contiguous, and a writer adding one blob at a time
	// fills one pack after another.
	open    chan struct{}
	nOpen   int
	idleMu  sync.Mutex
	idle    []*packBuf
	uploads chan *packBuf
	wg      sync.WaitGroup

	errMu sync.Mutex
	err   error

	resMu   sync.Mutex
	results []indexPack

	depMu sync.Mutex
	deps  map[ID]struct{} // existing packs holding blobs this writer deduplicated against

	packPool  chan []byte
	chunkBufs chan []byte

	newBlobs, dupBlobs, logical, newBytes, stored, packs atomic.Int64
	retained                                             atomic.Int64 // reused packs whose object lock was extended
}

type packBuf struct {
	data    []byte
	entries []packEntry
}

// NewWriter starts a recovery point. It takes a shared lock, held (and
// refreshed) until Commit or Abort.
func (r *Repository) NewWriter(ctx context.Context) (*Writer, error) {
	hl, err := r.lock(ctx, false)
	if err != nil {
		return nil, err
	}
	// Deduplicate only against what exists now: a prune may have run since
	// the repository was opened.
	if err := r.refreshIndex(ctx); err != nil {
		_ = hl.release(ctx)
		return nil, fmt.Errorf("refresh index: %w", err)
	}
	return r.newWriter(ctx, hl), nil
}

// newWriter makes a writer holding hl (nil: the caller holds a lock).
func (r *Repository) newWriter(ctx context.Context, hl *heldLock) *Writer {
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &Writer{
		r: r, lock: hl, ctx: wctx, cancel: cancel,
		pending:   map[ID]struct{}{},
		deps:      map[ID]struct{}{},
		uploads:   make(chan *packBuf, 1),
		chunkBufs: make(chan []byte, runtime.GOMAXPROCS(0)+2),
		nOpen:     runtime.GOMAXPROCS(0) + 1,
	}
	// Every pack buffer that can be alive at once (open, queued, uploading)
	// is kept for reuse: a new one costs page faults on every byte sealed
	// into it, once the runtime has returned a freed one to the OS.
	w.packPool = make(chan []byte, w.nOpen+1+r.opts.uploaders)
	w.open = make(chan struct{}, w.nOpen)
	for i := 0; i < w.nOpen; i++ {
		w.open <- struct{}{}
	}
	for i := 0; i < cap(w.chunkBufs); i++ {
		w.chunkBufs <- nil // allocated on first use
	}
	for i := 0; i < r.opts.uploaders; i++ {
		w.wg.Add(1)
		go w.uploader()
	}
	return w
}

func (w *Writer) setErr(err error) {
	w.errMu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.errMu.Unlock()
}

func (w *Writer) failed() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

// PutBlob stores data as one data blob unless the repository or this writer
// already has it, and returns its ID (SHA-256 of data).
func (w *Writer) PutBlob(ctx context.Context, data []byte) (ID, error) {
	return w.putBlob(ctx, DataBlob, data)
}

func (w *Writer) putBlob(ctx context.Context, t BlobType, data []byte) (ID, error) {
	return w.putBlobSpare(ctx, t, data, nil)
}

// putBlobSpare is putBlob; if spare is set, it is data with one byte
// before it (spare[1:] is data) that sealing may overwrite, so that an
// envelope stored raw is encrypted straight from the caller's buffer into
// the pack (no copy).
func (w *Writer) putBlobSpare(ctx context.Context, t BlobType, data, spare []byte) (ID, error) {
	if len(data) > MaxBlobSize {
		return ID{}, fmt.Errorf("blob of %d bytes exceeds the maximum of %d", len(data), MaxBlobSize)
	}
	if err := w.failed(); err != nil {
		return ID{}, err
	}
	id := Hash(data)
	w.logical.Add(int64(len(data)))
	if _, pack, _, ok := w.r.idx.Load().lookup(id); ok {
		w.depMu.Lock()
		w.deps[pack] = struct{}{}
		w.depMu.Unlock()
		w.dupBlobs.Add(1)
		return id, nil
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ID{}, ErrWriterClosed
	}
	if _, ok := w.pending[id]; ok {
		w.mu.Unlock()
		w.dupBlobs.Add(1)
		return id, nil
	}
	w.pending[id] = struct{}{}
	w.mu.Unlock()

	// Compress and encrypt outside the lock, in the caller's goroutine,
	// straight into a pack's buffer.
	comp := flagZstd
	if t == DataBlob && w.r.crypt.s2 {
		comp = flagS2 // format v3: file contents with S2, trees with zstd
	}
	err := w.add(ctx, t, id, len(data), sealedMax(len(data), comp), func(dst []byte) []byte {
		if spare != nil {
			return w.r.crypt.sealSpare(dst, spare, comp, kindBlob)
		}
		return w.r.crypt.seal(dst, data, comp, kindBlob)
	})
	if err != nil {
		return ID{}, err
	}
	w.newBlobs.Add(1)
	w.newBytes.Add(int64(len(data)))
	return id, nil
}

// appendSealed adds an encrypted blob (a prune's repack) to a pack.
func (w *Writer) appendSealed(ctx context.Context, t BlobType, id ID, sealed []byte, rawLen int) error {
	return w.add(ctx, t, id, rawLen, len(sealed), func(dst []byte) []byte { return append(dst, sealed...) })
}

// add appends one blob's envelope, made by fill (which appends at most
// need bytes to its argument), to an open pack, and hands the pack to the
// uploaders once it reaches the target size.
func (w *Writer) add(ctx context.Context, t BlobType, id ID, rawLen, need int, fill func([]byte) []byte) error {
	select {
	case <-w.open:
	case <-w.ctx.Done():
		return errAborted
	case <-ctx.Done():
		return fmt.Errorf("put blob: %w", ctx.Err())
	}
	var p *packBuf
	w.idleMu.Lock()
	if n := len(w.idle); n > 0 {
		p, w.idle = w.idle[n-1], w.idle[:n-1]
	}
	w.idleMu.Unlock()
	defer func() {
		if p != nil {
			w.idleMu.Lock()
			w.idle = append(w.idle, p)
			w.idleMu.Unlock()
		}
		w.open <- struct{}{}
	}()
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return ErrWriterClosed
	}
	// A blob that might not fit into the pack's buffer closes the pack
	// first, so pack buffers are never reallocated.
	if p != nil && len(p.entries) > 0 && len(p.data)+need > cap(p.data) {
		if err := w.send(ctx, p); err != nil {
			p = nil
			return err
		}
		p = nil
	}
	if p == nil {
		p = w.newPack(need)
	}
	off := len(p.data)
	p.data = fill(p.data)
	p.entries = append(p.entries, packEntry{Type: t, ID: id, Offset: uint32(off), Length: uint32(len(p.data) - off), RawLen: uint32(rawLen)})
	if len(p.data) >= w.r.opts.packSize {
		err := w.send(ctx, p)
		p = nil
		return err
	}
	return nil
}

// sealedMax bounds the envelope of a body of n bytes sealed with comp.
func sealedMax(n int, comp byte) int {
	switch comp {
	case flagS2:
		n = s2.MaxEncodedLen(n)
	case flagZstd:
		n += n>>8 + 64 // zstd's raw blocks and frame header
	}
	return envelopeSize + 1 + binary.MaxVarintLen64 + n
}

// send hands a full pack to the uploaders. Waiting here while every
// uploader is busy is the backpressure: writers wait instead of filling
// more packs.
func (w *Writer) send(ctx context.Context, p *packBuf) error {
	select {
	case w.uploads <- p:
		return nil
	case <-w.ctx.Done():
		return errAborted
	case <-ctx.Done():
		err := fmt.Errorf("put blob: %w", ctx.Err())
		w.setErr(err)
		return err
	}
}

// newPack returns an empty pack with room for at least need bytes.
func (w *Writer) newPack(need int) *packBuf {
	var b []byte
	select {
	case b = <-w.packPool:
	default:
	}
	if size := w.r.opts.packSize + w.r.opts.packSize/4; cap(b) < max(need, size) {
		b = make([]byte, 0, max(need, size))
	}
	return &packBuf{data: b[:0]}
}

func (w *Writer) uploader() {
	defer w.wg.Done()
	for p := range w.uploads {
		if w.failed() != nil {
			continue // drain
		}
		if err := w.upload(p); err != nil {
			w.setErr(err)
		}
		select {
		case w.packPool <- p.data[:0]:
		default:
		}
	}
}

// upload finishes a pack (appends the encrypted header and its length),
// names it by its hash and saves it.
func (w *Writer) upload(p *packBuf) error {
	hdr := encodePackHeader(make([]byte, 0, 1+len(p.entries)*packEntrySize), p.entries)
	before := len(p.data)
	p.data = w.r.crypt.seal(p.data, hdr, flagRaw, kindPackHeader)
	p.data = binary.LittleEndian.AppendUint32(p.data, uint32(len(p.data)-before))
	id := w.r.packID(p.data)
	h := storage.Handle{Type: storage.PackFile, Name: id.String()}
	if err := w.r.be.Save(w.ctx, h, int64(len(p.data)), newBytesReader(p.data)); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	w.stored.Add(int64(len(p.data)))
	w.packs.Add(1)
	w.resMu.Lock()
	w.results = append(w.results, indexPack{ID: id, Entries: p.entries})
	w.resMu.Unlock()
	return nil
}

// flush closes the writer to new blobs and waits for all uploads.
func (w *Writer) flush() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrWriterClosed
	}
	w.closed = true
	w.mu.Unlock()
	// Take every open pack (waiting for blobs being sealed into them) and
	// send those holding blobs; the uploaders are running, so this cannot
	// block for long. Empty slots go back: a late PutBlob finds the writer
	// closed instead of waiting forever.
	w.drainOpen(func(p *packBuf) {
		if p != nil && len(p.entries) > 0 && w.failed() == nil {
			w.uploads <- p
		}
	})
	close(w.uploads)
	w.wg.Wait()
	return w.failed()
}

// drainOpen waits until no blob is being added (it takes every permit),
// passes each pack being filled to fn and forgets it; w.closed is set.
func (w *Writer) drainOpen(fn func(*packBuf)) {
	for i := 0; i < w.nOpen; i++ {
		<-w.open
	}
	w.idleMu.Lock()
	idle := w.idle
	w.idle = nil
	w.idleMu.Unlock()
	for _, p := range idle {
		fn(p)
	}
	for i := 0; i < w.nOpen; i++ {
		w.open <- struct{}{}
	}
}

// Commit uploads what is pending, then writes the index, then the manifest
// of rp, and releases the lock. On error nothing references the uploaded
// packs (prune removes them) and no manifest exists. rp.ID is set on success.
func (w *Writer) Commit(ctx context.Context, rp *RecoveryPoint) (ID, error) {
	if rp == nil {
		return ID{}, errors.New("commit: nil recovery point")
	}
	id, err := w.commit(ctx, func() ([]byte, error) { return encodeManifest(rp) })
	if err == nil {
		rp.ID = id
	}
	return id, err
}

// commit is Commit with the manifest's plaintext made by manifest (called
// once every pack and index file is written): copy writes a manifest body
// it read from another repository.
func (w *Writer) commit(ctx context.Context, manifest func() ([]byte, error)) (ID, error) {
	err := w.flush()
	defer func() {
		w.cancel()
		_ = w.lock.release(ctx)
	}()
	if err != nil {
		return ID{}, fmt.Errorf("commit: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return ID{}, err
	}
	// The manifest will reference blobs in packs other writers wrote: they
	// must still be there (format §11 rule 10).
	if err := w.checkDeps(ctx); err != nil {
		return ID{}, fmt.Errorf("commit: %w", err)
	}
	// On storage with object lock, the packs it reuses must stay retained
	// as long as the new point's own files (docs/storage.md, Object Lock).
	if err := w.retainDeps(ctx); err != nil {
		return ID{}, fmt.Errorf("commit: %w", err)
	}
	// Index files, split at maxIndexEntries.
	var batch []indexPack
	n := 0
	var written []ID
	saveBatch := func() error {
		if len(batch) == 0 {
			return nil
		}
		id, size, err := w.r.saveSealed(ctx, storage.IndexFile, encodeIndex(batch), false)
		if err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		w.stored.Add(int64(size))
		written = append(written, id)
		batch, n = nil, 0
		return nil
	}
	for _, p := range w.results {
		batch = append(batch, p)
		n += len(p.Entries)
		if n >= maxIndexEntries {
			if err := saveBatch(); err != nil {
				return ID{}, err
			}
		}
	}
	if err := saveBatch(); err != nil {
		return ID{}, err
	}
	// The manifest may only be written while the lock has protected every
	// pack since NewWriter: if refreshing failed for too long, or the lock was
	// removed, a prune may have deleted packs this recovery point needs.
	if err := w.lock.check(ctx); err != nil {
		return ID{}, fmt.Errorf("commit: %w", err)
	}
	body, err := manifest()
	if err != nil {
		return ID{}, fmt.Errorf("commit: %w", err)
	}
	id, size, err := w.r.saveSealed(ctx, storage.RecoveryPointFile, body, true)
	if err != nil {
		return ID{}, fmt.Errorf("commit: %w", err)
	}
	w.stored.Add(int64(size))
	w.r.idx.Load().add(w.results)
	w.r.mu.Lock()
	for _, x := range written {
		w.r.indexFiles[x] = true
	}
	w.r.mu.Unlock()
	return id, nil
}

// ErrPacksMissing: packs holding blobs a recovery point reuses are gone.
var ErrPacksMissing = errors.New("packs this recovery point reuses are missing from storage")

// depListAt: above this many packs to check, one listing of data/ is
// cheaper than a Stat per pack.
const depListAt = 256

// checkDeps verifies that every pack this writer deduplicated against
// still exists, so that no manifest is written that points at missing data
// (a pack deleted by hand, or by a prune that did not see this writer's
// lock).
func (w *Writer) checkDeps(ctx context.Context) error {
	w.depMu.Lock()
	deps := make([]ID, 0, len(w.deps))
	for id := range w.deps {
		deps = append(deps, id)
	}
	w.depMu.Unlock()
	var missing []ID
	if len(deps) > depListAt {
		have, err := w.r.listIDs(ctx, storage.PackFile)
		if err != nil {
			return err
		}
		for _, id := range deps {
			if _, ok := have[id]; !ok {
				missing = append(missing, id)
			}
		}
	} else {
		var mu sync.Mutex
		err := forEachID(deps, 8, func(id ID) error {
			_, err := w.r.be.Stat(ctx, storage.Handle{Type: storage.PackFile, Name: id.String()})
			switch {
			case storage.IsNotExist(err):
				mu.Lock()
				missing = append(missing, id)
				mu.Unlock()
			case err != nil:
				return fmt.Errorf("check pack %s: %w", id.Short(), err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if len(missing) == 0 {
		return nil
	}
	names := make([]string, 0, min(len(missing), 5))
	for _, id := range missing[:min(len(missing), 5)] {
		names = append(names, "data/"+id.String())
	}
	return fmt.Errorf("%w: %d packs (%s…); no manifest was written: run `arca repo check`, then `arca repo rebuild-index`, and back up again",
		ErrPacksMissing, len(missing), strings.Join(names, ", "))
}

// retainDeps extends the retention of every pack this writer deduplicated
// against to the retention a file written now gets, when the storage
// retains files (S3 Object Lock); 8 at a time.
func (w *Writer) retainDeps(ctx context.Context) error {
	rt, ok := w.r.be.(storage.Retainer)
	if !ok {
		return nil
	}
	period := rt.RetentionPeriod(storage.PackFile)
	if period <= 0 {
		return nil
	}
	until := time.Now().Add(period)
	w.depMu.Lock()
	deps := make([]ID, 0, len(w.deps))
	for id := range w.deps {
		deps = append(deps, id)
	}
	w.depMu.Unlock()
	err := forEachID(deps, 8, func(id ID) error {
		if err := rt.RetainUntil(ctx, storage.Handle{Type: storage.PackFile, Name: id.String()}, until); err != nil {
			return fmt.Errorf("extend the object lock of reused pack %s: %w", id.Short(), err)
		}
		return nil
	})
	w.retained.Add(int64(len(deps)))
	return err
}

// Abort discards the recovery point: no index and no manifest are written.
// Packs already uploaded stay unreferenced until the next prune.
func (w *Writer) Abort(ctx context.Context) error {
	// Cancel first: a PutBlob blocked handing a pack to a busy uploader
	// holds w.mu, and in-flight uploads may be retrying for minutes.
	w.setErr(errAborted)
	w.cancel()
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return w.lock.release(ctx)
	}
	w.closed = true
	w.mu.Unlock()
	w.drainOpen(func(*packBuf) {}) // blobs being sealed finish (or see the cancel)
	close(w.uploads)
	w.wg.Wait()
	return w.lock.release(ctx)
}

var errAborted = errors.New("writer aborted")

// Stats returns what the writer did so far.
func (w *Writer) Stats() WriterStats {
	return WriterStats{
		NewBlobs: w.newBlobs.Load(), DuplicateBlobs: w.dupBlobs.Load(),
		LogicalBytes: w.logical.Load(), NewBytes: w.newBytes.Load(),
		StoredBytes: w.stored.Load(), Packs: w.packs.Load(), RetainedPacks: w.retained.Load(),
	}
}

// streamChunker returns the next content-defined chunk of rd in buf (of
// capacity chunker.MaxSize) each call, io.EOF after the last; a call with
// a nil buf releases it. Format v3: the gear chunker, reading straight into
// buf. v1 and v2: restic's Rabin chunker with the repository's polynomial,
// fed by a readahead goroutine, as always.
func (r *Repository) streamChunker(rd io.Reader) func(buf []byte) ([]byte, error) {
	if r.gear != nil {
		gc := newGearChunker(r.gear, &gearStream, rd)
		return func(buf []byte) ([]byte, error) {
			if buf == nil {
				gc.release()
				return nil, nil
			}
			return gc.Next(buf)
		}
	}
	ra := newReadahead(rd)
	ch := chunker.New(ra, r.cfg.ChunkerPolynomial)
	return func(buf []byte) ([]byte, error) {
		if buf == nil {
			ra.close()
			return nil, nil
		}
		c, err := ch.Next(buf)
		return c.Data, err
	}
}

// PutStream splits rd into content-defined chunks (512 KiB–8 MiB, about 1
// MiB on average; the repository's chunker, see streamChunker),
// stores each as a data blob and returns their IDs in order and the number of
// bytes read. Chunks are compressed and encrypted in parallel.
func (w *Writer) PutStream(ctx context.Context, rd io.Reader) ([]ID, int64, error) {
	type job struct {
		id  ID
		err error
	}
	var (
		jobs  []*job
		total int64
		wg    sync.WaitGroup
		sem   = make(chan struct{}, runtime.GOMAXPROCS(0))
	)
	next := w.r.streamChunker(rd)
	defer next(nil) // stops the v1/v2 readahead
	var readErr error
	for {
		if err := w.failed(); err != nil {
			readErr = err
			break
		}
		var buf []byte
		select {
		case buf = <-w.chunkBufs:
		case <-ctx.Done():
			readErr = ctx.Err()
		}
		if readErr != nil {
			break
		}
		if buf == nil {
			// One byte more than a chunk: the chunk goes in at buf[1:],
			// and sealing may use buf[0] (putBlobSpare).
			buf = make([]byte, 1, 1+chunker.MaxSize)
		}
		c, err := next(buf[1:1])
		if err == io.EOF {
			w.chunkBufs <- buf
			break
		}
		if err != nil {
			w.chunkBufs <- buf
			readErr = fmt.Errorf("read stream: %w", err)
			break
		}
		total += int64(len(c))
		j := &job{}
		jobs = append(jobs, j)
		sem <- struct{}{}
		wg.Add(1)
		var spare []byte
		if &c[0] == &buf[:2][1] { // the chunker filled buf (it always does)
			spare = buf[:1+len(c)]
		}
		go func(data, spare, buf []byte) {
			defer wg.Done()
			j.id, j.err = w.putBlobSpare(ctx, DataBlob, data, spare)
			w.chunkBufs <- buf[:1]
			<-sem
		}(c, spare, buf)
	}
	wg.Wait()
	if readErr != nil {
		return nil, total, readErr
	}
	ids := make([]ID, len(jobs))
	for i, j := range jobs {
		if j.err != nil {
			return nil, total, j.err
		}
		ids[i] = j.id
	}
	return ids, total, nil
}

// readahead reads rd in a goroutine of its own, so that producing the
// stream (a disk read, a decompressor) overlaps with chunking.
type readahead struct {
	exited chan struct{}
	full   chan []byte
	empty  chan []byte
	done   chan struct{}
	cur    []byte
	buf    []byte
	err    error
	errc   chan error
}

const (
	readaheadBufs = 4
	readaheadSize = 1 << 20
)

func newReadahead(rd io.Reader) *readahead {
	ra := &readahead{full: make(chan []byte, readaheadBufs), empty: make(chan []byte, readaheadBufs),
		done: make(chan struct{}), errc: make(chan error, 1), exited: make(chan struct{})}
	for i := 0; i < readaheadBufs; i++ {
		ra.empty <- make([]byte, readaheadSize)
	}
	go func() {
		defer close(ra.exited)
		defer close(ra.full)
		for {
			var b []byte
			select {
			case b = <-ra.empty:
			case <-ra.done:
				return
			}
			n, err := io.ReadFull(rd, b[:cap(b)])
			if n > 0 {
				select {
				case ra.full <- b[:n]:
				case <-ra.done:
					return
				}
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				ra.errc <- io.EOF
				return
			}
			if err != nil {
				ra.errc <- err
				return
			}
		}
	}()
	return ra
}

func (ra *readahead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.buf != nil {
			ra.empty <- ra.buf[:0]
			ra.buf = nil
		}
		b, ok := <-ra.full
		if !ok {
			if ra.err == nil {
				select {
				case ra.err = <-ra.errc:
				default:
					ra.err = io.ErrUnexpectedEOF
				}
			}
			return 0, ra.err
		}
		ra.buf, ra.cur = b, b
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// close stops reading and waits until the goroutine no longer uses the
// reader: PutStream must not touch its reader after it returns.
func (ra *readahead) close() {
	select {
	case <-ra.done:
	default:
		close(ra.done)
	}
	<-ra.exited
}

// Reference makes the recovery point this writer commits safe to name
// trees that another writer stored and committed meanwhile (the data
// mover's pods write each volume's tree through their own writer): it
// loads the index files written since the repository was opened and
// records the packs holding each tree's stream blobs as dependencies, which
// Commit checks still exist (format §11 rule 10). A tree blob the index
// does not know is an error naming it: the recovery point would name data
// the repository does not hold.
func (w *Writer) Reference(ctx context.Context, trees ...Tree) error {
	if err := w.r.refreshIndex(ctx); err != nil {
		return fmt.Errorf("reference trees: reload the index: %w", err)
	}
	idx := w.r.idx.Load()
	w.depMu.Lock()
	defer w.depMu.Unlock()
	for _, t := range trees {
		for _, id := range t.Blobs {
			_, pack, _, ok := idx.lookup(id)
			if !ok {
				return fmt.Errorf("reference trees: tree blob %s is in no index file of the repository", id.Short())
			}
			w.deps[pack] = struct{}{}
		}
	}
	return nil
}
