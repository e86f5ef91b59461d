package hostpath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Block volumes: an image file per volume, attached to a loop device while
// it is published. The kernel keeps the loop devices and their backing
// files (/sys/block/loopN/loop/backing_file), so the driver keeps no state
// of its own about them: a loop device backed by a volume's image is that
// volume's device, whichever driver instance attached it.

const loopMajor = 7 // the loop driver's block major number

// createImage creates a sparse image file of size bytes: a new device
// reads zeros and takes no space.
func createImage(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// loopDevices returns the attached loop devices (/dev/loopN) whose backing
// file satisfies match, given the backing file's path as the kernel
// reports it (absolute, symlinks resolved).
func loopDevices(match func(backing string) bool) ([]string, error) {
	files, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue // detached in between
		}
		if err != nil {
			return nil, fmt.Errorf("loop devices: %w", err)
		}
		if match(strings.TrimSuffix(string(b), "\n")) {
			out = append(out, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(f))))
		}
	}
	return out, nil
}

// realPath is path as the kernel names a loop device's backing file.
func realPath(path string) string {
	if p, err := filepath.Abs(path); err == nil {
		path = p
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(path))
	if err != nil {
		return path
	}
	return filepath.Join(dir, filepath.Base(path))
}

// loopOf returns the loop device attached to image, or "".
func loopOf(image string) (string, error) {
	image = realPath(image)
	devs, err := loopDevices(func(b string) bool { return b == image })
	if err != nil || len(devs) == 0 {
		return "", err
	}
	return devs[0], nil
}

// attachLoop attaches image to a free loop device and returns the device.
func attachLoop(image string) (string, error) {
	image = realPath(image)
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("attach %s to a loop device: %w (block volumes need the loop driver and root)", image, err)
	}
	defer ctl.Close()
	img, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("attach %s to a loop device: %w", image, err)
	}
	defer img.Close()
	for attempt := 0; ; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			all, _ := loopDevices(func(string) bool { return true })
			return "", fmt.Errorf("attach %s: no free loop device (%w); attached now: %s (losetup -a lists them, losetup -d DEVICE frees one)", image, err, strings.Join(all, ", "))
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		if _, err := os.Stat(dev); errors.Is(err, os.ErrNotExist) {
			// A /dev that is not devtmpfs gets no node for a new device.
			if err := unix.Mknod(dev, unix.S_IFBLK|0o600, int(unix.Mkdev(loopMajor, uint32(n)))); err != nil && !errors.Is(err, unix.EEXIST) {
				return "", fmt.Errorf("attach %s: create %s: %w", image, dev, err)
			}
		}
		lf, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			return "", fmt.Errorf("attach %s: open %s: %w", image, dev, err)
		}
		cfg := unix.LoopConfig{Fd: uint32(img.Fd())}
		copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], image)
		err = unix.IoctlLoopConfigure(int(lf.Fd()), &cfg)
		lf.Close()
		if errors.Is(err, unix.EBUSY) && attempt < 10 {
			continue // another process took that device first
		}
		if err != nil {
			return "", fmt.Errorf("attach %s to %s: %w", image, dev, err)
		}
		return dev, nil
	}
}

// detachLoop detaches a loop device. One that is still open (a container
// holds it, or a loop device stacked on it) is detached by the kernel at
// its last close.
func detachLoop(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("detach %s: %w", dev, err)
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
		return fmt.Errorf("detach %s: %w", dev, err)
	}
	return nil
}

// detachUnmountedLoops detaches the loop devices of image that nothing
// mounts. (A mount of a device node does not hold the device open: a
// device detached under a mount would leave the mount on a device that
// reads nothing and that no listing ties to its volume any more.)
func detachUnmountedLoops(image string) error {
	image = realPath(image)
	devs, err := loopDevices(func(b string) bool { return b == image })
	if err != nil {
		return err
	}
	var errs []error
	for _, dev := range devs {
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

// flushLoops writes what the loop devices of image cache into the image.
func flushLoops(image string) error {
	image = realPath(image)
	devs, err := loopDevices(func(b string) bool { return b == image })
	if err != nil {
		return err
	}
	for _, dev := range devs {
		f, err := os.OpenFile(dev, os.O_RDONLY, 0)
		if err != nil {
			return fmt.Errorf("flush %s: %w", dev, err)
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("flush %s: %w", dev, err)
		}
	}
	return nil
}

// DetachLoops detaches every loop device whose backing file lies below
// dir (or lay, if it was deleted): what a test environment leaves attached
// when it stops (the driver's devices of volumes under its data directory,
// the kubelet's devices over files under its root directory).
func DetachLoops(dir string) error {
	dir = realPath(dir)
	devs, err := loopDevices(func(b string) bool { return strings.HasPrefix(b, dir+"/") })
	if err != nil {
		return err
	}
	var errs []error
	for _, dev := range devs {
		errs = append(errs, detachLoop(dev))
	}
	return errors.Join(errs...)
}

// isDeviceMount reports whether m is a bind mount of the device node dev
// (for /dev/loop3: the root /loop3 of the file system holding /dev).
func (m *mount) isDeviceMount(dev string) bool {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return false
	}
	return m.dev == fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)) && m.root == "/"+filepath.Base(dev)
}

// deviceMounts returns the mounts of the device node dev.
func deviceMounts(dev string) ([]*mount, error) {
	all, err := mounts()
	if err != nil {
		return nil, err
	}
	var out []*mount
	for _, m := range all {
		if m.isDeviceMount(dev) {
			out = append(out, m)
		}
	}
	return out, nil
}

// loopOfMount returns the loop device m is a bind mount of, or "".
func loopOfMount(m *mount) string {
	if !strings.HasPrefix(m.root, "/loop") || strings.Contains(m.root[1:], "/") {
		return ""
	}
	if dev := "/dev" + m.root; m.isDeviceMount(dev) {
		return dev
	}
	return ""
}
