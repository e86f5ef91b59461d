package repo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/arca-backup/arca/internal/storage"
)

// BlobType tells data blobs (object content, stream chunks) from tree blobs.
type BlobType uint8

const (
	DataBlob BlobType = 0
	TreeBlob BlobType = 1
)

func (t BlobType) String() string {
	switch t {
	case DataBlob:
		return "data"
	case TreeBlob:
		return "tree"
	}
	return fmt.Sprintf("blobtype(%d)", uint8(t))
}

// packEntry is one header entry: where a blob sits in its pack.
type packEntry struct {
	Type   BlobType
	ID     ID
	Offset uint32 // of the blob's envelope from the start of the pack
	Length uint32 // envelope length
	RawLen uint32 // plaintext length
}

const (
	packHeaderVersion = 1
	packEntrySize     = 1 + 4 + 4 + 32
	// maxPackHeader bounds the encrypted header a reader accepts.
	maxPackHeader = 16 << 20
	// MaxBlobSize is the largest blob PutBlob accepts.
	MaxBlobSize = 128 << 20
)

// encodePackHeader returns the header body: version || entries. Offsets are
// implicit: blobs are stored back to back from offset 0 in entry order.
func encodePackHeader(dst []byte, entries []packEntry) []byte {
	dst = append(dst, packHeaderVersion)
	var b [packEntrySize]byte
	for _, e := range entries {
		b[0] = byte(e.Type)
		binary.LittleEndian.PutUint32(b[1:], e.Length)
		binary.LittleEndian.PutUint32(b[5:], e.RawLen)
		copy(b[9:], e.ID[:])
		dst = append(dst, b[:]...)
	}
	return dst
}

// decodePackHeader parses a header body. dataEnd is where the encrypted
// header starts: every blob must lie before it.
func decodePackHeader(body []byte, dataEnd int64) ([]packEntry, error) {
	if len(body) < 1 || body[0] != packHeaderVersion {
		return nil, errors.New("pack header: unknown version")
	}
	body = body[1:]
	if len(body)%packEntrySize != 0 {
		return nil, fmt.Errorf("pack header: length %d is not a multiple of %d", len(body), packEntrySize)
	}
	n := len(body) / packEntrySize
	entries := make([]packEntry, 0, n)
	var off int64
	for i := 0; i < n; i++ {
		b := body[i*packEntrySize:]
		e := packEntry{
			Type:   BlobType(b[0]),
			Length: binary.LittleEndian.Uint32(b[1:]),
			RawLen: binary.LittleEndian.Uint32(b[5:]),
		}
		copy(e.ID[:], b[9:41])
		if e.Type > TreeBlob {
			return nil, fmt.Errorf("pack header: entry %d: unknown blob type %d", i, e.Type)
		}
		if e.Length < envelopeSize+1 || e.RawLen > MaxBlobSize {
			return nil, fmt.Errorf("pack header: entry %d: invalid length", i)
		}
		e.Offset = uint32(off)
		off += int64(e.Length)
		if off > dataEnd {
			return nil, fmt.Errorf("pack header: entry %d extends past the blob area", i)
		}
		entries = append(entries, e)
	}
	if off != dataEnd {
		return nil, fmt.Errorf("pack header: blobs cover %d bytes, blob area is %d", off, dataEnd)
	}
	return entries, nil
}

// parsePackTail decodes the header from the tail of a pack of size packSize;
// tail holds the last len(tail) bytes of the pack.
func (r *Repository) parsePackTail(tail []byte, packSize int64) ([]packEntry, error) {
	e, err := r.parsePackTail0(tail, packSize)
	if err != nil {
		return nil, &damageError{err}
	}
	return e, nil
}

func (r *Repository) parsePackTail0(tail []byte, packSize int64) ([]packEntry, error) {
	if len(tail) < 4 {
		return nil, errors.New("pack too short")
	}
	hl := int64(binary.LittleEndian.Uint32(tail[len(tail)-4:]))
	if hl > maxPackHeader || hl+4 > packSize || hl+4 > int64(len(tail)) || hl < envelopeSize+1 {
		return nil, fmt.Errorf("pack header length %d invalid for pack of %d bytes", hl, packSize)
	}
	sealed := tail[int64(len(tail))-4-hl : len(tail)-4]
	body, err := r.crypt.open(nil, sealed, 0, kindPackHeader)
	if err != nil {
		return nil, fmt.Errorf("pack header: %w", err)
	}
	return decodePackHeader(body, packSize-4-hl)
}

// readPackHeader reads and decodes the header of pack id.
func (r *Repository) readPackHeader(ctx context.Context, id ID, size int64) ([]packEntry, error) {
	h := storage.Handle{Type: storage.PackFile, Name: id.String()}
	if size <= 0 {
		fi, err := r.be.Stat(ctx, h)
		if err != nil {
			return nil, err
		}
		size = fi.Size
	}
	want := int64(64 << 10)
	for {
		if want > size {
			want = size
		}
		tail, err := readRange(ctx, r.be, h, want, size-want)
		if err != nil {
			return nil, err
		}
		if len(tail) < 4 {
			return nil, &damageError{fmt.Errorf("%s: too short", h)}
		}
		hl := int64(binary.LittleEndian.Uint32(tail[len(tail)-4:]))
		if hl+4 > want && hl+4 <= size && want < size && hl <= maxPackHeader {
			want = hl + 4
			continue
		}
		return r.parsePackTail(tail, size)
	}
}

func readRange(ctx context.Context, be storage.Backend, h storage.Handle, length, offset int64) ([]byte, error) {
	return readRangeTo(ctx, be, h, offset, make([]byte, length))
}

// readRangeTo fills buf from offset of h.
func readRangeTo(ctx context.Context, be storage.Backend, h storage.Handle, offset int64, buf []byte) ([]byte, error) {
	err := be.Load(ctx, h, len(buf), offset, func(rd io.Reader) error {
		n, err := io.ReadFull(rd, buf)
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return &damageError{fmt.Errorf("%s: short read: %d of %d bytes at offset %d", h, n, len(buf), offset)}
		}
		return err
	})
	return buf, err
}
