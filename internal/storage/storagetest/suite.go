// Package storagetest is the conformance suite every storage.Backend passes.
// A backend's test calls RunSuite with a constructor that returns a fresh,
// empty backend for each subtest:
//
//	func TestSuite(t *testing.T) {
//		storagetest.RunSuite(t, func(t *testing.T) storage.Backend { return mem.New() })
//	}
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/storage"
)

// Options tunes the suite for a backend.
type Options struct {
	// LargeFileSize is the size of the large-file test (default 24 MiB,
	// enough to cross the multipart thresholds of the cloud SDKs).
	LargeFileSize int
	// RacyWriteOnce is set by backends whose write-once check is not atomic
	// against a concurrent Save of the same name; the suite then only checks
	// that the surviving file is complete.
	RacyWriteOnce bool
}

// RunSuite runs the suite with default options.
func RunSuite(t *testing.T, newBackend func(t *testing.T) storage.Backend) {
	Run(t, newBackend, Options{})
}

// Run runs every conformance test as a subtest of t.
func Run(t *testing.T, newBackend func(t *testing.T) storage.Backend, opts Options) {
	if opts.LargeFileSize == 0 {
		opts.LargeFileSize = 24 << 20
	}
	s := &suite{newBackend: newBackend, opts: opts}
	tests := []struct {
		name string
		fn   func(t *testing.T, be storage.Backend)
	}{
		{"Location", s.location},
		{"SaveLoad", s.saveLoad},
		{"LoadRanges", s.loadRanges},
		{"LoadOutOfRange", s.loadOutOfRange},
		{"LoadCallbackError", s.loadCallbackError},
		{"EmptyFile", s.emptyFile},
		{"WriteOnce", s.writeOnce},
		{"NotExist", s.notExist},
		{"RemoveThenSave", s.removeThenSave},
		{"List", s.list},
		{"ListCallbackError", s.listCallbackError},
		{"ConfigFile", s.configFile},
		{"InvalidHandles", s.invalidHandles},
		{"SizeMismatch", s.sizeMismatch},
		{"FailingReader", s.failingReader},
		{"ConcurrentSaves", s.concurrentSaves},
		{"ConcurrentSameName", s.concurrentSameName},
		{"LargeFile", s.largeFile},
		{"CancelledContext", s.cancelledContext},
		{"CancelDuringSave", s.cancelDuringSave},
		{"ModTime", s.modTime},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := newBackend(t)
			t.Cleanup(func() {
				if err := be.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, be)
		})
	}
}

type suite struct {
	newBackend func(t *testing.T) storage.Backend
	opts       Options
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// RandomData returns n random bytes.
func RandomData(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// RandomName returns a hex name like the repository's content IDs.
func RandomName() string {
	b := RandomData(32)
	return fmt.Sprintf("%x", b)
}

func save(t *testing.T, be storage.Backend, h storage.Handle, data []byte) {
	t.Helper()
	if err := be.Save(ctxFor(t), h, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("Save %s: %v", h, err)
	}
}

func load(t *testing.T, be storage.Backend, h storage.Handle, length int, offset int64) []byte {
	t.Helper()
	var got []byte
	calls := 0
	err := be.Load(ctxFor(t), h, length, offset, func(rd io.Reader) error {
		calls++
		var err error
		got, err = io.ReadAll(rd)
		return err
	})
	if err != nil {
		t.Fatalf("Load %s length %d offset %d: %v", h, length, offset, err)
	}
	if calls == 0 {
		t.Fatalf("Load %s returned nil without calling fn", h)
	}
	return got
}

func equal(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes (sha256 %x), want %d bytes (sha256 %x)",
			what, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
}

func listNames(t *testing.T, be storage.Backend, ft storage.FileType) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	var mu sync.Mutex
	err := be.List(ctxFor(t), ft, func(fi storage.FileInfo) error {
		mu.Lock()
		defer mu.Unlock()
		if _, dup := got[fi.Name]; dup {
			return fmt.Errorf("%s listed twice", fi.Name)
		}
		got[fi.Name] = fi.Size
		return nil
	})
	if err != nil {
		t.Fatalf("List %s: %v", ft, err)
	}
	return got
}

func (s *suite) location(t *testing.T, be storage.Backend) {
	if be.Location() == "" {
		t.Fatal("Location is empty")
	}
}

func (s *suite) saveLoad(t *testing.T, be storage.Backend) {
	for _, n := range []int{1, 17, 4096, 100_000, 1 << 20} {
		h := storage.Handle{Type: storage.PackFile, Name: RandomName()}
		data := RandomData(n)
		save(t, be, h, data)
		equal(t, fmt.Sprintf("Load %d-byte file", n), load(t, be, h, 0, 0), data)
		fi, err := be.Stat(ctxFor(t), h)
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		if fi.Size != int64(n) || fi.Name != h.Name {
			t.Fatalf("Stat = %+v, want name %s size %d", fi, h.Name, n)
		}
		all, err := storage.ReadAll(ctxFor(t), be, h)
		if err != nil {
			t.Fatalf("ReadAll: %v", err)
		}
		equal(t, "ReadAll", all, data)
	}
	// A reader that yields only a few bytes at a time, and unknown size.
	h := storage.Handle{Type: storage.IndexFile, Name: "index-with-unknown-size"}
	data := RandomData(70_000)
	if err := be.Save(ctxFor(t), h, -1, &trickleReader{data: data}); err != nil {
		t.Fatalf("Save with unknown size: %v", err)
	}
	equal(t, "Load of file saved with unknown size", load(t, be, h, 0, 0), data)
	// Every file type and a name with all allowed punctuation.
	for _, ft := range storage.FileTypes {
		h := storage.Handle{Type: ft, Name: "Ab_9-x.y=z+~"}
		if ft == storage.ConfigFile {
			h.Name = ""
		}
		data := RandomData(100)
		save(t, be, h, data)
		equal(t, "Load "+h.String(), load(t, be, h, 0, 0), data)
	}
}

type trickleReader struct{ data []byte }

func (r *trickleReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 7)], r.data)
	r.data = r.data[n:]
	return n, nil
}

func (s *suite) loadRanges(t *testing.T, be storage.Backend) {
	const size = 300_000
	data := RandomData(size)
	h := storage.Handle{Type: storage.PackFile, Name: RandomName()}
	save(t, be, h, data)
	type rng struct {
		length int
		offset int64
	}
	cases := []rng{
		{0, 0}, {1, 0}, {size, 0}, {size - 1, 1}, {0, 1}, {0, size - 1}, {1, size - 1},
		{0, size}, {10, size - 5}, {size * 2, 0}, {100, 12345},
	}
	r := mrand.New(mrand.NewPCG(1, 2))
	for range 20 {
		off := r.Int64N(size)
		cases = append(cases, rng{r.IntN(size - int(off) + 10), off})
	}
	for _, c := range cases {
		want := data[c.offset:]
		if c.length > 0 && c.length < len(want) {
			want = want[:c.length]
		}
		got := load(t, be, h, c.length, c.offset)
		equal(t, fmt.Sprintf("Load length %d offset %d", c.length, c.offset), got, want)
	}
}

func (s *suite) loadOutOfRange(t *testing.T, be storage.Backend) {
	data := RandomData(1000)
	h := storage.Handle{Type: storage.PackFile, Name: RandomName()}
	save(t, be, h, data)
	for _, c := range []struct {
		length int
		offset int64
	}{{0, 1001}, {10, 5000}, {-1, 0}, {0, -1}} {
		called := false
		err := be.Load(ctxFor(t), h, c.length, c.offset, func(rd io.Reader) error {
			called = true
			b, err := io.ReadAll(rd)
			if err == nil && len(b) > 0 {
				return fmt.Errorf("read %d bytes", len(b))
			}
			return err
		})
		if err == nil && !called {
			t.Fatalf("Load length %d offset %d of a 1000-byte file: nil error without calling fn", c.length, c.offset)
		}
		if err == nil {
			t.Fatalf("Load length %d offset %d of a 1000-byte file succeeded", c.length, c.offset)
		}
		if storage.IsNotExist(err) {
			t.Fatalf("Load length %d offset %d: out-of-range error claims the file is missing: %v", c.length, c.offset, err)
		}
	}
}

var errSentinel = errors.New("sentinel from fn")

func (s *suite) loadCallbackError(t *testing.T, be storage.Backend) {
	h := storage.Handle{Type: storage.PackFile, Name: RandomName()}
	save(t, be, h, RandomData(100))
	err := be.Load(ctxFor(t), h, 0, 0, func(rd io.Reader) error {
		return fmt.Errorf("decoding: %w", errSentinel)
	})
	if !errors.Is(err, errSentinel) {
		t.Fatalf("Load returned %v, want the error fn returned", err)
	}
}

func (s *suite) emptyFile(t *testing.T, be storage.Backend) {
	h := storage.Handle{Type: storage.LockFile, Name: "empty"}
	save(t, be, h, nil)
	fi, err := be.Stat(ctxFor(t), h)
	if err != nil || fi.Size != 0 {
		t.Fatalf("Stat of empty file = %+v, %v", fi, err)
	}
	if got := load(t, be, h, 0, 0); len(got) != 0 {
		t.Fatalf("Load of empty file returned %d bytes", len(got))
	}
	if got := listNames(t, be, storage.LockFile); len(got) != 1 || got["empty"] != 0 {
		t.Fatalf("List = %v, want just the empty file", got)
	}
}

func (s *suite) writeOnce(t *testing.T, be storage.Backend) {
	for _, ft := range []storage.FileType{storage.ConfigFile, storage.PackFile, storage.KeyFile} {
		h := storage.Handle{Type: ft, Name: RandomName()}
		if ft == storage.ConfigFile {
			h.Name = ""
		}
		data := RandomData(5000)
		save(t, be, h, data)
		other := RandomData(3000)
		err := be.Save(ctxFor(t), h, int64(len(other)), bytes.NewReader(other))
		if !storage.IsExist(err) {
			t.Fatalf("second Save of %s: %v, want an IsExist error", h, err)
		}
		if !storage.IsPermanent(err) {
			t.Fatalf("IsPermanent(%v) = false", err)
		}
		equal(t, "file after rejected overwrite", load(t, be, h, 0, 0), data)
	}
}

func (s *suite) notExist(t *testing.T, be storage.Backend) {
	h := storage.Handle{Type: storage.PackFile, Name: RandomName()}
	err := be.Load(ctxFor(t), h, 0, 0, func(io.Reader) error {
		t.Fatal("fn called for a missing file")
		return nil
	})
	if !storage.IsNotExist(err) {
		t.Fatalf("Load of missing file: %v, want IsNotExist", err)
	}
	if err := be.Load(ctxFor(t), h, 10, 5, func(io.Reader) error { return nil }); !storage.IsNotExist(err) {
		t.Fatalf("ranged Load of missing file: %v, want IsNotExist", err)
	}
	if _, err := be.Stat(ctxFor(t), h); !storage.IsNotExist(err) {
		t.Fatalf("Stat of missing file: %v, want IsNotExist", err)
	}
	if err := be.Remove(ctxFor(t), h); !storage.IsNotExist(err) {
		t.Fatalf("Remove of missing file: %v, want IsNotExist", err)
	}
	if _, err := be.Stat(ctxFor(t), storage.Handle{Type: storage.ConfigFile}); !storage.IsNotExist(err) {
		t.Fatalf("Stat of missing config: %v, want IsNotExist", err)
	}
	for _, ft := range storage.FileTypes {
		if got := listNames(t, be, ft); len(got) != 0 {
			t.Fatalf("List %s of an empty backend = %v", ft, got)
		}
	}
}

func (s *suite) removeThenSave(t *testing.T, be storage.Backend) {
	h := storage.Handle{Type: storage.LockFile, Name: RandomName()}
	save(t, be, h, RandomData(10))
	if err := be.Remove(ctxFor(t), h); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := be.Stat(ctxFor(t), h); !storage.IsNotExist(err) {
		t.Fatalf("Stat after Remove: %v, want IsNotExist", err)
	}
	if err := be.Load(ctxFor(t), h, 0, 0, func(io.Reader) error { return nil }); !storage.IsNotExist(err) {
		t.Fatalf("Load after Remove: %v, want IsNotExist", err)
	}
	if got := listNames(t, be, storage.LockFile); len(got) != 0 {
		t.Fatalf("List after Remove = %v", got)
	}
	if err := be.Remove(ctxFor(t), h); !storage.IsNotExist(err) {
		t.Fatalf("second Remove: %v, want IsNotExist", err)
	}
	data := RandomData(20)
	save(t, be, h, data)
	equal(t, "Load after Remove and Save", load(t, be, h, 0, 0), data)
}

func (s *suite) list(t *testing.T, be storage.Backend) {
	want := map[storage.FileType]map[string]int64{}
	for _, ft := range storage.FileTypes {
		if ft == storage.ConfigFile {
			continue
		}
		want[ft] = map[string]int64{}
		n := 3
		if ft == storage.PackFile {
			n = 40 // several shards, and names sharing one
		}
		for i := range n {
			name := RandomName()
			if ft == storage.PackFile && i%4 == 0 {
				name = "ab" + name[2:]
			}
			data := RandomData(mrand.IntN(300))
			save(t, be, storage.Handle{Type: ft, Name: name}, data)
			want[ft][name] = int64(len(data))
		}
	}
	for ft, w := range want {
		got := listNames(t, be, ft)
		if len(got) != len(w) {
			t.Fatalf("List %s: %d files, want %d\n got %v\nwant %v", ft, len(got), len(w), sortedKeys(got), sortedKeys(w))
		}
		for name, size := range w {
			gs, ok := got[name]
			if !ok {
				t.Fatalf("List %s: %s missing", ft, name)
			}
			if gs != size {
				t.Fatalf("List %s: %s has size %d, want %d", ft, name, gs, size)
			}
		}
	}
	if got := listNames(t, be, storage.ConfigFile); len(got) != 0 {
		t.Fatalf("List config without a config file = %v", got)
	}
}

func sortedKeys(m map[string]int64) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (s *suite) listCallbackError(t *testing.T, be storage.Backend) {
	for range 5 {
		save(t, be, storage.Handle{Type: storage.IndexFile, Name: RandomName()}, RandomData(10))
	}
	calls := 0
	err := be.List(ctxFor(t), storage.IndexFile, func(storage.FileInfo) error {
		calls++
		return errSentinel
	})
	if !errors.Is(err, errSentinel) {
		t.Fatalf("List returned %v, want the error fn returned", err)
	}
	if calls != 1 {
		t.Fatalf("fn called %d times after returning an error, want 1", calls)
	}
}

func (s *suite) configFile(t *testing.T, be storage.Backend) {
	h := storage.Handle{Type: storage.ConfigFile}
	data := RandomData(200)
	save(t, be, h, data)
	equal(t, "config", load(t, be, h, 0, 0), data)
	got := listNames(t, be, storage.ConfigFile)
	if len(got) != 1 || got[""] != 200 {
		t.Fatalf("List config = %v, want one nameless 200-byte file", got)
	}
	// The config file must not show up as, or hide, files of other types.
	save(t, be, storage.Handle{Type: storage.KeyFile, Name: "config"}, RandomData(5))
	if got := listNames(t, be, storage.KeyFile); len(got) != 1 {
		t.Fatalf("List keys = %v", got)
	}
}

func (s *suite) invalidHandles(t *testing.T, be storage.Backend) {
	bad := []storage.Handle{
		{Type: storage.PackFile, Name: ""},
		{Type: storage.PackFile, Name: "a/b"},
		{Type: storage.PackFile, Name: "a"},
		{Type: storage.PackFile, Name: ".."},
		{Type: storage.PackFile, Name: ".hidden"},
		{Type: storage.KeyFile, Name: "with space"},
		{Type: "bogus", Name: "abc"},
		{Type: storage.ConfigFile, Name: "x"},
	}
	for _, h := range bad {
		err := be.Save(ctxFor(t), h, 1, bytes.NewReader([]byte{1}))
		if err == nil || !storage.IsPermanent(err) {
			t.Fatalf("Save of invalid handle %q: %v, want a permanent error", h, err)
		}
		if _, err := be.Stat(ctxFor(t), h); err == nil || !storage.IsPermanent(err) {
			t.Fatalf("Stat of invalid handle %q: %v, want a permanent error", h, err)
		}
	}
}

func (s *suite) sizeMismatch(t *testing.T, be storage.Backend) {
	for _, delta := range []int64{-10, 10} {
		h := storage.Handle{Type: storage.PackFile, Name: RandomName()}
		data := RandomData(1000)
		err := be.Save(ctxFor(t), h, int64(len(data))+delta, bytes.NewReader(data))
		if err == nil {
			t.Fatalf("Save with size %d of a %d-byte reader succeeded", int64(len(data))+delta, len(data))
		}
		if !storage.IsPermanent(err) {
			t.Fatalf("Save with a wrong size: %v, want a permanent error (retrying cannot fix it)", err)
		}
		assertAbsent(t, be, h)
	}
}

// FailingReader yields n bytes of data and then fails with err.
type FailingReader struct {
	Data []byte
	N    int
	Err  error
}

func (r *FailingReader) Read(p []byte) (int, error) {
	if r.N <= 0 {
		return 0, r.Err
	}
	n := copy(p[:min(len(p), r.N)], r.Data)
	r.Data, r.N = r.Data[n:], r.N-n
	return n, nil
}

var errReader = errors.New("injected reader failure")

func (s *suite) failingReader(t *testing.T, be storage.Backend) {
	for _, n := range []int{0, 1000, 3 << 20} {
		h := storage.Handle{Type: storage.PackFile, Name: RandomName()}
		data := RandomData(4 << 20)
		err := be.Save(ctxFor(t), h, int64(len(data)), &FailingReader{Data: data, N: n, Err: errReader})
		if err == nil {
			t.Fatalf("Save from a reader failing after %d bytes succeeded", n)
		}
		assertAbsent(t, be, h)
	}
}

func assertAbsent(t *testing.T, be storage.Backend, h storage.Handle) {
	t.Helper()
	if _, err := be.Stat(ctxFor(t), h); !storage.IsNotExist(err) {
		t.Fatalf("after a failed Save, Stat %s: %v, want IsNotExist (a partial file is visible)", h, err)
	}
	if got := listNames(t, be, h.Type); got != nil {
		if _, ok := got[h.Name]; ok {
			t.Fatalf("after a failed Save, List shows %s", h)
		}
	}
}

func (s *suite) concurrentSaves(t *testing.T, be storage.Backend) {
	const n = 32
	files := make(map[string][]byte, n)
	for range n {
		files[RandomName()] = RandomData(mrand.IntN(200_000))
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for name, data := range files {
		wg.Go(func() {
			h := storage.Handle{Type: storage.PackFile, Name: name}
			if err := be.Save(ctxFor(t), h, int64(len(data)), bytes.NewReader(data)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Save: %v", err)
	}
	var lwg sync.WaitGroup
	for name, data := range files {
		lwg.Go(func() {
			var got []byte
			err := be.Load(ctxFor(t), storage.Handle{Type: storage.PackFile, Name: name}, 0, 0, func(rd io.Reader) error {
				var err error
				got, err = io.ReadAll(rd)
				return err
			})
			if err != nil {
				t.Errorf("concurrent Load %s: %v", name, err)
			} else if !bytes.Equal(got, data) {
				t.Errorf("concurrent Load %s: wrong content", name)
			}
		})
	}
	lwg.Wait()
	if got := listNames(t, be, storage.PackFile); len(got) != n {
		t.Fatalf("List after concurrent saves: %d files, want %d", len(got), n)
	}
}

func (s *suite) concurrentSameName(t *testing.T, be storage.Backend) {
	const n = 8
	h := storage.Handle{Type: storage.LockFile, Name: RandomName()}
	contents := make([][]byte, n)
	for i := range contents {
		contents[i] = RandomData(100_000 + i)
	}
	var wg sync.WaitGroup
	results := make([]error, n)
	for i := range n {
		wg.Go(func() {
			results[i] = be.Save(ctxFor(t), h, int64(len(contents[i])), bytes.NewReader(contents[i]))
		})
	}
	wg.Wait()
	winners := 0
	winner := -1
	for i, err := range results {
		switch {
		case err == nil:
			winners++
			winner = i
		case storage.IsExist(err):
		default:
			t.Fatalf("concurrent Save of one name: %v, want nil or IsExist", err)
		}
	}
	got := load(t, be, h, 0, 0)
	if s.opts.RacyWriteOnce {
		if winners == 0 {
			t.Fatal("no concurrent Save of one name succeeded")
		}
		for _, c := range contents {
			if bytes.Equal(got, c) {
				return
			}
		}
		t.Fatal("file after concurrent Saves matches none of them (torn write)")
	}
	if winners != 1 {
		t.Fatalf("%d concurrent Saves of one name succeeded, want exactly 1", winners)
	}
	equal(t, "file after concurrent Saves", got, contents[winner])
}

func (s *suite) largeFile(t *testing.T, be storage.Backend) {
	data := RandomData(s.opts.LargeFileSize)
	h := storage.Handle{Type: storage.PackFile, Name: RandomName()}
	// A reader that hides io.Seeker/WriterTo so backends take their
	// streaming path.
	if err := be.Save(ctxFor(t), h, int64(len(data)), struct{ io.Reader }{bytes.NewReader(data)}); err != nil {
		t.Fatalf("Save of %d bytes: %v", len(data), err)
	}
	equal(t, "large file", load(t, be, h, 0, 0), data)
	off := int64(len(data) - 5<<20 - 3)
	equal(t, "range of large file", load(t, be, h, 5<<20, off), data[off:off+5<<20])
	fi, err := be.Stat(ctxFor(t), h)
	if err != nil || fi.Size != int64(len(data)) {
		t.Fatalf("Stat = %+v, %v", fi, err)
	}
}

func (s *suite) cancelledContext(t *testing.T, be storage.Backend) {
	existing := storage.Handle{Type: storage.PackFile, Name: RandomName()}
	save(t, be, existing, RandomData(100))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fresh := storage.Handle{Type: storage.PackFile, Name: RandomName()}
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with a cancelled context: %v, want an error wrapping context.Canceled", op, err)
		}
	}
	check("Save", be.Save(ctx, fresh, 10, bytes.NewReader(RandomData(10))))
	check("Load", be.Load(ctx, existing, 0, 0, func(rd io.Reader) error {
		_, err := io.ReadAll(rd)
		return err
	}))
	_, err := be.Stat(ctx, existing)
	check("Stat", err)
	check("Remove", be.Remove(ctx, existing))
	check("List", be.List(ctx, storage.PackFile, func(storage.FileInfo) error { return nil }))
	assertAbsent(t, be, fresh)
	if _, err := be.Stat(ctxFor(t), existing); err != nil {
		t.Fatalf("Remove with a cancelled context removed the file: %v", err)
	}
}

// blockingReader yields data, then blocks until release is closed, then fails.
type blockingReader struct {
	data    []byte
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func (r *blockingReader) Read(p []byte) (int, error) {
	if len(r.data) > 0 {
		n := copy(p, r.data)
		r.data = r.data[n:]
		return n, nil
	}
	r.once.Do(func() { close(r.started) })
	<-r.release
	return 0, errors.New("reader released after cancel")
}

func (s *suite) cancelDuringSave(t *testing.T, be storage.Backend) {
	h := storage.Handle{Type: storage.PackFile, Name: RandomName()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rd := &blockingReader{data: RandomData(1 << 20), started: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- be.Save(ctx, h, 2<<20, rd) }()
	select {
	case <-rd.started:
	case err := <-done:
		t.Fatalf("Save returned before reading everything: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("Save did not read its input")
	}
	cancel()
	// A backend may notice cancellation only when the reader returns.
	time.AfterFunc(200*time.Millisecond, func() { close(rd.release) })
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Save succeeded after cancel")
		}
	case <-time.After(time.Minute):
		t.Fatal("Save did not return after cancel")
	}
	assertAbsent(t, be, h)
}

// modTime: Stat and List report when a file was written by the storage's
// clock. The suite runs storage on the test's machine, so that clock is the
// test's, within a minute (object stores keep seconds).
func (s *suite) modTime(t *testing.T, be storage.Backend) {
	before := time.Now()
	h := storage.Handle{Type: storage.LockFile, Name: RandomName()}
	save(t, be, h, []byte("lock"))
	after := time.Now()
	in := func(what string, m time.Time) {
		t.Helper()
		if m.IsZero() || m.Before(before.Add(-time.Minute)) || m.After(after.Add(time.Minute)) {
			t.Errorf("%s: ModTime %v, want the time of the Save (%v to %v)", what, m, before, after)
		}
	}
	fi, err := be.Stat(ctxFor(t), h)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	in("Stat", fi.ModTime)
	found := false
	if err := be.List(ctxFor(t), storage.LockFile, func(fi storage.FileInfo) error {
		if fi.Name == h.Name {
			found = true
			in("List", fi.ModTime)
		}
		return nil
	}); err != nil {
		t.Fatalf("List: %v", err)
	}
	if !found {
		t.Fatalf("List does not report %s", h.Name)
	}
}
