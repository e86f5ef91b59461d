package hostpath

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// BenchmarkSnapshot measures CreateSnapshot (a full copy) of a volume
// holding 1,000 files of 64 KiB and one 64 MiB file: 126.5 MiB in all.
// Run: go test ./internal/testenv/hostpath -run '^$' -bench Snapshot -benchtime 5x
func BenchmarkSnapshot(b *testing.B) {
	d, err := New(Options{Name: testDriver, DataDir: b.TempDir(), Controller: true})
	if err != nil {
		b.Fatal(err)
	}
	c := b.Context()
	vol, err := d.CreateVolume(c, &csi.CreateVolumeRequest{Name: "bench", VolumeCapabilities: mountCap})
	if err != nil {
		b.Fatal(err)
	}
	dir := VolumePath(d.opts.DataDir, vol.GetVolume().GetVolumeId())
	small := make([]byte, 64<<10)
	for i := range 1000 {
		small[0] = byte(i)
		sub := filepath.Join(dir, fmt.Sprintf("d%02d", i%50))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%04d", i)), small, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	big := make([]byte, 64<<20)
	for i := range big {
		big[i] = byte(i * 31)
	}
	if err := os.WriteFile(filepath.Join(dir, "big"), big, 0o644); err != nil {
		b.Fatal(err)
	}
	const total = 1000*64<<10 + 64<<20
	b.SetBytes(total)
	for i := 0; b.Loop(); i++ {
		s, err := d.CreateSnapshot(c, &csi.CreateSnapshotRequest{Name: fmt.Sprintf("s%d", i), SourceVolumeId: vol.GetVolume().GetVolumeId()})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := d.DeleteSnapshot(c, &csi.DeleteSnapshotRequest{SnapshotId: s.GetSnapshot().GetSnapshotId()}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
