package repo

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/storage/local"
)

// Benchmarks that print figures for docs/benchmarks.md:
//
//	go test -run '^$' -bench 'Repo' -benchtime 1x -v ./internal/repo
//
// BenchmarkRepoStream1GiB writes 1 GiB of random data with duplicated
// regions through PutStream to the filesystem backend and compares with
// writing the same bytes to a file on the same disk (write + fsync) in the
// same run. ARCA_BENCH_SIZE (MiB) changes the size.

// dupStream yields size bytes in segments of 4–32 MiB; about 40% of the
// segments repeat an earlier one, the rest are fresh random bytes.
type dupStream struct {
	size, done int64
	rnd        *rand.Rand
	seeds      []uint64
	seg        *rand.ChaCha8
	segLeft    int64
}

func newDupStream(size int64) *dupStream {
	return &dupStream{size: size, rnd: rand.New(rand.NewPCG(1, 2))}
}

func (d *dupStream) Read(p []byte) (int, error) {
	if d.done >= d.size {
		return 0, io.EOF
	}
	if d.segLeft == 0 {
		var seed uint64
		if len(d.seeds) > 2 && d.rnd.IntN(5) < 2 {
			seed = d.seeds[d.rnd.IntN(len(d.seeds))]
		} else {
			seed = d.rnd.Uint64()
			d.seeds = append(d.seeds, seed)
		}
		var s [32]byte
		for i := 0; i < 4; i++ {
			s[i] = byte(seed >> (8 * i))
		}
		d.seg = rand.NewChaCha8(s)
		d.segLeft = int64(4<<20 + d.rnd.IntN(28<<20))
	}
	n := int64(len(p))
	n = min(n, d.segLeft, d.size-d.done)
	_, _ = d.seg.Read(p[:n])
	d.segLeft -= n
	d.done += n
	return int(n), nil
}

// memPeak samples memory while running.
type memPeak struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	heapPeak atomic.Uint64
}

func startMemPeak() *memPeak {
	m := &memPeak{stop: make(chan struct{})}
	runtime.GC()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if v := ms.HeapInuse + ms.StackInuse; v > m.heapPeak.Load() {
				m.heapPeak.Store(v)
			}
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *memPeak) done() uint64 {
	close(m.stop)
	m.wg.Wait()
	return m.heapPeak.Load()
}

// vmHWM is the process's peak resident set size in bytes.
func vmHWM() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }

func BenchmarkRepoStream1GiB(b *testing.B) {
	size := int64(1 << 30)
	if s := os.Getenv("ARCA_BENCH_SIZE"); s != "" {
		mib, _ := strconv.Atoi(s)
		size = int64(mib) << 20
	}
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()

		// Generator alone (its cost is part of both figures below).
		t0 := time.Now()
		_, _ = io.Copy(io.Discard, newDupStream(size))
		gen := time.Since(t0)

		// Raw copy: the same bytes to one file, write + fsync.
		t0 = time.Now()
		f, err := os.Create(filepath.Join(dir, "raw"))
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		if _, err := io.CopyBuffer(f, newDupStream(size), buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		f.Close()
		raw := time.Since(t0)
		os.Remove(filepath.Join(dir, "raw"))

		// Repository.
		be, err := local.Create(filepath.Join(dir, "repo"))
		if err != nil {
			b.Fatal(err)
		}
		r, err := Init(ctx, be, "pw", WithKDF(testKDF))
		if err != nil {
			b.Fatal(err)
		}
		mp := startMemPeak()
		t0 = time.Now()
		w, err := r.NewWriter(ctx)
		if err != nil {
			b.Fatal(err)
		}
		ids, n, err := w.PutStream(ctx, newDupStream(size))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Commit(ctx, &RecoveryPoint{Name: "bench"}); err != nil {
			b.Fatal(err)
		}
		took := time.Since(t0)
		heap := mp.done()
		st := w.Stats()
		ratio := mbps(n, took) / mbps(size, raw)
		fmt.Printf("stream: %d MiB, %d chunks, GOMAXPROCS=%d\n", size>>20, len(ids), runtime.GOMAXPROCS(0))
		fmt.Printf("  generator alone:        %7.0f MB/s\n", mbps(size, gen))
		fmt.Printf("  raw copy (write+fsync): %7.0f MB/s (%.2fs)\n", mbps(size, raw), raw.Seconds())
		fmt.Printf("  repository PutStream:   %7.0f MB/s (%.2fs) = %.0f%% of raw copy\n", mbps(n, took), took.Seconds(), 100*ratio)
		fmt.Printf("  dedup ratio: %.2f (logical %d MiB, new %d MiB, stored %d MiB)\n",
			float64(st.LogicalBytes)/float64(max(st.NewBytes, 1)), st.LogicalBytes>>20, st.NewBytes>>20, st.StoredBytes>>20)
		fmt.Printf("  peak Go heap+stacks during write: %d MiB; process peak RSS (VmHWM): %d MiB\n", heap>>20, vmHWM()>>20)
		b.ReportMetric(mbps(n, took), "MB/s")
		b.ReportMetric(100*ratio, "%ofraw")
		b.ReportMetric(float64(heap>>20), "peakheapMiB")
	}
}

// k8sObject makes a ~1.5 KiB JSON document shaped like a ConfigMap.
func k8sObject(i int) []byte {
	var sb strings.Builder
	fmt.Fprintf(&sb, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm-%06d","namespace":"ns-%03d","uid":"%08x-1111-2222-3333-%012x","resourceVersion":"%d","labels":{"app":"web-%d","tier":"backend"}},"data":{`, i, i%100, i*7919, i*104729, 1000+i, i%50)
	for k := 0; sb.Len() < 1450; k++ {
		fmt.Fprintf(&sb, `"key-%d":"value %d of object %d, some configuration text",`, k, k*i, i)
	}
	sb.WriteString(`"end":"1"}}`)
	return []byte(sb.String())
}

func BenchmarkRepoSmallBlobs(b *testing.B) {
	const count = 100_000
	ctx := context.Background()
	objs := make([][]byte, count)
	var total int64
	for i := range objs {
		objs[i] = k8sObject(i)
		total += int64(len(objs[i]))
	}
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		be, err := local.Create(dir)
		if err != nil {
			b.Fatal(err)
		}
		r, err := Init(ctx, be, "pw", WithKDF(testKDF))
		if err != nil {
			b.Fatal(err)
		}
		run := func(workers int) (time.Duration, WriterStats) {
			t0 := time.Now()
			w, err := r.NewWriter(ctx)
			if err != nil {
				b.Fatal(err)
			}
			var wg sync.WaitGroup
			ids := make([]ID, count)
			for g := 0; g < workers; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := g; j < count; j += workers {
						id, err := w.PutBlob(ctx, objs[j])
						if err != nil {
							b.Error(err)
							return
						}
						ids[j] = id
					}
				}()
			}
			wg.Wait()
			tw := w.NewTree()
			for j, id := range ids {
				_ = tw.Add(ctx, TreeEntry{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespace: fmt.Sprintf("ns-%03d", j%100), Name: fmt.Sprintf("cm-%06d", j), Blobs: []ID{id}, Size: int64(len(objs[j]))})
			}
			tree, err := tw.Close(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := w.Commit(ctx, &RecoveryPoint{Resources: []ResourceTree{{Version: "v1", Resource: "configmaps", Tree: tree}}}); err != nil {
				b.Fatal(err)
			}
			return time.Since(t0), w.Stats()
		}
		workers := runtime.GOMAXPROCS(0)
		d1, s1 := run(workers)
		d2, s2 := run(workers)
		// Read everything back as a restore would: walk the tree, load blobs.
		t0 := time.Now()
		r2, err := Open(ctx, be, "pw", WithKDF(testKDF))
		if err != nil {
			b.Fatal(err)
		}
		rps, err := r2.ListRecoveryPoints(ctx)
		if err != nil {
			b.Fatal(err)
		}
		loaded := 0
		if err := r2.WalkTree(ctx, rps[0].Resources[0].Tree, func(e TreeEntry) error {
			_, err := r2.LoadBlob(ctx, e.Blobs[0])
			loaded++
			return err
		}); err != nil {
			b.Fatal(err)
		}
		d3 := time.Since(t0)
		fmt.Printf("small blobs: %d objects of ~%d B (%d MiB), %d writer goroutines, filesystem backend\n", count, total/count, total>>20, workers)
		fmt.Printf("  first backup:     %8.0f blobs/s (%.2fs), stored %d KiB (compression %.2fx)\n", count/d1.Seconds(), d1.Seconds(), s1.StoredBytes>>10, float64(total)/float64(s1.StoredBytes))
		fmt.Printf("  unchanged repeat: %8.0f blobs/s (%.2fs), stored %d KiB = %.3f%% of the first\n", count/d2.Seconds(), d2.Seconds(), s2.StoredBytes>>10, 100*float64(s2.StoredBytes)/float64(s1.StoredBytes))
		fmt.Printf("  read back (open, walk tree, LoadBlob each, one goroutine): %8.0f blobs/s (%.2fs)\n", float64(loaded)/d3.Seconds(), d3.Seconds())
		b.ReportMetric(count/d1.Seconds(), "blobs/s")
	}
}
