package retry_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/faulty"
	"github.com/arca-backup/arca/internal/storage/mem"
	"github.com/arca-backup/arca/internal/storage/retry"
	"github.com/arca-backup/arca/internal/storage/storagetest"
)

func noSleep(ctx context.Context, d time.Duration) error { return ctx.Err() }

func TestSuite(t *testing.T) {
	storagetest.RunSuite(t, func(t *testing.T) storage.Backend {
		return retry.New(mem.New(), retry.Options{Sleep: noSleep})
	})
}

// With a fifth of all calls failing in every recoverable way, the retrying
// backend still behaves exactly as the interface promises.
func TestSuiteUnderFaults(t *testing.T) {
	storagetest.RunSuite(t, func(t *testing.T) storage.Backend {
		fb := faulty.New(mem.New())
		fb.Seed(uint64(time.Now().UnixNano()))
		// Remove is left out: after a failed attempt, a missing file is
		// reported as removed (see the package doc), which the suite's
		// not-exist checks would flag. TestRecoversFromTransientErrors
		// covers Remove.
		for _, op := range []faulty.Op{faulty.OpSave, faulty.OpLoad, faulty.OpStat, faulty.OpList} {
			for _, k := range []faulty.Kind{faulty.Transient, faulty.Timeout, faulty.LostResponse, faulty.BrokenRead} {
				fb.Add(faulty.Fault{Op: op, Probability: 0.05, Kind: k, Delay: time.Millisecond})
			}
		}
		return retry.New(fb, retry.Options{Sleep: noSleep, MaxAttempts: 30})
	})
}

type recorder struct {
	mu    sync.Mutex
	waits []time.Duration
	ops   []string
}

func (r *recorder) notify(op string, h storage.Handle, attempt int, err error, wait time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waits = append(r.waits, wait)
	r.ops = append(r.ops, op)
}

var h = storage.Handle{Type: storage.PackFile, Name: "abcdef"}

func TestRecoversFromTransientErrors(t *testing.T) {
	ctx := context.Background()
	fb := faulty.New(mem.New())
	fb.Add(faulty.Fault{Op: faulty.OpSave, Nth: 1, Count: 3, Kind: faulty.Transient},
		faulty.Fault{Op: faulty.OpLoad, Nth: 1, Count: 2, Kind: faulty.BrokenRead},
		faulty.Fault{Op: faulty.OpStat, Nth: 1, Kind: faulty.Timeout},
		faulty.Fault{Op: faulty.OpRemove, Nth: 1, Kind: faulty.LostResponse})
	rec := &recorder{}
	be := retry.New(fb, retry.Options{Sleep: noSleep, Notify: rec.notify})
	data := storagetest.RandomData(10_000)
	// A non-seekable source is buffered for the retries.
	if err := be.Save(ctx, h, int64(len(data)), struct{ io.Reader }{bytes.NewReader(data)}); err != nil {
		t.Fatalf("Save: %v", err)
	}
	calls := 0
	var got []byte
	err := be.Load(ctx, h, 0, 0, func(rd io.Reader) error {
		calls++
		var err error
		got, err = io.ReadAll(rd)
		return err
	})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Load: %v (content equal: %v)", err, bytes.Equal(got, data))
	}
	if calls != 3 {
		t.Fatalf("fn called %d times, want 3 (two broken reads, then success)", calls)
	}
	if fi, err := be.Stat(ctx, h); err != nil || fi.Size != int64(len(data)) {
		t.Fatalf("Stat: %+v %v", fi, err)
	}
	if err := be.Remove(ctx, h); err != nil {
		t.Fatalf("Remove whose first response was lost: %v", err)
	}
	if _, err := be.Stat(ctx, h); !storage.IsNotExist(err) {
		t.Fatalf("Stat after Remove: %v", err)
	}
	if be.Retries() != 7 || len(rec.ops) != 7 {
		t.Fatalf("Retries = %d, notified %v; want 7", be.Retries(), rec.ops)
	}
}

func TestSaveLostResponse(t *testing.T) {
	ctx := context.Background()
	fb := faulty.New(mem.New())
	fb.Add(faulty.Fault{Op: faulty.OpSave, Nth: 1, Kind: faulty.LostResponse})
	be := retry.New(fb, retry.Options{Sleep: noSleep})
	data := []byte("0123456789")
	// A seekable source positioned past its start is replayed from there.
	rd := bytes.NewReader(append([]byte("skip"), data...))
	rd.Seek(4, io.SeekStart)
	if err := be.Save(ctx, h, int64(len(data)), rd); err != nil {
		t.Fatalf("Save whose response was lost: %v", err)
	}
	got, err := storage.ReadAll(ctx, be, h)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored %q, %v", got, err)
	}
	// A different file under the same name is still refused, even after a
	// retried attempt.
	fb.Add(faulty.Fault{Op: faulty.OpSave, Nth: 2, Kind: faulty.Transient})
	err = be.Save(ctx, h, 3, strings.NewReader("new"))
	if !storage.IsExist(err) {
		t.Fatalf("Save over an existing file after a retry: %v, want IsExist", err)
	}
}

func TestPermanentNotRetried(t *testing.T) {
	ctx := context.Background()
	fb := faulty.New(mem.New())
	fb.Add(faulty.Fault{Op: faulty.OpSave, Nth: 1, Count: -1, Kind: faulty.Permanent})
	be := retry.New(fb, retry.Options{Sleep: noSleep})
	err := be.Save(ctx, h, 3, strings.NewReader("abc"))
	if !storage.IsPermanent(err) {
		t.Fatalf("Save: %v, want the permanent error", err)
	}
	if fb.Calls(faulty.OpSave) != 1 {
		t.Fatalf("permanent error retried: %d calls", fb.Calls(faulty.OpSave))
	}
	if _, err := be.Stat(ctx, h); !storage.IsNotExist(err) {
		t.Fatalf("something visible after a permanent failure: %v", err)
	}
	// Not-exist is permanent too.
	if _, err := be.Stat(ctx, storage.Handle{Type: storage.KeyFile, Name: "nope"}); !storage.IsNotExist(err) || fb.Calls(faulty.OpStat) != 2 {
		t.Fatalf("Stat of a missing file: %v after %d calls", err, fb.Calls(faulty.OpStat))
	}
}

// A full disk or used-up quota is not retried: retrying cannot free space.
// The error names the condition and what to do, and is permanent for the
// layers above.
func TestDiskFullNotRetried(t *testing.T) {
	ctx := context.Background()
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
		fb := faulty.New(mem.New())
		// Transient is the kind a plain retry would retry; the errno must win.
		fb.Add(faulty.Fault{Op: faulty.OpSave, Nth: 1, Count: -1, Kind: faulty.Transient,
			Err: &fs.PathError{Op: "write", Path: "/repo/data/ab/abcdef", Err: errno}})
		be := retry.New(fb, retry.Options{Sleep: noSleep})
		err := be.Save(ctx, h, 3, strings.NewReader("abc"))
		if fb.Calls(faulty.OpSave) != 1 {
			t.Errorf("%v: retried, %d calls", errno, fb.Calls(faulty.OpSave))
		}
		var full *retry.DiskFullError
		if !errors.As(err, &full) || !storage.IsPermanent(err) || !errors.Is(err, errno) {
			t.Fatalf("%v: Save: %v (%T), want a permanent *DiskFullError wrapping the errno", errno, err, err)
		}
		want := map[syscall.Errno]string{syscall.ENOSPC: "no space left", syscall.EDQUOT: "quota is used up"}[errno]
		for _, s := range []string{"is full", want, "free space", "arca repo prune"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%v: error %q does not say %q", errno, err, s)
			}
		}
	}
}

func TestGivesUp(t *testing.T) {
	ctx := context.Background()
	fb := faulty.New(mem.New())
	fb.Add(faulty.Fault{Op: faulty.OpSave, Nth: 1, Count: -1, Kind: faulty.Transient})
	rec := &recorder{}
	be := retry.New(fb, retry.Options{Sleep: noSleep, MaxAttempts: 6, Jitter: -1, InitialInterval: time.Second, MaxInterval: 5 * time.Second, Notify: rec.notify})
	err := be.Save(ctx, h, 3, strings.NewReader("abc"))
	var gu *retry.GaveUpError
	var te *faulty.TransientError
	if !errors.As(err, &gu) || gu.Attempts != 6 || !errors.As(err, &te) {
		t.Fatalf("Save: %v, want a GaveUpError after 6 attempts wrapping the transient error", err)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if len(rec.waits) != len(want) {
		t.Fatalf("waits %v, want %v", rec.waits, want)
	}
	for i := range want {
		if rec.waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", rec.waits, want)
		}
	}
	if _, err := be.Stat(ctx, h); !storage.IsNotExist(err) {
		t.Fatalf("something visible after giving up: %v", err)
	}
}

func TestMaxElapsed(t *testing.T) {
	fb := faulty.New(mem.New())
	fb.Add(faulty.Fault{Op: faulty.OpStat, Nth: 1, Count: -1, Kind: faulty.Transient})
	be := retry.New(fb, retry.Options{MaxElapsed: 300 * time.Millisecond, InitialInterval: 50 * time.Millisecond, Jitter: -1})
	start := time.Now()
	_, err := be.Stat(context.Background(), h)
	var gu *retry.GaveUpError
	if !errors.As(err, &gu) {
		t.Fatalf("Stat: %v", err)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Fatalf("gave up after %s, MaxElapsed is 300ms", d)
	}
}

func TestJitter(t *testing.T) {
	fb := faulty.New(mem.New())
	fb.Add(faulty.Fault{Op: faulty.OpStat, Nth: 1, Count: -1, Kind: faulty.Transient})
	rec := &recorder{}
	be := retry.New(fb, retry.Options{Sleep: noSleep, MaxAttempts: 2, InitialInterval: time.Second, Notify: rec.notify})
	for range 50 {
		be.Stat(context.Background(), h)
	}
	distinct := map[time.Duration]bool{}
	for _, w := range rec.waits {
		if w < 500*time.Millisecond || w > 1500*time.Millisecond {
			t.Fatalf("wait %s outside ±50%% of 1s", w)
		}
		distinct[w] = true
	}
	if len(distinct) < 10 {
		t.Fatalf("only %d distinct waits in 50: no jitter", len(distinct))
	}
}

func TestCancelWhileWaiting(t *testing.T) {
	fb := faulty.New(mem.New())
	fb.Add(faulty.Fault{Op: faulty.OpStat, Nth: 1, Count: -1, Kind: faulty.Transient})
	be := retry.New(fb, retry.Options{InitialInterval: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := be.Stat(ctx, h)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stat: %v, want the context's error", err)
	}
}

var errDecode = errors.New("decode failed")

func TestLoadCallbackErrorNotRetried(t *testing.T) {
	ctx := context.Background()
	fb := faulty.New(mem.New())
	be := retry.New(fb, retry.Options{Sleep: noSleep})
	if err := be.Save(ctx, h, 3, strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
	calls := 0
	err := be.Load(ctx, h, 0, 0, func(rd io.Reader) error {
		calls++
		io.ReadAll(rd)
		return errDecode
	})
	if err != errDecode || calls != 1 {
		t.Fatalf("Load: %v after %d calls of fn, want fn's own error, unchanged, after 1", err, calls)
	}
	if storage.IsPermanent(err) {
		t.Fatal("fn's error was reclassified")
	}
}

func TestListNoDuplicatesAfterRetry(t *testing.T) {
	ctx := context.Background()
	fb := faulty.New(mem.New())
	be := retry.New(fb, retry.Options{Sleep: noSleep})
	for i := range 10 {
		name := string(rune('a'+i)) + "x"
		if err := be.Save(ctx, storage.Handle{Type: storage.IndexFile, Name: name}, 0, strings.NewReader("")); err != nil {
			t.Fatal(err)
		}
	}
	fb.Add(faulty.Fault{Op: faulty.OpList, Nth: 1, Count: 2, Kind: faulty.Transient})
	seen := map[string]int{}
	if err := be.List(ctx, storage.IndexFile, func(fi storage.FileInfo) error { seen[fi.Name]++; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 10 {
		t.Fatalf("listed %d files, want 10", len(seen))
	}
	for n, c := range seen {
		if c != 1 {
			t.Fatalf("%s listed %d times", n, c)
		}
	}
}
