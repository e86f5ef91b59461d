// Package exact wraps a Save's input so that a cloud upload never commits a
// file whose length differs from the size the caller declared, and so that
// the input's own error survives an SDK that rewords it.
package exact

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/arca-backup/arca/internal/storage"
)

// Reader yields the bytes of an input that must be exactly Size bytes long
// (Size < 0: any length). It fails instead of returning the last bytes if the
// input holds more, and instead of io.EOF if it holds fewer, so an upload
// stops before it commits.
type Reader struct {
	ctx  context.Context
	rd   io.Reader
	size int64

	mu  sync.Mutex
	n   int64
	err error
}

// New wraps rd. The reader also fails once ctx is cancelled.
func New(ctx context.Context, rd io.Reader, size int64) *Reader {
	return &Reader{ctx: ctx, rd: rd, size: size}
}

func (r *Reader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return 0, r.err
	}
	if err := r.ctx.Err(); err != nil {
		r.err = err
		return 0, err
	}
	if r.size >= 0 {
		remaining := r.size - r.n
		if remaining == 0 {
			return 0, r.checkEnd()
		}
		if int64(len(p)) > remaining {
			p = p[:remaining]
		}
	}
	n, err := r.rd.Read(p)
	r.n += int64(n)
	switch {
	case err == io.EOF:
		if r.size >= 0 && r.n != r.size {
			r.err = fmt.Errorf("input ended after %d bytes, expected %d: %w", r.n, r.size, storage.ErrPermanent)
			return n, r.err
		}
		return n, io.EOF
	case err != nil:
		r.err = err
		return n, err
	}
	if r.size >= 0 && r.n == r.size {
		// Last expected bytes: make sure nothing follows before handing
		// them over, since an SDK that knows the length stops reading here.
		if cerr := r.checkEnd(); cerr != io.EOF {
			return 0, cerr
		}
	}
	return n, nil
}

// checkEnd probes for bytes past Size.
func (r *Reader) checkEnd() error {
	var one [1]byte
	for {
		k, err := r.rd.Read(one[:])
		if k > 0 {
			r.err = fmt.Errorf("input is longer than the %d bytes expected: %w", r.size, storage.ErrPermanent)
			return r.err
		}
		if err == io.EOF {
			return io.EOF
		}
		if err != nil {
			r.err = err
			return err
		}
	}
}

// Err is the error the reader failed with, if any: prefer it to the SDK's
// error, which may not wrap it.
func (r *Reader) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// N is the number of bytes read so far.
func (r *Reader) N() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}
