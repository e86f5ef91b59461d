package testenv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Annotations and names shared with external-provisioner and the
// kube-controller-manager PV binder, so that both treat our volumes as
// dynamically provisioned ones.
const (
	annProvisionedBy   = "pv.kubernetes.io/provisioned-by"
	annBindCompleted   = "pv.kubernetes.io/bind-completed"
	annBoundByCtrl     = "pv.kubernetes.io/bound-by-controller"
	annSelectedNode    = "volume.kubernetes.io/selected-node"
	snapshotGroup      = "snapshot.storage.k8s.io"
	defaultVolumeBytes = 1 << 30
)

// errNotYet marks a claim that cannot be provisioned yet (its source
// snapshot is not ready, say); it is retried with back-off.
var errNotYet = errors.New("not ready yet")

// Provisioner is a small stand-in for external-provisioner, which is not
// available here: it provisions PersistentVolumeClaims of StorageClasses
// whose provisioner is Driver by calling the driver's CreateVolume
// (from a VolumeSnapshot or a PVC when the claim has such a data source),
// and creates a PersistentVolume pre-bound to the claim. When a claim is
// gone and its volume's reclaim policy is Delete, it calls DeleteVolume and
// deletes the PersistentVolume.
//
// Binding the claim is left to kube-controller-manager's PV binder, as in a
// real cluster, unless BindDirectly is set (control planes without
// kube-controller-manager).
type Provisioner struct {
	Client       kubernetes.Interface
	Snapshots    snapclient.Interface
	Controller   csi.ControllerClient
	Driver       string
	BindDirectly bool
	// Logf receives one line per action and per error; nil discards.
	Logf func(format string, args ...any)

	pvcs  cache.Indexer
	pvs   cache.Indexer
	queue workqueue.TypedRateLimitingInterface[string]
}

// Run provisions and deletes volumes until ctx is cancelled.
func (p *Provisioner) Run(ctx context.Context) error {
	if p.Logf == nil {
		p.Logf = func(string, ...any) {}
	}
	p.queue = workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 5*time.Second))
	defer p.queue.ShutDown()

	factory := informers.NewSharedInformerFactory(p.Client, time.Minute)
	pvcInformer := factory.Core().V1().PersistentVolumeClaims().Informer()
	pvInformer := factory.Core().V1().PersistentVolumes().Informer()
	enqueue := func(prefix string) cache.ResourceEventHandlerFuncs {
		add := func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				p.queue.Add(prefix + key)
			}
		}
		return cache.ResourceEventHandlerFuncs{
			AddFunc:    add,
			UpdateFunc: func(_, obj any) { add(obj) },
			DeleteFunc: add,
		}
	}
	// A deleted claim releases its volume: look at the volumes again.
	pvcHandler := enqueue("pvc/")
	pvcHandler.DeleteFunc = func(obj any) {
		for _, v := range p.pvs.List() {
			pv := v.(*corev1.PersistentVolume)
			if pv.Spec.ClaimRef != nil {
				p.queue.Add("pv/" + pv.Name)
			}
		}
	}
	if _, err := pvcInformer.AddEventHandler(pvcHandler); err != nil {
		return err
	}
	if _, err := pvInformer.AddEventHandler(enqueue("pv/")); err != nil {
		return err
	}
	p.pvcs = pvcInformer.GetIndexer()
	p.pvs = pvInformer.GetIndexer()
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), pvcInformer.HasSynced, pvInformer.HasSynced) {
		return ctx.Err()
	}

	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p.processNext(ctx) {
			}
		}()
	}
	<-ctx.Done()
	p.queue.ShutDown()
	wg.Wait()
	return nil
}

func (p *Provisioner) processNext(ctx context.Context) bool {
	key, quit := p.queue.Get()
	if quit {
		return false
	}
	defer p.queue.Done(key)
	var err error
	switch {
	case strings.HasPrefix(key, "pvc/"):
		err = p.syncClaim(ctx, strings.TrimPrefix(key, "pvc/"))
	case strings.HasPrefix(key, "pv/"):
		err = p.syncVolume(ctx, strings.TrimPrefix(key, "pv/"))
	}
	if err != nil && ctx.Err() == nil {
		if !errors.Is(err, errNotYet) {
			p.Logf("provisioner: %s: %v", key, err)
		}
		p.queue.AddRateLimited(key)
		return true
	}
	p.queue.Forget(key)
	return true
}

func (p *Provisioner) syncClaim(ctx context.Context, key string) error {
	obj, exists, err := p.pvcs.GetByKey(key)
	if err != nil || !exists {
		return err
	}
	pvc := obj.(*corev1.PersistentVolumeClaim)
	if pvc.DeletionTimestamp != nil {
		return nil
	}
	if pvc.Spec.VolumeName != "" {
		if p.BindDirectly && pvc.Status.Phase != corev1.ClaimBound {
			return p.bindExisting(ctx, pvc)
		}
		return nil
	}
	sc, err := p.storageClass(ctx, pvc)
	if err != nil || sc == nil {
		return err
	}
	if sc.VolumeBindingMode != nil && *sc.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer && pvc.Annotations[annSelectedNode] == "" {
		return nil // no scheduler, no node: such a claim waits forever, as in a cluster without nodes
	}

	pvName := "pvc-" + string(pvc.UID)
	pv, err := p.Client.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
	if err == nil {
		if p.BindDirectly {
			return p.bind(ctx, pvc, pv)
		}
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return err
	}

	source, err := p.contentSource(ctx, pvc)
	if err != nil {
		return err
	}
	req := &csi.CreateVolumeRequest{
		Name:                pvName,
		Parameters:          sc.Parameters,
		VolumeCapabilities:  capabilities(pvc),
		VolumeContentSource: source,
	}
	requested := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if !requested.IsZero() {
		req.CapacityRange = &csi.CapacityRange{RequiredBytes: requested.Value()}
	}
	resp, err := p.Controller.CreateVolume(ctx, req)
	if err != nil {
		return fmt.Errorf("CreateVolume %s: %w", pvName, err)
	}
	vol := resp.GetVolume()
	capacity := requested
	if vol.GetCapacityBytes() > 0 {
		capacity = *resource.NewQuantity(vol.GetCapacityBytes(), resource.BinarySI)
	} else if capacity.IsZero() {
		capacity = *resource.NewQuantity(defaultVolumeBytes, resource.BinarySI)
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	if sc.ReclaimPolicy != nil {
		reclaim = *sc.ReclaimPolicy
	}
	pv = &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        pvName,
			Annotations: map[string]string{annProvisionedBy: p.Driver},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: capacity},
			AccessModes:                   pvc.Spec.AccessModes,
			VolumeMode:                    pvc.Spec.VolumeMode,
			StorageClassName:              sc.Name,
			PersistentVolumeReclaimPolicy: reclaim,
			MountOptions:                  sc.MountOptions,
			ClaimRef: &corev1.ObjectReference{
				APIVersion:      "v1",
				Kind:            "PersistentVolumeClaim",
				Namespace:       pvc.Namespace,
				Name:            pvc.Name,
				UID:             pvc.UID,
				ResourceVersion: pvc.ResourceVersion,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				CSI: &corev1.CSIPersistentVolumeSource{
					Driver:           p.Driver,
					VolumeHandle:     vol.GetVolumeId(),
					VolumeAttributes: vol.GetVolumeContext(),
				},
			},
		},
	}
	pv, err = p.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if err != nil {
		// The volume is named after the claim, so a retry gets the same one back.
		return fmt.Errorf("create PersistentVolume %s: %w", pvName, err)
	}
	p.Logf("provisioner: %s/%s: provisioned %s (volume %s)", pvc.Namespace, pvc.Name, pvName, vol.GetVolumeId())
	if p.BindDirectly {
		return p.bind(ctx, pvc, pv)
	}
	return nil
}

// storageClass returns the claim's class if this provisioner serves it.
func (p *Provisioner) storageClass(ctx context.Context, pvc *corev1.PersistentVolumeClaim) (*storagev1.StorageClass, error) {
	name := ""
	if pvc.Spec.StorageClassName != nil {
		name = *pvc.Spec.StorageClassName
	}
	if name == "" {
		return nil, nil // static binding only
	}
	sc, err := p.Client.StorageV1().StorageClasses().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if sc.Provisioner != p.Driver {
		return nil, nil
	}
	return sc, nil
}

// contentSource resolves the claim's data source to a CSI content source: a
// VolumeSnapshot through its bound VolumeSnapshotContent's snapshot handle,
// a PersistentVolumeClaim through its volume's handle.
func (p *Provisioner) contentSource(ctx context.Context, pvc *corev1.PersistentVolumeClaim) (*csi.VolumeContentSource, error) {
	var group, kind, name string
	switch {
	case pvc.Spec.DataSourceRef != nil:
		ref := pvc.Spec.DataSourceRef
		if ref.Namespace != nil && *ref.Namespace != "" && *ref.Namespace != pvc.Namespace {
			return nil, fmt.Errorf("cross-namespace data source %s/%s is not supported", *ref.Namespace, ref.Name)
		}
		if ref.APIGroup != nil {
			group = *ref.APIGroup
		}
		kind, name = ref.Kind, ref.Name
	case pvc.Spec.DataSource != nil:
		ref := pvc.Spec.DataSource
		if ref.APIGroup != nil {
			group = *ref.APIGroup
		}
		kind, name = ref.Kind, ref.Name
	default:
		return nil, nil
	}

	switch {
	case group == snapshotGroup && kind == "VolumeSnapshot":
		vs, err := p.Snapshots.SnapshotV1().VolumeSnapshots(pvc.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("data source VolumeSnapshot %s: %w", name, err)
		}
		st := vs.Status
		if st == nil || st.ReadyToUse == nil || !*st.ReadyToUse || st.BoundVolumeSnapshotContentName == nil {
			return nil, fmt.Errorf("VolumeSnapshot %s/%s: %w", pvc.Namespace, name, errNotYet)
		}
		vsc, err := p.Snapshots.SnapshotV1().VolumeSnapshotContents().Get(ctx, *st.BoundVolumeSnapshotContentName, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("VolumeSnapshotContent of %s: %w", name, err)
		}
		if vsc.Spec.Driver != p.Driver {
			return nil, fmt.Errorf("VolumeSnapshot %s belongs to driver %s, not %s", name, vsc.Spec.Driver, p.Driver)
		}
		if vsc.Status == nil || vsc.Status.SnapshotHandle == nil {
			return nil, fmt.Errorf("VolumeSnapshotContent %s has no snapshot handle: %w", vsc.Name, errNotYet)
		}
		return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: *vsc.Status.SnapshotHandle},
		}}, nil
	case group == "" && kind == "PersistentVolumeClaim":
		src, err := p.Client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("data source PersistentVolumeClaim %s: %w", name, err)
		}
		if src.Spec.VolumeName == "" {
			return nil, fmt.Errorf("source claim %s is not bound: %w", name, errNotYet)
		}
		pv, err := p.Client.CoreV1().PersistentVolumes().Get(ctx, src.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("volume of source claim %s: %w", name, err)
		}
		if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != p.Driver {
			return nil, fmt.Errorf("source claim %s is not a %s volume", name, p.Driver)
		}
		return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: pv.Spec.CSI.VolumeHandle},
		}}, nil
	default:
		return nil, fmt.Errorf("unsupported data source %s %s/%s", kind, group, name)
	}
}

func capabilities(pvc *corev1.PersistentVolumeClaim) []*csi.VolumeCapability {
	block := pvc.Spec.VolumeMode != nil && *pvc.Spec.VolumeMode == corev1.PersistentVolumeBlock
	modes := pvc.Spec.AccessModes
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	var caps []*csi.VolumeCapability
	for _, m := range modes {
		c := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: accessMode(m)}}
		if block {
			c.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
		} else {
			c.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}
		}
		caps = append(caps, c)
	}
	return caps
}

func accessMode(m corev1.PersistentVolumeAccessMode) csi.VolumeCapability_AccessMode_Mode {
	switch m {
	case corev1.ReadWriteOnce:
		return csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
	case corev1.ReadOnlyMany:
		return csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY
	case corev1.ReadWriteMany:
		return csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER
	case corev1.ReadWriteOncePod:
		return csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER
	}
	return csi.VolumeCapability_AccessMode_UNKNOWN
}

// bindExisting binds a claim that names its volume but is not Bound.
func (p *Provisioner) bindExisting(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	pv, err := p.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // a static binding to a volume that does not exist: not ours
	}
	if err != nil {
		return err
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != p.Driver {
		return nil
	}
	return p.bind(ctx, pvc, pv)
}

// bind does what the PV binder of kube-controller-manager would: point the
// claim at the volume, then mark both Bound.
func (p *Provisioner) bind(ctx context.Context, pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume) error {
	if pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != pvc.UID {
		return fmt.Errorf("volume %s is not reserved for claim %s/%s", pv.Name, pvc.Namespace, pvc.Name)
	}
	claim, err := p.Client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Get(ctx, pvc.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if claim.Spec.VolumeName == "" {
		claim.Spec.VolumeName = pv.Name
		if claim.Annotations == nil {
			claim.Annotations = map[string]string{}
		}
		claim.Annotations[annBindCompleted] = "yes"
		claim.Annotations[annBoundByCtrl] = "yes"
		if claim, err = p.Client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Update(ctx, claim, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("bind claim %s/%s: %w", pvc.Namespace, pvc.Name, err)
		}
	}
	if pv.Status.Phase != corev1.VolumeBound {
		pv.Status.Phase = corev1.VolumeBound
		if _, err := p.Client.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("mark volume %s bound: %w", pv.Name, err)
		}
	}
	if claim.Status.Phase != corev1.ClaimBound {
		claim.Status.Phase = corev1.ClaimBound
		claim.Status.AccessModes = pv.Spec.AccessModes
		claim.Status.Capacity = pv.Spec.Capacity
		if _, err := p.Client.CoreV1().PersistentVolumeClaims(pvc.Namespace).UpdateStatus(ctx, claim, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("mark claim %s/%s bound: %w", pvc.Namespace, pvc.Name, err)
		}
	}
	return nil
}

// syncVolume deletes a volume of ours whose claim is gone and whose reclaim
// policy is Delete: DeleteVolume on the driver, then the PersistentVolume.
func (p *Provisioner) syncVolume(ctx context.Context, name string) error {
	obj, exists, err := p.pvs.GetByKey(name)
	if err != nil || !exists {
		return err
	}
	pv := obj.(*corev1.PersistentVolume)
	if pv.DeletionTimestamp != nil || pv.Spec.CSI == nil || pv.Spec.CSI.Driver != p.Driver ||
		pv.Annotations[annProvisionedBy] != p.Driver ||
		pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		return nil
	}
	released := pv.Status.Phase == corev1.VolumeReleased
	if !released {
		ref := pv.Spec.ClaimRef
		if ref == nil {
			return nil
		}
		claim, err := p.Client.CoreV1().PersistentVolumeClaims(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			released = true
		case err != nil:
			return err
		default:
			released = claim.UID != ref.UID
		}
	}
	if !released {
		return nil
	}
	// The cache may lag behind a deletion this loop already did.
	live, err := p.Client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && live.DeletionTimestamp != nil) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := p.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: pv.Spec.CSI.VolumeHandle}); err != nil {
		return fmt.Errorf("DeleteVolume %s: %w", pv.Spec.CSI.VolumeHandle, err)
	}
	err = p.Client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete PersistentVolume %s: %w", pv.Name, err)
	}
	p.Logf("provisioner: deleted released volume %s (volume %s)", pv.Name, pv.Spec.CSI.VolumeHandle)
	return nil
}
