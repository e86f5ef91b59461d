package repo

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/arca-backup/arca/internal/storage"
)

// ErrBlobNotFound: the index has no entry for a blob.
var ErrBlobNotFound = errors.New("blob not in index")

// ErrBlobDamaged: the stored blob does not decrypt or does not hash to its ID.
var ErrBlobDamaged = errors.New("blob damaged")

// LoadBlob returns the plaintext of blob id. It authenticates, decompresses
// and checks that SHA-256 of the result equals id: it never returns wrong
// data. Safe for concurrent use.
func (r *Repository) LoadBlob(ctx context.Context, id ID) ([]byte, error) {
	return r.LoadBlobTo(ctx, id, nil)
}

// LoadBlobTo is LoadBlob for a caller that loads many blobs and recycles
// their buffers (a restore): the stored blob is read into alloc(n), a
// buffer of at least n bytes (the envelope's length), and decrypted in
// place there, so that a blob costs no allocation, zeroing or garbage.
// The plaintext aliases that buffer unless the blob was stored
// compressed; the caller may reuse the buffer once done with the
// plaintext. alloc may be called more than once (a retry); only the last
// buffer holds the plaintext. A nil alloc allocates. The checks are
// LoadBlob's.
func (r *Repository) LoadBlobTo(ctx context.Context, id ID, alloc func(n int) []byte) ([]byte, error) {
	if alloc == nil {
		alloc = func(n int) []byte { return make([]byte, n) }
	}
	b, err := r.loadBlob(ctx, id, alloc)
	if err != nil && (storage.IsNotExist(err) || errors.Is(err, ErrBlobNotFound)) {
		// Another process may have pruned (repacked) since the index was
		// loaded: refresh it and try once more.
		if rerr := r.refreshIndex(ctx); rerr == nil {
			return r.loadBlob(ctx, id, alloc)
		}
	}
	return b, err
}

func (r *Repository) loadBlob(ctx context.Context, id ID, alloc func(int) []byte) ([]byte, error) {
	loc, pack, packEnd, ok := r.idx.Load().lookup(id)
	if !ok {
		r.mu.Lock()
		nbad := len(r.indexErrs)
		r.mu.Unlock()
		if nbad > 0 {
			return nil, fmt.Errorf("blob %s: %w (%d index files are damaged; run check)", id, ErrBlobNotFound, nbad)
		}
		return nil, fmt.Errorf("blob %s: %w", id, ErrBlobNotFound)
	}
	sealed, cached, err := r.readBlobBytes(ctx, pack, packEnd, loc, alloc(int(loc.length)))
	if err != nil {
		return nil, fmt.Errorf("blob %s in pack %s: %w", id.Short(), pack.Short(), err)
	}
	plain, err := r.openBlobInPlace(sealed, id, loc.rawLen)
	if err != nil {
		// Maybe the bytes were damaged in transit or in the cache rather
		// than in storage: read once more, directly.
		if cached {
			r.cache.Load().evictPack(pack)
		}
		h := storage.Handle{Type: storage.PackFile, Name: pack.String()}
		again, rerr := readRangeTo(ctx, r.be, h, int64(loc.offset), alloc(int(loc.length))[:loc.length])
		if rerr == nil {
			if plain, err2 := r.openBlobInPlace(again, id, loc.rawLen); err2 == nil {
				return plain, nil
			}
		}
		return nil, fmt.Errorf("blob %s in pack %s: %w", id.Short(), pack.Short(), err)
	}
	return plain, nil
}

// openBlobInPlace is openBlob decrypting into sealed's own storage (which
// the caller owns and gives up: it holds the plaintext, or garbage after
// an error). A raw body is returned without a copy.
func (r *Repository) openBlobInPlace(sealed []byte, id ID, rawLen uint32) ([]byte, error) {
	if len(sealed) < envelopeSize+1 {
		return nil, fmt.Errorf("%w: %v", ErrBlobDamaged, errShortInput)
	}
	ct := sealed[nonceSize:]
	pt, err := r.crypt.aead.Open(ct[:0], sealed[:nonceSize], ct, r.crypt.ad(kindBlob))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBlobDamaged, errDecrypt)
	}
	plain, err := decodeBody(nil, pt, int(rawLen), r.crypt.s2)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBlobDamaged, err)
	}
	return r.verifyBlob(plain, id, rawLen)
}

// openBlob decrypts, decompresses and verifies one blob envelope.
func (r *Repository) openBlob(sealed []byte, id ID, rawLen uint32) ([]byte, error) {
	plain, err := r.crypt.open(nil, sealed, int(rawLen), kindBlob)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBlobDamaged, err)
	}
	return r.verifyBlob(plain, id, rawLen)
}

// verifyBlob checks a blob's plaintext against its length and ID.
func (r *Repository) verifyBlob(plain []byte, id ID, rawLen uint32) ([]byte, error) {
	if uint32(len(plain)) != rawLen {
		return nil, fmt.Errorf("%w: %d bytes, index says %d", ErrBlobDamaged, len(plain), rawLen)
	}
	if Hash(plain) != id {
		return nil, fmt.Errorf("%w: content does not hash to its ID", ErrBlobDamaged)
	}
	return plain, nil
}

// readBlobBytes reads the envelope of a blob into buf (of at least its
// length), through the block cache for small blobs.
func (r *Repository) readBlobBytes(ctx context.Context, pack ID, packEnd uint32, loc blobLoc, buf []byte) ([]byte, bool, error) {
	h := storage.Handle{Type: storage.PackFile, Name: pack.String()}
	cache := r.cache.Load()
	if cache == nil || cache.capBlocks == 0 || loc.length > cacheBlockSize/2 {
		b, err := readRangeTo(ctx, r.be, h, int64(loc.offset), buf[:loc.length])
		return b, false, err
	}
	start, end := int64(loc.offset), int64(loc.offset)+int64(loc.length)
	out := buf[:0]
	for blk := start / cacheBlockSize; blk*cacheBlockSize < end; blk++ {
		data, err := cache.get(ctx, pack, blk, func() ([]byte, error) {
			bstart := blk * cacheBlockSize
			bend := min(bstart+cacheBlockSize, int64(packEnd))
			if bend < end && bend < bstart+cacheBlockSize {
				bend = end
			}
			return readRange(ctx, r.be, h, bend-bstart, bstart)
		})
		if err != nil {
			return nil, false, err
		}
		bstart := blk * cacheBlockSize
		lo := max(start, bstart) - bstart
		hi := min(end, bstart+int64(len(data))) - bstart
		if lo >= hi || hi > int64(len(data)) {
			cache.evictPack(pack)
			return nil, false, fmt.Errorf("%s: short block read", h)
		}
		out = append(out, data[lo:hi]...)
	}
	if len(out) != int(loc.length) {
		cache.evictPack(pack)
		return nil, false, fmt.Errorf("%s: short read", h)
	}
	return out, true, nil
}

const cacheBlockSize = 256 << 10

type blockKey struct {
	pack ID
	blk  int64
}

// blockCache is an LRU of aligned pack ranges: restore reads many small
// neighbouring blobs, so one range read serves many of them.
type blockCache struct {
	mu        sync.Mutex
	capBlocks int
	ll        *list.List
	m         map[blockKey]*list.Element
	inflight  map[blockKey]*fetchCall
}

type blockEntry struct {
	key  blockKey
	data []byte
}

func newBlockCache(bytes int) *blockCache {
	return &blockCache{capBlocks: bytes / cacheBlockSize, ll: list.New(), m: map[blockKey]*list.Element{}, inflight: map[blockKey]*fetchCall{}}
}

func (c *blockCache) get(ctx context.Context, pack ID, blk int64, fetch func() ([]byte, error)) ([]byte, error) {
	k := blockKey{pack, blk}
	c.mu.Lock()
	if e, ok := c.m[k]; ok {
		c.ll.MoveToFront(e)
		d := e.Value.(*blockEntry).data
		c.mu.Unlock()
		return d, nil
	}
	// One fetch per block at a time: parallel restores often miss on the
	// same block together.
	if f, ok := c.inflight[k]; ok {
		c.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if f.err != nil {
			return nil, f.err
		}
		return f.data, nil
	}
	f := &fetchCall{done: make(chan struct{})}
	c.inflight[k] = f
	c.mu.Unlock()
	f.data, f.err = fetch()
	c.mu.Lock()
	delete(c.inflight, k)
	if f.err == nil {
		c.m[k] = c.ll.PushFront(&blockEntry{k, f.data})
		for c.ll.Len() > c.capBlocks {
			e := c.ll.Back()
			c.ll.Remove(e)
			delete(c.m, e.Value.(*blockEntry).key)
		}
	}
	c.mu.Unlock()
	close(f.done)
	return f.data, f.err
}

type fetchCall struct {
	done chan struct{}
	data []byte
	err  error
}

func (c *blockCache) evictPack(pack ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if k.pack == pack {
			c.ll.Remove(e)
			delete(c.m, k)
		}
	}
}
