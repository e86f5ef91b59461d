package hostpath

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// --- Node ---

func (d *Driver) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	if d.opts.NodeID == "" {
		return nil, status.Error(codes.Unimplemented, "this instance serves no Node service")
	}
	// No topology: every node reaches the shared data directory.
	return &csi.NodeGetInfoResponse{NodeId: d.opts.NodeID}, nil
}

func (d *Driver) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	// No STAGE_UNSTAGE_VOLUME: a bind mount needs no staging.
	return &csi.NodeGetCapabilitiesResponse{}, nil
}

// NodePublishVolume bind-mounts the volume's directory onto the target
// path, read-only when the request or the access mode asks for it; a
// block volume's loop device goes onto the target file instead
// (publishBlock).
func (d *Driver) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	if req.GetVolumeId() == "" || req.GetTargetPath() == "" || req.GetVolumeCapability() == nil {
		return nil, status.Error(codes.InvalidArgument, "NodePublishVolume: volume_id, target_path and volume_capability are required")
	}
	block, err := checkCapabilities([]*csi.VolumeCapability{req.GetVolumeCapability()})
	if err != nil {
		return nil, err
	}
	vol, err := d.volume(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if vol == nil {
		return nil, status.Errorf(codes.NotFound, "NodePublishVolume: volume %q does not exist", req.GetVolumeId())
	}
	if block != vol.Block {
		return nil, status.Errorf(codes.InvalidArgument, "NodePublishVolume: volume %s is a %s volume, published as %s: use volumeMode %s",
			vol.ID, modeName(vol.Block), modeName(block), modeName(vol.Block))
	}
	target := filepath.Clean(req.GetTargetPath())
	readOnly := req.GetReadonly() ||
		req.GetVolumeCapability().GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY ||
		req.GetVolumeCapability().GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY
	if block {
		if err := d.publishBlock(vol, target, readOnly); err != nil {
			return nil, err
		}
		return &csi.NodePublishVolumeResponse{}, nil
	}

	m, err := mountAt(target)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "NodePublishVolume: %v", err)
	}
	if m != nil {
		// Published before: the same volume again is done, anything else
		// is a conflict.
		source := VolumePath(d.opts.DataDir, vol.ID)
		if !m.sameSource(source) {
			return nil, status.Errorf(codes.AlreadyExists, "NodePublishVolume: %s is already a mount of %s, not of volume %s", target, m.root, vol.ID)
		}
		if m.readOnly != readOnly {
			return nil, status.Errorf(codes.AlreadyExists, "NodePublishVolume: %s is already mounted %s, asked %s: unpublish it first", target, rwName(m.readOnly), rwName(readOnly))
		}
		return &csi.NodePublishVolumeResponse{}, nil
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, status.Errorf(codes.Internal, "NodePublishVolume: create target %s: %v", target, err)
	}
	source := VolumePath(d.opts.DataDir, vol.ID)
	if err := bindMount(source, target, readOnly); err != nil {
		return nil, status.Errorf(codes.Internal, "NodePublishVolume: %v", err)
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

// bindMount bind-mounts source on target, read-only if asked.
func bindMount(source, target string, readOnly bool) error {
	if err := unix.Mount(source, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mount %s on %s: %w", source, target, err)
	}
	if readOnly {
		// A bind mount takes MS_RDONLY only on a remount.
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			_ = unix.Unmount(target, 0)
			return fmt.Errorf("make %s read-only: %w", target, err)
		}
	}
	return nil
}

// publishBlock publishes a block volume: the loop device of its image
// (attached now unless another publication attached it) bind-mounted
// onto the target file, which it creates. Read-only publishes the same
// device on a read-only mount; what keeps a pod from writing to it is the
// device permission the kubelet gives the container ("r"). Under the data
// directory's lock, so that NodeUnpublishVolume cannot detach the device
// in between.
func (d *Driver) publishBlock(vol *volumeMeta, target string, readOnly bool) error {
	unlock, err := d.lock()
	if err != nil {
		return err
	}
	defer unlock()
	image := ImagePath(d.opts.DataDir, vol.ID)
	dev, err := loopOf(image)
	if err != nil {
		return status.Errorf(codes.Internal, "NodePublishVolume: %v", err)
	}
	m, err := mountAt(target)
	if err != nil {
		return status.Errorf(codes.Internal, "NodePublishVolume: %v", err)
	}
	if m != nil {
		if dev == "" || !m.isDeviceMount(dev) {
			return status.Errorf(codes.AlreadyExists, "NodePublishVolume: %s is already a mount of %s, not of volume %s", target, m.root, vol.ID)
		}
		if m.readOnly != readOnly {
			return status.Errorf(codes.AlreadyExists, "NodePublishVolume: %s is already published %s, asked %s: unpublish it first", target, rwName(m.readOnly), rwName(readOnly))
		}
		return nil
	}
	attached := false
	if dev == "" {
		if dev, err = attachLoop(image); err != nil {
			return status.Errorf(codes.ResourceExhausted, "NodePublishVolume: volume %s: %v", vol.ID, err)
		}
		attached = true
	}
	fail := func(format string, args ...any) error {
		if attached {
			_ = detachLoop(dev)
		}
		return status.Errorf(codes.Internal, "NodePublishVolume: volume %s: "+format, append([]any{vol.ID}, args...)...)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		return fail("create the directory of target %s: %v", target, err)
	}
	f, err := os.OpenFile(target, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fail("create target file %s: %v", target, err)
	}
	f.Close()
	if err := bindMount(dev, target, readOnly); err != nil {
		return fail("%v", err)
	}
	return nil
}

// NodeUnpublishVolume unmounts the target and removes it. It never removes
// anything but an empty directory or file, so a failed unmount cannot
// delete a volume's files. A block volume's loop device is detached when
// no other publication mounts it.
func (d *Driver) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if req.GetVolumeId() == "" || req.GetTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "NodeUnpublishVolume: volume_id and target_path are required")
	}
	target := filepath.Clean(req.GetTargetPath())
	var loops []string
	for {
		m, err := mountAt(target)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "NodeUnpublishVolume: %v", err)
		}
		if m == nil {
			break
		}
		if dev := loopOfMount(m); dev != "" {
			loops = append(loops, dev)
		}
		if err := unix.Unmount(target, 0); err != nil {
			return nil, status.Errorf(codes.Internal, "NodeUnpublishVolume: unmount %s: %v", target, err)
		}
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, status.Errorf(codes.Internal, "NodeUnpublishVolume: remove %s: %v", target, err)
	}
	if len(loops) > 0 {
		if err := d.releaseLoops(loops); err != nil {
			return nil, status.Errorf(codes.Internal, "NodeUnpublishVolume %s: %v", req.GetVolumeId(), err)
		}
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// releaseLoops detaches those of the loop devices that back a volume of
// this driver and that nothing mounts any more.
func (d *Driver) releaseLoops(devs []string) error {
	unlock, err := d.lock()
	if err != nil {
		return err
	}
	defer unlock()
	ours, err := loopDevices(func(b string) bool {
		return strings.HasPrefix(b, realPath(filepath.Join(d.opts.DataDir, volumesDir))+"/")
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, dev := range devs {
		if !slices.Contains(ours, dev) {
			continue
		}
		ms, err := deviceMounts(dev)
		if err != nil {
			return err
		}
		if len(ms) == 0 {
			errs = append(errs, detachLoop(dev))
		}
	}
	return errors.Join(errs...)
}

// mount is one line of /proc/self/mountinfo.
type mount struct {
	dev      string // major:minor
	root     string // the mounted directory within its filesystem
	point    string
	readOnly bool
}

// sameSource reports whether m is a bind mount of dir.
func (m *mount) sameSource(dir string) bool {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	if dev != m.dev {
		return false
	}
	// root is relative to the filesystem's root: dir must end with it.
	return m.root == "/" || strings.HasSuffix(dir, m.root)
}

// mountAt returns the topmost mount on path, or nil.
func mountAt(path string) (*mount, error) {
	all, err := mounts()
	if err != nil {
		return nil, err
	}
	var found *mount
	for _, m := range all {
		if m.point == path {
			found = m
		}
	}
	return found, nil
}

// mounts lists this process's mount table, in mount order.
func mounts() ([]*mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []*mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		ro := false
		for _, o := range strings.Split(fields[5], ",") {
			if o == "ro" {
				ro = true
			}
		}
		out = append(out, &mount{dev: fields[2], root: unescapeMountinfo(fields[3]), point: unescapeMountinfo(fields[4]), readOnly: ro})
	}
	return out, sc.Err()
}

// Mounts returns the mount points where a volume under dataDir is
// mounted, newest first: what NodePublishVolume made and
// NodeUnpublishVolume has not undone. For a block volume these are the
// mounts of its loop device.
func Mounts(dataDir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(dataDir, volumesDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	all, err := mounts()
	if err != nil {
		return nil, err
	}
	loops, err := loopDevices(func(b string) bool { return strings.HasPrefix(b, realPath(filepath.Join(dataDir, volumesDir))+"/") })
	if err != nil {
		return nil, err
	}
	var out []string
	for i := len(all) - 1; i >= 0; i-- {
		m := all[i]
		if dev := loopOfMount(m); dev != "" {
			if slices.Contains(loops, dev) {
				out = append(out, m.point)
			}
			continue
		}
		for _, e := range entries {
			if e.IsDir() && m.root != "/" && m.sameSource(filepath.Join(dataDir, volumesDir, e.Name())) {
				out = append(out, m.point)
				break
			}
		}
	}
	return out, nil
}

// UnmountAll detaches every mount of a volume under dataDir, and the loop
// devices of its block volumes: what pods left published when the test
// environment stops, so that no mount or loop device outlives the data
// directory.
func UnmountAll(dataDir string) error {
	points, err := Mounts(dataDir)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	errs = append(errs, DetachLoops(filepath.Join(dataDir, volumesDir)))
	return errors.Join(errs...)
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) mountinfo
// uses in paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func rwName(readOnly bool) string {
	if readOnly {
		return "read-only"
	}
	return "read-write"
}
