// Package hostpath is a small CSI driver whose volumes hold real bytes:
// each volume is a directory under a data directory on the host, each
// snapshot a faithful copy of one (see copyTree), and a volume created from
// a snapshot a copy of that. Its Node service bind-mounts a volume's
// directory onto the target path the kubelet gives, and it registers with
// kubelets through their plugin registration socket.
//
// A block volume (volumeMode: Block, the CSI block access type) is a
// directory holding one sparse image file of the volume's size
// (ImagePath). NodePublishVolume attaches the image to a loop device (one
// per image on the host, shared by every publication of it) and
// bind-mounts the device node onto the target file, as drivers of real
// disks publish a block volume; NodeUnpublishVolume unmounts the target
// and detaches the loop device once nothing mounts it. Snapshots and
// volumes from them copy the image with its holes; a volume larger than
// its source gets the image extended with zeros. A volume's access type is
// fixed at creation: a block volume is never published as a file system,
// nor created from a file system's snapshot, and the other way round.
// Loop devices need root and Linux 5.8 (LOOP_CONFIGURE).
//
// It is test equipment: the test environment (StartHostPathCSI in package
// testenv) runs it inside the test process so that applications in real
// pods write files into PVCs and a restore can be checked byte for byte.
// It does not do capacity enforcement of file-system volumes, topology,
// volume expansion, staging or attach.
package hostpath

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// VendorVersion is what GetPluginInfo reports.
const VendorVersion = "0.1.0"

// DefaultCapacity is recorded for a volume whose request names no size.
const DefaultCapacity = 1 << 30

// Layout of the data directory. A volume or snapshot exists when its
// metadata file does; its directory is complete by then (it is built under
// tmp/ and renamed into place first).
const (
	volumesDir   = "volumes"
	snapshotsDir = "snapshots"
	tmpDir       = "tmp"
	lockFile     = ".lock"
)

// Options configure a Driver.
type Options struct {
	// Name is the driver name (GetPluginInfo, CSIDriver object).
	Name string
	// DataDir holds the volumes and snapshots. Several drivers (one per
	// node, say) may share it: changes take a file lock.
	DataDir string
	// NodeID is the node the Node service runs for (NodeGetInfo); empty
	// leaves the Node service out.
	NodeID string
	// Controller serves the Controller service.
	Controller bool
	// Now is the clock for snapshot creation times; nil is time.Now.
	Now func() time.Time
}

// Driver implements the CSI Identity, Controller and Node services.
type Driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer

	opts Options
	mu   sync.Mutex // with the file lock: one change at a time
}

var (
	_ csi.IdentityServer   = (*Driver)(nil)
	_ csi.ControllerServer = (*Driver)(nil)
	_ csi.NodeServer       = (*Driver)(nil)
)

// New returns a driver over opts.DataDir, creating its layout.
func New(opts Options) (*Driver, error) {
	if opts.Name == "" {
		return nil, errors.New("hostpath: a driver name is required")
	}
	if opts.DataDir == "" {
		return nil, errors.New("hostpath: a data directory is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	for _, d := range []string{volumesDir, snapshotsDir, tmpDir} {
		if err := os.MkdirAll(filepath.Join(opts.DataDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("hostpath: data directory: %w", err)
		}
	}
	return &Driver{opts: opts}, nil
}

// VolumePath is the directory holding the files of volume id.
func VolumePath(dataDir, id string) string { return filepath.Join(dataDir, volumesDir, id) }

// ImagePath is the image file of block volume id: the bytes of its device.
func ImagePath(dataDir, id string) string { return filepath.Join(VolumePath(dataDir, id), imageFile) }

// imageFile is a block volume's image inside its directory.
const imageFile = "block.img"

// SnapshotPath is the directory holding the copy of snapshot id.
func SnapshotPath(dataDir, id string) string { return filepath.Join(dataDir, snapshotsDir, id) }

// volumeMeta and snapshotMeta are the metadata files, next to their
// directories.
type volumeMeta struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Capacity int64  `json:"capacityBytes"`
	// Block: the volume is a block device (its directory holds the image
	// file); otherwise a file system.
	Block bool `json:"block,omitempty"`
	// Source is the snapshot or volume the volume was copied from.
	SourceSnapshot string `json:"sourceSnapshot,omitempty"`
	SourceVolume   string `json:"sourceVolume,omitempty"`
}

type snapshotMeta struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	SourceVolume string    `json:"sourceVolume"`
	SizeBytes    int64     `json:"sizeBytes"`
	CreatedAt    time.Time `json:"createdAt"`
	Block        bool      `json:"block,omitempty"` // a copy of a block volume
}

// --- Identity ---

func (d *Driver) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: d.opts.Name, VendorVersion: VendorVersion}, nil
}

func (d *Driver) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	var caps []*csi.PluginCapability
	if d.opts.Controller {
		caps = append(caps, &csi.PluginCapability{Type: &csi.PluginCapability_Service_{
			Service: &csi.PluginCapability_Service{Type: csi.PluginCapability_Service_CONTROLLER_SERVICE},
		}})
	}
	return &csi.GetPluginCapabilitiesResponse{Capabilities: caps}, nil
}

func (d *Driver) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	if _, err := os.Stat(filepath.Join(d.opts.DataDir, volumesDir)); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "data directory: %v", err)
	}
	return &csi.ProbeResponse{}, nil
}

// --- Controller ---

var controllerCaps = []csi.ControllerServiceCapability_RPC_Type{
	csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
	csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
	csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
	csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
}

func (d *Driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	if !d.opts.Controller {
		return nil, status.Error(codes.Unimplemented, "this instance serves no Controller service")
	}
	resp := &csi.ControllerGetCapabilitiesResponse{}
	for _, c := range controllerCaps {
		resp.Capabilities = append(resp.Capabilities, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: c}},
		})
	}
	return resp, nil
}

func (d *Driver) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "CreateVolume: name is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "CreateVolume: volume_capabilities are required")
	}
	block, err := checkCapabilities(req.GetVolumeCapabilities())
	if err != nil {
		return nil, err
	}
	required, limit := req.GetCapacityRange().GetRequiredBytes(), req.GetCapacityRange().GetLimitBytes()
	if required < 0 || limit < 0 || (limit > 0 && required > limit) {
		return nil, status.Errorf(codes.OutOfRange, "CreateVolume %s: capacity range required %d, limit %d is not valid", req.GetName(), required, limit)
	}
	var srcSnap, srcVol string
	switch {
	case req.GetVolumeContentSource().GetSnapshot() != nil:
		srcSnap = req.GetVolumeContentSource().GetSnapshot().GetSnapshotId()
		if srcSnap == "" {
			return nil, status.Error(codes.InvalidArgument, "CreateVolume: snapshot content source without a snapshot_id")
		}
	case req.GetVolumeContentSource().GetVolume() != nil:
		srcVol = req.GetVolumeContentSource().GetVolume().GetVolumeId()
		if srcVol == "" {
			return nil, status.Error(codes.InvalidArgument, "CreateVolume: volume content source without a volume_id")
		}
	}

	unlock, err := d.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()

	if existing, err := d.volumeByName(req.GetName()); err != nil {
		return nil, err
	} else if existing != nil {
		// Idempotency: the same request again gets the same volume; a
		// different one under the same name is refused.
		if existing.SourceSnapshot != srcSnap || existing.SourceVolume != srcVol {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s already exists with name %q from another source (snapshot %q, volume %q)", existing.ID, existing.Name, existing.SourceSnapshot, existing.SourceVolume)
		}
		if existing.Block != block {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s already exists with name %q as a %s volume, asked for a %s volume", existing.ID, existing.Name, modeName(existing.Block), modeName(block))
		}
		if existing.Capacity < required || (limit > 0 && existing.Capacity > limit) {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s already exists with name %q and capacity %d, outside the requested range (required %d, limit %d)", existing.ID, existing.Name, existing.Capacity, required, limit)
		}
		return &csi.CreateVolumeResponse{Volume: d.csiVolume(existing)}, nil
	}

	meta := &volumeMeta{ID: newID("vol"), Name: req.GetName(), SourceSnapshot: srcSnap, SourceVolume: srcVol, Block: block}
	var from string
	var sourceSize int64
	sourceBlock := block
	switch {
	case srcSnap != "":
		snap, err := d.snapshot(srcSnap)
		if err != nil {
			return nil, err
		}
		if snap == nil {
			return nil, status.Errorf(codes.NotFound, "CreateVolume %s: source snapshot %q does not exist (deleted, or a handle of another driver)", req.GetName(), srcSnap)
		}
		from, sourceSize, sourceBlock = SnapshotPath(d.opts.DataDir, snap.ID), snap.SizeBytes, snap.Block
	case srcVol != "":
		vol, err := d.volume(srcVol)
		if err != nil {
			return nil, err
		}
		if vol == nil {
			return nil, status.Errorf(codes.NotFound, "CreateVolume %s: source volume %q does not exist", req.GetName(), srcVol)
		}
		from, sourceSize, sourceBlock = VolumePath(d.opts.DataDir, vol.ID), vol.Capacity, vol.Block
		if vol.Block {
			if err := flushLoops(ImagePath(d.opts.DataDir, vol.ID)); err != nil { // as CreateSnapshot
				return nil, status.Errorf(codes.Internal, "CreateVolume %s: %v", req.GetName(), err)
			}
		}
	}
	if sourceBlock != block {
		return nil, status.Errorf(codes.InvalidArgument, "CreateVolume %s: the source is a %s volume, the request asks for a %s volume: this driver does not convert between them; request volumeMode %s",
			req.GetName(), modeName(sourceBlock), modeName(block), modeName(sourceBlock))
	}
	switch {
	case required > 0:
		meta.Capacity = required
	case limit > 0:
		meta.Capacity = min(limit, max(sourceSize, DefaultCapacity))
	case sourceSize > 0:
		meta.Capacity = sourceSize
	default:
		meta.Capacity = DefaultCapacity
	}
	if meta.Capacity < sourceSize {
		return nil, status.Errorf(codes.OutOfRange, "CreateVolume %s: capacity %d is smaller than its source (%d bytes): request at least %d", req.GetName(), meta.Capacity, sourceSize, sourceSize)
	}

	tmp := filepath.Join(d.opts.DataDir, tmpDir, meta.ID)
	switch {
	case from != "":
		err = copyTree(from, tmp)
		if err == nil && block && meta.Capacity > sourceSize {
			// The device is as large as the volume: zeros beyond the source.
			err = os.Truncate(filepath.Join(tmp, imageFile), meta.Capacity)
		}
	case block:
		err = os.Mkdir(tmp, 0o700)
		if err == nil {
			err = createImage(filepath.Join(tmp, imageFile), meta.Capacity)
		}
	default:
		err = os.Mkdir(tmp, 0o777)
		if err == nil {
			err = os.Chmod(tmp, 0o777) // any pod user may write into a new volume
		}
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, status.Errorf(codes.Internal, "CreateVolume %s: %v", req.GetName(), err)
	}
	if err := d.commit(tmp, VolumePath(d.opts.DataDir, meta.ID), meta); err != nil {
		return nil, status.Errorf(codes.Internal, "CreateVolume %s: %v", req.GetName(), err)
	}
	return &csi.CreateVolumeResponse{Volume: d.csiVolume(meta)}, nil
}

func (d *Driver) csiVolume(m *volumeMeta) *csi.Volume {
	v := &csi.Volume{VolumeId: m.ID, CapacityBytes: m.Capacity}
	switch {
	case m.SourceSnapshot != "":
		v.ContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: m.SourceSnapshot},
		}}
	case m.SourceVolume != "":
		v.ContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: m.SourceVolume},
		}}
	}
	return v
}

func (d *Driver) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "DeleteVolume: volume_id is required")
	}
	unlock, err := d.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	// A block volume's loop device goes with it, unless it is still
	// published: then its last NodeUnpublishVolume detaches it (or
	// UnmountAll, when the test environment stops).
	if err := detachUnmountedLoops(ImagePath(d.opts.DataDir, validID(req.GetVolumeId()))); err != nil {
		return nil, status.Errorf(codes.Internal, "DeleteVolume %s: %v", req.GetVolumeId(), err)
	}
	if err := d.remove(VolumePath(d.opts.DataDir, validID(req.GetVolumeId()))); err != nil {
		return nil, status.Errorf(codes.Internal, "DeleteVolume %s: %v", req.GetVolumeId(), err)
	}
	return &csi.DeleteVolumeResponse{}, nil // a volume that does not exist is deleted
}

func (d *Driver) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" || len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "ValidateVolumeCapabilities: volume_id and volume_capabilities are required")
	}
	vol, err := d.volume(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if vol == nil {
		return nil, status.Errorf(codes.NotFound, "volume %q does not exist", req.GetVolumeId())
	}
	block, err := checkCapabilities(req.GetVolumeCapabilities())
	if err == nil && block != vol.Block {
		err = status.Errorf(codes.InvalidArgument, "volume %s is a %s volume, not a %s volume", vol.ID, modeName(vol.Block), modeName(block))
	}
	if err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: status.Convert(err).Message()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

func (d *Driver) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "CreateSnapshot: name is required")
	}
	if req.GetSourceVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "CreateSnapshot: source_volume_id is required")
	}
	unlock, err := d.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()

	existing, err := d.snapshotByName(req.GetName())
	if err != nil {
		return nil, err
	}
	if existing != nil {
		if existing.SourceVolume != req.GetSourceVolumeId() {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %s already exists with name %q, of volume %q, not %q", existing.ID, existing.Name, existing.SourceVolume, req.GetSourceVolumeId())
		}
		return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(existing)}, nil
	}
	vol, err := d.volume(req.GetSourceVolumeId())
	if err != nil {
		return nil, err
	}
	if vol == nil {
		return nil, status.Errorf(codes.NotFound, "CreateSnapshot %s: source volume %q does not exist", req.GetName(), req.GetSourceVolumeId())
	}
	meta := &snapshotMeta{
		ID:           newID("snap"),
		Name:         req.GetName(),
		SourceVolume: vol.ID,
		SizeBytes:    vol.Capacity,
		CreatedAt:    d.opts.Now().UTC(),
		Block:        vol.Block,
	}
	if vol.Block {
		// What a pod wrote to the device and the device still caches goes
		// into the image first.
		if err := flushLoops(ImagePath(d.opts.DataDir, vol.ID)); err != nil {
			return nil, status.Errorf(codes.Internal, "CreateSnapshot %s: %v", req.GetName(), err)
		}
	}
	tmp := filepath.Join(d.opts.DataDir, tmpDir, meta.ID)
	if err := copyTree(VolumePath(d.opts.DataDir, vol.ID), tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, status.Errorf(codes.Internal, "CreateSnapshot %s: %v", req.GetName(), err)
	}
	if err := d.commit(tmp, SnapshotPath(d.opts.DataDir, meta.ID), meta); err != nil {
		return nil, status.Errorf(codes.Internal, "CreateSnapshot %s: %v", req.GetName(), err)
	}
	return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(meta)}, nil
}

func csiSnapshot(m *snapshotMeta) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:     m.ID,
		SourceVolumeId: m.SourceVolume,
		SizeBytes:      m.SizeBytes,
		CreationTime:   timestamppb.New(m.CreatedAt),
		ReadyToUse:     true, // the copy is complete before CreateSnapshot returns
	}
}

func (d *Driver) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if req.GetSnapshotId() == "" {
		return nil, status.Error(codes.InvalidArgument, "DeleteSnapshot: snapshot_id is required")
	}
	unlock, err := d.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := d.remove(SnapshotPath(d.opts.DataDir, validID(req.GetSnapshotId()))); err != nil {
		return nil, status.Errorf(codes.Internal, "DeleteSnapshot %s: %v", req.GetSnapshotId(), err)
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

// ListSnapshots lists snapshots by ID, ordered, filtered by snapshot_id or
// source_volume_id; starting_token is the index of the first entry.
func (d *Driver) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	var snaps []*snapshotMeta
	var err error
	if id := req.GetSnapshotId(); id != "" {
		s, err := d.snapshot(id)
		if err != nil {
			return nil, err
		}
		if s != nil {
			snaps = append(snaps, s)
		}
	} else if snaps, err = d.snapshots(); err != nil {
		return nil, err
	}
	if v := req.GetSourceVolumeId(); v != "" {
		snaps = slices.DeleteFunc(snaps, func(s *snapshotMeta) bool { return s.SourceVolume != v })
	}
	start := 0
	if tok := req.GetStartingToken(); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 || n > len(snaps) {
			return nil, status.Errorf(codes.Aborted, "ListSnapshots: starting_token %q is not valid (0 to %d)", tok, len(snaps))
		}
		start = n
	}
	end := len(snaps)
	if m := int(req.GetMaxEntries()); m > 0 && start+m < end {
		end = start + m
	}
	resp := &csi.ListSnapshotsResponse{}
	for _, s := range snaps[start:end] {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: csiSnapshot(s)})
	}
	if end < len(snaps) {
		resp.NextToken = strconv.Itoa(end)
	}
	return resp, nil
}

// --- storage ---

// lock serialises changes within the process and, through flock on the
// data directory's lock file, with other drivers sharing it.
func (d *Driver) lock() (func(), error) {
	d.mu.Lock()
	f, err := os.OpenFile(filepath.Join(d.opts.DataDir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		d.mu.Unlock()
		return nil, status.Errorf(codes.Internal, "lock data directory: %v", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		d.mu.Unlock()
		return nil, status.Errorf(codes.Internal, "lock data directory: %v", err)
	}
	return func() {
		f.Close() // releases the flock
		d.mu.Unlock()
	}, nil
}

// commit renames a finished directory into place, then writes its
// metadata, the mark that it exists.
func (d *Driver) commit(tmp, final string, meta any) error {
	if err := os.Rename(tmp, final); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	b, err := json.MarshalIndent(meta, "", "  ")
	if err == nil {
		err = writeFileAtomic(final+".json", b)
	}
	if err != nil {
		_ = os.RemoveAll(final)
		return err
	}
	return nil
}

// remove deletes a volume or snapshot: its metadata first, so a failure
// half-way leaves no entry that looks complete.
func (d *Driver) remove(dir string) error {
	if err := os.Remove(dir + ".json"); err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.RemoveAll(dir)
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// validID keeps an ID from a request inside the data directory: IDs this
// driver hands out are a prefix and hex digits.
func validID(id string) string {
	if id == "" || strings.ContainsAny(id, "/\\") || id == "." || id == ".." {
		return "invalid-id"
	}
	return id
}

func readMeta[M any](path string) (*M, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read %s: %v", path, err)
	}
	m := new(M)
	if err := json.Unmarshal(b, m); err != nil {
		return nil, status.Errorf(codes.Internal, "parse %s: %v", path, err)
	}
	return m, nil
}

func listMeta[M any](dir string) ([]*M, error) {
	entries, err := os.ReadDir(dir) // sorted: listings are stable for paging
	if err != nil {
		return nil, status.Errorf(codes.Internal, "list %s: %v", dir, err)
	}
	var out []*M
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		m, err := readMeta[M](filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		if m != nil {
			out = append(out, m)
		}
	}
	return out, nil
}

func (d *Driver) volume(id string) (*volumeMeta, error) {
	return readMeta[volumeMeta](VolumePath(d.opts.DataDir, validID(id)) + ".json")
}

func (d *Driver) snapshot(id string) (*snapshotMeta, error) {
	return readMeta[snapshotMeta](SnapshotPath(d.opts.DataDir, validID(id)) + ".json")
}

func (d *Driver) snapshots() ([]*snapshotMeta, error) {
	return listMeta[snapshotMeta](filepath.Join(d.opts.DataDir, snapshotsDir))
}

func (d *Driver) volumeByName(name string) (*volumeMeta, error) {
	vols, err := listMeta[volumeMeta](filepath.Join(d.opts.DataDir, volumesDir))
	if err != nil {
		return nil, err
	}
	for _, v := range vols {
		if v.Name == name {
			return v, nil
		}
	}
	return nil, nil
}

func (d *Driver) snapshotByName(name string) (*snapshotMeta, error) {
	snaps, err := d.snapshots()
	if err != nil {
		return nil, err
	}
	for _, s := range snaps {
		if s.Name == name {
			return s, nil
		}
	}
	return nil, nil
}

func newID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return prefix + "-" + hex.EncodeToString(b)
}

// checkCapabilities reports whether caps ask for a block volume, and
// refuses capabilities without an access type or that mix block and mount
// (a volume is one or the other). Every access mode is served, since all
// nodes share the data directory.
func checkCapabilities(caps []*csi.VolumeCapability) (block bool, err error) {
	for i, c := range caps {
		if c.GetBlock() == nil && c.GetMount() == nil {
			return false, status.Error(codes.InvalidArgument, "a volume capability needs an access type (mount or block)")
		}
		if i > 0 && (c.GetBlock() != nil) != block {
			return false, status.Error(codes.InvalidArgument, "the volume capabilities mix block and mount access: a volume is one or the other")
		}
		block = c.GetBlock() != nil
	}
	return block, nil
}

func modeName(block bool) string {
	if block {
		return "Block"
	}
	return "Filesystem"
}
