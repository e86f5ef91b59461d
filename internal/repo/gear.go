package repo

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"sync"
)

// Format v3's content-defined chunker (docs/repository-format.md §8, §15):
// a gear hash with FastCDC's normalized chunking. The hash after each byte
// b is h = (h << 1) + gear[b] (mod 2^64), so its top bits depend on the
// last 64 bytes only; a chunk ends after the byte at which the hash's top
// bits are all zero: the top bits+2 of them while the chunk is shorter than
// the normal size, the top bits-2 after it (so sizes gather around the
// normal size), and no later than the maximum. Hashing starts at the
// minimum size, with h = 0, so the first minimum bytes of a chunk are not
// even looked at. The 256 gear values are secret: derived from the
// repository's gear seed (config §3), so chunk boundaries do not reveal
// content to someone who sees blob sizes.
//
// Against restic's Rabin chunker (format v1/v2) it does about a quarter of
// the work per byte and skips the minimum, which is what the mover's CPU
// budget needs.

// gearTable is the 256 gear values of one repository.
type gearTable [256]uint64

// newGearTable derives the gear values from the config's 32-byte seed:
// value i is the first 8 bytes, little endian, of SHA-256(seed || byte i).
func newGearTable(seed []byte) *gearTable {
	var t gearTable
	in := make([]byte, len(seed)+1)
	copy(in, seed)
	for i := range t {
		in[len(seed)] = byte(i)
		h := sha256.Sum256(in)
		t[i] = binary.LittleEndian.Uint64(h[:8])
	}
	return &t
}

// gearParams is one chunk size regime: file contents (512 KiB–8 MiB,
// normal 1 MiB, 20 bits) or trees (16–256 KiB, normal 64 KiB, 16 bits).
type gearParams struct {
	min, normal, max int
	maskS, maskL     uint64 // top bits+2 and top bits-2 of the hash
}

func newGearParams(min, normal, max int, bits uint) gearParams {
	return gearParams{min: min, normal: normal, max: max,
		maskS: ^uint64(0) << (64 - (bits + 2)), maskL: ^uint64(0) << (64 - (bits - 2))}
}

var (
	gearStream = newGearParams(streamChunkMin, streamChunkNormal, streamChunkMax, 20)
	gearTree   = newGearParams(treeChunkMin, 1<<treeChunkBits, treeChunkMax, treeChunkBits)
)

// File contents' chunk sizes, the same as the Rabin chunker's in v1/v2.
const (
	streamChunkMin    = 512 << 10
	streamChunkNormal = 1 << 20
	streamChunkMax    = 8 << 20
)

// gearScan is the state of a search for the end of one chunk: how far the
// chunk has been hashed and the hash there. Its zero value starts a chunk.
type gearScan struct {
	pos int
	h   uint64
}

// find returns the length of the chunk that starts at data[0], resuming
// where the previous call on the same chunk stopped (data only ever grows
// between calls). It returns 0 when data ends before a boundary and eof is
// not set: the caller reads more and calls again. With eof, the rest of
// data is the last chunk.
func (s *gearScan) find(t *gearTable, p *gearParams, data []byte, eof bool) int {
	n := len(data)
	if n <= p.min {
		if eof {
			return n
		}
		return 0
	}
	limit := min(n, p.max)
	i, h := max(s.pos, p.min), s.h
	if normal := min(p.normal, limit); i < normal {
		for _, b := range data[i:normal] {
			h = h<<1 + t[b]
			i++
			if h&p.maskS == 0 {
				*s = gearScan{}
				return i
			}
		}
	}
	if i < limit {
		for _, b := range data[i:limit] {
			h = h<<1 + t[b]
			i++
			if h&p.maskL == 0 {
				*s = gearScan{}
				return i
			}
		}
	}
	if limit == p.max || eof {
		*s = gearScan{}
		return limit
	}
	s.pos, s.h = i, h
	return 0
}

// gearStepRead is how much a stream chunker reads at once beyond the
// minimum: what it reads past a boundary is copied into the next chunk's
// buffer, so this bounds that copy.
const gearStepRead = 256 << 10

// gearChunker cuts a stream into chunks, reading straight into the
// caller's chunk buffers (no copy but the bytes read past a boundary).
type gearChunker struct {
	t    *gearTable
	p    *gearParams
	rd   io.Reader
	pend []byte // read past the last boundary
	eof  bool
}

func newGearChunker(t *gearTable, p *gearParams, rd io.Reader) *gearChunker {
	pend, _ := gearPends.Get().(*[]byte)
	if pend == nil || cap(*pend) < max(gearStepRead, p.min) {
		b := make([]byte, 0, max(gearStepRead, p.min))
		pend = &b
	}
	return &gearChunker{t: t, p: p, rd: rd, pend: (*pend)[:0]}
}

// gearPends keeps the chunkers' carry-over buffers: the mover starts a
// chunker per file above the minimum chunk, and a new half-MiB buffer for
// each was a tenth of its garbage.
var gearPends sync.Pool

// release gives the chunker's buffer back for the next one; the chunker
// is not used after.
func (c *gearChunker) release() {
	if c.pend != nil {
		b := c.pend[:0]
		gearPends.Put(&b)
		c.pend = nil
	}
}

var errChunkBuffer = errors.New("chunk buffer smaller than the maximum chunk")

// Next returns the next chunk in buf[:n] (buf's capacity must be at least
// the maximum chunk size), or io.EOF after the last one.
func (c *gearChunker) Next(buf []byte) ([]byte, error) {
	if cap(buf) < c.p.max {
		return nil, errChunkBuffer
	}
	buf = append(buf[:0], c.pend...)
	c.pend = c.pend[:0]
	var s gearScan
	for {
		if len(buf) > 0 || c.eof {
			if n := s.find(c.t, c.p, buf, c.eof); n > 0 {
				c.pend = append(c.pend, buf[n:]...)
				return buf[:n], nil
			}
		}
		if c.eof {
			return nil, io.EOF
		}
		want := len(buf) + gearStepRead
		if len(buf) < c.p.min {
			want = c.p.min + gearStepRead
		}
		want = min(want, c.p.max)
		k, err := io.ReadAtLeast(c.rd, buf[len(buf):want], want-len(buf))
		buf = buf[:len(buf)+k]
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			c.eof = true
		case err != nil:
			return nil, err
		}
	}
}
