package volumedata

import (
	"bytes"
	"context"
	"fmt"
	"io"
	mrand "math/rand"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/local"
)

// The mover against the physical limits measured in the same run on the
// same disk: reading the same files raw, cold (the whole page cache
// dropped through /proc/sys/vm/drop_caches before the raw read and again
// before the mover's backup; skipped, saying why, when that is not
// writable) and hot (from the page cache), copying them raw (read, then
// written into fsynced 8 MiB files on the same disk, as the repository's
// packs are: the physical limit of a first backup), and writing the same
// bytes raw (to disk: syncfs before the clock stops). `make bench-mover`;
// figures go to docs/benchmarks.md.
//
//	ARCA_BENCH_MOVER_BYTES  total size of the mixed data set (default 1 GiB)
//	ARCA_BENCH_MOVER_FILES  count of the small-file set (default 100000; 0 skips it)
//	ARCA_BENCH_DIR          where to put the data and the repository (default $TMPDIR)

func envInt(name string, def int64) int64 {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err == nil {
			return n
		}
	}
	return def
}

func benchDir(b *testing.B) string {
	base := os.Getenv("ARCA_BENCH_DIR")
	d, err := os.MkdirTemp(base, "arca-mover-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// fileContent is half random, half a small alphabet: compression finds
// something to do, as in real volumes, but far from everything.
func fileContent(rnd *mrand.Rand, n int) []byte {
	b := make([]byte, n)
	rnd.Read(b)
	for off := 0; off < n; off += 8192 {
		end := min(off+4096, n)
		for i := off; i < end; i++ {
			b[i] = 'a' + b[i]%8
		}
	}
	return b
}

// mixedSizes: many small files, some medium, a few large (by count
// 60/30/10 %, by bytes mostly large), like a database or web volume.
func mixedSize(rnd *mrand.Rand) int {
	switch p := rnd.Intn(100); {
	case p < 60:
		return 1<<10 + rnd.Intn(63<<10)
	case p < 90:
		return 64<<10 + rnd.Intn(4<<20)
	default:
		return 4<<20 + rnd.Intn(60<<20)
	}
}

type dataset struct {
	root  string
	files []string
	bytes int64
}

func makeDataset(b *testing.B, root string, total int64, size func(*mrand.Rand) int, perDir int) *dataset {
	b.Helper()
	rnd := mrand.New(mrand.NewSource(1))
	ds := &dataset{root: root}
	for i := 0; ds.bytes < total; i++ {
		n := size(rnd)
		p := filepath.Join(root, fmt.Sprintf("d%03d", i/perDir), fmt.Sprintf("f%06d", i))
		if i%perDir == 0 {
			must(b, os.MkdirAll(filepath.Dir(p), 0o755))
		}
		must(b, os.WriteFile(p, fileContent(rnd, n), 0o644))
		ds.files = append(ds.files, p)
		ds.bytes += int64(n)
	}
	return ds
}

// dropCache writes back and evicts the pages of every file under dir.
func dropCache(b *testing.B, dir string) {
	b.Helper()
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_ = unix.Fdatasync(int(f.Fd()))
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		return f.Close()
	})
}

// dropPageCache writes dirty pages back and drops the whole page cache
// (root only): fadvise(DONTNEED) alone leaves the pages of some file
// systems (overlayfs) cached, so a "cold" read came from memory.
func dropPageCache() error {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		return fmt.Errorf("cannot drop the page cache (needs root and a writable /proc/sys/vm/drop_caches): %w", err)
	}
	return nil
}

// warm reads every file once so that the next read comes from the page
// cache.
func warm(b *testing.B, ds *dataset) {
	must(b, parallel(ds.files, runtime.GOMAXPROCS(0), func(p string) error {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(io.Discard, f)
		return err
	}))
}

func newBenchRepo(b *testing.B, dir string) *repo.Repository {
	must(b, os.MkdirAll(dir, 0o700))
	be, err := local.Open(dir)
	must(b, err)
	r, err := repo.Init(context.Background(), be, "bench", testKDF)
	must(b, err)
	return r
}

func cpuPerGiB(ds *dataset, run moverRun) float64 {
	return run.cpu.Seconds() / (float64(ds.bytes) / (1 << 30))
}

// logFirst reports a first backup against the raw read it is compared with
// (the figure) and against the raw copy (its physical limit here).
func logFirst(b *testing.B, what string, ds *dataset, raw, rawCp time.Duration, run moverRun) {
	// Two lines per call: testing keeps only 10 lines of a benchmark's log.
	b.Logf("%s: raw read %.1f MiB/s (%v); mover backup %.1f MiB/s (%v), stored %.1f MiB; ratio (%s) = %.2f (goal ≥ 0.5); raw copy %.1f MiB/s (%v; read + write into 8 MiB files, each fsynced): mover ÷ raw copy = %.2f",
		what, mibps(ds.bytes, raw), raw.Round(time.Millisecond), mibps(ds.bytes, run.elapsed), run.elapsed.Round(time.Millisecond),
		float64(run.stats.StoredBytes)/(1<<20), what, raw.Seconds()/run.elapsed.Seconds(),
		mibps(ds.bytes, rawCp), rawCp.Round(time.Millisecond), rawCp.Seconds()/run.elapsed.Seconds())
	b.Logf("%s: mover backup CPU %.2f s (%.1f CPU-s/GiB), peak Go memory %.1f MiB: on %d idle cores the CPU work allows %.1f MiB/s = %.2f of raw read; load average %s",
		what, run.cpu.Seconds(), cpuPerGiB(ds, run), float64(run.peak)/(1<<20), runtime.GOMAXPROCS(0), cpuBound(ds.bytes, run.cpu),
		cpuBound(ds.bytes, run.cpu)/mibps(ds.bytes, raw), loadAvg())
}

func parallel(files []string, workers int, fn func(string) error) error {
	ch := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range ch {
				if err := fn(f); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, f := range files {
		ch <- f
	}
	close(ch)
	wg.Wait()
	return first
}

// rawRead reads every file with as many readers as the mover uses; the
// caller decides what is cached.
func rawRead(b *testing.B, ds *dataset) time.Duration {
	start := time.Now()
	bufs := sync.Pool{New: func() any { x := make([]byte, 1<<20); return &x }}
	must(b, parallel(ds.files, 4*runtime.GOMAXPROCS(0), func(p string) error {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		bp := bufs.Get().(*[]byte)
		defer bufs.Put(bp)
		_, err = io.CopyBuffer(io.Discard, f, *bp)
		return err
	}))
	return time.Since(start)
}

// rawWrite writes the same bytes into new files and syncs the file system.
func rawWrite(b *testing.B, ds *dataset, dst string) time.Duration {
	contents := map[string][]byte{}
	for _, p := range ds.files {
		c, err := os.ReadFile(p)
		must(b, err)
		contents[p] = c
	}
	start := time.Now()
	var mu sync.Mutex
	made := map[string]bool{}
	must(b, parallel(ds.files, 4*runtime.GOMAXPROCS(0), func(p string) error {
		rel, _ := filepath.Rel(ds.root, p)
		out := filepath.Join(dst, rel)
		mu.Lock()
		if !made[filepath.Dir(out)] {
			made[filepath.Dir(out)] = true
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				mu.Unlock()
				return err
			}
		}
		mu.Unlock()
		return os.WriteFile(out, contents[p], 0o644)
	}))
	syncFS(b, dst)
	d := time.Since(start)
	contents = nil
	must(b, os.RemoveAll(dst))
	return d
}

// rawCopyPack is the size of the files the raw copy writes: the
// repository's pack size.
const rawCopyPack = 8 << 20

// rawCopy is the physical limit of a first backup on this disk: every file
// read (as many readers as the mover, as rawRead) and its bytes written
// into new 8 MiB files in a new directory on the same disk, each fsynced
// when full, as the repository's packs are; no hashing, compression or
// encryption. A first backup of new data must do at least this much I/O,
// and on a disk whose reads come from the host's cache the writes are the
// slower half. Each reader fills a buffer of its own (as each of the
// mover's sealers fills a pack of its own). The caller decides what is
// cached; the directory is removed after.
func rawCopy(b *testing.B, ds *dataset, dst string) time.Duration {
	must(b, os.MkdirAll(dst, 0o755))
	var seq atomic.Int64
	flush := func(buf []byte) error {
		f, err := os.OpenFile(filepath.Join(dst, fmt.Sprintf("p%06d", seq.Add(1))), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	workers := 4 * runtime.GOMAXPROCS(0)
	files := make(chan string)
	errs := make(chan error, workers)
	start := time.Now()
	for i := 0; i < workers; i++ {
		go func() {
			buf := make([]byte, 0, rawCopyPack)
			var first error
			for p := range files {
				if first != nil {
					continue
				}
				first = func() error {
					f, err := os.Open(p)
					if err != nil {
						return err
					}
					defer f.Close()
					for {
						n, err := f.Read(buf[len(buf):cap(buf)])
						buf = buf[:len(buf)+n]
						if len(buf) == cap(buf) {
							if err := flush(buf); err != nil {
								return err
							}
							buf = buf[:0]
						}
						if err == io.EOF {
							return nil
						}
						if err != nil {
							return err
						}
					}
				}()
			}
			if first == nil && len(buf) > 0 {
				first = flush(buf)
			}
			errs <- first
		}()
	}
	for _, p := range ds.files {
		files <- p
	}
	close(files)
	for i := 0; i < workers; i++ {
		must(b, <-errs)
	}
	syncFS(b, dst) // the directory entries: the repository fsyncs its directories too
	d := time.Since(start)
	must(b, os.RemoveAll(dst))
	return d
}

func syncFS(b *testing.B, dir string) {
	must(b, flushFS(dir))
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func mibps(n int64, d time.Duration) float64 { return float64(n) / (1 << 20) / d.Seconds() }

type moverRun struct {
	res     *BackupResult
	stats   repo.WriterStats
	elapsed time.Duration
	cpu     time.Duration // process CPU time (user + system) during the run
	peak    uint64        // peak memory the Go runtime held during the run
	point   *repo.RecoveryPoint
}

// peakMemory samples the Go runtime's total memory (heap, stacks,
// runtime structures: what RSS is made of) until stop is called; the
// benchmark's own data (raw-write buffers) is released before.
func peakMemory() (stop func() uint64) {
	debug.FreeOSMemory() // the data set generator's garbage would count otherwise
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	var peak uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64() - s[1].Value.Uint64(); v > peak {
				peak = v
			}
			select {
			case <-t.C:
			case <-done:
				return
			}
		}
	}()
	return func() uint64 { close(done); <-finished; return peak }
}

// cpuTime is the process's user + system time so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuBound is the throughput the CPU work alone allows on GOMAXPROCS idle
// cores: on a loaded machine the wall clock measures the neighbours too.
func cpuBound(n int64, cpu time.Duration) float64 {
	return float64(n) / (1 << 20) / (cpu.Seconds() / float64(runtime.GOMAXPROCS(0)))
}

func benchBackup(b *testing.B, r *repo.Repository, src string) moverRun {
	ctx := context.Background()
	stopMem := peakMemory()
	start, cpu0 := time.Now(), cpuTime()
	w, err := r.NewWriter(ctx)
	must(b, err)
	res, err := Backup(ctx, w, src, BackupOptions{Name: "bench/data"})
	must(b, err)
	rp := &repo.RecoveryPoint{Name: "bench", Started: start, Finished: time.Now(), VolumeData: []repo.VolumeData{res.Volume}}
	_, err = w.Commit(ctx, rp)
	must(b, err)
	return moverRun{res: res, stats: w.Stats(), elapsed: time.Since(start), cpu: cpuTime() - cpu0, peak: stopMem(), point: rp}
}

func BenchmarkMover(b *testing.B) {
	dir := benchDir(b)
	total := envInt("ARCA_BENCH_MOVER_BYTES", 1<<30)
	ds := makeDataset(b, filepath.Join(dir, "src"), total, mixedSize, 200)
	b.Logf("data set: %d files, %.1f MiB, mixed sizes (60%% 1–64 KiB, 30%% 64 KiB–4 MiB, 10%% 4–64 MiB), half compressible; GOMAXPROCS %d",
		len(ds.files), float64(ds.bytes)/(1<<20), runtime.GOMAXPROCS(0))
	r := newBenchRepo(b, filepath.Join(dir, "repo"))
	be := r.Backend()
	b.ResetTimer()

	// 1. Backup vs raw read of the same files, twice: cold (the page cache
	// dropped before each, as a mover reads a volume freshly provisioned
	// from a snapshot) and hot (from the page cache: the CPU's limit). Each
	// first backup goes into a new repository.
	// The raw copy (read, then write into fsynced 8 MiB files on the same
	// disk) is measured beside each raw read, from the same cache state:
	// the mover writes every new byte into the repository, so for a first
	// backup the copy, not the read, is the physical limit.
	coldRaw, coldCopy, coldFirst, coldSkipped := time.Duration(0), time.Duration(0), moverRun{}, ""
	if err := dropPageCache(); err != nil {
		coldSkipped = err.Error()
		b.Logf("ratio (cold, disk): skipped: %v", err)
	} else {
		coldRaw = rawRead(b, ds)
		must(b, dropPageCache())
		coldCopy = rawCopy(b, ds, filepath.Join(dir, "rawcopy"))
		must(b, dropPageCache())
		rc := newBenchRepo(b, filepath.Join(dir, "repo-cold"))
		coldFirst = benchBackup(b, rc, ds.root)
		logFirst(b, "cold, disk", ds, coldRaw, coldCopy, coldFirst)
		b.ReportMetric(coldRaw.Seconds()/coldFirst.elapsed.Seconds(), "backup/raw-read-cold")
		b.ReportMetric(coldCopy.Seconds()/coldFirst.elapsed.Seconds(), "backup/raw-copy-cold")
		must(b, os.RemoveAll(filepath.Join(dir, "repo-cold")))
	}
	warm(b, ds)
	raw := rawRead(b, ds)
	hotCopy := rawCopy(b, ds, filepath.Join(dir, "rawcopy"))
	first := benchBackup(b, r, ds.root)
	logFirst(b, "hot, page cache", ds, raw, hotCopy, first)
	b.ReportMetric(raw.Seconds()/first.elapsed.Seconds(), "backup/raw-read")
	b.ReportMetric(hotCopy.Seconds()/first.elapsed.Seconds(), "backup/raw-copy")
	if coldSkipped == "" {
		b.Logf("summary: ratio (cold, disk) = %.2f, ratio (hot, page cache) = %.2f (goal ≥ 0.5); raw copy %.1f (cold) / %.1f (hot) MiB/s, mover %.1f / %.1f MiB/s: mover ÷ raw copy = %.2f (cold), %.2f (hot); CPU %.1f and %.1f CPU-s/GiB; raw write below",
			coldRaw.Seconds()/coldFirst.elapsed.Seconds(), raw.Seconds()/first.elapsed.Seconds(),
			mibps(ds.bytes, coldCopy), mibps(ds.bytes, hotCopy), mibps(ds.bytes, coldFirst.elapsed), mibps(ds.bytes, first.elapsed),
			coldCopy.Seconds()/coldFirst.elapsed.Seconds(), hotCopy.Seconds()/first.elapsed.Seconds(),
			cpuPerGiB(ds, coldFirst), cpuPerGiB(ds, first))
	} else {
		b.Logf("summary: ratio (cold, disk) skipped (%s); ratio (hot, page cache) = %.2f (goal ≥ 0.5); mover ÷ raw copy (hot) = %.2f; CPU %.1f CPU-s/GiB",
			coldSkipped, raw.Seconds()/first.elapsed.Seconds(), hotCopy.Seconds()/first.elapsed.Seconds(), cpuPerGiB(ds, first))
	}

	// 2. Unchanged second backup.
	dropCache(b, ds.root)
	second := benchBackup(b, r, ds.root)
	unchanged := float64(second.stats.StoredBytes) / float64(first.stats.StoredBytes)
	b.Logf("unchanged second backup: wrote %d bytes = %.3f%% of the first (goal ≤ 1%%), in %v (%.1f MiB/s read)",
		second.stats.StoredBytes, 100*unchanged, second.elapsed.Round(time.Millisecond), mibps(ds.bytes, second.elapsed))
	b.ReportMetric(100*unchanged, "%unchanged-written")

	// 3. 5% of the files rewritten with new content: every 20th file in
	// size order, so that small, medium and large files change alike (a
	// random 5% of a few hundred files is mostly luck: one 60 MiB file more
	// or less is 6% of the bytes).
	rnd := mrand.New(mrand.NewSource(7))
	bySize := append([]string(nil), ds.files...)
	sizes := map[string]int64{}
	for _, p := range bySize {
		fi, err := os.Stat(p)
		must(b, err)
		sizes[p] = fi.Size()
	}
	sort.Slice(bySize, func(i, j int) bool { return sizes[bySize[i]] < sizes[bySize[j]] })
	var changedBytes int64
	nChange := 0
	for i := 10; i < len(bySize); i += 20 {
		p := bySize[i]
		must(b, os.WriteFile(p, fileContent(rnd, int(sizes[p])), 0o644))
		changedBytes += sizes[p]
		nChange++
	}
	dropCache(b, ds.root)
	third := benchBackup(b, r, ds.root)
	changed := float64(third.stats.StoredBytes) / float64(first.stats.StoredBytes)
	b.Logf("%d files (%.1f%%, %.1f%% of the bytes) rewritten: wrote %.1f MiB = %.2f%% of the first (goal ≤ 8%%)",
		nChange, 100*float64(nChange)/float64(len(ds.files)), 100*float64(changedBytes)/float64(ds.bytes), float64(third.stats.StoredBytes)/(1<<20), 100*changed)
	b.ReportMetric(100*changed, "%changed-written")

	// 4. Restore vs raw write, both to disk; the repository is read cold.
	rawW := rawWrite(b, ds, filepath.Join(dir, "rawwrite"))
	run := benchRestore(b, be, filepath.Join(dir, "repo"), third.point, filepath.Join(dir, "restored"))
	logRestore(b, ds, rawW, run)
	b.ReportMetric(rawW.Seconds()/run.elapsed.Seconds(), "restore/raw-write")
}

// restoreRun is one measured restore.
type restoreRun struct {
	res     *RestoreResult
	elapsed time.Duration // to the end of syncfs
	written time.Duration // until Restore returned
	cpu     time.Duration
	peak    uint64
}

// benchRestore restores the point's volume into dst, reading the
// repository cold (its pages written back and dropped first), and syncs
// the target's file system before the clock stops.
func benchRestore(b *testing.B, be storage.Backend, repoDir string, point *repo.RecoveryPoint, dst string) restoreRun {
	dropCache(b, repoDir)
	ctx := context.Background()
	r, err := repo.Open(ctx, be, "bench", testKDF)
	must(b, err)
	stopMem := peakMemory()
	start, cpu0 := time.Now(), cpuTime()
	res, err := Restore(ctx, Source{Repo: r, Data: point.VolumeData[0]}, dst, RestoreOptions{})
	must(b, err)
	must(b, res.Err())
	written := time.Since(start)
	syncFS(b, dst)
	return restoreRun{res: res, elapsed: time.Since(start), written: written, cpu: cpuTime() - cpu0, peak: stopMem()}
}

func logRestore(b *testing.B, ds *dataset, rawW time.Duration, run restoreRun) {
	b.Logf("raw write: %.1f MiB/s (%v); restore: %.1f MiB/s (%v, of which syncfs %v); restore ÷ raw write = %.2f (goal ≥ 0.5)",
		mibps(ds.bytes, rawW), rawW.Round(time.Millisecond), mibps(run.res.Bytes, run.elapsed), run.elapsed.Round(time.Millisecond),
		(run.elapsed - run.written).Round(time.Millisecond), rawW.Seconds()/run.elapsed.Seconds())
	b.Logf("restore CPU: %.2f s (%.2f CPU-s/GiB), peak Go memory %.1f MiB: on %d idle cores the CPU work allows %.1f MiB/s = %.2f of raw write; load average %s",
		run.cpu.Seconds(), run.cpu.Seconds()/(float64(run.res.Bytes)/(1<<30)), float64(run.peak)/(1<<20), runtime.GOMAXPROCS(0),
		cpuBound(run.res.Bytes, run.cpu), cpuBound(run.res.Bytes, run.cpu)/mibps(ds.bytes, rawW), loadAvg())
}

// sameFiles fails unless every file of ds has the same content under dst.
func sameFiles(b *testing.B, ds *dataset, dst string) {
	b.Helper()
	for _, p := range ds.files {
		rel, _ := filepath.Rel(ds.root, p)
		want, err := os.ReadFile(p)
		must(b, err)
		got, err := os.ReadFile(filepath.Join(dst, rel))
		must(b, err)
		if !bytes.Equal(got, want) {
			b.Fatalf("restored %s differs from the source", rel)
		}
	}
}

// BenchmarkMoverRestore is the restore alone, for profiling (-cpuprofile)
// and iterating: one backup from the page cache (not measured), then per
// iteration a raw write of the same bytes and a restore, both to disk
// (syncfs), the repository read cold. The restored files are compared with
// the source after the clock. ARCA_BENCH_MOVER_BYTES sizes it (default
// 256 MiB here).
func BenchmarkMoverRestore(b *testing.B) {
	dir := benchDir(b)
	ds := makeDataset(b, filepath.Join(dir, "src"), envInt("ARCA_BENCH_MOVER_BYTES", 256<<20), mixedSize, 200)
	r := newBenchRepo(b, filepath.Join(dir, "repo"))
	warm(b, ds)
	backup := benchBackup(b, r, ds.root)
	b.SetBytes(ds.bytes)
	b.ResetTimer()
	var cpu, wall, rawWall time.Duration
	var peak uint64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		rawW := rawWrite(b, ds, filepath.Join(dir, "rawwrite"))
		dst := filepath.Join(dir, "restored")
		b.StartTimer()
		run := benchRestore(b, r.Backend(), filepath.Join(dir, "repo"), backup.point, dst)
		b.StopTimer()
		logRestore(b, ds, rawW, run)
		if i == 0 {
			sameFiles(b, ds, dst)
		}
		must(b, os.RemoveAll(dst))
		b.StartTimer()
		cpu, wall, rawWall, peak = cpu+run.cpu, wall+run.elapsed, rawWall+rawW, max(peak, run.peak)
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N)/(float64(ds.bytes)/(1<<30)), "CPU-s/GiB")
	b.ReportMetric(rawWall.Seconds()/wall.Seconds(), "restore/raw-write")
	b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
}

func BenchmarkMoverSmallFiles(b *testing.B) {
	n := envInt("ARCA_BENCH_MOVER_FILES", 100000)
	if n == 0 {
		b.Skip("ARCA_BENCH_MOVER_FILES=0")
	}
	dir := benchDir(b)
	rnd := mrand.New(mrand.NewSource(3))
	root := filepath.Join(dir, "src")
	ds := &dataset{root: root}
	for i := int64(0); i < n; i++ {
		p := filepath.Join(root, fmt.Sprintf("d%03d", i/1000), fmt.Sprintf("f%06d", i))
		if i%1000 == 0 {
			must(b, os.MkdirAll(filepath.Dir(p), 0o755))
		}
		sz := 100 + rnd.Intn(4000)
		must(b, os.WriteFile(p, fileContent(rnd, sz), 0o644))
		ds.files = append(ds.files, p)
		ds.bytes += int64(sz)
	}
	must(b, os.MkdirAll(filepath.Join(dir, "repo"), 0o700))
	be, err := local.Open(filepath.Join(dir, "repo"))
	must(b, err)
	r, err := repo.Init(context.Background(), be, "bench", testKDF)
	must(b, err)
	b.ResetTimer()
	dropCache(b, root)
	raw := rawRead(b, ds)
	dropCache(b, root)
	run := benchBackup(b, r, root)
	b.Logf("%d small files (100 B–4 KiB, %.1f MiB): raw read %v (%.0f files/s); mover backup %v (%.0f files/s, %.1f MiB/s); mover ÷ raw read = %.2f",
		n, float64(ds.bytes)/(1<<20), raw.Round(time.Millisecond), float64(n)/raw.Seconds(),
		run.elapsed.Round(time.Millisecond), float64(n)/run.elapsed.Seconds(), mibps(ds.bytes, run.elapsed), raw.Seconds()/run.elapsed.Seconds())
	b.ReportMetric(float64(n)/run.elapsed.Seconds(), "files/s")
	b.Logf("mover backup CPU: %.2f s: on %d idle cores %.0f files/s; load average %s",
		run.cpu.Seconds(), runtime.GOMAXPROCS(0), float64(n)/(run.cpu.Seconds()/float64(runtime.GOMAXPROCS(0))), loadAvg())
	ctx := context.Background()
	dst := filepath.Join(dir, "restored")
	start, cpu0 := time.Now(), cpuTime()
	res, err := Restore(ctx, Source{Repo: r, Data: run.point.VolumeData[0]}, dst, RestoreOptions{})
	must(b, err)
	must(b, res.Err())
	written, rcpu := time.Since(start), cpuTime()-cpu0
	syncFS(b, dst)
	d := time.Since(start)
	rawW := rawWrite(b, ds, filepath.Join(dir, "rawwrite"))
	b.Logf("restore of the %d small files: %v with syncfs (%.0f files/s; %v before syncfs, CPU %.2f s: %.0f files/s on %d idle cores); raw write of the same files %v (%.0f files/s); restore ÷ raw write = %.2f",
		n, d.Round(time.Millisecond), float64(n)/d.Seconds(), written.Round(time.Millisecond), rcpu.Seconds(),
		float64(n)/(rcpu.Seconds()/float64(runtime.GOMAXPROCS(0))), runtime.GOMAXPROCS(0), rawW.Round(time.Millisecond), float64(n)/rawW.Seconds(), rawW.Seconds()/d.Seconds())
	b.ReportMetric(float64(n)/d.Seconds(), "restore-files/s")
}

// BenchmarkMoverBackupCPU is the first backup alone, from the page cache,
// into a new repository per iteration: the mover's CPU per GiB, for
// profiling (-cpuprofile) without the data set's making, the raw reads or
// the restore in the profile. ARCA_BENCH_MOVER_BYTES sizes it (default
// 256 MiB here).
func BenchmarkMoverBackupCPU(b *testing.B) {
	dir := benchDir(b)
	ds := makeDataset(b, filepath.Join(dir, "src"), envInt("ARCA_BENCH_MOVER_BYTES", 256<<20), mixedSize, 200)
	warm(b, ds)
	b.SetBytes(ds.bytes)
	b.ResetTimer()
	var cpu time.Duration
	for i := 0; i < b.N; i++ {
		r := newBenchRepo(b, filepath.Join(dir, fmt.Sprintf("repo%d", i)))
		run := benchBackup(b, r, ds.root)
		cpu += run.cpu
		b.StopTimer()
		must(b, os.RemoveAll(filepath.Join(dir, fmt.Sprintf("repo%d", i))))
		b.StartTimer()
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N)/(float64(ds.bytes)/(1<<30)), "CPU-s/GiB")
}
