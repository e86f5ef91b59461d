package volume

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/repo"
)

// AnnDefaultSnapshotClass marks the default VolumeSnapshotClass of a driver.
const AnnDefaultSnapshotClass = "snapshot.storage.kubernetes.io/is-default-class"

// SnapshotOptions configure the snapshots of one backup.
type SnapshotOptions struct {
	// Classes are the snapshot location: VolumeSnapshotClasses to use, the
	// first one of a volume's driver wins. Without one for a driver, the
	// class annotated as that driver's default is used.
	Classes []string
	// Timeout bounds the wait for all snapshots to become ready (default 10 min).
	Timeout time.Duration
	// Poll is the interval between readiness checks (default 250 ms).
	Poll time.Duration
	// Workers bound the concurrent creates (default 8).
	Workers int
	// Logf, when set, receives one line per snapshot taken.
	Logf func(format string, args ...any)
	// Hooks, when set, is told just before the snapshots are cut and as
	// each one is cut (application hooks: internal/extension).
	Hooks SnapshotHooks
}

// SnapshotHooks is the hook point between the volume layer and the
// application hooks: it lets a pod be frozen just before the snapshots of
// its claims are cut and thawed as soon as they are, rather than for the
// whole backup.
type SnapshotHooks interface {
	// BeforeSnapshots is called once with every claim about to be
	// snapshotted (sorted), before the first VolumeSnapshot is created
	// (with none when there is nothing to snapshot). An error stops the
	// backup's snapshots before any is created; SnapshotVolumes returns it.
	BeforeSnapshots(ctx context.Context, claims []types.NamespacedName) error
	// SnapshotCut is called once for each of those claims when its
	// snapshot is cut: the driver took it (status.creationTime or
	// readyToUse; it may still be uploading), or it will not be taken
	// (the create failed, the wait timed out, the backup was cancelled).
	SnapshotCut(ctx context.Context, claim types.NamespacedName)
}

// Snapshotter takes the CSI snapshots of a backup. It implements
// backup.VolumeSnapshotter.
type Snapshotter struct {
	kube  kubernetes.Interface
	snaps snapclient.Interface
	opts  SnapshotOptions
}

// NewSnapshotter returns a Snapshotter for the cluster of cfg.
func NewSnapshotter(cfg *rest.Config, opts SnapshotOptions) (*Snapshotter, error) {
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	sc, err := snapclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return NewSnapshotterFor(kc, sc, opts), nil
}

// NewSnapshotterFor returns a Snapshotter using the given clients.
func NewSnapshotterFor(kc kubernetes.Interface, sc snapclient.Interface, opts SnapshotOptions) *Snapshotter {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Minute
	}
	if opts.Poll <= 0 {
		opts.Poll = 250 * time.Millisecond
	}
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	return &Snapshotter{kube: kc, snaps: sc, opts: opts}
}

// pending is one snapshot being taken.
type pending struct {
	claim   *corev1.PersistentVolumeClaim
	pv      *corev1.PersistentVolume
	class   string
	name    string // VolumeSnapshot name
	created bool
	cut     bool // SnapshotHooks told
	done    bool
	lastErr string
}

// SnapshotVolumes snapshots the volumes of the given claims: every
// VolumeSnapshot is created first, then all are awaited together, so that
// the volumes are cut as close in time as possible. It returns the records
// (RecoveryPoint.Volumes) and a warning for every claim whose data is not
// in them. An error means the cluster could not be asked at all.
func (s *Snapshotter) SnapshotVolumes(ctx context.Context, claims []types.NamespacedName) (json.RawMessage, []repo.Warning, error) {
	recs := &Records{Version: RecordsVersion, BackupID: newBackupID()}
	var warnings []repo.Warning
	skip := func(ns, name, code, msg string) {
		recs.Skipped = append(recs.Skipped, Skipped{Namespace: ns, PVC: name, Code: code, Message: msg})
		warnings = append(warnings, repo.Warning{Code: code, Object: "persistentvolumeclaims " + ns + "/" + name, Message: msg})
	}
	// No snapshot CRDs (NotFound) or no right to read the classes
	// (Forbidden): no class, and every CSI claim says why.
	classes, err := s.snaps.SnapshotV1().VolumeSnapshotClasses().List(ctx, metav1.ListOptions{})
	classNote := ""
	switch {
	case apierrors.IsNotFound(err):
		classNote = " (the VolumeSnapshotClass API is not installed)"
	case apierrors.IsForbidden(err):
		classNote = " (listing VolumeSnapshotClasses is forbidden: " + err.Error() + ")"
	case err != nil:
		return nil, nil, fmt.Errorf("list VolumeSnapshotClasses: %w", err)
	}
	var classList []snapv1.VolumeSnapshotClass
	if err == nil && classes != nil {
		classList = classes.Items
	}

	sorted := append([]types.NamespacedName(nil), claims...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].String() < sorted[j].String() })
	var todo []*pending
	for _, c := range sorted {
		pvc, err := s.kube.CoreV1().PersistentVolumeClaims(c.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue // deleted since it was backed up: nothing to snapshot
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read claim %s: %w", c, err)
		}
		if pvc.Annotations[AnnExcludeFromBackup] == "true" {
			skip(c.Namespace, c.Name, WarnExcluded, fmt.Sprintf("claim %s is annotated %s: \"true\"; its data is not backed up", c, AnnExcludeFromBackup))
			continue
		}
		if pvc.Spec.VolumeName == "" {
			skip(c.Namespace, c.Name, WarnNotBound, fmt.Sprintf("claim %s is not bound to a volume (phase %s)", c, pvc.Status.Phase))
			continue
		}
		pv, err := s.kube.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			skip(c.Namespace, c.Name, WarnPVNotFound, fmt.Sprintf("claim %s names volume %s, which does not exist", c, pvc.Spec.VolumeName))
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read volume %s of claim %s: %w", pvc.Spec.VolumeName, c, err)
		}
		if pvc.Status.Phase != corev1.ClaimBound {
			skip(c.Namespace, c.Name, WarnNotBound, fmt.Sprintf("claim %s is not bound to its volume %s (phase %s)", c, pv.Name, pvc.Status.Phase))
			continue
		}
		if pv.Spec.CSI == nil {
			skip(c.Namespace, c.Name, WarnInTreeVolume, fmt.Sprintf("volume %s of claim %s is not a CSI volume; only CSI volumes can be snapshotted", pv.Name, c))
			continue
		}
		class := SelectClass(classList, pv.Spec.CSI.Driver, s.opts.Classes)
		if class == "" {
			skip(c.Namespace, c.Name, WarnNoSnapshotClass, fmt.Sprintf("no VolumeSnapshotClass for driver %s (volume %s of claim %s): configure one in the snapshot location or annotate one %s: \"true\"%s",
				pv.Spec.CSI.Driver, pv.Name, c, AnnDefaultSnapshotClass, classNote))
			continue
		}
		todo = append(todo, &pending{claim: pvc, pv: pv, class: class, name: snapshotName(recs.BackupID, pvc.Name)})
	}

	if h := s.opts.Hooks; h != nil {
		claims := make([]types.NamespacedName, len(todo))
		for i, p := range todo {
			claims[i] = types.NamespacedName{Namespace: p.claim.Namespace, Name: p.claim.Name}
		}
		if err := h.BeforeSnapshots(ctx, claims); err != nil {
			return nil, nil, err
		}
	}
	// Start them all, then wait for them all.
	s.createAll(ctx, recs.BackupID, todo)
	for _, p := range todo {
		if !p.created {
			s.cut(ctx, p)
		}
	}
	if ctx.Err() == nil {
		s.await(ctx, recs, todo)
	}
	for _, p := range todo {
		s.cut(ctx, p) // timed out or cancelled: the hooks must not wait longer
	}
	if err := ctx.Err(); err != nil {
		// Cancelled: no recovery point will name these snapshots.
		s.discard(ctx, recs, todo)
		return nil, nil, err
	}
	for _, p := range todo {
		if p.done {
			continue
		}
		ns, name := p.claim.Namespace, p.claim.Name
		switch {
		case !p.created:
			skip(ns, name, WarnSnapshotFailed, fmt.Sprintf("create VolumeSnapshot %s/%s: %s", ns, p.name, p.lastErr))
		case strings.HasPrefix(p.lastErr, "secure:"):
			skip(ns, name, WarnSnapshotFailed, fmt.Sprintf("VolumeSnapshot %s/%s: %s", ns, p.name, p.lastErr))
		default:
			msg := fmt.Sprintf("VolumeSnapshot %s/%s of claim %s/%s was not ready within %s", ns, p.name, ns, name, s.opts.Timeout)
			if p.lastErr != "" {
				msg += ": " + p.lastErr
			}
			skip(ns, name, WarnTimedOut, msg)
		}
		// A snapshot that is not in the recovery point must not linger.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		s.drop(dctx, ns, p.name)
		cancel()
	}
	sort.Slice(recs.Snapshots, func(i, j int) bool { return recs.Snapshots[i].Key() < recs.Snapshots[j].Key() })
	for _, r := range recs.Snapshots {
		t := r.Time
		if recs.FirstSnapshot == nil || t.Before(*recs.FirstSnapshot) {
			recs.FirstSnapshot = &t
		}
		if recs.LastSnapshot == nil || t.After(*recs.LastSnapshot) {
			recs.LastSnapshot = &t
		}
	}
	if recs.FirstSnapshot != nil {
		recs.SpreadMillis = recs.LastSnapshot.Sub(*recs.FirstSnapshot).Milliseconds()
	}
	data, err := json.Marshal(recs)
	if err != nil {
		return nil, nil, err
	}
	return data, warnings, nil
}

// discard deletes what a cancelled SnapshotVolumes made: the VolumeSnapshots
// not yet secured and the contents already retained.
func (s *Snapshotter) discard(ctx context.Context, recs *Records, todo []*pending) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	for _, p := range todo {
		if p.created && !p.done {
			s.drop(dctx, p.claim.Namespace, p.name)
		}
	}
	if _, _, err := DeleteSnapshots(dctx, s.snaps, recs, DeleteOptions{}); err != nil {
		s.opts.Logf("volume: delete the snapshots of a cancelled backup: %v", err)
	}
}

// drop deletes a VolumeSnapshot that no recovery point will name, and its
// driver snapshot: a content already bound to it (a Retain class would keep
// it) is switched to deletionPolicy Delete first.
func (s *Snapshotter) drop(ctx context.Context, ns, name string) {
	vs, err := s.snaps.SnapshotV1().VolumeSnapshots(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return
	}
	// snapshot-controller names a dynamic content after the snapshot's UID;
	// the status may not name it yet.
	content := "snapcontent-" + string(vs.UID)
	if vs.Status != nil && vs.Status.BoundVolumeSnapshotContentName != nil {
		content = *vs.Status.BoundVolumeSnapshotContentName
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"deletionPolicy": string(snapv1.VolumeSnapshotContentDelete)}})
	if _, err := s.snaps.SnapshotV1().VolumeSnapshotContents().Patch(ctx, content, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "arca"}); err != nil && !apierrors.IsNotFound(err) {
		s.opts.Logf("volume: set deletionPolicy Delete on %s: %v", content, err)
	}
	if err := s.snaps.SnapshotV1().VolumeSnapshots(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		s.opts.Logf("volume: delete VolumeSnapshot %s/%s: %v", ns, name, err)
	}
}

// SelectClass picks the VolumeSnapshotClass for driver: the first of
// configured that exists and belongs to the driver; else the driver's class
// annotated as default (the first by name when several are). "" if none.
func SelectClass(classes []snapv1.VolumeSnapshotClass, driver string, configured []string) string {
	byName := map[string]*snapv1.VolumeSnapshotClass{}
	for i := range classes {
		byName[classes[i].Name] = &classes[i]
	}
	for _, name := range configured {
		if c, ok := byName[name]; ok && c.Driver == driver {
			return name
		}
	}
	var defaults []string
	for _, c := range classes {
		if c.Driver == driver && c.Annotations[AnnDefaultSnapshotClass] == "true" {
			defaults = append(defaults, c.Name)
		}
	}
	sort.Strings(defaults)
	if len(defaults) > 0 {
		return defaults[0]
	}
	return ""
}

func (s *Snapshotter) createAll(ctx context.Context, backupID string, todo []*pending) {
	sem := make(chan struct{}, s.opts.Workers)
	var wg sync.WaitGroup
	for _, p := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			class := p.class
			pvcName := p.claim.Name
			vs := &snapv1.VolumeSnapshot{
				ObjectMeta: metav1.ObjectMeta{
					Name:      p.name,
					Namespace: p.claim.Namespace,
					Labels:    map[string]string{LabelBackupID: backupID, v1alpha1.LabelManagedBy: managedBy},
				},
				Spec: snapv1.VolumeSnapshotSpec{
					Source:                  snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvcName},
					VolumeSnapshotClassName: &class,
				},
			}
			_, err := s.snaps.SnapshotV1().VolumeSnapshots(p.claim.Namespace).Create(ctx, vs, metav1.CreateOptions{FieldManager: "arca"})
			if err != nil {
				p.lastErr = err.Error()
				return
			}
			p.created = true
		}()
	}
	wg.Wait()
}

// await polls the backup's snapshots (one list request per round) until
// each is ready and secured, or the timeout passes.
func (s *Snapshotter) await(ctx context.Context, recs *Records, todo []*pending) {
	deadline := time.Now().Add(s.opts.Timeout)
	byKey := map[string]*pending{}
	left := 0
	for _, p := range todo {
		if p.created {
			byKey[p.claim.Namespace+"/"+p.name] = p
			left++
		}
	}
	for left > 0 && ctx.Err() == nil {
		list, err := s.snaps.SnapshotV1().VolumeSnapshots("").List(ctx, metav1.ListOptions{LabelSelector: LabelBackupID + "=" + recs.BackupID})
		if err == nil {
			for i := range list.Items {
				vs := &list.Items[i]
				p := byKey[vs.Namespace+"/"+vs.Name]
				if p == nil || p.done || strings.HasPrefix(p.lastErr, "secure:") {
					continue
				}
				st := vs.Status
				if st != nil && st.Error != nil && st.Error.Message != nil {
					p.lastErr = *st.Error.Message
				}
				if st != nil && (st.CreationTime != nil || st.ReadyToUse != nil && *st.ReadyToUse) {
					s.cut(ctx, p)
				}
				if st == nil || st.ReadyToUse == nil || !*st.ReadyToUse || st.BoundVolumeSnapshotContentName == nil {
					continue
				}
				rec, err := s.secure(ctx, recs.BackupID, p, vs)
				if err != nil {
					p.lastErr = "secure: " + err.Error()
					left--
					continue
				}
				recs.Snapshots = append(recs.Snapshots, rec)
				p.done = true
				left--
				s.opts.Logf("volume: snapshot of %s/%s ready (content %s, handle %s)", rec.Namespace, rec.PVC, rec.Content, rec.SnapshotHandle)
			}
		}
		if left == 0 || !time.Now().Before(deadline) {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(s.opts.Poll):
		}
	}
}

// cut tells the hooks, once, that p's snapshot is cut (or never will be).
func (s *Snapshotter) cut(ctx context.Context, p *pending) {
	if p.cut || s.opts.Hooks == nil {
		return
	}
	p.cut = true
	s.opts.Hooks.SnapshotCut(ctx, types.NamespacedName{Namespace: p.claim.Namespace, Name: p.claim.Name})
}

// secure makes a ready snapshot's content outlive the snapshot (deletion
// policy Retain, Arca's labels), records it and deletes the VolumeSnapshot:
// the application namespace keeps no object of Arca's, and deleting the
// namespace cannot delete the backup.
func (s *Snapshotter) secure(ctx context.Context, backupID string, p *pending, vs *snapv1.VolumeSnapshot) (Record, error) {
	contents := s.snaps.SnapshotV1().VolumeSnapshotContents()
	name := *vs.Status.BoundVolumeSnapshotContentName
	patch, _ := json.Marshal(map[string]any{
		"metadata": map[string]any{
			"labels":      map[string]string{LabelBackupID: backupID, v1alpha1.LabelManagedBy: managedBy},
			"annotations": map[string]string{AnnSourceClaim: p.claim.Namespace + "/" + p.claim.Name},
		},
		"spec": map[string]any{"deletionPolicy": string(snapv1.VolumeSnapshotContentRetain)},
	})
	content, err := contents.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "arca"})
	if err != nil {
		return Record{}, fmt.Errorf("retain VolumeSnapshotContent %s: %w", name, err)
	}
	if content.Spec.DeletionPolicy != snapv1.VolumeSnapshotContentRetain {
		return Record{}, fmt.Errorf("VolumeSnapshotContent %s kept deletionPolicy %s", name, content.Spec.DeletionPolicy)
	}
	if content.Status == nil || content.Status.SnapshotHandle == nil {
		return Record{}, fmt.Errorf("VolumeSnapshotContent %s has no snapshot handle", name)
	}
	rec := Record{
		Namespace:      p.claim.Namespace,
		PVC:            p.claim.Name,
		PV:             p.pv.Name,
		Driver:         content.Spec.Driver,
		SnapshotHandle: *content.Status.SnapshotHandle,
		SnapshotClass:  p.class,
		VolumeHandle:   p.pv.Spec.CSI.VolumeHandle,
		StorageClass:   p.pv.Spec.StorageClassName,
		Content:        name,
		Snapshot:       vs.Name,
	}
	if p.claim.Spec.StorageClassName != nil && *p.claim.Spec.StorageClassName != "" {
		rec.StorageClass = *p.claim.Spec.StorageClassName
	}
	if p.pv.Spec.VolumeMode != nil {
		rec.VolumeMode = string(*p.pv.Spec.VolumeMode)
	}
	if content.Status.RestoreSize != nil {
		rec.RestoreSize = *content.Status.RestoreSize
	} else if vs.Status.RestoreSize != nil {
		rec.RestoreSize = vs.Status.RestoreSize.Value()
	}
	switch {
	case content.Status.CreationTime != nil:
		rec.Time = time.Unix(0, *content.Status.CreationTime).UTC()
	case vs.Status.CreationTime != nil:
		rec.Time = vs.Status.CreationTime.UTC()
	default:
		rec.Time = time.Now().UTC()
	}
	err = s.snaps.SnapshotV1().VolumeSnapshots(vs.Namespace).Delete(ctx, vs.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		// The content is retained either way; the snapshot object stays behind.
		s.opts.Logf("volume: delete VolumeSnapshot %s/%s: %v", vs.Namespace, vs.Name, err)
	}
	return rec, nil
}

// snapshotName is the VolumeSnapshot of a claim in one backup.
func snapshotName(backupID, pvc string) string {
	return truncateName("arca-"+backupID+"-"+pvc, 253)
}

func truncateName(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.TrimRight(s[:n], "-.")
}

func newBackupID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// LabelRecoveryPoint labels the retained contents of a written recovery
// point with arca.io/recovery-point (the label value of its ID), so that
// `kubectl get volumesnapshotcontents -l arca.io/recovery-point=…` finds
// them. The recovery point ID exists only once the manifest is written,
// hence after the backup.
func (s *Snapshotter) LabelRecoveryPoint(ctx context.Context, records json.RawMessage, label string) error {
	recs, err := Decode(records)
	if err != nil {
		return err
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{v1alpha1.LabelRecoveryPoint: label}}})
	var errs []error
	for _, rec := range recs.Snapshots {
		_, err := s.snaps.SnapshotV1().VolumeSnapshotContents().Patch(ctx, rec.Content, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "arca"})
		if err != nil {
			errs = append(errs, fmt.Errorf("label VolumeSnapshotContent %s: %w", rec.Content, err))
		}
	}
	return errors.Join(errs...)
}
