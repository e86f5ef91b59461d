package repo

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/arca-backup/arca/internal/storage"
)

// indexPack is one pack's entries in an index file.
type indexPack struct {
	ID      ID
	Entries []packEntry
}

const indexVersion = 1

// maxIndexEntries bounds the blobs one index file describes; writers split
// larger indexes into several files.
const maxIndexEntries = 200_000

// encodeIndex returns an index file body:
//
//	version (1 byte) || uvarint(#packs) || per pack: packID (32) ||
//	uvarint(#blobs) || per blob: type (1) || blobID (32) ||
//	uvarint(offset) || uvarint(length) || uvarint(raw length)
func encodeIndex(packs []indexPack) []byte {
	n := 0
	for _, p := range packs {
		n += 40 + len(p.Entries)*(33+12)
	}
	b := make([]byte, 0, n+16)
	b = append(b, indexVersion)
	b = appendUvarint(b, uint64(len(packs)))
	for _, p := range packs {
		b = append(b, p.ID[:]...)
		b = appendUvarint(b, uint64(len(p.Entries)))
		for _, e := range p.Entries {
			b = append(b, byte(e.Type))
			b = append(b, e.ID[:]...)
			b = appendUvarint(b, uint64(e.Offset))
			b = appendUvarint(b, uint64(e.Length))
			b = appendUvarint(b, uint64(e.RawLen))
		}
	}
	return b
}

var errIndexTruncated = errors.New("index: truncated")

// decodeIndex parses an index file body.
func decodeIndex(b []byte) ([]indexPack, error) {
	if len(b) < 1 || b[0] != indexVersion {
		return nil, errors.New("index: unknown version")
	}
	b = b[1:]
	next := func(max uint64) (uint64, error) {
		v, n := uvarint(b)
		if n <= 0 {
			return 0, errIndexTruncated
		}
		if v > max {
			return 0, fmt.Errorf("index: value %d out of range", v)
		}
		b = b[n:]
		return v, nil
	}
	np, err := next(uint64(len(b) / 33))
	if err != nil {
		return nil, err
	}
	packs := make([]indexPack, 0, np)
	for i := uint64(0); i < np; i++ {
		if len(b) < 32 {
			return nil, errIndexTruncated
		}
		var p indexPack
		copy(p.ID[:], b)
		b = b[32:]
		nb, err := next(uint64(len(b) / 36))
		if err != nil {
			return nil, err
		}
		p.Entries = make([]packEntry, 0, nb)
		for j := uint64(0); j < nb; j++ {
			if len(b) < 33 {
				return nil, errIndexTruncated
			}
			e := packEntry{Type: BlobType(b[0])}
			if e.Type > TreeBlob {
				return nil, fmt.Errorf("index: unknown blob type %d", e.Type)
			}
			copy(e.ID[:], b[1:33])
			b = b[33:]
			off, err := next(1<<32 - 1)
			if err != nil {
				return nil, err
			}
			l, err := next(1<<32 - 1)
			if err != nil {
				return nil, err
			}
			rl, err := next(MaxBlobSize)
			if err != nil {
				return nil, err
			}
			if l < envelopeSize+1 || off+l > 1<<32-1 {
				return nil, errors.New("index: invalid blob extent")
			}
			e.Offset, e.Length, e.RawLen = uint32(off), uint32(l), uint32(rl)
			p.Entries = append(p.Entries, e)
		}
		packs = append(packs, p)
	}
	if len(b) != 0 {
		return nil, errors.New("index: trailing bytes")
	}
	return packs, nil
}

// blobLoc is where the in-memory index finds a blob.
type blobLoc struct {
	pack   uint32 // position in memIndex.packs
	typ    BlobType
	offset uint32
	length uint32
	rawLen uint32
}

// memIndex maps blob IDs to their location. Safe for concurrent use.
type memIndex struct {
	mu      sync.RWMutex
	blobs   map[ID]blobLoc
	packs   []ID
	packEnd []uint32 // end of the last known blob per pack
	packPos map[ID]uint32
}

func newMemIndex() *memIndex {
	return &memIndex{blobs: map[ID]blobLoc{}, packPos: map[ID]uint32{}}
}

func (m *memIndex) has(id ID) bool {
	m.mu.RLock()
	_, ok := m.blobs[id]
	m.mu.RUnlock()
	return ok
}

func (m *memIndex) lookup(id ID) (blobLoc, ID, uint32, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	l, ok := m.blobs[id]
	if !ok {
		return l, ID{}, 0, false
	}
	return l, m.packs[l.pack], m.packEnd[l.pack], true
}

func (m *memIndex) add(packs []indexPack) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range packs {
		pos, ok := m.packPos[p.ID]
		if !ok {
			pos = uint32(len(m.packs))
			m.packs = append(m.packs, p.ID)
			m.packEnd = append(m.packEnd, 0)
			m.packPos[p.ID] = pos
		}
		for _, e := range p.Entries {
			if end := e.Offset + e.Length; end > m.packEnd[pos] {
				m.packEnd[pos] = end
			}
			if _, dup := m.blobs[e.ID]; dup {
				continue
			}
			m.blobs[e.ID] = blobLoc{pack: pos, typ: e.Type, offset: e.Offset, length: e.Length, rawLen: e.RawLen}
		}
	}
}

// listIDs lists the names of all files of type t that parse as IDs.
func (r *Repository) listIDs(ctx context.Context, t storage.FileType) (map[ID]int64, error) {
	out := map[ID]int64{}
	err := r.be.List(ctx, t, func(fi storage.FileInfo) error {
		if id, err := ParseID(fi.Name); err == nil {
			out[id] = fi.Size
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", t, err)
	}
	return out, nil
}

// loadIndexFile reads and decodes one index file.
func (r *Repository) loadIndexFile(ctx context.Context, id ID) ([]indexPack, error) {
	body, err := r.loadSealed(ctx, storage.IndexFile, id)
	if err != nil {
		return nil, err
	}
	packs, err := decodeIndex(body)
	if err != nil {
		return nil, &damageError{fmt.Errorf("index/%s: %w", id, err)}
	}
	return packs, nil
}

// refreshIndex brings the in-memory index up to date with storage: new
// index files are loaded, and if any loaded index file has disappeared (a
// prune ran since), the index is rebuilt from scratch, because entries it
// held may point at removed packs.
func (r *Repository) refreshIndex(ctx context.Context) error {
	ids, err := r.listIDs(ctx, storage.IndexFile)
	if err != nil {
		return err
	}
	r.mu.Lock()
	gone := false
	for id := range r.indexFiles {
		if _, ok := ids[id]; !ok {
			gone = true
			break
		}
	}
	for id := range r.indexErrs {
		if _, ok := ids[id]; !ok {
			delete(r.indexErrs, id)
		}
	}
	if gone {
		r.idx.Store(newMemIndex())
		r.indexFiles = map[ID]bool{}
		r.indexErrs = map[ID]error{}
		r.cache.Store(newBlockCache(r.opts.cacheBytes))
	}
	r.mu.Unlock()
	return r.loadIndex(ctx)
}

// loadIndex loads every index file not loaded yet. Damaged index files are
// recorded in r.indexErrs (Check reports them) and do not fail Open: the
// blobs they described are simply unknown, so writers store them again.
func (r *Repository) loadIndex(ctx context.Context) error {
	ids, err := r.listIDs(ctx, storage.IndexFile)
	if err != nil {
		return err
	}
	r.mu.Lock()
	var todo []ID
	for id := range ids {
		if !r.indexFiles[id] {
			todo = append(todo, id)
		}
	}
	r.mu.Unlock()
	type result struct {
		id    ID
		packs []indexPack
		err   error
	}
	work := make(chan ID)
	results := make(chan result)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				p, err := r.loadIndexFile(ctx, id)
				results <- result{id, p, err}
			}
		}()
	}
	go func() {
		for _, id := range todo {
			work <- id
		}
		close(work)
		wg.Wait()
		close(results)
	}()
	var firstErr error
	for res := range results {
		r.mu.Lock()
		switch {
		case res.err == nil:
			r.indexFiles[res.id] = true
			delete(r.indexErrs, res.id)
			r.idx.Load().add(res.packs)
		case isDamage(res.err):
			r.indexErrs[res.id] = res.err
		case storage.IsNotExist(res.err): // removed meanwhile by prune
		default:
			if firstErr == nil {
				firstErr = res.err
			}
		}
		r.mu.Unlock()
	}
	return firstErr
}

// damageError marks errors caused by file contents (as opposed to storage).
type damageError struct{ err error }

func (e *damageError) Error() string { return e.err.Error() }
func (e *damageError) Unwrap() error { return e.err }

func isDamage(err error) bool {
	var d *damageError
	return errors.As(err, &d)
}
