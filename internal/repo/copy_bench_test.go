package repo

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/storage/local"
)

// BenchmarkRepoCopy (make bench-copy) writes one recovery point of
// ARCA_BENCH_COPY_SIZE MiB (default 256) of stream data (dupStream, chunks
// of about 1 MiB) plus 20,000 ConfigMap-sized objects into a filesystem
// repository, then in the same run:
//   - the backup's own write of that point (chunk, compress, encrypt,
//     write), for scale;
//   - raw read: reads every file of the source repository (the floor for
//     any copy: the bytes must at least be read once);
//   - copy: repo.Copy into a second filesystem repository with its own key
//     (decrypt, verify, re-encrypt, write);
//   - second copy of the same point: what it stores (nothing expected).
//
// Both repositories are on the same disk; the source's files are in the
// page cache for both the raw read and the copy (they were just written).
func BenchmarkRepoCopy(b *testing.B) {
	size := int64(256 << 20)
	if s := os.Getenv("ARCA_BENCH_COPY_SIZE"); s != "" {
		mib, _ := strconv.Atoi(s)
		size = int64(mib) << 20
	}
	const objects = 20_000
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		sbe, err := local.Create(filepath.Join(dir, "src"))
		if err != nil {
			b.Fatal(err)
		}
		src, err := Init(ctx, sbe, "source", WithKDF(testKDF))
		if err != nil {
			b.Fatal(err)
		}
		tw0 := time.Now()
		w, err := src.NewWriter(ctx)
		if err != nil {
			b.Fatal(err)
		}
		ids, _, err := w.PutStream(ctx, newDupStream(size))
		if err != nil {
			b.Fatal(err)
		}
		tw := w.NewTree()
		_ = tw.Add(ctx, TreeEntry{Version: "v1", Resource: "streams", Kind: "Stream", Name: "volume", Blobs: ids, Size: size})
		stream, err := tw.Close(ctx)
		if err != nil {
			b.Fatal(err)
		}
		tw = w.NewTree()
		for j := 0; j < objects; j++ {
			o := k8sObject(j)
			id, err := w.PutBlob(ctx, o)
			if err != nil {
				b.Fatal(err)
			}
			_ = tw.Add(ctx, TreeEntry{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespace: fmt.Sprintf("ns-%03d", j%100), Name: fmt.Sprintf("cm-%06d", j), Blobs: []ID{id}, Size: int64(len(o))})
		}
		cms, err := tw.Close(ctx)
		if err != nil {
			b.Fatal(err)
		}
		rp := &RecoveryPoint{Name: "bench", Resources: []ResourceTree{
			{Version: "v1", Resource: "streams", Kind: "Stream", Tree: stream},
			{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespaced: true, Tree: cms}}}
		if _, err := w.Commit(ctx, rp); err != nil {
			b.Fatal(err)
		}
		st := w.Stats()
		write := time.Since(tw0)

		// Raw read of every file of the source.
		t0 := time.Now()
		var rawBytes int64
		buf := make([]byte, 1<<20)
		err = filepath.WalkDir(filepath.Join(dir, "src"), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			n, err := io.CopyBuffer(io.Discard, f, buf)
			rawBytes += n
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		raw := time.Since(t0)

		dbe, err := local.Create(filepath.Join(dir, "dst"))
		if err != nil {
			b.Fatal(err)
		}
		dst, err := Init(ctx, dbe, "target", WithKDF(testKDF))
		if err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		rep, err := Copy(ctx, src.ReadOnly(), dst, []ID{rp.ID}, CopyOptions{})
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(t0)
		t0 = time.Now()
		again, err := Copy(ctx, src.ReadOnly(), dst, []ID{rp.ID}, CopyOptions{})
		if err != nil {
			b.Fatal(err)
		}
		tookAgain := time.Since(t0)
		ratio := mbps(rawBytes, took) / mbps(rawBytes, raw)
		fmt.Printf("copy: %d MiB stream + %d objects (%d blobs, %d MiB plaintext, %d MiB stored), GOMAXPROCS=%d\n",
			size>>20, objects, st.NewBlobs, st.NewBytes>>20, rawBytes>>20, runtime.GOMAXPROCS(0))
		fmt.Printf("  the backup's own write:  %7.0f MB/s of stored bytes (%.2fs)\n", mbps(rawBytes, write), write.Seconds())
		fmt.Printf("  raw read of the source:  %7.0f MB/s (%.2fs)\n", mbps(rawBytes, raw), raw.Seconds())
		fmt.Printf("  repo.Copy to a 2nd repo: %7.0f MB/s of source bytes (%.2fs) = %.0f%% of raw read; sent %d blobs, stored %d MiB\n",
			mbps(rawBytes, took), took.Seconds(), 100*ratio, rep.NewBlobs, rep.StoredBytes>>20)
		fmt.Printf("  second copy: %.3fs, %d blobs sent, %d bytes stored\n", tookAgain.Seconds(), again.NewBlobs, again.StoredBytes)
		if again.NewBlobs != 0 || again.StoredBytes != 0 {
			b.Fatalf("second copy stored data: %+v", again)
		}
		b.ReportMetric(mbps(rawBytes, took), "MB/s")
		b.ReportMetric(100*ratio, "%ofrawread")
	}
}
