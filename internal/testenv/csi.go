package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Names of the CSI objects StartCSI creates.
const (
	CSIDriverName            = "mock.csi.arca.local"
	CSIStorageClass          = "arca-csi"
	CSISnapshotClass         = "arca-csi-snapclass"
	CSISnapshotClassDelete   = "arca-csi-snapclass-delete"
	snapshotClientModule     = "github.com/kubernetes-csi/external-snapshotter/client/v8"
	defaultClassAnnotation   = "storageclass.kubernetes.io/is-default-class"
	defaultSnapClassAnnotate = "snapshot.storage.kubernetes.io/is-default-class"
)

// CSI is a CSI snapshot stack running against a ControlPlane: the snapshot
// CRDs, snapshot-controller, csi-snapshotter, the in-memory mock CSI driver
// and a provisioner for PVCs (see Provisioner).
type CSI struct {
	// DriverName is the CSI driver (CSIDriver object, StorageClass
	// provisioner, VolumeSnapshotClass driver).
	DriverName string
	// StorageClass is the default StorageClass: reclaimPolicy Delete,
	// volumeBindingMode Immediate.
	StorageClass string
	// SnapshotClass is the default VolumeSnapshotClass, deletionPolicy
	// Retain: the driver's snapshot outlives the VolumeSnapshot and its
	// namespace, as Arca's snapshot location requires.
	SnapshotClass string
	// SnapshotClassDelete is a second class of the driver with
	// deletionPolicy Delete, for tests of snapshot clean-up.
	SnapshotClassDelete string
	// Socket is the driver's unix socket.
	Socket string
	// Controller is a CSI controller client connected to the driver.
	Controller csi.ControllerClient
	// DataDir is the hostpath driver's data directory (StartHostPathCSI
	// only): the files of volume handle h are in VolumeDir(h).
	DataDir string
	// StartupTimes records how long each component took to start.
	StartupTimes map[string]time.Duration

	startedAt     time.Time
	fsGroupPolicy *storagev1.FSGroupPolicy // nil: the API server's default
}

// StartCSI installs the snapshot CRDs and starts the CSI stack on cp with
// the in-memory mock driver (no bytes; fault injection). Its provisioner
// binds PVCs through kube-controller-manager when cp runs it, and binds
// them itself otherwise. Start one CSI stack per control plane: StartCSI
// or StartHostPathCSI.
func StartCSI(t T, cp *ControlPlane) *CSI {
	t.Helper()
	c := &CSI{
		DriverName:          CSIDriverName,
		StorageClass:        CSIStorageClass,
		SnapshotClass:       CSISnapshotClass,
		SnapshotClassDelete: CSISnapshotClassDelete,
		StartupTimes:        map[string]time.Duration{},
	}
	startCSIStack(t, cp, c, func() {
		dir := tempDir(t, "arca-csi-")
		c.Socket = filepath.Join(dir, "csi.sock")
		driver := StartProcess(t, "mock-csi-driver", Binary(t, "mock-csi-driver"),
			[]string{"--socket=" + c.Socket, "--driver-name=" + c.DriverName}, nil, "")
		driver.WaitReady(t, time.Minute, func(ctx context.Context) error {
			// Dialling before the socket exists would put the channel into
			// a one-second reconnect back-off.
			if _, err := os.Stat(c.Socket); err != nil {
				return err
			}
			return nil
		})
		c.Controller = dialDriver(t, c.Socket, c.DriverName)
		c.StartupTimes["mock-csi-driver"] = time.Since(c.startedAt)
	})
	return c
}

// startCSIStack is what both drivers share: the snapshot CRDs, c's
// CSIDriver, StorageClass and VolumeSnapshotClasses, the driver (started by
// startDriver, which sets c.Socket and c.Controller), snapshot-controller,
// csi-snapshotter and the provisioner.
func startCSIStack(t T, cp *ControlPlane, c *CSI, startDriver func()) {
	t.Helper()
	cfg := cp.Config()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	start := time.Now()
	crdDir := SnapshotCRDDir(t)
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: []string{crdDir}, ErrorIfPathMissing: true}); err != nil {
		t.Fatalf("install snapshot CRDs from %s: %v", crdDir, err)
	}
	c.StartupTimes["snapshot CRDs"] = time.Since(start)

	// kube-apiserver holds every create of a custom resource for 2 s while
	// its CRD has been Established for less than 2 s (a guard for HA API
	// servers): create the objects while the processes start.
	cs := cp.clientset(t)
	snaps := snapclient.NewForConfigOrDie(cfg)
	objectsDone := make(chan error, 1)
	objectsStart := time.Now()
	go func() { objectsDone <- c.createObjects(ctx, cs, snaps) }()

	// The driver first: csi-snapshotter asks it for its name on start.
	c.startedAt = time.Now()
	startDriver()

	kubeconfig := cp.KubeconfigFile(t)
	start = time.Now()
	sc := StartProcess(t, cp.procName("snapshot-controller"), Binary(t, "snapshot-controller"),
		[]string{"--kubeconfig=" + kubeconfig, "--leader-election=false", "--retry-interval-start=200ms", "--retry-interval-max=5s"}, nil, "")
	sidecar := StartProcess(t, cp.procName("csi-snapshotter"), Binary(t, "csi-snapshotter"),
		[]string{"--kubeconfig=" + kubeconfig, "--csi-address=" + c.Socket, "--leader-election=false", "--retry-interval-start=200ms", "--retry-interval-max=5s"}, nil, "")
	sc.WaitReady(t, time.Minute, logContains(sc, "Starting snapshot controller"))
	c.StartupTimes["snapshot-controller"] = time.Since(start)
	sidecar.WaitReady(t, time.Minute, logContains(sidecar, "Starting CSI snapshotter"))
	c.StartupTimes["csi-snapshotter"] = time.Since(start)

	if err := <-objectsDone; err != nil {
		t.Fatalf("CSI objects: %v", err)
	}
	c.StartupTimes["objects"] = time.Since(objectsStart)

	start = time.Now()
	p := &Provisioner{
		Client:       cs,
		Snapshots:    snaps,
		Controller:   c.Controller,
		Driver:       c.DriverName,
		BindDirectly: cp.kcm == nil,
		Logf:         t.Logf,
	}
	pctx, pcancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := p.Run(pctx); err != nil && pctx.Err() == nil {
			t.Logf("provisioner stopped: %v", err)
		}
	}()
	t.Cleanup(func() {
		pcancel()
		wg.Wait()
	})
	c.StartupTimes["provisioner"] = time.Since(start)
}

// dialDriver connects to the CSI driver on socket and checks its name.
func dialDriver(t T, socket, name string) csi.ControllerClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("csi client: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := csi.NewIdentityClient(conn).GetPluginInfo(ctx, &csi.GetPluginInfoRequest{}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("CSI driver on %s: GetPluginInfo: %v", socket, err)
	}
	if info.GetName() != name {
		t.Fatalf("CSI driver on %s reports name %q, want %q", socket, info.GetName(), name)
	}
	return csi.NewControllerClient(conn)
}

func logContains(p *Process, marker string) func(context.Context) error {
	return func(context.Context) error {
		if strings.Contains(p.Log(), marker) {
			return nil
		}
		return fmt.Errorf("log does not show %q yet", marker)
	}
}

// createObjects creates the CSIDriver, the StorageClass and the two
// VolumeSnapshotClasses.
func (c *CSI) createObjects(ctx context.Context, cs kubernetes.Interface, snaps snapclient.Interface) error {
	attach := false
	_, err := cs.StorageV1().CSIDrivers().Create(ctx, &storagev1.CSIDriver{
		ObjectMeta: metav1.ObjectMeta{Name: c.DriverName},
		Spec: storagev1.CSIDriverSpec{
			AttachRequired:       &attach,
			FSGroupPolicy:        c.fsGroupPolicy,
			VolumeLifecycleModes: []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecyclePersistent},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create CSIDriver: %w", err)
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	binding := storagev1.VolumeBindingImmediate
	expand := true
	_, err = cs.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta:           metav1.ObjectMeta{Name: c.StorageClass, Annotations: map[string]string{defaultClassAnnotation: "true"}},
		Provisioner:          c.DriverName,
		ReclaimPolicy:        &reclaim,
		VolumeBindingMode:    &binding,
		AllowVolumeExpansion: &expand,
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create StorageClass: %w", err)
	}
	for _, vsc := range []*snapv1.VolumeSnapshotClass{{
		ObjectMeta:     metav1.ObjectMeta{Name: c.SnapshotClass, Annotations: map[string]string{defaultSnapClassAnnotate: "true"}},
		Driver:         c.DriverName,
		DeletionPolicy: snapv1.VolumeSnapshotContentRetain,
	}, {
		ObjectMeta:     metav1.ObjectMeta{Name: c.SnapshotClassDelete},
		Driver:         c.DriverName,
		DeletionPolicy: snapv1.VolumeSnapshotContentDelete,
	}} {
		if _, err := snaps.SnapshotV1().VolumeSnapshotClasses().Create(ctx, vsc, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create VolumeSnapshotClass %s: %w", vsc.Name, err)
		}
	}
	return nil
}

var (
	crdDirOnce sync.Once
	crdDir     string
	crdDirErr  error
)

// SnapshotCRDDir returns the config/crd directory of the
// external-snapshotter client/v8 module Arca's go.mod pins, as found by
// `go list -m` in the module cache (the build of this package downloaded
// it). Using the module's own files keeps the CRDs in step with the client
// types.
func SnapshotCRDDir(t T) string {
	t.Helper()
	crdDirOnce.Do(func() {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", snapshotClientModule).Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				err = fmt.Errorf("%w: %s", err, ee.Stderr)
			}
			crdDirErr = fmt.Errorf("go list -m %s: %w", snapshotClientModule, err)
			return
		}
		mod := strings.TrimSpace(string(out))
		if mod == "" {
			crdDirErr = fmt.Errorf("module %s is not in the module cache: run `go mod download %s`", snapshotClientModule, snapshotClientModule)
			return
		}
		dir := filepath.Join(mod, "config", "crd")
		if _, err := os.Stat(dir); err != nil {
			crdDirErr = err
			return
		}
		crdDir = dir
	})
	if crdDirErr != nil {
		t.Fatalf("snapshot CRDs: %v", crdDirErr)
	}
	return crdDir
}
