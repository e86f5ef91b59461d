// Package retry is a storage.Backend decorator that retries transient errors
// with exponential backoff and jitter. Errors for which storage.IsPermanent is
// true (not-exist, exist, authentication, cancelled contexts, ...) are never
// retried, and neither is a full disk (ENOSPC, EDQUOT): it is returned at
// once as a *DiskFullError that names the condition and the fix.
//
// Retrying must not change what callers observe, so each method handles the
// case where an attempt that reported a transient error in fact succeeded
// (the response was lost):
//   - Save re-reads its input for every attempt: from the same position if
//     the reader is an io.Seeker, otherwise from a copy buffered in memory
//     before the first attempt (pass a bytes.Reader or *os.File for large
//     files). If a retried Save finds the file already there, it compares the
//     stored bytes with its input: equal means the earlier attempt succeeded,
//     anything else is reported as storage.ErrExist.
//   - Load calls fn again on retry (fn must be idempotent, as the interface
//     says). Only read errors of the backend's reader and errors of the backend
//     itself are retried; an error that fn produces on its own (say, a
//     decryption failure) is returned at once, unchanged.
//   - Remove that finds the file gone after a failed attempt reports success:
//     the failed attempt may have removed it. So, unlike the interface's
//     rule, Remove of a file that was already missing can return nil when
//     the first attempt failed; callers that must know use Stat.
//   - List restarts after a transient error but never reports a name twice.
package retry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/arca-backup/arca/internal/storage"
)

var _ storage.Backend = (*Backend)(nil)

// PrimaryWithFallback is the budget of a primary repository that has a
// secondary copy to fall back to: a store that does not answer in a few
// seconds is given up for the secondary instead of retried for minutes.
var PrimaryWithFallback = Options{MaxAttempts: 3, MaxElapsed: 20 * time.Second}

// Options configures the retry policy. Zero fields take the defaults.
type Options struct {
	// MaxAttempts is the total number of attempts, including the first
	// (default 10).
	MaxAttempts int
	// MaxElapsed bounds the time spent on one call, retries included; no
	// new attempt starts after it (default 15 minutes).
	MaxElapsed time.Duration
	// InitialInterval is the wait before the second attempt (default 500 ms);
	// each later wait is Multiplier (default 2) times longer, up to
	// MaxInterval (default 1 minute).
	InitialInterval time.Duration
	MaxInterval     time.Duration
	Multiplier      float64
	// Jitter spreads each wait uniformly over ±Jitter of its length
	// (default 0.5; a negative value disables jitter).
	Jitter float64
	// Notify, if set, is called before each wait with the operation, the
	// failed attempt's number (1-based), its error and the wait. Use it for
	// logs and metrics.
	Notify func(op string, h storage.Handle, attempt int, err error, wait time.Duration)
	// Sleep waits d or until ctx ends; tests replace it to run without
	// real delays.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (o Options) withDefaults() Options {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	if o.MaxElapsed <= 0 {
		o.MaxElapsed = 15 * time.Minute
	}
	if o.InitialInterval <= 0 {
		o.InitialInterval = 500 * time.Millisecond
	}
	if o.MaxInterval <= 0 {
		o.MaxInterval = time.Minute
	}
	if o.Multiplier < 1 {
		o.Multiplier = 2
	}
	if o.Jitter == 0 {
		o.Jitter = 0.5
	} else if o.Jitter < 0 {
		o.Jitter = 0
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	return o
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Backend retries the calls of the backend it wraps.
type Backend struct {
	be      storage.Backend
	opts    Options
	retries atomic.Int64
}

// New wraps be.
func New(be storage.Backend, opts Options) *Backend {
	return &Backend{be: be, opts: opts.withDefaults()}
}

// Unwrap returns the wrapped backend.
func (b *Backend) Unwrap() storage.Backend { return b.be }

// Retries is the number of retries made so far, for metrics.
func (b *Backend) Retries() int64 { return b.retries.Load() }

func (b *Backend) Location() string { return b.be.Location() }
func (b *Backend) Close() error     { return b.be.Close() }

// GaveUpError is returned when the attempts or the time run out; it wraps
// the last attempt's error.
type GaveUpError struct {
	Op       string
	Handle   storage.Handle
	Attempts int
	Elapsed  time.Duration
	Err      error
}

func (e *GaveUpError) Error() string {
	return fmt.Sprintf("%s %s: giving up after %d attempts in %s: %v", e.Op, e.Handle, e.Attempts, e.Elapsed.Round(time.Millisecond), e.Err)
}

func (e *GaveUpError) Unwrap() error { return e.Err }

// do runs attempt until it succeeds, fails permanently, or the policy runs
// out. attempt gets the 1-based attempt number.
func (b *Backend) do(ctx context.Context, op string, h storage.Handle, attempt func(n int) error) error {
	start := time.Now()
	interval := b.opts.InitialInterval
	for n := 1; ; n++ {
		err := attempt(n)
		if err == nil || storage.IsPermanent(err) {
			return err
		}
		if full := diskFull(b.be, err); full != nil {
			return full
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("%w (after: %v)", ctxErr, err)
		}
		wait := b.jitter(interval)
		elapsed := time.Since(start)
		if n >= b.opts.MaxAttempts || elapsed+wait > b.opts.MaxElapsed {
			return &GaveUpError{Op: op, Handle: h, Attempts: n, Elapsed: elapsed, Err: err}
		}
		if b.opts.Notify != nil {
			b.opts.Notify(op, h, n, err, wait)
		}
		b.retries.Add(1)
		if serr := b.opts.Sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%s %s: %w (while waiting to retry: %v)", op, h, serr, err)
		}
		interval = min(time.Duration(float64(interval)*b.opts.Multiplier), b.opts.MaxInterval)
	}
}

// DiskFullError: the storage has no space left (ENOSPC) or the quota is
// used up (EDQUOT). Retrying cannot help until someone frees space, so it is
// permanent.
type DiskFullError struct {
	Location string
	Err      error
}

func (e *DiskFullError) Error() string {
	what := "no space left on the device"
	if errors.Is(e.Err, syscall.EDQUOT) {
		what = "the disk quota is used up"
	}
	return fmt.Sprintf("storage %s is full (%s): free space or raise the quota there, or run `arca repo prune` to remove data "+
		"no recovery point needs, then run again: %v", e.Location, what, e.Err)
}

func (e *DiskFullError) Unwrap() []error { return []error{e.Err, storage.ErrPermanent} }

// diskFull returns a *DiskFullError if err says the storage is full.
func diskFull(be storage.Backend, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return &DiskFullError{Location: be.Location(), Err: err}
	}
	return nil
}

func (b *Backend) jitter(d time.Duration) time.Duration {
	if b.opts.Jitter == 0 {
		return d
	}
	f := 1 + b.opts.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}

func (b *Backend) Save(ctx context.Context, h storage.Handle, size int64, rd io.Reader) error {
	if err := h.Valid(); err != nil {
		return err
	}
	src, err := newReplayable(rd)
	if err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	failedBefore := false
	return b.do(ctx, "save", h, func(n int) error {
		r, err := src.reader()
		if err != nil {
			return fmt.Errorf("save %s: rewind input: %v: %w", h, err, storage.ErrPermanent)
		}
		err = b.be.Save(ctx, h, size, r)
		if err == nil {
			return nil
		}
		if storage.IsExist(err) && failedBefore {
			// An earlier attempt may have stored the file after all.
			same, cerr := b.sameContent(ctx, h, src)
			if cerr != nil {
				return cerr
			}
			if same {
				return nil
			}
		}
		if !storage.IsPermanent(err) {
			failedBefore = true
		}
		return err
	})
}

// sameContent reports whether the stored file h holds exactly src's bytes.
func (b *Backend) sameContent(ctx context.Context, h storage.Handle, src *replayable) (bool, error) {
	same := false
	err := b.be.Load(ctx, h, 0, 0, func(stored io.Reader) error {
		ours, err := src.reader()
		if err != nil {
			return err
		}
		same, err = readersEqual(stored, ours)
		return err
	})
	return same, err
}

func readersEqual(a, b io.Reader) (bool, error) {
	bufA := make([]byte, 64<<10)
	bufB := make([]byte, 64<<10)
	for {
		na, errA := io.ReadFull(a, bufA)
		nb, errB := io.ReadFull(b, bufB)
		endA := errA == io.EOF || errA == io.ErrUnexpectedEOF
		endB := errB == io.EOF || errB == io.ErrUnexpectedEOF
		// Read errors first: a broken stream says nothing about equality.
		if errA != nil && !endA {
			return false, errA
		}
		if errB != nil && !endB {
			return false, errB
		}
		if !bytes.Equal(bufA[:na], bufB[:nb]) {
			return false, nil
		}
		if endA || endB {
			return endA && endB, nil
		}
	}
}

// replayable yields the same input for every attempt.
type replayable struct {
	seeker io.ReadSeeker
	start  int64
	buf    []byte
}

func newReplayable(rd io.Reader) (*replayable, error) {
	if s, ok := rd.(io.ReadSeeker); ok {
		pos, err := s.Seek(0, io.SeekCurrent)
		if err == nil {
			return &replayable{seeker: s, start: pos}, nil
		}
	}
	buf, err := io.ReadAll(rd)
	if err != nil {
		return nil, err
	}
	return &replayable{buf: buf}, nil
}

func (r *replayable) reader() (io.Reader, error) {
	if r.seeker == nil {
		return bytes.NewReader(r.buf), nil
	}
	if _, err := r.seeker.Seek(r.start, io.SeekStart); err != nil {
		return nil, err
	}
	// Hide Seek so that a backend cannot move the shared position.
	return struct{ io.Reader }{r.seeker}, nil
}

func (b *Backend) Load(ctx context.Context, h storage.Handle, length int, offset int64, fn func(rd io.Reader) error) error {
	return unwrapFn(b.do(ctx, "load", h, func(int) error {
		var tr *trackingReader
		var fnErr error
		fnCalled := false
		err := b.be.Load(ctx, h, length, offset, func(rd io.Reader) error {
			tr = &trackingReader{rd: rd}
			fnCalled = true
			fnErr = fn(tr)
			return fnErr
		})
		if err == nil || !fnCalled || fnErr == nil {
			return err
		}
		// fn failed. Retry only if it failed because reading failed.
		if tr.err != nil && errors.Is(fnErr, tr.err) && !storage.IsPermanent(tr.err) {
			return err
		}
		return &fnError{err}
	}))
}

// unwrapFn gives the caller fn's error exactly as fn returned it.
func unwrapFn(err error) error {
	var fe *fnError
	if errors.As(err, &fe) {
		return fe.err
	}
	return err
}

// fnError marks an error of Load's callback: permanent for do, unwrapped
// before it reaches the caller.
type fnError struct{ err error }

func (e *fnError) Error() string { return e.err.Error() }
func (e *fnError) Unwrap() []error {
	return []error{e.err, storage.ErrPermanent}
}

// trackingReader remembers the first read error other than io.EOF.
type trackingReader struct {
	rd  io.Reader
	err error
}

func (r *trackingReader) Read(p []byte) (int, error) {
	n, err := r.rd.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

func (b *Backend) Stat(ctx context.Context, h storage.Handle) (storage.FileInfo, error) {
	var fi storage.FileInfo
	err := b.do(ctx, "stat", h, func(int) error {
		var err error
		fi, err = b.be.Stat(ctx, h)
		return err
	})
	return fi, err
}

func (b *Backend) Remove(ctx context.Context, h storage.Handle) error {
	failedBefore := false
	return b.do(ctx, "remove", h, func(int) error {
		err := b.be.Remove(ctx, h)
		if storage.IsNotExist(err) && failedBefore {
			return nil // the failed attempt removed it
		}
		if err != nil && !storage.IsPermanent(err) {
			failedBefore = true
		}
		return err
	})
}

func (b *Backend) List(ctx context.Context, t storage.FileType, fn func(storage.FileInfo) error) error {
	seen := map[string]struct{}{}
	return unwrapFn(b.do(ctx, "list", storage.Handle{Type: t}, func(int) error {
		var fnErr error
		err := b.be.List(ctx, t, func(fi storage.FileInfo) error {
			if _, dup := seen[fi.Name]; dup {
				return nil
			}
			seen[fi.Name] = struct{}{}
			fnErr = fn(fi)
			return fnErr
		})
		if fnErr != nil && err != nil {
			return &fnError{err}
		}
		return err
	}))
}

var _ storage.Retainer = (*Backend)(nil)

// RetentionPeriod is the wrapped backend's (0 when it retains nothing).
func (b *Backend) RetentionPeriod(t storage.FileType) time.Duration {
	return storage.RetentionOf(b.be, t)
}

// RetainUntil extends the retention through the wrapped backend, retried
// like every call; a backend that retains nothing has nothing to extend.
func (b *Backend) RetainUntil(ctx context.Context, h storage.Handle, until time.Time) error {
	r, ok := b.be.(storage.Retainer)
	if !ok {
		return nil
	}
	return b.do(ctx, "retain", h, func(int) error { return r.RetainUntil(ctx, h, until) })
}
