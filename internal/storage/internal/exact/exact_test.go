package exact

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/arca-backup/arca/internal/storage"
)

func TestExact(t *testing.T) {
	for _, c := range []struct {
		in   string
		size int64
		ok   bool
	}{
		{"hello", 5, true}, {"hello", -1, true}, {"", 0, true},
		{"hello", 4, false}, {"hello", 6, false}, {"", 1, false}, {"x", 0, false},
	} {
		for _, wrap := range []func(io.Reader) io.Reader{
			func(r io.Reader) io.Reader { return r }, iotest.OneByteReader, iotest.DataErrReader,
		} {
			r := New(context.Background(), wrap(strings.NewReader(c.in)), c.size)
			got, err := io.ReadAll(r)
			if c.ok && (err != nil || string(got) != c.in) {
				t.Errorf("%q size %d: %q, %v", c.in, c.size, got, err)
			}
			if !c.ok && (err == nil || !storage.IsPermanent(err) || !errors.Is(r.Err(), storage.ErrPermanent)) {
				t.Errorf("%q size %d: %q, %v; want a permanent error", c.in, c.size, got, err)
			}
			if !c.ok && c.size > 0 && int64(len(got)) >= c.size && len(c.in) > int(c.size) {
				t.Errorf("%q size %d: handed over all %d bytes before failing", c.in, c.size, len(got))
			}
		}
	}
}
