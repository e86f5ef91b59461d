package volume

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/restore"
)

// Claim annotations that tie a claim to the volume it was bound to, or to
// the provisioner and node that made it: a restored claim must be bound and
// provisioned anew, so they go.
var bindAnnotations = []string{
	"pv.kubernetes.io/bind-completed",
	"pv.kubernetes.io/bound-by-controller",
	"volume.beta.kubernetes.io/storage-provisioner",
	"volume.kubernetes.io/storage-provisioner",
	"volume.kubernetes.io/selected-node",
}

const snapshotGroup = "snapshot.storage.k8s.io"

// RestoreOptions configure the volume side of one restore.
type RestoreOptions struct {
	// Mode is the criteria's persistentVolumeRestoreMode ("" means RestoreWithVolumeData).
	Mode v1alpha1.PersistentVolumeRestoreMode
	// NamespaceMappings are the criteria's namespace mappings.
	NamespaceMappings map[string]string
	// StorageClassMappings rename storage classes of restored claims and volumes.
	StorageClassMappings map[string]string
	// RecoveryPoint labels the objects created (arca.io/recovery-point value).
	RecoveryPoint string
	// RestoreName labels the objects created (arca.io/restore).
	RestoreName string
	DryRun      bool
	// Source and Sources are the criteria's volumeDataSource and
	// volumeDataSources (source "namespace/claim" -> source).
	Source  v1alpha1.VolumeDataSource
	Sources map[string]v1alpha1.VolumeDataSource
	// Conflict is the criteria's conflict policy: with Patch, vault-tier
	// data is written into an existing claim (refused while a pod mounts it).
	Conflict v1alpha1.ConflictPolicy
	// VaultData are the recovery point's vault-tier volumes by source claim.
	VaultData map[string]VaultVolume
	// Pods runs the restore pods that write vault-tier data; nil: this
	// restore cannot (Auto then never chooses the vault tier), and NoPods
	// says why (for the error when Vault is asked for).
	Pods   *RestorePods
	NoPods string
	// Progress, when set, is told how far the restore pods are: the bytes
	// of vault-tier data written so far (what running pods report, about
	// every second, plus the claims filled) and planned so far, with the
	// rate and the time left.
	Progress func(VaultProgress)
}

// VaultProgress is how far a restore's restore pods are.
type VaultProgress struct {
	BytesDone, BytesTotal int64
	// BytesPerSecond is BytesDone over the time since the first restore
	// pod was created (0 before any byte); ETA the time left at that rate.
	BytesPerSecond float64
	ETA            time.Duration
}

// Restorer restores persistent volumes and claims: claims with a recorded
// snapshot come back from it, the volumes dynamically provisioned for them
// are not restored. It implements restore.VolumeRestorer.
type Restorer struct {
	kube    kubernetes.Interface
	snaps   snapclient.Interface
	opts    RestoreOptions
	records map[string]Record // source namespace/pvc

	mu       sync.Mutex
	restored map[string]bool     // PV names restored (or left to the restore engine)
	drivers  map[string]bool     // CSIDriver name -> exists in the target (cache)
	classes  map[string]bool     // StorageClass name -> exists in the target (cache)
	choices  map[string]chosen   // source claim -> where its data comes from
	fills    map[string]fillPlan // target claim -> vault-tier data to write
	podSlots chan struct{}       // restore pods running (RestorePods.Concurrency)
	planned  int64               // bytes of the claims planned from the vault tier
	filled   int64               // bytes of the claims filled
	writing  map[string]int64    // target claim -> bytes its running restore pod reported
	podsFrom time.Time           // when the first restore pod was created
}

// NewRestorer returns a Restorer for the cluster of cfg and the recovery
// point's volume records.
func NewRestorer(cfg *rest.Config, records *Records, opts RestoreOptions) (*Restorer, error) {
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	sc, err := snapclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return NewRestorerFor(kc, sc, records, opts), nil
}

// NewRestorerFor returns a Restorer using the given clients.
func NewRestorerFor(kc kubernetes.Interface, sc snapclient.Interface, records *Records, opts RestoreOptions) *Restorer {
	r := &Restorer{kube: kc, snaps: sc, opts: opts, records: map[string]Record{}, restored: map[string]bool{},
		drivers: map[string]bool{}, classes: map[string]bool{}, choices: map[string]chosen{}, fills: map[string]fillPlan{}, writing: map[string]int64{}}
	n := 2
	if opts.Pods != nil && opts.Pods.Concurrency > 0 {
		n = opts.Pods.Concurrency
	}
	r.podSlots = make(chan struct{}, n)
	if records != nil {
		for _, rec := range records.Snapshots {
			r.records[rec.Key()] = rec
		}
	}
	return r
}

func (r *Restorer) withData() bool { return r.opts.Mode != v1alpha1.RestoreWithoutVolumeData }

func (r *Restorer) mapStorageClass(name string) string {
	if to, ok := r.opts.StorageClassMappings[name]; ok {
		return to
	}
	return name
}

// recordFor returns the snapshot record of a source claim when its data is
// restored from the snapshot.
func (r *Restorer) recordFor(ctx context.Context, ns, name, mappedClass string) (Record, bool) {
	if !r.withData() {
		return Record{}, false
	}
	rec, ok := r.records[ns+"/"+name]
	if !ok {
		return Record{}, false
	}
	if c, _ := r.chooseSource(ctx, ns+"/"+name, mappedClass); c != fromSnapshot {
		return Record{}, false
	}
	return rec, true
}

// RestoreVolume decides whether a PersistentVolume is restored (pv is the
// prepared object: its claimRef namespace is already mapped) and maps its
// storage class.
//
// Rules (docs/volumes.md):
//   - the volume of a claim restored from a snapshot is not restored: the
//     claim gets a new volume from the snapshot;
//   - a volume with reclaim policy Delete (or Recycle) is not restored: the
//     backing storage went with its claim, and a PV object for it would be
//     released and deleted again; its claim is provisioned anew, empty;
//   - a volume with reclaim policy Retain (statically provisioned, or kept on
//     purpose) is restored as it is, and its claim binds to it again.
func (r *Restorer) RestoreVolume(ctx context.Context, pv map[string]any) (skip bool, reason string, err error) {
	name, _ := nested(pv, "metadata", "name").(string)
	spec, _ := pv["spec"].(map[string]any)
	if spec == nil {
		spec = map[string]any{}
	}
	if ns, ok := nested(pv, "spec", "claimRef", "namespace").(string); ok {
		claim, _ := nested(pv, "spec", "claimRef", "name").(string)
		src := r.sourceNamespace(ns)
		rec, recorded := r.records[src+"/"+claim]
		if !recorded || rec.PV == name {
			mapped := ""
			if recorded {
				mapped = r.mapStorageClass(rec.StorageClass)
			}
			switch c, why := r.chooseSource(ctx, src+"/"+claim, mapped); c {
			case fromSnapshot:
				return true, fmt.Sprintf("claim %s/%s is restored from snapshot %s and gets a new volume", ns, claim, rec.SnapshotHandle), nil
			case fromVault:
				return true, fmt.Sprintf("claim %s/%s is restored from vault-tier data (%s) and gets a new volume", ns, claim, why), nil
			}
		}
	}
	policy, _ := spec["persistentVolumeReclaimPolicy"].(string)
	if policy != string(corev1.PersistentVolumeReclaimRetain) {
		if policy == "" {
			policy = "Delete"
		}
		why := "no snapshot recorded"
		if !r.withData() {
			why = "restore without volume data"
		}
		return true, fmt.Sprintf("reclaim policy %s: the volume was deleted with its claim (%s); the claim is provisioned anew, empty", policy, why), nil
	}
	if sc, ok := spec["storageClassName"].(string); ok && sc != "" {
		spec["storageClassName"] = r.mapStorageClass(sc)
	}
	r.mu.Lock()
	r.restored[name] = true
	r.mu.Unlock()
	return false, "", nil
}

// RestoreClaim rewrites a prepared PersistentVolumeClaim (already in its
// target namespace) before it is created. With volume data and a recorded
// snapshot it creates a pre-provisioned VolumeSnapshotContent (the recorded
// handle, deletionPolicy Retain) and a VolumeSnapshot bound to it in the
// target namespace, and makes the snapshot the claim's data source. A claim
// whose volume is not restored loses its volume name and binding
// annotations, so that it is provisioned anew. A claim that already exists
// is left alone (the conflict policy decides).
//
// A claim provisioned anew whose CSI driver (of the recorded snapshot) or
// storage class (after mapping) does not exist in the target is still
// created, with a warning (CSIDriverNotFound, StorageClassNotFound) naming
// the remedy: it stays Pending until the driver or class is installed, and
// then binds without another restore.
func (r *Restorer) RestoreClaim(ctx context.Context, sourceNamespace string, pvc map[string]any) ([]restore.Warning, error) {
	md, _ := pvc["metadata"].(map[string]any)
	spec, _ := pvc["spec"].(map[string]any)
	if md == nil || spec == nil {
		return nil, fmt.Errorf("claim without metadata or spec")
	}
	name, _ := md["name"].(string)
	target, _ := md["namespace"].(string)
	origClass, _ := spec["storageClassName"].(string)
	mappedClass := origClass
	if origClass != "" {
		mappedClass = r.mapStorageClass(origClass)
	}
	src := sourceNamespace + "/" + name
	if live, err := r.kube.CoreV1().PersistentVolumeClaims(target).Get(ctx, name, metav1.GetOptions{}); err == nil {
		// Exists: the conflict policy decides; with Patch, vault-tier
		// data is written into it (not while a pod mounts it).
		if c, _ := r.chooseSource(ctx, src, mappedClass); c == fromVault && r.opts.Conflict == v1alpha1.ConflictPatch {
			return nil, r.planExisting(ctx, src, live, spec)
		}
		return nil, nil
	} else if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("read claim: %w", err)
	}
	if origClass != "" {
		spec["storageClassName"] = mappedClass
	}
	if c, why := r.chooseSource(ctx, src, mappedClass); c == fromVault {
		return nil, r.planVault(ctx, src, target, name, md, spec, why)
	}
	volumeName, _ := spec["volumeName"].(string)
	rec, fromSnapshot := r.recordFor(ctx, sourceNamespace, name, mappedClass)
	if !fromSnapshot && volumeName != "" && r.keepsVolume(ctx, volumeName, target, name) {
		return nil, nil // a retained volume: the claim binds to it again
	}
	// Provisioned anew: say so if the target cannot provision it.
	var warnings []restore.Warning
	claimRef := target + "/" + name
	if fromSnapshot && !r.exists(ctx, r.drivers, rec.Driver, r.driverExists) {
		warnings = append(warnings, restore.Warning{Code: WarnCSIDriverNotFound, Object: "persistentvolumeclaims " + claimRef,
			Message: fmt.Sprintf("claim %s is restored from a snapshot of CSI driver %s, which is not installed in the target cluster (no CSIDriver %q): "+
				"the claim is created but stays Pending. Install the driver %s (with access to snapshot %s) and the claim binds, "+
				"or restore without volume data (--without-volume-data, persistentVolumeRestoreMode: RestoreWithoutVolumeData)",
				claimRef, rec.Driver, rec.Driver, rec.Driver, rec.SnapshotHandle)})
	}
	if sc, _ := spec["storageClassName"].(string); sc != "" && !r.exists(ctx, r.classes, sc, r.classExists) {
		was := ""
		if sc != origClass {
			was = fmt.Sprintf(" (mapped from %s)", origClass)
		}
		warnings = append(warnings, restore.Warning{Code: WarnStorageClassNotFound, Object: "persistentvolumeclaims " + claimRef,
			Message: fmt.Sprintf("claim %s needs storage class %s%s, which does not exist in the target cluster: the claim is created but stays Pending. "+
				"Map it to an existing class (--storage-class-mapping %s=CLASS, storageClassMappings) or create the class and the claim binds",
				claimRef, sc, was, origClass)})
	}
	delete(spec, "volumeName")
	if ann, ok := md["annotations"].(map[string]any); ok {
		for _, a := range bindAnnotations {
			delete(ann, a)
		}
		if len(ann) == 0 {
			delete(md, "annotations")
		}
	}
	if !fromSnapshot {
		// Empty, with the same spec: a data source of the backup (a
		// snapshot or claim that may be gone) is not followed.
		delete(spec, "dataSource")
		delete(spec, "dataSourceRef")
		return warnings, nil
	}
	vsName, err := r.ensureSnapshot(ctx, rec, target, name)
	if err != nil {
		return warnings, err
	}
	group := snapshotGroup
	ref := map[string]any{"apiGroup": group, "kind": "VolumeSnapshot", "name": vsName}
	spec["dataSource"] = ref
	spec["dataSourceRef"] = map[string]any{"apiGroup": group, "kind": "VolumeSnapshot", "name": vsName}
	// The claim must be at least as large as the snapshot.
	if rec.RestoreSize > 0 {
		res, _ := spec["resources"].(map[string]any)
		if res == nil {
			res = map[string]any{}
			spec["resources"] = res
		}
		req, _ := res["requests"].(map[string]any)
		if req == nil {
			req = map[string]any{}
			res["requests"] = req
		}
		size := resource.NewQuantity(rec.RestoreSize, resource.BinarySI)
		cur, _ := req["storage"].(string)
		if q, err := resource.ParseQuantity(cur); err != nil || q.Cmp(*size) < 0 {
			req["storage"] = size.String()
		}
	}
	return warnings, nil
}

// exists reports whether a cluster-scoped object exists, through a cache.
// Only a NotFound answer counts as missing: when the lookup fails otherwise
// (no permission, API server trouble) nothing is reported.
func (r *Restorer) exists(ctx context.Context, cache map[string]bool, name string, get func(context.Context, string) error) bool {
	r.mu.Lock()
	ok, known := cache[name]
	r.mu.Unlock()
	if known {
		return ok
	}
	err := get(ctx, name)
	if err != nil && !apierrors.IsNotFound(err) {
		return true
	}
	r.mu.Lock()
	cache[name] = err == nil
	r.mu.Unlock()
	return err == nil
}

func (r *Restorer) driverExists(ctx context.Context, name string) error {
	_, err := r.kube.StorageV1().CSIDrivers().Get(ctx, name, metav1.GetOptions{})
	return err
}

func (r *Restorer) classExists(ctx context.Context, name string) error {
	_, err := r.kube.StorageV1().StorageClasses().Get(ctx, name, metav1.GetOptions{})
	return err
}

// keepsVolume reports whether a claim keeps its volume name: the volume was
// restored by this restore, or exists in the target cluster free or bound
// to this very claim.
func (r *Restorer) keepsVolume(ctx context.Context, volume, ns, claim string) bool {
	r.mu.Lock()
	restored := r.restored[volume]
	r.mu.Unlock()
	if restored {
		return true
	}
	pv, err := r.kube.CoreV1().PersistentVolumes().Get(ctx, volume, metav1.GetOptions{})
	if err != nil {
		return false
	}
	if pv.DeletionTimestamp != nil || pv.Status.Phase == corev1.VolumeReleased || pv.Status.Phase == corev1.VolumeFailed {
		return false
	}
	ref := pv.Spec.ClaimRef
	return ref == nil || (ref.Namespace == ns && ref.Name == claim)
}

// ensureSnapshot creates (or finds) the pre-provisioned content and the
// VolumeSnapshot of a record in the target namespace and returns the
// snapshot's name. Names derive from the recovery point, the target and
// the claim, so that a restore run twice finds its own objects.
func (r *Restorer) ensureSnapshot(ctx context.Context, rec Record, ns, claim string) (string, error) {
	sum := sha256.Sum256([]byte(r.opts.RecoveryPoint + "/" + ns + "/" + claim + "/" + rec.SnapshotHandle))
	short := hex.EncodeToString(sum[:])[:16]
	contentName := "arca-restore-" + short
	vsName := truncateName("arca-"+claim, 236) + "-" + short[:12]
	if r.opts.DryRun {
		return vsName, nil
	}
	labels := map[string]string{v1alpha1.LabelManagedBy: managedBy}
	if r.opts.RecoveryPoint != "" {
		labels[v1alpha1.LabelRecoveryPoint] = r.opts.RecoveryPoint
	}
	if r.opts.RestoreName != "" {
		labels[v1alpha1.LabelRestore] = r.opts.RestoreName
	}
	handle := rec.SnapshotHandle
	content := &snapv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: contentName, Labels: labels,
			Annotations: map[string]string{AnnSourceClaim: rec.Namespace + "/" + rec.PVC}},
		Spec: snapv1.VolumeSnapshotContentSpec{
			Driver: rec.Driver,
			// Retain: the driver snapshot belongs to the recovery point and
			// is deleted only when the recovery point is forgotten.
			DeletionPolicy:    snapv1.VolumeSnapshotContentRetain,
			Source:            snapv1.VolumeSnapshotContentSource{SnapshotHandle: &handle},
			VolumeSnapshotRef: corev1.ObjectReference{Kind: "VolumeSnapshot", APIVersion: snapshotGroup + "/v1", Namespace: ns, Name: vsName},
		},
	}
	if rec.SnapshotClass != "" {
		if _, err := r.snaps.SnapshotV1().VolumeSnapshotClasses().Get(ctx, rec.SnapshotClass, metav1.GetOptions{}); err == nil {
			class := rec.SnapshotClass
			content.Spec.VolumeSnapshotClassName = &class
		}
	}
	if rec.VolumeMode != "" {
		mode := corev1.PersistentVolumeMode(rec.VolumeMode)
		content.Spec.SourceVolumeMode = &mode
	}
	_, err := r.snaps.SnapshotV1().VolumeSnapshotContents().Create(ctx, content, metav1.CreateOptions{FieldManager: "arca"})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create VolumeSnapshotContent %s (snapshot %s): %w", contentName, handle, err)
	}
	cn := contentName
	vs := &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: vsName, Namespace: ns, Labels: labels},
		Spec:       snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{VolumeSnapshotContentName: &cn}},
	}
	if content.Spec.VolumeSnapshotClassName != nil {
		vs.Spec.VolumeSnapshotClassName = content.Spec.VolumeSnapshotClassName
	}
	_, err = r.snaps.SnapshotV1().VolumeSnapshots(ns).Create(ctx, vs, metav1.CreateOptions{FieldManager: "arca"})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create VolumeSnapshot %s/%s: %w", ns, vsName, err)
	}
	return vsName, nil
}

// sourceNamespace undoes the namespace mapping.
func (r *Restorer) sourceNamespace(target string) string {
	for from, to := range r.opts.NamespaceMappings {
		if to == target {
			return from
		}
	}
	if _, mapped := r.opts.NamespaceMappings[target]; mapped {
		return "" // target is itself mapped elsewhere: nothing came from it
	}
	return target
}

func nested(m map[string]any, keys ...string) any {
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}
