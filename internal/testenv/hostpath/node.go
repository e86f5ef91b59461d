package hostpath

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
// path, read-only when the request or the access mode asks for it.
func (d *Driver) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	if req.GetVolumeId() == "" || req.GetTargetPath() == "" || req.GetVolumeCapability() == nil {
		return nil, status.Error(codes.InvalidArgument, "NodePublishVolume: volume_id, target_path and volume_capability are required")
	}
	if err := checkCapabilities([]*csi.VolumeCapability{req.GetVolumeCapability()}); err != nil {
		return nil, err
	}
	vol, err := d.volume(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if vol == nil {
		return nil, status.Errorf(codes.NotFound, "NodePublishVolume: volume %q does not exist", req.GetVolumeId())
	}
	target := filepath.Clean(req.GetTargetPath())
	readOnly := req.GetReadonly() ||
		req.GetVolumeCapability().GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY ||
		req.GetVolumeCapability().GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY

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
	if err := unix.Mount(source, target, "", unix.MS_BIND, ""); err != nil {
		return nil, status.Errorf(codes.Internal, "NodePublishVolume: bind-mount %s on %s: %v", source, target, err)
	}
	if readOnly {
		// A bind mount takes MS_RDONLY only on a remount.
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			_ = unix.Unmount(target, 0)
			return nil, status.Errorf(codes.Internal, "NodePublishVolume: make %s read-only: %v", target, err)
		}
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

// NodeUnpublishVolume unmounts the target and removes it. It never removes
// anything but an empty directory, so a failed unmount cannot delete a
// volume's files.
func (d *Driver) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if req.GetVolumeId() == "" || req.GetTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "NodeUnpublishVolume: volume_id and target_path are required")
	}
	target := filepath.Clean(req.GetTargetPath())
	for {
		m, err := mountAt(target)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "NodeUnpublishVolume: %v", err)
		}
		if m == nil {
			break
		}
		if err := unix.Unmount(target, 0); err != nil {
			return nil, status.Errorf(codes.Internal, "NodeUnpublishVolume: unmount %s: %v", target, err)
		}
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, status.Errorf(codes.Internal, "NodeUnpublishVolume: remove %s: %v", target, err)
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
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
// NodeUnpublishVolume has not undone.
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
	var out []string
	for i := len(all) - 1; i >= 0; i-- {
		m := all[i]
		for _, e := range entries {
			if e.IsDir() && m.root != "/" && m.sameSource(filepath.Join(dataDir, volumesDir, e.Name())) {
				out = append(out, m.point)
				break
			}
		}
	}
	return out, nil
}

// UnmountAll detaches every mount of a volume under dataDir: what pods left
// published when the test environment stops, so that no mount outlives the
// data directory.
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
