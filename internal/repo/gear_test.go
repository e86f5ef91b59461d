package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	mrand "math/rand"
	"testing"

	"github.com/restic/chunker"
)

// oddReader returns at most a random number of bytes per Read, so the
// chunker's reads end anywhere.
type oddReader struct {
	b   []byte
	rnd *mrand.Rand
}

func (r *oddReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.b), 1+r.rnd.Intn(300<<10))
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

func gearChunks(t testing.TB, tab *gearTable, data []byte) [][]byte {
	t.Helper()
	c := newGearChunker(tab, &gearStream, &oddReader{b: data, rnd: mrand.New(mrand.NewSource(9))})
	var out [][]byte
	buf := make([]byte, 0, streamChunkMax)
	for {
		ch, err := c.Next(buf)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, append([]byte(nil), ch...))
	}
}

func randomData(seed int64, n int) []byte {
	b := make([]byte, n)
	mrand.New(mrand.NewSource(seed)).Read(b)
	return b
}

// The stream chunker cuts where the specification says, whatever the
// reads: its chunks are those of find over the whole stream, they cover
// the stream, and lie between the minimum and the maximum size.
func TestGearChunkerBoundaries(t *testing.T) {
	tab := newGearTable(make([]byte, 32))
	data := randomData(1, 40<<20)
	// A run of zeros longer than the maximum: the hash is constant there,
	// so only the maximum cuts it.
	copy(data[20<<20:], make([]byte, 10<<20))
	chunks := gearChunks(t, tab, data)
	var want []int
	for rest := data; len(rest) > 0; {
		var s gearScan
		n := s.find(tab, &gearStream, rest, true)
		want = append(want, n)
		rest = rest[n:]
	}
	if len(chunks) != len(want) {
		t.Fatalf("%d chunks, find over the whole stream gives %d", len(chunks), len(want))
	}
	var joined []byte
	maxed := 0
	for i, c := range chunks {
		if len(c) != want[i] {
			t.Fatalf("chunk %d: %d bytes, want %d", i, len(c), want[i])
		}
		if i < len(chunks)-1 && (len(c) <= streamChunkMin || len(c) > streamChunkMax) {
			t.Fatalf("chunk %d: %d bytes, outside (%d, %d]", i, len(c), streamChunkMin, streamChunkMax)
		}
		if len(c) == streamChunkMax {
			maxed++
		}
		joined = append(joined, c...)
	}
	if !bytes.Equal(joined, data) {
		t.Fatal("the chunks do not add up to the stream")
	}
	if maxed == 0 {
		t.Fatal("no chunk was cut at the maximum inside the run of zeros")
	}
	mean := float64(len(data)-10<<20) / float64(len(chunks)-maxed)
	t.Logf("%d chunks, %d at the maximum, mean of the others %.0f KiB", len(chunks), maxed, mean/1024)
	if mean < 900<<10 || mean > 1600<<10 {
		t.Fatalf("mean chunk size %.0f KiB, want about 1 MiB (as the Rabin chunker of v1/v2)", mean/1024)
	}
}

// Boundaries depend on content only: bytes inserted in the middle change
// the chunks around them and no others, so an edited file stores little.
func TestGearChunkerShift(t *testing.T) {
	tab := newGearTable(bytes.Repeat([]byte{7}, 32))
	data := randomData(2, 32<<20)
	edited := append(append(append([]byte(nil), data[:16<<20]...), []byte("inserted bytes")...), data[16<<20:]...)
	a, b := gearChunks(t, tab, data), gearChunks(t, tab, edited)
	seen := map[[32]byte]bool{}
	for _, c := range a {
		seen[sha256.Sum256(c)] = true
	}
	changed := 0
	for _, c := range b {
		if !seen[sha256.Sum256(c)] {
			changed++
		}
	}
	if changed == 0 || changed > 2 {
		t.Fatalf("%d of %d chunks changed after an insertion, want 1 or 2", changed, len(b))
	}
}

// The gear table is the secret: another seed cuts the same stream
// elsewhere. The derivation is pinned (docs/repository-format.md §8).
func TestGearTableSecret(t *testing.T) {
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i)
	}
	tab := newGearTable(seed)
	h := sha256.Sum256(append(append([]byte(nil), seed...), 255))
	if tab[255] != binary.LittleEndian.Uint64(h[:8]) {
		t.Fatal("gear value 255 is not the first 8 bytes of SHA-256(seed || 0xff), little endian")
	}
	// Test vector of docs/repository-format.md §8: seed 00 01 … 1f.
	if tab[0] != 0x5a73818dcb0d171b || tab[1] != 0xbc0443216fd9448b {
		t.Fatalf("seed 00..1f: gear[0] = %#016x, gear[1] = %#016x; the derivation changed", tab[0], tab[1])
	}
	data := randomData(3, 16<<20)
	a := gearChunks(t, tab, data)
	seed[0] ^= 1
	b := gearChunks(t, newGearTable(seed), data)
	same := 0
	for i := range min(len(a), len(b)) {
		if len(a[i]) == len(b[i]) {
			same++
		}
	}
	if same == len(a) && len(a) == len(b) {
		t.Fatal("two seeds cut the stream at the same places")
	}
}

func BenchmarkChunkers(b *testing.B) {
	data := randomData(4, 64<<20)
	b.Run("gear", func(b *testing.B) {
		tab := newGearTable(make([]byte, 32))
		buf := make([]byte, 0, streamChunkMax)
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			c := newGearChunker(tab, &gearStream, bytes.NewReader(data))
			for {
				if _, err := c.Next(buf); err == io.EOF {
					break
				}
			}
		}
	})
	b.Run("rabin", func(b *testing.B) {
		pol, _ := chunker.RandomPolynomial()
		buf := make([]byte, 0, chunker.MaxSize)
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			c := chunker.New(bytes.NewReader(data), pol)
			for {
				if _, err := c.Next(buf); err == io.EOF {
					break
				}
			}
		}
	})
}
