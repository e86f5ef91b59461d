package testenv

import (
	"context"
	"path/filepath"
	"sync"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/arca-backup/arca/internal/testenv/hostpath"
)

// Names of the CSI objects StartHostPathCSI creates.
const (
	HostPathDriverName          = "hostpath.csi.arca.local"
	HostPathStorageClass        = "arca-hostpath"
	HostPathSnapshotClass       = "arca-hostpath-snapclass"
	HostPathSnapshotClassDelete = "arca-hostpath-snapclass-delete"
)

// HostPathNames names the CSI objects of a hostpath stack.
type HostPathNames struct {
	// Driver is the CSI driver's name (CSIDriver, provisioner of the
	// StorageClass, driver of the VolumeSnapshotClasses).
	Driver string
	// StorageClass is the default StorageClass; SnapshotClass the default
	// VolumeSnapshotClass (Retain), SnapshotClassDelete the other (Delete).
	StorageClass, SnapshotClass, SnapshotClassDelete string
}

// HostPathDefaultNames are the names StartHostPathCSI uses.
var HostPathDefaultNames = HostPathNames{Driver: HostPathDriverName, StorageClass: HostPathStorageClass,
	SnapshotClass: HostPathSnapshotClass, SnapshotClassDelete: HostPathSnapshotClassDelete}

// StartHostPathCSI starts the CSI stack of StartCSI with the hostpath
// driver (package hostpath), whose volumes are directories with real bytes
// under c.DataDir (a Block claim's volume: an image file published as a
// loop device, hostpath.ImagePath): the snapshot CRDs, the CSIDriver object
// (attachRequired false, fsGroupPolicy File), a default StorageClass, VolumeSnapshotClasses
// (Retain, the default, and Delete), snapshot-controller, csi-snapshotter
// and the provisioner, all pointed at this driver.
//
// The driver runs inside the test process: one Identity + Controller
// instance on c.Socket for csi-snapshotter and the provisioner, and, for
// every node of cp, an Identity + Node instance registered with that
// node's kubelet through its plugin registration socket. All of them share
// one data directory, so a volume can be published on any node. On a
// control plane without nodes only the controller instance runs.
func StartHostPathCSI(t T, cp *ControlPlane) *CSI {
	t.Helper()
	return StartHostPathCSINamed(t, cp, HostPathDefaultNames)
}

// StartHostPathCSINamed is StartHostPathCSI with other names: the stack
// of a second cluster whose storage is another driver (a restore target
// with a different driver and storage class). Each call has its own data
// directory, so two clusters' drivers share no volume.
func StartHostPathCSINamed(t T, cp *ControlPlane, names HostPathNames) *CSI {
	t.Helper()
	c := &CSI{
		DriverName:          names.Driver,
		StorageClass:        names.StorageClass,
		SnapshotClass:       names.SnapshotClass,
		SnapshotClassDelete: names.SnapshotClassDelete,
		StartupTimes:        map[string]time.Duration{},
		// The kubelet applies a pod's fsGroup to the volume, as it does
		// for a formatted disk in a cloud cluster.
		fsGroupPolicy: new(storagev1.FileFSGroupPolicy),
	}
	var sockets string
	startCSIStack(t, cp, c, func() {
		c.DataDir = tempDir(t, "arca-hostpath-")
		// Sockets live apart from the data so that removing the data never
		// races a listener, and paths stay short (108 bytes at most).
		sockets = tempDir(t, "arca-hpsock-")
		c.Socket = filepath.Join(sockets, "controller.sock")
		serveHostPath(t, c, hostpath.Options{Name: c.DriverName, DataDir: c.DataDir, Controller: true}, c.Socket)
		c.Controller = dialDriver(t, c.Socket, c.DriverName)
		// The cleanups above run after this one: unmount what pods left
		// mounted first, so that no bind mount outlives the data.
		t.Cleanup(func() {
			if err := hostpath.UnmountAll(c.DataDir); err != nil {
				t.Logf("hostpath: %v", err)
			}
		})
		c.StartupTimes["hostpath-csi-driver"] = time.Since(c.startedAt)
	})
	for _, n := range cp.Nodes {
		registerHostPathNode(t, c, n.Name, n.RootDir, sockets)
	}
	return c
}

// VolumeDir is the directory holding the files of the hostpath volume with
// the given handle (a PersistentVolume's spec.csi.volumeHandle).
func (c *CSI) VolumeDir(handle string) string { return hostpath.VolumePath(c.DataDir, handle) }

// BlockImage is the image file holding the bytes of the hostpath block
// volume with the given handle.
func (c *CSI) BlockImage(handle string) string { return hostpath.ImagePath(c.DataDir, handle) }

func serveHostPath(t T, c *CSI, opts hostpath.Options, socket string) {
	t.Helper()
	d, err := hostpath.New(opts)
	if err != nil {
		t.Fatalf("hostpath driver: %v", err)
	}
	srv, err := hostpath.Serve(socket, d, t.Logf)
	if err != nil {
		t.Fatalf("hostpath driver: %v", err)
	}
	t.Cleanup(srv.Stop)
}

// registerHostPathNode serves the Node service for node on its own socket
// and registers it with the node's kubelet (rooted at kubeletRootDir), as
// node-driver-registrar does in a cluster, waiting until the kubelet has
// accepted it.
func registerHostPathNode(t T, c *CSI, node, kubeletRootDir, socketDir string) {
	t.Helper()
	start := time.Now()
	socket := filepath.Join(socketDir, "node-"+node+".sock")
	serveHostPath(t, c, hostpath.Options{Name: c.DriverName, DataDir: c.DataDir, NodeID: node}, socket)
	reg, err := hostpath.Register(kubeletRootDir, c.DriverName, socket, t.Logf)
	if err != nil {
		t.Fatalf("hostpath driver on node %s: %v", node, err)
	}
	t.Cleanup(reg.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := reg.Wait(ctx); err != nil {
		t.Fatalf("hostpath driver on node %s: %v (the kubelet watches %s/plugins_registry)", node, err, kubeletRootDir)
	}
	c.StartupTimes["registration on "+node] = time.Since(start)
}

// StartOtherHostPathDriver starts a second hostpath driver named driver
// beside a CSI stack already running on cp (StartHostPathCSI or StartCSI):
// its own data directory, a CSIDriver object, a StorageClass class of it
// (reclaim Delete, Immediate binding, not the default), a node instance
// registered with every node's kubelet and a provisioner for its claims.
// It has no snapshot sidecar: it stands for the other CSI driver of a
// target cluster, into which claims are restored from data, not from
// another driver's snapshots.
func StartOtherHostPathDriver(t T, cp *ControlPlane, driver, class string) *CSI {
	t.Helper()
	c := &CSI{DriverName: driver, StorageClass: class, StartupTimes: map[string]time.Duration{}, fsGroupPolicy: new(storagev1.FileFSGroupPolicy)}
	c.startedAt = time.Now()
	c.DataDir = tempDir(t, "arca-hostpath-"+driver+"-")
	sockets := tempDir(t, "arca-hpsock-")
	c.Socket = filepath.Join(sockets, "controller.sock")
	serveHostPath(t, c, hostpath.Options{Name: driver, DataDir: c.DataDir, Controller: true}, c.Socket)
	c.Controller = dialDriver(t, c.Socket, driver)
	t.Cleanup(func() {
		if err := hostpath.UnmountAll(c.DataDir); err != nil {
			t.Logf("hostpath %s: %v", driver, err)
		}
	})
	cs := cp.clientset(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	attach := false
	if _, err := cs.StorageV1().CSIDrivers().Create(ctx, &storagev1.CSIDriver{ObjectMeta: metav1.ObjectMeta{Name: driver},
		Spec: storagev1.CSIDriverSpec{AttachRequired: &attach, FSGroupPolicy: c.fsGroupPolicy,
			VolumeLifecycleModes: []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecyclePersistent}}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create CSIDriver %s: %v", driver, err)
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	binding := storagev1.VolumeBindingImmediate
	if _, err := cs.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: class},
		Provisioner: driver, ReclaimPolicy: &reclaim, VolumeBindingMode: &binding}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create StorageClass %s: %v", class, err)
	}
	for _, n := range cp.Nodes {
		registerHostPathNode(t, c, n.Name, n.RootDir, sockets)
	}
	p := &Provisioner{Client: cs, Snapshots: snapclient.NewForConfigOrDie(cp.Config()), Controller: c.Controller, Driver: driver,
		BindDirectly: cp.kcm == nil, Logf: t.Logf}
	pctx, pcancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := p.Run(pctx); err != nil && pctx.Err() == nil {
			t.Logf("provisioner of %s stopped: %v", driver, err)
		}
	}()
	t.Cleanup(func() {
		pcancel()
		wg.Wait()
	})
	c.StartupTimes["driver "+driver] = time.Since(c.startedAt)
	return c
}
