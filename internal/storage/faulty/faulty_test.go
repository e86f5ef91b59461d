package faulty_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/faulty"
	"github.com/arca-backup/arca/internal/storage/mem"
	"github.com/arca-backup/arca/internal/storage/storagetest"
)

// Without faults the decorator is transparent.
func TestSuite(t *testing.T) {
	storagetest.RunSuite(t, func(t *testing.T) storage.Backend { return faulty.New(mem.New()) })
}

var h = storage.Handle{Type: storage.PackFile, Name: "abcd"}

func saveErr(be storage.Backend, h storage.Handle, data []byte) error {
	return be.Save(context.Background(), h, int64(len(data)), bytes.NewReader(data))
}

func TestNthCall(t *testing.T) {
	be := faulty.New(mem.New())
	be.Add(faulty.Fault{Op: faulty.OpSave, Nth: 2, Count: 2, Kind: faulty.Transient})
	var errs []error
	for _, name := range []string{"n1", "n2", "n3", "n4"} {
		errs = append(errs, saveErr(be, storage.Handle{Type: storage.PackFile, Name: name}, []byte("x")))
	}
	var te *faulty.TransientError
	if errs[0] != nil || !errors.As(errs[1], &te) || !errors.As(errs[2], &te) || errs[3] != nil {
		t.Fatalf("errors = %v, want the 2nd and 3rd calls to fail", errs)
	}
	if storage.IsPermanent(errs[1]) {
		t.Fatal("transient fault classified permanent")
	}
	// A transient fault fails before the call: nothing stored.
	if _, err := be.Stat(context.Background(), storage.Handle{Type: storage.PackFile, Name: "n2"}); !storage.IsNotExist(err) {
		t.Fatalf("Stat after failed Save: %v", err)
	}
	if got := be.Calls(faulty.OpSave); got != 4 {
		t.Fatalf("Calls(save) = %d", got)
	}
	if got := len(be.Injected()); got != 2 {
		t.Fatalf("Injected = %v", be.Injected())
	}
}

func TestFilters(t *testing.T) {
	be := faulty.New(mem.New())
	be.Add(faulty.Fault{Type: storage.IndexFile, NamePrefix: "bad", Nth: 1, Count: -1, Kind: faulty.Permanent})
	if err := saveErr(be, storage.Handle{Type: storage.PackFile, Name: "bad1"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := saveErr(be, storage.Handle{Type: storage.IndexFile, Name: "good"}, nil); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := saveErr(be, storage.Handle{Type: storage.IndexFile, Name: "bad2"}, nil); !storage.IsPermanent(err) {
			t.Fatalf("want permanent fault, got %v", err)
		}
	}
}

func TestTimeout(t *testing.T) {
	be := faulty.New(mem.New())
	be.Add(faulty.Fault{Op: faulty.OpStat, Nth: 1, Kind: faulty.Timeout})
	_, err := be.Stat(context.Background(), h)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Stat = %v, want a timeout", err)
	}
}

func TestLostResponse(t *testing.T) {
	be := faulty.New(mem.New())
	be.Add(faulty.Fault{Op: faulty.OpSave, Nth: 1, Kind: faulty.LostResponse})
	if err := saveErr(be, h, []byte("data")); err == nil {
		t.Fatal("lost response reported success")
	}
	if fi, err := be.Stat(context.Background(), h); err != nil || fi.Size != 4 {
		t.Fatalf("the call behind a lost response did not happen: %+v %v", fi, err)
	}
}

func TestCorruptAndBrokenRead(t *testing.T) {
	be := faulty.New(mem.New())
	data := storagetest.RandomData(1000)
	if err := saveErr(be, h, data); err != nil {
		t.Fatal(err)
	}
	be.Add(faulty.Fault{Op: faulty.OpLoad, Nth: 1, Kind: faulty.Corrupt})
	got, err := storage.ReadAll(context.Background(), be, h)
	if err != nil {
		t.Fatal(err)
	}
	diff := 0
	for i := range data {
		if got[i] != data[i] {
			diff++
		}
	}
	if diff != 1 {
		t.Fatalf("corrupt load differs in %d bytes, want 1", diff)
	}
	be.Clear()
	be.Add(faulty.Fault{Op: faulty.OpLoad, Nth: 1, Kind: faulty.BrokenRead})
	var n int
	err = be.Load(context.Background(), h, 0, 0, func(rd io.Reader) error {
		b, err := io.ReadAll(rd)
		n = len(b)
		return err
	})
	var te *faulty.TransientError
	if !errors.As(err, &te) || n != 500 {
		t.Fatalf("broken read: %d bytes, %v", n, err)
	}
	// The stored data is untouched.
	if got, _ := storage.ReadAll(context.Background(), be, h); !bytes.Equal(got, data) {
		t.Fatal("stored data changed")
	}
}

func TestProbability(t *testing.T) {
	be := faulty.New(mem.New())
	be.Add(faulty.Fault{Op: faulty.OpStat, Probability: 0.3, Kind: faulty.Transient})
	failed := 0
	for range 1000 {
		if _, err := be.Stat(context.Background(), h); err != nil && !storage.IsNotExist(err) {
			failed++
		}
	}
	if failed < 200 || failed > 400 {
		t.Fatalf("%d of 1000 calls failed with probability 0.3", failed)
	}
}

func TestListFault(t *testing.T) {
	be := faulty.New(mem.New())
	for _, n := range []string{"a1", "a2", "a3", "a4"} {
		if err := saveErr(be, storage.Handle{Type: storage.LockFile, Name: n}, nil); err != nil {
			t.Fatal(err)
		}
	}
	be.Add(faulty.Fault{Op: faulty.OpList, Nth: 1, Kind: faulty.Transient})
	seen := 0
	err := be.List(context.Background(), storage.LockFile, func(storage.FileInfo) error { seen++; return nil })
	if err == nil || seen != 2 {
		t.Fatalf("List with a fault: %d files then %v, want 2 files then an error", seen, err)
	}
}
