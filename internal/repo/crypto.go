package repo

import (
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/crypto/chacha20poly1305"
)

// Envelope (docs/repository-format.md §4): every encrypted unit is
//
//	nonce (24 bytes) || XChaCha20-Poly1305(key, nonce, flag || body) || tag (16)
//
// where flag is 0 (body stored as is), 1 (body = uvarint(raw length) ||
// zstd frame) or, from format v3 on, 2 (body = S2 block).
const (
	nonceSize    = chacha20poly1305.NonceSizeX
	tagSize      = chacha20poly1305.Overhead
	envelopeSize = nonceSize + tagSize // bytes added by encryption
	keySize      = chacha20poly1305.KeySize

	flagRaw  byte = 0
	flagZstd byte = 1
	flagS2   byte = 2 // format v3: data blobs

	// maxPlainSize bounds every decompressed unit: no blob or file is larger.
	maxPlainSize = 256 << 20
	// minCompressSize: below this, compression is not attempted.
	minCompressSize = 64
)

var (
	errDecrypt    = errors.New("decryption failed: ciphertext not authentic (wrong key or damaged data)")
	errShortInput = errors.New("ciphertext too short")

	zenc *zstd.Encoder
	zdec *zstd.Decoder
)

func init() {
	var err error
	zenc, err = zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithEncoderCRC(false), // integrity comes from the AEAD and the blob hash
		zstd.WithZeroFrames(true))
	if err != nil {
		panic(err)
	}
	zdec, err = zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithDecoderMaxMemory(maxPlainSize),
		zstd.WithDecoderLowmem(true))
	if err != nil {
		panic(err)
	}
}

// unitKind names what an envelope holds. From format v2 on, every envelope
// under the master key is bound to its kind: the kind is the AEAD's
// additional data, so an envelope moved to a place of another kind (a lock
// or the config copied into points/) fails authentication instead of
// decoding as something else (docs/repository-format.md §4).
type unitKind string

const (
	kindConfig     unitKind = "config"
	kindIndex      unitKind = "index"
	kindManifest   unitKind = "points"
	kindLock       unitKind = "locks"
	kindPackHeader unitKind = "pack-header"
	kindBlob       unitKind = "blob"
	// kindKey: the master key wrapped under a password key. Key files are
	// read before the format version is known and their key is not the
	// master key, so no other envelope can pass for them: never bound.
	kindKey unitKind = "key"
)

// adPrefix starts the additional data of a bound envelope: "arca-v2/" and
// the kind.
const adPrefix = "arca-v2/"

var kindAD = map[unitKind][]byte{}

func init() {
	for _, k := range []unitKind{kindConfig, kindIndex, kindManifest, kindLock, kindPackHeader, kindBlob} {
		kindAD[k] = []byte(adPrefix + string(k))
	}
}

// crypter seals and opens envelopes under one 256-bit key. A bound crypter
// (format v2) authenticates each envelope's kind as additional data; an
// unbound one (format v1, key files) uses none.
type crypter struct {
	aead  cipher.AEAD
	bound bool
	s2    bool // format v3: envelopes may hold S2 blocks (flag 2)
}

func newCrypter(key []byte, bound bool) (*crypter, error) {
	a, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	return &crypter{aead: a, bound: bound}, nil
}

// ad returns the additional data for an envelope of kind k.
func (c *crypter) ad(k unitKind) []byte {
	if !c.bound {
		return nil
	}
	ad, ok := kindAD[k]
	if !ok {
		panic(fmt.Sprintf("repo: envelope kind %q is not bound", k))
	}
	return ad
}

// seal appends the envelope of (flag || body), of kind k, to dst. comp is
// the compression to try (flagZstd, flagS2) or flagRaw for none; a body
// that does not shrink is stored raw (flag 0).
func (c *crypter) seal(dst, body []byte, comp byte, k unitKind) []byte {
	return c.sealTo(dst, body, nil, comp, k)
}

// sealSpare is seal of spare[1:]; spare[0] may be overwritten. A body
// stored raw is then encrypted from spare straight into dst.
func (c *crypter) sealSpare(dst, spare []byte, comp byte, k unitKind) []byte {
	return c.sealTo(dst, spare[1:], spare, comp, k)
}

func (c *crypter) sealTo(dst, body, spare []byte, comp byte, k unitKind) []byte {
	start := len(dst)
	dst = grow(dst, sealedMax(len(body), comp))
	nonce := dst[start : start+nonceSize]
	if _, err := rand.Read(nonce); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on supported platforms
	}
	ptStart := start + nonceSize
	pt := dst[:ptStart]
	if len(body) < minCompressSize {
		comp = flagRaw
	}
	raw := true
	switch comp {
	case flagZstd:
		pt = append(pt, flagZstd)
		pt = appendUvarint(pt, uint64(len(body)))
		hdr := len(pt)
		pt = zenc.EncodeAll(body, pt)
		raw = len(pt)-hdr >= len(body) // incompressible: store raw
	case flagS2:
		if !c.s2 {
			panic("repo: S2 compression in a repository before format v3")
		}
		pt = append(pt, flagS2)
		// The S2 block (it starts with the body's length) is encoded in
		// place after the flag: grow left room for its worst case.
		if s2Promising(pt[len(pt):cap(pt)], body) {
			enc := s2.Encode(pt[len(pt):cap(pt)], body)
			if raw = len(enc) >= len(body); !raw {
				pt = pt[:len(pt)+len(enc)]
			}
		}
	}
	if raw {
		if spare != nil {
			// Encrypt from the caller's buffer straight into dst.
			spare[0] = flagRaw
			return c.aead.Seal(dst[:ptStart], dst[start:ptStart], spare, c.ad(k))
		}
		pt = append(pt[:ptStart], flagRaw)
		pt = append(pt, body...)
	}
	// Seal in place: the plaintext occupies dst[ptStart:], the ciphertext
	// overwrites it and the tag is appended.
	out := c.aead.Seal(pt[:ptStart], pt[start:ptStart], pt[ptStart:], c.ad(k))
	return out
}

// S2 probing: a body of at least s2ProbeFrom bytes is compressed whole only
// if s2ProbeN samples of s2ProbeSize bytes spread over it shrink by at
// least 1/s2ProbeGain together. S2 finds nothing to do in already
// compressed or encrypted files (and in text of random letters, which only
// an entropy coder like zstd's shrinks), yet spends over a CPU-second per
// GiB looking; the samples cost a sixteenth of that.
const (
	s2ProbeFrom = 256 << 10
	s2ProbeSize = 16 << 10
	s2ProbeN    = 4
	s2ProbeGain = 32
)

// s2Promising reports whether body is worth compressing with S2; scratch
// has room for S2's worst case of body.
func s2Promising(scratch, body []byte) bool {
	if len(body) < s2ProbeFrom {
		return true
	}
	in, out := 0, 0
	step := len(body) / s2ProbeN
	for i := 0; i < s2ProbeN; i++ {
		sample := body[i*step : i*step+s2ProbeSize]
		in += len(sample)
		out += len(s2.Encode(scratch, sample))
	}
	return out <= in-in/s2ProbeGain
}

// open authenticates and decrypts one envelope of kind k and returns the
// body, decompressed if needed, appended to dst[:0] when possible. sizeHint
// is the expected body length (0 if unknown).
func (c *crypter) open(dst, sealed []byte, sizeHint int, k unitKind) ([]byte, error) {
	if len(sealed) < envelopeSize+1 {
		return nil, errShortInput
	}
	nonce := sealed[:nonceSize]
	// Decrypt into a scratch buffer (not in place: the caller's cache may
	// share sealed).
	pt, err := c.aead.Open(nil, nonce, sealed[nonceSize:], c.ad(k))
	if err != nil {
		return nil, errDecrypt
	}
	return decodeBody(dst, pt, sizeHint, c.s2)
}

// decodeBody interprets flag || body; allowS2: flag 2 is valid (format v3).
func decodeBody(dst, pt []byte, sizeHint int, allowS2 bool) ([]byte, error) {
	if len(pt) == 0 {
		return nil, errors.New("empty plaintext: missing flag byte")
	}
	switch pt[0] {
	case flagRaw:
		return pt[1:], nil
	case flagZstd:
		raw, n := uvarint(pt[1:])
		if n <= 0 || raw > maxPlainSize {
			return nil, errors.New("invalid compressed length")
		}
		if sizeHint > 0 && uint64(sizeHint) != raw {
			return nil, fmt.Errorf("compressed length %d, want %d", raw, sizeHint)
		}
		c := int(raw)
		if c > 16<<20 {
			c = 16 << 20
		}
		if cap(dst) < c {
			dst = make([]byte, 0, c)
		}
		out, err := zdec.DecodeAll(pt[1+n:], dst[:0])
		if err != nil {
			return nil, fmt.Errorf("decompress: %w", err)
		}
		if uint64(len(out)) != raw {
			return nil, fmt.Errorf("decompressed %d bytes, want %d", len(out), raw)
		}
		return out, nil
	case flagS2:
		if !allowS2 {
			break
		}
		raw, err := s2.DecodedLen(pt[1:])
		if err != nil || raw > maxPlainSize {
			return nil, errors.New("invalid compressed length")
		}
		if sizeHint > 0 && sizeHint != raw {
			return nil, fmt.Errorf("compressed length %d, want %d", raw, sizeHint)
		}
		if cap(dst) < raw {
			dst = make([]byte, raw)
		}
		out, err := s2.Decode(dst[:cap(dst)], pt[1:])
		if err != nil {
			return nil, fmt.Errorf("decompress: %w", err)
		}
		if len(out) != raw {
			return nil, fmt.Errorf("decompressed %d bytes, want %d", len(out), raw)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown body flag %d", pt[0])
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+n)
	copy(nb, b)
	return nb
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// uvarint decodes a uvarint; n <= 0 on error (as encoding/binary).
func uvarint(b []byte) (uint64, int) {
	var x uint64
	var s uint
	for i, c := range b {
		if i == 10 {
			return 0, -(i + 1)
		}
		if c < 0x80 {
			if i == 9 && c > 1 {
				return 0, -(i + 1)
			}
			return x | uint64(c)<<s, i + 1
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, 0
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return b
}
