package hostpath

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

const testDriver = "hostpath.csi.test"

// clients is one driver instance served on a unix socket, as the test
// environment runs it, and gRPC clients of it.
type clients struct {
	dataDir    string
	socket     string
	identity   csi.IdentityClient
	controller csi.ControllerClient
	node       csi.NodeClient
}

func serve(t *testing.T, dataDir, nodeID string, controller bool) *clients {
	t.Helper()
	d, err := New(Options{Name: testDriver, DataDir: dataDir, NodeID: nodeID, Controller: controller,
		Now: func() time.Time { return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "csi.sock")
	srv, err := Serve(socket, d, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &clients{dataDir: dataDir, socket: socket, identity: csi.NewIdentityClient(conn),
		controller: csi.NewControllerClient(conn), node: csi.NewNodeClient(conn)}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

var mountCap = []*csi.VolumeCapability{{
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}}

func createVolume(t *testing.T, c *clients, name string, bytes int64, source *csi.VolumeContentSource) *csi.Volume {
	t.Helper()
	resp, err := c.controller.CreateVolume(ctx(t), &csi.CreateVolumeRequest{
		Name: name, VolumeCapabilities: mountCap, VolumeContentSource: source,
		CapacityRange: &csi.CapacityRange{RequiredBytes: bytes},
	})
	if err != nil {
		t.Fatalf("CreateVolume %s: %v", name, err)
	}
	return resp.GetVolume()
}

func fromSnapshot(id string) *csi.VolumeContentSource {
	return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: id}}}
}

func noDiffs(t *testing.T, a, b string) {
	t.Helper()
	diffs, err := DiffTrees(a, b)
	if err != nil {
		t.Fatalf("compare %s and %s: %v", a, b, err)
	}
	for _, d := range diffs {
		t.Errorf("%s vs %s: %s", a, b, d)
	}
}

func TestIdentity(t *testing.T) {
	c := serve(t, t.TempDir(), "", true)
	info, err := c.identity.GetPluginInfo(ctx(t), &csi.GetPluginInfoRequest{})
	if err != nil || info.GetName() != testDriver || info.GetVendorVersion() != VendorVersion {
		t.Fatalf("GetPluginInfo = %v, %v", info, err)
	}
	caps, err := c.identity.GetPluginCapabilities(ctx(t), &csi.GetPluginCapabilitiesRequest{})
	if err != nil || len(caps.GetCapabilities()) != 1 || caps.GetCapabilities()[0].GetService().GetType() != csi.PluginCapability_Service_CONTROLLER_SERVICE {
		t.Fatalf("GetPluginCapabilities = %v, %v", caps, err)
	}
	if _, err := c.identity.Probe(ctx(t), &csi.ProbeRequest{}); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	cc, err := c.controller.ControllerGetCapabilities(ctx(t), &csi.ControllerGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []csi.ControllerServiceCapability_RPC_Type
	for _, c := range cc.GetCapabilities() {
		got = append(got, c.GetRpc().GetType())
	}
	for _, want := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
	} {
		if !slices.Contains(got, want) {
			t.Errorf("controller capabilities %v lack %s", got, want)
		}
	}
	// No Node service without a node ID, and no Controller service
	// without Controller.
	if _, err := c.node.NodeGetInfo(ctx(t), &csi.NodeGetInfoRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("NodeGetInfo on a controller-only instance: %v, want Unimplemented", err)
	}
	n := serve(t, t.TempDir(), "node-1", false)
	if _, err := n.controller.CreateVolume(ctx(t), &csi.CreateVolumeRequest{Name: "x", VolumeCapabilities: mountCap}); status.Code(err) != codes.Unimplemented {
		t.Errorf("CreateVolume on a node-only instance: %v, want Unimplemented", err)
	}
	caps, err = n.identity.GetPluginCapabilities(ctx(t), &csi.GetPluginCapabilitiesRequest{})
	if err != nil || len(caps.GetCapabilities()) != 0 {
		t.Errorf("node-only GetPluginCapabilities = %v, %v; want no CONTROLLER_SERVICE", caps, err)
	}
}

// TestSnapshotAndRestoreKeepEverything writes files of every kind into a
// volume, snapshots it, creates a volume from the snapshot and compares
// the three trees byte for byte and attribute for attribute.
func TestSnapshotAndRestoreKeepEverything(t *testing.T) {
	c := serve(t, t.TempDir(), "", true)
	vol := createVolume(t, c, "pvc-source", 2<<30, nil)
	if vol.GetCapacityBytes() != 2<<30 {
		t.Errorf("capacity = %d, want the requested %d", vol.GetCapacityBytes(), int64(2<<30))
	}
	volDir := VolumePath(c.dataDir, vol.GetVolumeId())
	var st unix.Stat_t
	if err := unix.Stat(volDir, &st); err != nil || st.Mode&0o7777 != 0o777 {
		t.Fatalf("new volume directory: mode %#o, %v; want 0777 so any pod user can write", st.Mode&0o7777, err)
	}
	entries, _ := os.ReadDir(volDir)
	if len(entries) != 0 {
		t.Fatalf("new volume is not empty: %v", entries)
	}
	if err := WriteSampleTree(volDir); err != nil {
		t.Fatal(err)
	}

	snap, err := c.controller.CreateSnapshot(ctx(t), &csi.CreateSnapshotRequest{Name: "snapshot-1", SourceVolumeId: vol.GetVolumeId()})
	if err != nil {
		t.Fatalf("CreateSnapshot: %v", err)
	}
	s := snap.GetSnapshot()
	if !s.GetReadyToUse() || s.GetSourceVolumeId() != vol.GetVolumeId() || s.GetSizeBytes() != 2<<30 || s.GetSnapshotId() == "" {
		t.Errorf("snapshot = %v: want ready, of %s, size 2 GiB", s, vol.GetVolumeId())
	}
	if got := s.GetCreationTime().AsTime(); !got.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("creation time = %s, want the driver clock's", got)
	}
	snapDir := SnapshotPath(c.dataDir, s.GetSnapshotId())
	noDiffs(t, volDir, snapDir)

	// The snapshot is a copy, not a view: later writes do not reach it.
	if err := os.WriteFile(filepath.Join(volDir, "hello.txt"), []byte("changed after the snapshot"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(snapDir, "hello.txt")); err != nil || string(b) != "hello, volume\n" {
		t.Errorf("snapshot's hello.txt = %q, %v; the snapshot changed with its volume", b, err)
	}

	restored := createVolume(t, c, "pvc-restored", 0, fromSnapshot(s.GetSnapshotId()))
	if restored.GetCapacityBytes() != 2<<30 {
		t.Errorf("restored capacity = %d, want the snapshot's size %d", restored.GetCapacityBytes(), int64(2<<30))
	}
	if restored.GetContentSource().GetSnapshot().GetSnapshotId() != s.GetSnapshotId() {
		t.Errorf("restored volume's content source = %v, want snapshot %s", restored.GetContentSource(), s.GetSnapshotId())
	}
	restoredDir := VolumePath(c.dataDir, restored.GetVolumeId())
	noDiffs(t, snapDir, restoredDir)

	// Holes stay holes.
	if err := unix.Stat(filepath.Join(restoredDir, "sparse.img"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != SampleSparseSize || st.Blocks*512 > 1<<20 {
		t.Errorf("restored sparse file: size %d, %d bytes allocated; want %d bytes with little allocated", st.Size, st.Blocks*512, SampleSparseSize)
	}
	// Hard links stay links.
	var a, b unix.Stat_t
	_ = unix.Stat(filepath.Join(restoredDir, "links/original"), &a)
	_ = unix.Stat(filepath.Join(restoredDir, "data/third"), &b)
	if a.Ino != b.Ino || a.Nlink != 3 {
		t.Errorf("restored hard links: inodes %d and %d, %d links; want one inode with 3", a.Ino, b.Ino, a.Nlink)
	}

	// A clone of the restored volume is the same again.
	clone, err := c.controller.CreateVolume(ctx(t), &csi.CreateVolumeRequest{Name: "pvc-clone", VolumeCapabilities: mountCap,
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: restored.GetVolumeId()}}}})
	if err != nil {
		t.Fatalf("CreateVolume from a volume: %v", err)
	}
	noDiffs(t, restoredDir, VolumePath(c.dataDir, clone.GetVolume().GetVolumeId()))

	// Deletes remove the bytes.
	for _, id := range []string{vol.GetVolumeId(), restored.GetVolumeId(), clone.GetVolume().GetVolumeId()} {
		if _, err := c.controller.DeleteVolume(ctx(t), &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			t.Fatalf("DeleteVolume %s: %v", id, err)
		}
		if _, err := os.Lstat(VolumePath(c.dataDir, id)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("volume %s still on disk after DeleteVolume: %v", id, err)
		}
	}
	// The snapshot outlives its volume.
	noDiffs(t, snapDir, snapDir) // still readable
	if _, err := c.controller.DeleteSnapshot(ctx(t), &csi.DeleteSnapshotRequest{SnapshotId: s.GetSnapshotId()}); err != nil {
		t.Fatalf("DeleteSnapshot: %v", err)
	}
	if _, err := os.Lstat(snapDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("snapshot still on disk after DeleteSnapshot: %v", err)
	}
	left, _ := os.ReadDir(filepath.Join(c.dataDir, tmpDir))
	if len(left) != 0 {
		t.Errorf("tmp/ not empty: %v", left)
	}
}

// TestDiffTreesSeesEveryDifference proves the comparison the other tests
// rely on can fail: each change to a faithful copy is reported.
func TestDiffTreesSeesEveryDifference(t *testing.T) {
	src := t.TempDir()
	if err := WriteSampleTree(src); err != nil {
		t.Fatal(err)
	}
	ts := func(p string, sec int64) error {
		t := unix.Timespec{Sec: sec}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{t, t}, unix.AT_SYMLINK_NOFOLLOW)
	}
	for _, tc := range []struct {
		name   string
		change func(root string) error
		want   string
	}{
		{"mode", func(r string) error { return unix.Chmod(filepath.Join(r, "hello.txt"), 0o600) }, "hello.txt: mode"},
		{"setuid bit", func(r string) error { return unix.Chmod(filepath.Join(r, "data/setuid"), 0o755) }, "data/setuid: mode"},
		{"owner", func(r string) error { return unix.Lchown(filepath.Join(r, "private"), 1, 2) }, "private: owner"},
		{"symlink owner", func(r string) error { return unix.Lchown(filepath.Join(r, "links/relative"), 1, 2) }, "links/relative: owner"},
		{"mtime", func(r string) error { return ts(filepath.Join(r, "empty"), 1) }, "empty: mtime"},
		{"root mtime", func(r string) error { return ts(r, 1) }, ".: mtime"},
		{"content, same size", func(r string) error {
			f, err := os.OpenFile(filepath.Join(r, "data/big.bin"), os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte{'!'}, 700_000)
			return err
		}, "data/big.bin: content differs"},
		{"size", func(r string) error { return os.Truncate(filepath.Join(r, "hello.txt"), 3) }, "hello.txt: size"},
		{"xattr value", func(r string) error {
			return unix.Setxattr(filepath.Join(r, "hello.txt"), "user.arca.checksum", []byte("sha256:abd"), 0)
		}, "hello.txt: extended attribute user.arca.checksum"},
		{"xattr missing", func(r string) error { return unix.Removexattr(filepath.Join(r, "data"), "user.arca.dir") }, "data: extended attributes"},
		{"symlink target", func(r string) error {
			p := filepath.Join(r, "links/dangling")
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Symlink("elsewhere", p)
		}, "links/dangling: symlink to"},
		{"hard link broken", func(r string) error {
			p := filepath.Join(r, "data/third")
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.WriteFile(p, b, 0o664)
		}, "links/original: hard link"},
		{"hole filled", func(r string) error {
			f, err := os.OpenFile(filepath.Join(r, "sparse.img"), os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt(make([]byte, 8<<20), 1<<20)
			return err
		}, "sparse.img: "},
		{"type", func(r string) error {
			p := filepath.Join(r, "fifo")
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.WriteFile(p, nil, 0o620)
		}, "fifo: type"},
		{"missing file", func(r string) error { return os.Remove(filepath.Join(r, "empty")) }, "empty: missing"},
		{"extra file", func(r string) error { return os.WriteFile(filepath.Join(r, "private/new"), nil, 0o600) }, "private/new: not in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "copy")
			if err := copyTree(src, dst); err != nil {
				t.Fatal(err)
			}
			noDiffs(t, src, dst)
			if err := tc.change(dst); err != nil {
				t.Fatal(err)
			}
			diffs, err := DiffTrees(src, dst)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, d := range diffs {
				found = found || strings.HasPrefix(d, tc.want)
			}
			if !found {
				t.Errorf("after %s, differences %q do not include %q", tc.name, diffs, tc.want)
			}
		})
	}
}

func TestIdempotencyByName(t *testing.T) {
	c := serve(t, t.TempDir(), "", true)
	first := createVolume(t, c, "pvc-a", 1<<30, nil)
	if err := os.WriteFile(filepath.Join(VolumePath(c.dataDir, first.GetVolumeId()), "f"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	again := createVolume(t, c, "pvc-a", 1<<30, nil)
	if again.GetVolumeId() != first.GetVolumeId() {
		t.Fatalf("CreateVolume again with the same name: volume %s, want %s", again.GetVolumeId(), first.GetVolumeId())
	}
	if b, _ := os.ReadFile(filepath.Join(VolumePath(c.dataDir, first.GetVolumeId()), "f")); string(b) != "kept" {
		t.Errorf("repeating CreateVolume touched the volume's files")
	}
	_, err := c.controller.CreateVolume(ctx(t), &csi.CreateVolumeRequest{Name: "pvc-a", VolumeCapabilities: mountCap,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 30}})
	wantError(t, err, codes.AlreadyExists, "pvc-a", "capacity")

	snap, err := c.controller.CreateSnapshot(ctx(t), &csi.CreateSnapshotRequest{Name: "snap-a", SourceVolumeId: first.GetVolumeId()})
	if err != nil {
		t.Fatal(err)
	}
	snapAgain, err := c.controller.CreateSnapshot(ctx(t), &csi.CreateSnapshotRequest{Name: "snap-a", SourceVolumeId: first.GetVolumeId()})
	if err != nil || snapAgain.GetSnapshot().GetSnapshotId() != snap.GetSnapshot().GetSnapshotId() {
		t.Fatalf("CreateSnapshot again: %v, %v; want snapshot %s", snapAgain, err, snap.GetSnapshot().GetSnapshotId())
	}
	other := createVolume(t, c, "pvc-b", 0, nil)
	_, err = c.controller.CreateSnapshot(ctx(t), &csi.CreateSnapshotRequest{Name: "snap-a", SourceVolumeId: other.GetVolumeId()})
	wantError(t, err, codes.AlreadyExists, "snap-a", first.GetVolumeId())

	restored := createVolume(t, c, "pvc-c", 0, fromSnapshot(snap.GetSnapshot().GetSnapshotId()))
	if again := createVolume(t, c, "pvc-c", 0, fromSnapshot(snap.GetSnapshot().GetSnapshotId())); again.GetVolumeId() != restored.GetVolumeId() {
		t.Errorf("CreateVolume from a snapshot again: %s, want %s", again.GetVolumeId(), restored.GetVolumeId())
	}
	_, err = c.controller.CreateVolume(ctx(t), &csi.CreateVolumeRequest{Name: "pvc-c", VolumeCapabilities: mountCap})
	wantError(t, err, codes.AlreadyExists, "pvc-c", "another source")

	for range 2 {
		if _, err := c.controller.DeleteSnapshot(ctx(t), &csi.DeleteSnapshotRequest{SnapshotId: snap.GetSnapshot().GetSnapshotId()}); err != nil {
			t.Fatalf("DeleteSnapshot (repeated): %v", err)
		}
		if _, err := c.controller.DeleteVolume(ctx(t), &csi.DeleteVolumeRequest{VolumeId: first.GetVolumeId()}); err != nil {
			t.Fatalf("DeleteVolume (repeated): %v", err)
		}
	}
	// A name is free again once its volume is deleted.
	if fresh := createVolume(t, c, "pvc-a", 0, nil); fresh.GetVolumeId() == first.GetVolumeId() {
		t.Errorf("CreateVolume after delete returned the deleted volume %s", fresh.GetVolumeId())
	}
}

func wantError(t *testing.T, err error, code codes.Code, words ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error %v, want code %s", err, code)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
}

func TestErrorsNameTheProblem(t *testing.T) {
	c := serve(t, t.TempDir(), "node-1", true)
	vol := createVolume(t, c, "pvc-small", 1<<20, nil)
	snap, err := c.controller.CreateSnapshot(ctx(t), &csi.CreateSnapshotRequest{Name: "s", SourceVolumeId: vol.GetVolumeId()})
	if err != nil {
		t.Fatal(err)
	}

	_, err = c.controller.CreateVolume(ctx(t), &csi.CreateVolumeRequest{Name: "pvc-x", VolumeCapabilities: mountCap, VolumeContentSource: fromSnapshot("snap-0123456789abcdef")})
	wantError(t, err, codes.NotFound, "snap-0123456789abcdef", "does not exist")
	_, err = c.controller.CreateVolume(ctx(t), &csi.CreateVolumeRequest{Name: "pvc-y", VolumeCapabilities: mountCap,
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "vol-gone"}}}})
	wantError(t, err, codes.NotFound, "vol-gone", "does not exist")
	_, err = c.controller.CreateSnapshot(ctx(t), &csi.CreateSnapshotRequest{Name: "s2", SourceVolumeId: "vol-gone"})
	wantError(t, err, codes.NotFound, "vol-gone", "does not exist")
	_, err = c.node.NodePublishVolume(ctx(t), &csi.NodePublishVolumeRequest{VolumeId: "vol-gone", TargetPath: filepath.Join(t.TempDir(), "t"), VolumeCapability: mountCap[0]})
	wantError(t, err, codes.NotFound, "vol-gone", "does not exist")
	_, err = c.controller.ValidateVolumeCapabilities(ctx(t), &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "vol-gone", VolumeCapabilities: mountCap})
	wantError(t, err, codes.NotFound, "vol-gone")
	// An ID cannot reach outside the data directory.
	_, err = c.controller.CreateSnapshot(ctx(t), &csi.CreateSnapshotRequest{Name: "s3", SourceVolumeId: "../snapshots/" + snap.GetSnapshot().GetSnapshotId()})
	wantError(t, err, codes.NotFound, "does not exist")

	// A file system volume is not a block device, nor its snapshot one.
	_, err = c.controller.CreateVolume(ctx(t), &csi.CreateVolumeRequest{Name: "pvc-block", VolumeCapabilities: blockCap,
		VolumeContentSource: fromSnapshot(snap.GetSnapshot().GetSnapshotId())})
	wantError(t, err, codes.InvalidArgument, "Filesystem volume", "Block volume", "request volumeMode Filesystem")
	_, err = c.controller.CreateVolume(ctx(t), &csi.CreateVolumeRequest{Name: "pvc-mixed", VolumeCapabilities: append(slices.Clone(mountCap), blockCap...)})
	wantError(t, err, codes.InvalidArgument, "mix block and mount")
	v, err := c.controller.ValidateVolumeCapabilities(ctx(t), &csi.ValidateVolumeCapabilitiesRequest{VolumeId: vol.GetVolumeId(), VolumeCapabilities: blockCap})
	if err != nil || v.GetConfirmed() != nil || !strings.Contains(v.GetMessage(), "not a Block volume") {
		t.Errorf("ValidateVolumeCapabilities(block) of a file system volume = %v, %v; want unconfirmed with a message", v, err)
	}
	v, err = c.controller.ValidateVolumeCapabilities(ctx(t), &csi.ValidateVolumeCapabilitiesRequest{VolumeId: vol.GetVolumeId(), VolumeCapabilities: mountCap})
	if err != nil || v.GetConfirmed() == nil {
		t.Errorf("ValidateVolumeCapabilities(mount) = %v, %v; want confirmed", v, err)
	}

	// A volume smaller than its snapshot cannot hold it.
	_, err = c.controller.CreateVolume(ctx(t), &csi.CreateVolumeRequest{Name: "pvc-z", VolumeCapabilities: mountCap,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 10}, VolumeContentSource: fromSnapshot(snap.GetSnapshot().GetSnapshotId())})
	wantError(t, err, codes.OutOfRange, "smaller than its source", "1048576")

	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"CreateVolume without name", func() error {
			_, err := c.controller.CreateVolume(ctx(t), &csi.CreateVolumeRequest{VolumeCapabilities: mountCap})
			return err
		}},
		{"CreateVolume without capabilities", func() error {
			_, err := c.controller.CreateVolume(ctx(t), &csi.CreateVolumeRequest{Name: "n"})
			return err
		}},
		{"CreateSnapshot without source", func() error {
			_, err := c.controller.CreateSnapshot(ctx(t), &csi.CreateSnapshotRequest{Name: "n"})
			return err
		}},
		{"DeleteVolume without ID", func() error {
			_, err := c.controller.DeleteVolume(ctx(t), &csi.DeleteVolumeRequest{})
			return err
		}},
		{"NodePublishVolume without target", func() error {
			_, err := c.node.NodePublishVolume(ctx(t), &csi.NodePublishVolumeRequest{VolumeId: vol.GetVolumeId(), VolumeCapability: mountCap[0]})
			return err
		}},
	} {
		if status.Code(tc.call()) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", tc.name, tc.call())
		}
	}
}

func TestListSnapshots(t *testing.T) {
	c := serve(t, t.TempDir(), "", true)
	v1 := createVolume(t, c, "pvc-1", 0, nil)
	v2 := createVolume(t, c, "pvc-2", 0, nil)
	ids := map[string]string{}
	for _, s := range []struct{ name, vol string }{{"a", v1.GetVolumeId()}, {"b", v1.GetVolumeId()}, {"c", v2.GetVolumeId()}} {
		resp, err := c.controller.CreateSnapshot(ctx(t), &csi.CreateSnapshotRequest{Name: s.name, SourceVolumeId: s.vol})
		if err != nil {
			t.Fatal(err)
		}
		ids[s.name] = resp.GetSnapshot().GetSnapshotId()
	}
	list := func(req *csi.ListSnapshotsRequest) ([]string, string) {
		t.Helper()
		resp, err := c.controller.ListSnapshots(ctx(t), req)
		if err != nil {
			t.Fatalf("ListSnapshots(%v): %v", req, err)
		}
		var out []string
		for _, e := range resp.GetEntries() {
			out = append(out, e.GetSnapshot().GetSnapshotId())
		}
		return out, resp.GetNextToken()
	}
	if got, _ := list(&csi.ListSnapshotsRequest{}); len(got) != 3 {
		t.Errorf("all snapshots: %v, want 3", got)
	}
	if got, _ := list(&csi.ListSnapshotsRequest{SnapshotId: ids["b"]}); len(got) != 1 || got[0] != ids["b"] {
		t.Errorf("by ID: %v, want [%s]", got, ids["b"])
	}
	if got, _ := list(&csi.ListSnapshotsRequest{SnapshotId: "snap-gone"}); len(got) != 0 {
		t.Errorf("unknown ID: %v, want none (not an error)", got)
	}
	if got, _ := list(&csi.ListSnapshotsRequest{SourceVolumeId: v2.GetVolumeId()}); len(got) != 1 || got[0] != ids["c"] {
		t.Errorf("by source volume: %v, want [%s]", got, ids["c"])
	}
	var paged []string
	req := &csi.ListSnapshotsRequest{MaxEntries: 2}
	for {
		got, next := list(req)
		if len(got) > 2 {
			t.Fatalf("page of %d entries, max 2", len(got))
		}
		paged = append(paged, got...)
		if next == "" {
			break
		}
		req.StartingToken = next
	}
	if len(paged) != 3 {
		t.Errorf("paged listing: %v, want 3 entries", paged)
	}
	_, err := c.controller.ListSnapshots(ctx(t), &csi.ListSnapshotsRequest{StartingToken: "nonsense"})
	wantError(t, err, codes.Aborted, "starting_token")
}

// TestNodePublish mounts a volume through a second driver instance (the
// Node service of another node sharing the data directory) and checks what
// a pod would see: the volume's files, writable or read-only as asked.
func TestNodePublish(t *testing.T) {
	dataDir := t.TempDir()
	ctrl := serve(t, dataDir, "", true)
	node := serve(t, dataDir, "node-b", false)
	info, err := node.node.NodeGetInfo(ctx(t), &csi.NodeGetInfoRequest{})
	if err != nil || info.GetNodeId() != "node-b" {
		t.Fatalf("NodeGetInfo = %v, %v; want node-b", info, err)
	}
	caps, err := node.node.NodeGetCapabilities(ctx(t), &csi.NodeGetCapabilitiesRequest{})
	if err != nil || len(caps.GetCapabilities()) != 0 {
		t.Errorf("NodeGetCapabilities = %v, %v; want none (no staging)", caps, err)
	}

	vol := createVolume(t, ctrl, "pvc-mounted", 0, nil)
	volDir := VolumePath(dataDir, vol.GetVolumeId())
	if err := os.WriteFile(filepath.Join(volDir, "before"), []byte("written before publish"), 0o644); err != nil {
		t.Fatal(err)
	}
	pods := t.TempDir()
	rw := filepath.Join(pods, "pod-1", "volumes", "mount")
	ro := filepath.Join(pods, "pod-2", "volumes", "mount")
	publish := func(target string, readOnly bool) error {
		_, err := node.node.NodePublishVolume(ctx(t), &csi.NodePublishVolumeRequest{
			VolumeId: vol.GetVolumeId(), TargetPath: target, VolumeCapability: mountCap[0], Readonly: readOnly})
		return err
	}
	unpublish := func(target string) {
		t.Helper()
		if _, err := node.node.NodeUnpublishVolume(ctx(t), &csi.NodeUnpublishVolumeRequest{VolumeId: vol.GetVolumeId(), TargetPath: target}); err != nil {
			t.Fatalf("NodeUnpublishVolume %s: %v", target, err)
		}
	}
	t.Cleanup(func() { // never leave a mount behind a failed test
		_ = unix.Unmount(rw, unix.MNT_DETACH)
		_ = unix.Unmount(ro, unix.MNT_DETACH)
	})
	if err := publish(rw, false); err != nil {
		t.Fatalf("NodePublishVolume: %v", err)
	}
	if err := publish(rw, false); err != nil {
		t.Fatalf("NodePublishVolume again (idempotent): %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(rw, "before")); err != nil || string(b) != "written before publish" {
		t.Fatalf("volume file through the mount: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(rw, "from-pod"), []byte("written by the pod"), 0o644); err != nil {
		t.Fatalf("write through the mount: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(volDir, "from-pod")); err != nil || string(b) != "written by the pod" {
		t.Fatalf("pod's file in the volume directory: %q, %v", b, err)
	}
	wantError(t, publish(rw, true), codes.AlreadyExists, "read-only")

	if err := publish(ro, true); err != nil {
		t.Fatalf("NodePublishVolume read-only: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(ro, "from-pod")); err != nil || string(b) != "written by the pod" {
		t.Fatalf("read through the read-only mount: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(ro, "nope"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write through a read-only mount: %v, want EROFS", err)
	}

	// Another volume on a target in use is refused.
	other := createVolume(t, ctrl, "pvc-other", 0, nil)
	_, err = node.node.NodePublishVolume(ctx(t), &csi.NodePublishVolumeRequest{VolumeId: other.GetVolumeId(), TargetPath: rw, VolumeCapability: mountCap[0]})
	wantError(t, err, codes.AlreadyExists, rw, other.GetVolumeId())

	for _, target := range []string{rw, ro} {
		unpublish(target)
		if m, err := mountAt(target); err != nil || m != nil {
			t.Errorf("%s still mounted after NodeUnpublishVolume: %+v, %v", target, m, err)
		}
		if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("target %s not removed: %v", target, err)
		}
		unpublish(target) // idempotent
	}
	if b, err := os.ReadFile(filepath.Join(volDir, "from-pod")); err != nil || string(b) != "written by the pod" {
		t.Errorf("volume lost its files on unpublish: %q, %v", b, err)
	}
}

// TestUnmountAll: mounts pods left behind are detached when the test
// environment stops, and nothing else is.
func TestUnmountAll(t *testing.T) {
	dataDir := t.TempDir()
	c := serve(t, dataDir, "node-a", true)
	vol := createVolume(t, c, "pvc-left", 0, nil)
	targets := []string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")}
	other := filepath.Join(t.TempDir(), "not-a-volume")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := unix.Mount(src, other, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(other, unix.MNT_DETACH) })
	for _, target := range targets {
		t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) })
		if _, err := c.node.NodePublishVolume(ctx(t), &csi.NodePublishVolumeRequest{VolumeId: vol.GetVolumeId(), TargetPath: target, VolumeCapability: mountCap[0]}); err != nil {
			t.Fatal(err)
		}
	}
	points, err := Mounts(dataDir)
	if err != nil || len(points) != 2 || points[0] != targets[1] || points[1] != targets[0] {
		t.Errorf("Mounts = %q, %v; want %q newest first", points, err, targets)
	}
	if err := UnmountAll(dataDir); err != nil {
		t.Fatal(err)
	}
	for _, target := range targets {
		if m, err := mountAt(target); err != nil || m != nil {
			t.Errorf("%s still mounted: %+v, %v", target, m, err)
		}
	}
	if m, err := mountAt(other); err != nil || m == nil {
		t.Errorf("UnmountAll detached a mount that is not a volume's: %v", err)
	}
}
