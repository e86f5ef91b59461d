package hostpath

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
)

var blockCap = []*csi.VolumeCapability{{
	AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}}

// loopsOf returns the lines of `losetup -a` that name dir: the loop
// devices of the volumes under it.
func loopsOf(t *testing.T, dir string) []string {
	t.Helper()
	out, err := exec.Command("losetup", "-a").CombinedOutput()
	if err != nil {
		t.Fatalf("losetup -a: %v: %s", err, out)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, realPath(dir)) {
			lines = append(lines, l)
		}
	}
	return lines
}

func createBlock(t *testing.T, c *clients, name string, bytes int64, source *csi.VolumeContentSource) *csi.Volume {
	t.Helper()
	resp, err := c.controller.CreateVolume(ctx(t), &csi.CreateVolumeRequest{
		Name: name, VolumeCapabilities: blockCap, VolumeContentSource: source,
		CapacityRange: &csi.CapacityRange{RequiredBytes: bytes},
	})
	if err != nil {
		t.Fatalf("CreateVolume %s (block): %v", name, err)
	}
	return resp.GetVolume()
}

// readDevice returns the whole content of the block device at path, and
// fails unless it is one.
func readDevice(t *testing.T, path string) []byte {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		t.Fatalf("%s is not a block device: mode %#o, %v", path, st.Mode, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBlockVolume: a block volume is a sparse image published as a loop
// device on a target file; what is written through the device is in the
// image, in snapshots (with the holes) and in volumes from them; the loop
// devices are detached when the last publication goes, and none is left.
func TestBlockVolume(t *testing.T) {
	dataDir := t.TempDir()
	before := loopsOf(t, dataDir)
	c := serve(t, dataDir, "node-a", true)
	const size = 4 << 20
	vol := createBlock(t, c, "pvc-block", size, nil)
	image := ImagePath(dataDir, vol.GetVolumeId())
	var st unix.Stat_t
	if err := unix.Stat(image, &st); err != nil || st.Size != size || st.Blocks != 0 {
		t.Fatalf("image %s: %d bytes, %d blocks, %v; want %d bytes and none allocated", image, st.Size, st.Blocks, err, size)
	}
	v, err := c.controller.ValidateVolumeCapabilities(ctx(t), &csi.ValidateVolumeCapabilitiesRequest{VolumeId: vol.GetVolumeId(), VolumeCapabilities: blockCap})
	if err != nil || v.GetConfirmed() == nil {
		t.Errorf("ValidateVolumeCapabilities(block) = %v, %v; want confirmed", v, err)
	}
	v, err = c.controller.ValidateVolumeCapabilities(ctx(t), &csi.ValidateVolumeCapabilitiesRequest{VolumeId: vol.GetVolumeId(), VolumeCapabilities: mountCap})
	if err != nil || v.GetConfirmed() != nil || !strings.Contains(v.GetMessage(), "is a Block volume") {
		t.Errorf("ValidateVolumeCapabilities(mount) of a block volume = %v, %v; want unconfirmed with a message", v, err)
	}

	pods := t.TempDir()
	rw := filepath.Join(pods, "pod-1", "dev")
	ro := filepath.Join(pods, "pod-2", "dev")
	publish := func(id, target string, capab *csi.VolumeCapability, readOnly bool) error {
		_, err := c.node.NodePublishVolume(ctx(t), &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, VolumeCapability: capab, Readonly: readOnly})
		return err
	}
	unpublish := func(id, target string) {
		t.Helper()
		if _, err := c.node.NodeUnpublishVolume(ctx(t), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
			t.Fatalf("NodeUnpublishVolume %s: %v", target, err)
		}
	}
	t.Cleanup(func() { // never leave a mount or a loop device behind a failed test
		_ = UnmountAll(dataDir)
	})
	wantError(t, publish(vol.GetVolumeId(), filepath.Join(pods, "fs"), mountCap[0], false), codes.InvalidArgument, "is a Block volume", "volumeMode Block")
	if err := publish(vol.GetVolumeId(), rw, blockCap[0], false); err != nil {
		t.Fatalf("NodePublishVolume (block): %v", err)
	}
	if err := publish(vol.GetVolumeId(), rw, blockCap[0], false); err != nil {
		t.Fatalf("NodePublishVolume again (idempotent): %v", err)
	}
	wantError(t, publish(vol.GetVolumeId(), rw, blockCap[0], true), codes.AlreadyExists, "read-only")
	if err := publish(vol.GetVolumeId(), ro, blockCap[0], true); err != nil {
		t.Fatalf("NodePublishVolume read-only (block): %v", err)
	}
	if got := loopsOf(t, dataDir); len(got) != 1 || !strings.Contains(got[0], vol.GetVolumeId()) {
		t.Errorf("loop devices of the data directory: %q; want one, of %s, shared by both publications", got, vol.GetVolumeId())
	}
	if m, _ := mountAt(ro); m == nil || !m.readOnly {
		t.Errorf("read-only publication: mount %+v", m)
	}

	// Bytes with holes, written through the device.
	want := make([]byte, size)
	for _, r := range []struct{ off, n int }{{0, 4096}, {1 << 20, 64 << 10}, {3<<20 + 512, 1000}} {
		_, _ = rand.Read(want[r.off : r.off+r.n])
	}
	f, err := os.OpenFile(rw, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := f.Seek(0, io.SeekEnd); err != nil || n != size {
		t.Fatalf("device size %d, %v; want %d", n, err, size)
	}
	for _, off := range []int64{0, 1 << 20, 3 << 20} {
		end := off + 64<<10
		if _, err := f.WriteAt(want[off:end], off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readDevice(t, ro); !bytes.Equal(got, want) {
		t.Fatal("the read-only publication reads other bytes than were written")
	}

	// The snapshot: the image with its holes, taken while published.
	snap, err := c.controller.CreateSnapshot(ctx(t), &csi.CreateSnapshotRequest{Name: "s", SourceVolumeId: vol.GetVolumeId()})
	if err != nil {
		t.Fatal(err)
	}
	snapImage := filepath.Join(SnapshotPath(dataDir, snap.GetSnapshot().GetSnapshotId()), imageFile)
	if b, err := os.ReadFile(snapImage); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("the snapshot's image differs from what was written (%v)", err)
	}
	noDiffs(t, VolumePath(dataDir, vol.GetVolumeId()), SnapshotPath(dataDir, snap.GetSnapshot().GetSnapshotId()))
	if err := unix.Stat(snapImage, &st); err != nil || st.Blocks*512 > 512<<10 {
		t.Errorf("the snapshot's image has %d bytes allocated (%v); want its holes kept (about 192 KiB written)", st.Blocks*512, err)
	}

	// A larger volume from it: the snapshot's bytes, then zeros.
	_, err = c.controller.CreateVolume(ctx(t), &csi.CreateVolumeRequest{Name: "pvc-fs", VolumeCapabilities: mountCap,
		VolumeContentSource: fromSnapshot(snap.GetSnapshot().GetSnapshotId())})
	wantError(t, err, codes.InvalidArgument, "the source is a Block volume", "request volumeMode Block")
	restored := createBlock(t, c, "pvc-restored", 2*size, fromSnapshot(snap.GetSnapshot().GetSnapshotId()))
	if restored.GetCapacityBytes() != 2*size {
		t.Errorf("restored capacity %d, want %d", restored.GetCapacityBytes(), 2*size)
	}
	third := filepath.Join(pods, "pod-3", "dev")
	if err := publish(restored.GetVolumeId(), third, blockCap[0], false); err != nil {
		t.Fatal(err)
	}
	if got := readDevice(t, third); !bytes.Equal(got, append(slices.Clone(want), make([]byte, size)...)) {
		t.Error("the volume from the snapshot reads other bytes than the snapshot's followed by zeros")
	}
	if got := loopsOf(t, dataDir); len(got) != 2 {
		t.Errorf("loop devices of the data directory: %q; want two", got)
	}

	// The loop device stays while a publication is left, and goes with
	// the last one; the target files go.
	unpublish(vol.GetVolumeId(), rw)
	if got := loopsOf(t, dataDir); len(got) != 2 {
		t.Errorf("after the first of two unpublications: loop devices %q; want both still there", got)
	}
	if got := readDevice(t, ro); !bytes.Equal(got, want) {
		t.Error("the remaining publication lost its device")
	}
	unpublish(vol.GetVolumeId(), ro)
	unpublish(vol.GetVolumeId(), ro) // idempotent
	for _, target := range []string{rw, ro} {
		if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("target %s not removed: %v", target, err)
		}
	}
	if got := loopsOf(t, dataDir); len(got) != 1 || !strings.Contains(got[0], restored.GetVolumeId()) {
		t.Errorf("after unpublishing %s: loop devices %q; want only that of %s", vol.GetVolumeId(), got, restored.GetVolumeId())
	}
	// A volume deleted while published keeps its device until the mount
	// goes (here with UnmountAll).
	if _, err := c.controller.DeleteVolume(ctx(t), &csi.DeleteVolumeRequest{VolumeId: restored.GetVolumeId()}); err != nil {
		t.Fatal(err)
	}
	if got := loopsOf(t, dataDir); len(got) != 1 || !strings.Contains(got[0], restored.GetVolumeId()) {
		t.Errorf("after deleting %s while published: loop devices %q; want its device kept", restored.GetVolumeId(), got)
	}
	if points, err := Mounts(dataDir); err != nil || len(points) != 1 || points[0] != third {
		t.Errorf("Mounts = %q, %v; want %s", points, err, third)
	}
	if err := UnmountAll(dataDir); err != nil {
		t.Fatal(err)
	}
	if m, err := mountAt(third); err != nil || m != nil {
		t.Errorf("%s still mounted after UnmountAll: %+v, %v", third, m, err)
	}
	if after := loopsOf(t, dataDir); !slices.Equal(before, after) {
		t.Errorf("losetup -a before: %q, after: %q; loop devices leaked", before, after)
	}
}

// TestUnmountAllDetachesLoops: a block volume left published when the
// test environment stops loses its mounts and its loop device.
func TestUnmountAllDetachesLoops(t *testing.T) {
	dataDir := t.TempDir()
	c := serve(t, dataDir, "node-a", true)
	vol := createBlock(t, c, "pvc-left", 1<<20, nil)
	target := filepath.Join(t.TempDir(), "dev")
	t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH); _ = DetachLoops(dataDir) })
	if _, err := c.node.NodePublishVolume(ctx(t), &csi.NodePublishVolumeRequest{VolumeId: vol.GetVolumeId(), TargetPath: target, VolumeCapability: blockCap[0]}); err != nil {
		t.Fatal(err)
	}
	if got := loopsOf(t, dataDir); len(got) != 1 {
		t.Fatalf("loop devices %q, want one", got)
	}
	if err := UnmountAll(dataDir); err != nil {
		t.Fatal(err)
	}
	if m, err := mountAt(target); err != nil || m != nil {
		t.Errorf("%s still mounted: %+v, %v", target, m, err)
	}
	if got := loopsOf(t, dataDir); len(got) != 0 {
		t.Errorf("loop devices left: %q", got)
	}
}
