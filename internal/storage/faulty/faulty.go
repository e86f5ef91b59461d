// Package faulty is a storage.Backend decorator that injects failures, for
// tests of the code above the storage layer (retry, repository, engine).
//
// A Fault picks calls (by method, file type and name, then the Nth matching
// call or a probability) and says what happens to them: a transient
// 5xx-like error, a timeout, a permanent error, a lost response (the call
// succeeds on the wrapped backend but reports a transient error), a reader
// that breaks mid-stream, or silently corrupted bytes.
//
//	be := faulty.New(mem.New())
//	be.Add(faulty.Fault{Op: faulty.OpSave, Type: storage.PackFile, Nth: 2, Kind: faulty.Transient})
package faulty

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/arca-backup/arca/internal/storage"
)

var _ storage.Backend = (*Backend)(nil)

// Op names a Backend method.
type Op string

const (
	OpAny    Op = ""
	OpSave   Op = "save"
	OpLoad   Op = "load"
	OpStat   Op = "stat"
	OpRemove Op = "remove"
	OpList   Op = "list"
)

// Kind is what an injected fault does.
type Kind int

const (
	// Transient fails the call before it reaches the wrapped backend with an
	// error like an HTTP 503; retrying helps.
	Transient Kind = iota
	// Timeout waits Fault.Delay (default 10 ms, or until ctx ends) and then
	// fails like a network timeout; retrying helps.
	Timeout
	// Permanent fails the call with an error wrapping storage.ErrPermanent.
	Permanent
	// LostResponse runs the call on the wrapped backend and then reports a
	// transient error anyway, as when a response is lost on the network.
	LostResponse
	// BrokenRead (Load only) lets fn read about half of the range, then
	// fails the read with a transient error.
	BrokenRead
	// Corrupt (Load only) flips one bit of the bytes fn reads and reports
	// success: what a faulty disk or a bug would do. Only verification
	// above the storage layer can notice.
	Corrupt
)

func (k Kind) String() string {
	switch k {
	case Transient:
		return "transient"
	case Timeout:
		return "timeout"
	case Permanent:
		return "permanent"
	case LostResponse:
		return "lost-response"
	case BrokenRead:
		return "broken-read"
	case Corrupt:
		return "corrupt"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Fault selects calls and injects one kind of failure into them.
type Fault struct {
	Op   Op               // method; OpAny matches all
	Type storage.FileType // file type; "" matches all
	// NamePrefix, if set, restricts the fault to names with this prefix.
	NamePrefix string
	// Nth fails the Nth matching call (1-based) and the Count-1 following
	// ones. With Nth == 0 every matching call fails with Probability.
	Nth int
	// Count is how many calls fail from the Nth on (default 1; negative
	// means all of them).
	Count       int
	Probability float64
	Kind        Kind
	Delay       time.Duration // for Timeout
	// Err replaces the injected error (for Transient, Timeout, Permanent).
	Err error

	seen, fired int
}

// Backend injects its faults into calls to the wrapped backend.
type Backend struct {
	be storage.Backend

	mu     sync.Mutex
	faults []*Fault
	calls  map[Op]int
	log    []string
	rnd    *rand.Rand
}

// New wraps be without faults; add them with Add.
func New(be storage.Backend) *Backend {
	return &Backend{be: be, calls: map[Op]int{}, rnd: rand.New(rand.NewPCG(1, 1))}
}

// Seed makes probabilistic faults reproducible with a different sequence.
func (b *Backend) Seed(seed uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rnd = rand.New(rand.NewPCG(seed, seed))
}

// Add installs faults; they apply to calls from now on.
func (b *Backend) Add(faults ...Fault) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range faults {
		if f.Count == 0 {
			f.Count = 1
		}
		b.faults = append(b.faults, &f)
	}
}

// Clear removes every fault.
func (b *Backend) Clear() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults = nil
}

// Calls is how many calls of op were made (OpAny: all).
func (b *Backend) Calls(op Op) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if op == OpAny {
		n := 0
		for _, c := range b.calls {
			n += c
		}
		return n
	}
	return b.calls[op]
}

// Injected lists the faults injected so far, as "kind op handle".
func (b *Backend) Injected() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.log...)
}

// Unwrap returns the wrapped backend.
func (b *Backend) Unwrap() storage.Backend { return b.be }

// pick counts the call and returns the fault to inject, if any.
func (b *Backend) pick(op Op, h storage.Handle) (Fault, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls[op]++
	for _, f := range b.faults {
		if (f.Op != OpAny && f.Op != op) || (f.Type != "" && f.Type != h.Type) ||
			(f.NamePrefix != "" && !strings.HasPrefix(h.Name, f.NamePrefix)) {
			continue
		}
		if (f.Kind == BrokenRead || f.Kind == Corrupt) && op != OpLoad {
			continue
		}
		f.seen++
		fire := false
		if f.Nth > 0 {
			fire = f.seen >= f.Nth && (f.Count < 0 || f.seen < f.Nth+f.Count)
		} else {
			fire = b.rnd.Float64() < f.Probability
		}
		if fire {
			f.fired++
			b.log = append(b.log, fmt.Sprintf("%s %s %s", f.Kind, op, h))
			return *f, true
		}
	}
	return Fault{}, false
}

// TransientError is an injected error that retrying can fix.
type TransientError struct {
	Op     Op
	Handle storage.Handle
	Status int
}

func (e *TransientError) Error() string {
	return fmt.Sprintf("injected fault: %s %s: HTTP %d", e.Op, e.Handle, e.Status)
}

// TimeoutError is an injected network timeout; it satisfies net.Error.
type TimeoutError struct {
	Op     Op
	Handle storage.Handle
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("injected fault: %s %s: i/o timeout", e.Op, e.Handle)
}
func (e *TimeoutError) Timeout() bool   { return true }
func (e *TimeoutError) Temporary() bool { return true }

// before returns the error to fail the call with before it runs, if any.
func (b *Backend) before(ctx context.Context, op Op, h storage.Handle, f Fault) error {
	switch f.Kind {
	case Transient:
		if f.Err != nil {
			return f.Err
		}
		return &TransientError{Op: op, Handle: h, Status: 503}
	case Timeout:
		d := f.Delay
		if d == 0 {
			d = 10 * time.Millisecond
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s %s: %w", op, h, ctx.Err())
		case <-t.C:
		}
		if f.Err != nil {
			return f.Err
		}
		return &TimeoutError{Op: op, Handle: h}
	case Permanent:
		if f.Err != nil {
			return f.Err
		}
		return fmt.Errorf("injected fault: %s %s: %w", op, h, storage.ErrPermanent)
	}
	return nil
}

func (b *Backend) Location() string { return b.be.Location() }
func (b *Backend) Close() error     { return b.be.Close() }

func (b *Backend) Save(ctx context.Context, h storage.Handle, size int64, rd io.Reader) error {
	f, ok := b.pick(OpSave, h)
	if ok {
		if err := b.before(ctx, OpSave, h, f); err != nil {
			return err
		}
	}
	err := b.be.Save(ctx, h, size, rd)
	if ok && f.Kind == LostResponse && err == nil {
		return &TransientError{Op: OpSave, Handle: h, Status: 504}
	}
	return err
}

func (b *Backend) Load(ctx context.Context, h storage.Handle, length int, offset int64, fn func(rd io.Reader) error) error {
	f, ok := b.pick(OpLoad, h)
	if !ok {
		return b.be.Load(ctx, h, length, offset, fn)
	}
	if err := b.before(ctx, OpLoad, h, f); err != nil {
		return err
	}
	switch f.Kind {
	case BrokenRead:
		return b.be.Load(ctx, h, length, offset, func(rd io.Reader) error {
			data, err := io.ReadAll(rd)
			if err != nil {
				return err
			}
			return fn(io.MultiReader(strings.NewReader(string(data[:len(data)/2])),
				errReader{&TransientError{Op: OpLoad, Handle: h, Status: 500}}))
		})
	case Corrupt:
		return b.be.Load(ctx, h, length, offset, func(rd io.Reader) error {
			data, err := io.ReadAll(rd)
			if err != nil {
				return err
			}
			if len(data) > 0 {
				b.mu.Lock()
				i := b.rnd.IntN(len(data))
				bit := byte(1) << b.rnd.IntN(8)
				b.mu.Unlock()
				data[i] ^= bit
			}
			return fn(strings.NewReader(string(data)))
		})
	case LostResponse:
		err := b.be.Load(ctx, h, length, offset, fn)
		if err == nil {
			return &TransientError{Op: OpLoad, Handle: h, Status: 504}
		}
		return err
	}
	return b.be.Load(ctx, h, length, offset, fn)
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func (b *Backend) Stat(ctx context.Context, h storage.Handle) (storage.FileInfo, error) {
	f, ok := b.pick(OpStat, h)
	if ok {
		if err := b.before(ctx, OpStat, h, f); err != nil {
			return storage.FileInfo{}, err
		}
	}
	fi, err := b.be.Stat(ctx, h)
	if ok && f.Kind == LostResponse && err == nil {
		return storage.FileInfo{}, &TransientError{Op: OpStat, Handle: h, Status: 504}
	}
	return fi, err
}

func (b *Backend) Remove(ctx context.Context, h storage.Handle) error {
	f, ok := b.pick(OpRemove, h)
	if ok {
		if err := b.before(ctx, OpRemove, h, f); err != nil {
			return err
		}
	}
	err := b.be.Remove(ctx, h)
	if ok && f.Kind == LostResponse && err == nil {
		return &TransientError{Op: OpRemove, Handle: h, Status: 504}
	}
	return err
}

// List faults are injected mid-listing: a Transient or Timeout fault fails
// the listing after half of the files (at least one) were reported.
func (b *Backend) List(ctx context.Context, t storage.FileType, fn func(storage.FileInfo) error) error {
	h := storage.Handle{Type: t}
	f, ok := b.pick(OpList, h)
	if !ok {
		return b.be.List(ctx, t, fn)
	}
	if f.Kind == Permanent {
		return b.before(ctx, OpList, h, f)
	}
	var infos []storage.FileInfo
	if err := b.be.List(ctx, t, func(fi storage.FileInfo) error {
		infos = append(infos, fi)
		return nil
	}); err != nil {
		return err
	}
	cut := len(infos)
	if f.Kind != LostResponse {
		cut = (len(infos) + 1) / 2
	}
	for _, fi := range infos[:cut] {
		if err := fn(fi); err != nil {
			return err
		}
	}
	if err := b.before(ctx, OpList, h, f); err != nil {
		return err
	}
	return &TransientError{Op: OpList, Handle: h, Status: 504}
}
