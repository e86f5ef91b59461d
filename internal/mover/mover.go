// Package mover is the vault tier's data mover in the cluster (issue 15):
// an operations.VolumeMover that copies each snapshotted volume into the
// repository through a short-lived pod. For every snapshot record it
// provisions, in the storage location's namespace, a VolumeSnapshotContent
// pre-bound to the retained driver snapshot (deletionPolicy Retain: the
// backup's own content and the snapshot stay untouched), a VolumeSnapshot
// bound to it and a claim from that snapshot, then runs a pod from the
// extension's image (`arca datamover backup`) that mounts the claim
// read-only (a block-mode claim as a device) and stores its file tree in
// the repository with the storage location's credentials. The pod commits
// a holder recovery point (tag arca.io/volume-holder) and reports the
// volume's record in its termination message; the backup's recovery
// point then names the tree (operations.MoveResult). The temporary objects
// are labelled arca.io/data-mover and deleted when the move ends, on
// failure and cancellation too; Cleanup removes what a crash left.
// Behaviour and codes: docs/volumes.md.
package mover

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/operations"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/volume"
	"github.com/arca-backup/arca/internal/volumedata"
)

const (
	// ContainerName is the mover pod's container.
	ContainerName = "mover"
	// DefaultConcurrency is how many mover pods run at once by default.
	DefaultConcurrency = 2
	// DefaultMemoryLimit is the mover container's memory limit.
	DefaultMemoryLimit = "256Mi"
	// DefaultCPULimit is the mover container's CPU limit: the mover is
	// CPU-bound (hashing, chunking, compression, encryption; about
	// 7-10 CPU-seconds per GiB, docs/benchmarks.md) and reads, chunks and
	// seals in parallel, so one CPU would halve its throughput. The
	// request stays small; the limit only caps a busy node.
	DefaultCPULimit = "2"
	// sourceDir and sourceDevice are where the pod sees the volume.
	sourceDir    = "/mnt/volume"
	sourceDevice = "/dev/arca-volume"
	// goMemLimit keeps the Go heap below the container's limit.
	goMemLimitFraction = 0.75
)

// Options configure a Mover.
type Options struct {
	// Location is the storage location the backup writes to: the pods use
	// its URL and the Secret it names, and are created in its namespace.
	Location *v1alpha1.StorageLocation
	// Image is the image the pods run (the extension's own).
	Image            string
	ImagePullSecrets []corev1.LocalObjectReference
	// Concurrency: mover pods at once (default DefaultConcurrency).
	Concurrency int
	// MemoryLimit and CPULimit of the mover container (default DefaultMemoryLimit, DefaultCPULimit).
	MemoryLimit, CPULimit string
	// StorageRetry is the movers' `--storage-retry` (zero: the storage's
	// default).
	StorageRetry time.Duration
	// StartTimeout bounds each wait before the copy starts: the snapshot
	// ready, the pod running (default 5 min).
	StartTimeout time.Duration
	// Progress, when set, gets the bytes moved so far, about every second.
	Progress func(Progress)
	Logf     func(format string, args ...any)
	// HolderJob, when set, tags each holder point with
	// v1alpha1.TagVolumeHolderJob (the cluster and the BackupJob), so that
	// a holder an extension crash leaves is found and forgotten later.
	HolderJob string
}

// Progress is how far the movers of one backup are.
type Progress struct {
	BytesDone, BytesTotal int64
	BytesPerSecond        float64
	ETA                   time.Duration
}

// Mover moves volume data through pods; one Mover serves one backup.
type Mover struct {
	cs    kubernetes.Interface
	snaps snapclient.Interface
	opts  Options
	mem   resource.Quantity
	cpu   resource.Quantity
}

var _ operations.VolumeMover = (*Mover)(nil)

// Error is a failed move, with the job code that names its cause.
type Error struct {
	Code   string
	Volume string
	Err    error
}

func (e *Error) Error() string { return fmt.Sprintf("volume %s: %v", e.Volume, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// JobCode is the job error code (v1alpha1.CodeVolumeMover…).
func (e *Error) JobCode() string { return e.Code }

// New checks the options and connects to the cluster.
func New(cfg *rest.Config, opts Options) (*Mover, error) {
	if opts.Location == nil || opts.Image == "" {
		return nil, errors.New("data mover: a storage location and an image are required")
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.MemoryLimit == "" {
		opts.MemoryLimit = DefaultMemoryLimit
	}
	if opts.CPULimit == "" {
		opts.CPULimit = DefaultCPULimit
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 5 * time.Minute
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	mem, err := resource.ParseQuantity(opts.MemoryLimit)
	if err != nil {
		return nil, fmt.Errorf("data mover memory limit %q: %w", opts.MemoryLimit, err)
	}
	cpu, err := resource.ParseQuantity(opts.CPULimit)
	if err != nil {
		return nil, fmt.Errorf("data mover CPU limit %q: %w", opts.CPULimit, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	snaps, err := snapclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Mover{cs: cs, snaps: snaps, opts: opts, mem: mem, cpu: cpu}, nil
}

// volumeState is one volume's move as the progress reporter sees it.
type volumeState struct {
	done, total atomic.Int64
}

// MoveVolumes implements operations.VolumeMover: at most Concurrency
// volumes at once; the first failure stops the others (their pods are
// deleted) and is returned with the holders already committed.
func (m *Mover) MoveVolumes(ctx context.Context, recs *volume.Records) (*operations.MoveResult, error) {
	n := len(recs.Snapshots)
	res := &operations.MoveResult{}
	if n == 0 {
		return res, nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	states := make([]volumeState, n)
	for i, r := range recs.Snapshots {
		states[i].total.Store(r.RestoreSize)
	}
	stopProgress := m.reportProgress(states)
	defer stopProgress()

	results := make([]*volumedata.MoverResult, n)
	errs := make([]error, n)
	sem := make(chan struct{}, m.opts.Concurrency)
	var wg sync.WaitGroup
	for i := range recs.Snapshots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			if ctx.Err() != nil {
				return
			}
			r, err := m.moveOne(ctx, recs.BackupID, i, recs.Snapshots[i], &states[i])
			results[i], errs[i] = r, err
			if err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r != nil {
			if id, err := repo.ParseID(r.RecoveryPoint); err == nil {
				res.Holders = append(res.Holders, id)
			}
		}
	}
	// The first failure cancelled the others with itself as the cause; a
	// cancelled backup (the job's spec.cancel) gives the caller's cause.
	if ctx.Err() != nil {
		return res, context.Cause(ctx)
	}
	for _, err := range errs {
		if err != nil {
			return res, err
		}
	}
	for i, r := range results {
		key := recs.Snapshots[i].Key()
		if r.Volume.Name != key {
			return res, &Error{Code: v1alpha1.CodeVolumeMoverFailed, Volume: key, Err: fmt.Errorf("the mover pod reported volume %q", r.Volume.Name)}
		}
		res.Data = append(res.Data, r.Volume)
		for _, w := range r.Warnings {
			res.Warnings = append(res.Warnings, repo.Warning{Code: volumedata.WarnFileNotFaithful, Message: w.Message, Object: key + ":/" + w.Path})
		}
		if r.WarningsOmitted > 0 {
			res.Warnings = append(res.Warnings, repo.Warning{Code: volumedata.WarnFileNotFaithful, Object: key,
				Message: fmt.Sprintf("%d more files not stored faithfully (listed in the holder recovery point's summary only while it existed; run `arca datamover backup` by hand to see them)", r.WarningsOmitted)})
		}
	}
	return res, nil
}

// reportProgress calls opts.Progress every second with the sum over the
// volumes, until stopped.
func (m *Mover) reportProgress(states []volumeState) func() {
	if m.opts.Progress == nil {
		return func() {}
	}
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			var p Progress
			for i := range states {
				d, tot := states[i].done.Load(), states[i].total.Load()
				p.BytesDone += d
				p.BytesTotal += max(d, tot)
			}
			if secs := time.Since(start).Seconds(); secs > 0 && p.BytesDone > 0 {
				p.BytesPerSecond = float64(p.BytesDone) / secs
				p.ETA = time.Duration(float64(p.BytesTotal-p.BytesDone) / p.BytesPerSecond * float64(time.Second))
			}
			m.opts.Progress(p)
		}
	}()
	return func() { close(done); wg.Wait() }
}

// names of one volume's temporary objects (all the same name).
func objectName(backupID string, i int) string {
	return fmt.Sprintf("arca-mover-%s-%d", backupID, i)
}

// moveOne moves one volume and always deletes its temporary objects.
func (m *Mover) moveOne(ctx context.Context, backupID string, i int, rec volume.Record, st *volumeState) (res *volumedata.MoverResult, err error) {
	key := rec.Key()
	name := objectName(backupID, i)
	ns := m.opts.Location.Namespace
	labels := map[string]string{v1alpha1.LabelDataMover: backupID, v1alpha1.LabelManagedBy: "arca"}
	fail := func(code string, format string, args ...any) error {
		return &Error{Code: code, Volume: key, Err: fmt.Errorf(format, args...)}
	}
	defer func() {
		if cerr := m.deleteObjects(ctx, ns, name); cerr != nil {
			m.opts.Logf("data mover: %s: %v", key, cerr)
			if err == nil {
				err = fail(v1alpha1.CodeVolumeMoverFailed, "the volume was moved but its temporary objects were not all deleted: %v", cerr)
			}
		}
	}()
	start := time.Now()
	block := rec.VolumeMode == string(corev1.PersistentVolumeBlock)

	// 1. A content pre-bound to the retained snapshot, and its snapshot.
	content := &snapv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: snapv1.VolumeSnapshotContentSpec{
			DeletionPolicy:    snapv1.VolumeSnapshotContentRetain,
			Driver:            rec.Driver,
			Source:            snapv1.VolumeSnapshotContentSource{SnapshotHandle: ptr.To(rec.SnapshotHandle)},
			VolumeSnapshotRef: corev1.ObjectReference{APIVersion: "snapshot.storage.k8s.io/v1", Kind: "VolumeSnapshot", Namespace: ns, Name: name},
		},
	}
	if rec.SnapshotClass != "" {
		content.Spec.VolumeSnapshotClassName = ptr.To(rec.SnapshotClass)
	}
	if rec.VolumeMode != "" {
		content.Spec.SourceVolumeMode = ptr.To(corev1.PersistentVolumeMode(rec.VolumeMode))
	}
	if _, err := m.snaps.SnapshotV1().VolumeSnapshotContents().Create(ctx, content, metav1.CreateOptions{}); err != nil {
		return nil, fail(v1alpha1.CodeVolumeMoverFailed, "create VolumeSnapshotContent %s for snapshot %s: %v", name, rec.SnapshotHandle, err)
	}
	snap := &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec:       snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{VolumeSnapshotContentName: ptr.To(name)}},
	}
	if rec.SnapshotClass != "" {
		snap.Spec.VolumeSnapshotClassName = ptr.To(rec.SnapshotClass)
	}
	if _, err := m.snaps.SnapshotV1().VolumeSnapshots(ns).Create(ctx, snap, metav1.CreateOptions{}); err != nil {
		return nil, fail(v1alpha1.CodeVolumeMoverFailed, "create VolumeSnapshot %s/%s: %v", ns, name, err)
	}
	size, err := m.waitSnapshot(ctx, ns, name)
	if err != nil {
		return nil, fail(v1alpha1.CodeVolumeMoverFailed, "snapshot %s of %s (handle %s) not ready: %w", name, key, rec.SnapshotHandle, err)
	}
	if size <= 0 {
		size = rec.RestoreSize
	}
	if size <= 0 {
		return nil, fail(v1alpha1.CodeVolumeMoverFailed, "neither the snapshot nor the record gives the volume's size; the claim from the snapshot cannot be sized")
	}
	if st.total.Load() <= 0 {
		st.total.Store(size)
	}

	// 2. A claim from it, mounted read-only.
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			DataSource:  &corev1.TypedLocalObjectReference{APIGroup: ptr.To("snapshot.storage.k8s.io"), Kind: "VolumeSnapshot", Name: name},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: *resource.NewQuantity(size, resource.BinarySI)}},
		},
	}
	if rec.StorageClass != "" {
		pvc.Spec.StorageClassName = ptr.To(rec.StorageClass)
	}
	if block {
		pvc.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeBlock)
	}
	if _, err := m.cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		return nil, fail(v1alpha1.CodeVolumeMoverFailed, "create PersistentVolumeClaim %s/%s from the snapshot: %v", ns, name, err)
	}

	// 3. The mover pod.
	if _, err := m.cs.CoreV1().Pods(ns).Create(ctx, m.pod(name, ns, labels, key, backupID, block), metav1.CreateOptions{}); err != nil {
		return nil, fail(v1alpha1.CodeVolumeMoverFailed, "create mover pod %s/%s: %v", ns, name, err)
	}
	m.opts.Logf("data mover: %s: pod %s/%s started", key, ns, name)
	res, err = m.waitPod(ctx, ns, name, key, st)
	if err != nil {
		return res, err
	}
	st.done.Store(res.Volume.Bytes)
	m.opts.Logf("data mover: %s: %d files, %d bytes (%d new) in %s", key, res.Volume.Files, res.Volume.Bytes, res.Volume.NewBytes, time.Since(start).Round(time.Millisecond))
	return res, nil
}

// pod is the mover pod of one volume.
func (m *Mover) pod(name, ns string, labels map[string]string, key, backupID string, block bool) *corev1.Pod {
	loc := m.opts.Location
	secretEnv := func(env, secretKey string, optional bool) corev1.EnvVar {
		return corev1.EnvVar{Name: env, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: loc.Spec.CredentialsSecret}, Key: secretKey, Optional: ptr.To(optional)}}}
	}
	source := sourceDir
	if block {
		source = sourceDevice
	}
	memLimit := m.mem.Value()
	c := corev1.Container{
		Name:  ContainerName,
		Image: m.opts.Image,
		Args: []string{"datamover", "backup", "--repo", loc.Spec.URL, "--source", source, "--volume", key,
			"--tag", v1alpha1.TagVolumeHolder + "=" + backupID, "--result-file", "/dev/termination-log", "--progress-json", "--storage-retry", m.opts.StorageRetry.String()},
		Env: []corev1.EnvVar{
			secretEnv("ARCA_PASSWORD", v1alpha1.SecretKeyPassword, false),
			secretEnv("AZURE_STORAGE_KEY", v1alpha1.SecretKeyAzureAccountKey, true),
			secretEnv("AZURE_STORAGE_SAS_TOKEN", v1alpha1.SecretKeyAzureSASToken, true),
			secretEnv("AZURE_STORAGE_CONNECTION_STRING", v1alpha1.SecretKeyAzureConnectionString, true),
			secretEnv("AWS_ACCESS_KEY_ID", v1alpha1.SecretKeyAWSAccessKeyID, true),
			secretEnv("AWS_SECRET_ACCESS_KEY", v1alpha1.SecretKeyAWSSecretAccessKey, true),
			secretEnv("AWS_SESSION_TOKEN", v1alpha1.SecretKeyAWSSessionToken, true),
			{Name: "GOMEMLIMIT", Value: fmt.Sprint(int64(float64(memLimit) * goMemLimitFraction))},
			{Name: "HOME", Value: "/tmp"},
		},
		Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceMemory: m.mem, corev1.ResourceCPU: m.cpu},
			Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi"), corev1.ResourceCPU: resource.MustParse("100m")},
		},
		TerminationMessagePath:   "/dev/termination-log",
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		// Root, but only to read every file whatever its owner and mode
		// (CAP_DAC_READ_SEARCH); no other capability, no escalation, a
		// read-only root file system and the volume mounted read-only.
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: ptr.To[int64](0), RunAsNonRoot: ptr.To(false), AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"DAC_READ_SEARCH"}},
		},
		VolumeMounts: []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
	}
	if m.opts.HolderJob != "" {
		c.Args = append(c.Args, "--tag", v1alpha1.TagVolumeHolderJob+"="+m.opts.HolderJob)
	}
	if block {
		c.VolumeDevices = []corev1.VolumeDevice{{Name: "volume", DevicePath: sourceDevice}}
	} else {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "volume", MountPath: sourceDir, ReadOnly: true})
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			// The mover talks to the repository, never to the API server.
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			ImagePullSecrets:              m.opts.ImagePullSecrets,
			SecurityContext:               &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers:                    []corev1.Container{c},
			Volumes: []corev1.Volume{
				{Name: "volume", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name, ReadOnly: true}}},
				{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("64Mi"))}}},
			},
		},
	}
}

// waitSnapshot waits until the VolumeSnapshot is ready and returns its
// restore size.
func (m *Mover) waitSnapshot(ctx context.Context, ns, name string) (int64, error) {
	deadline := time.Now().Add(m.opts.StartTimeout)
	for {
		s, err := m.snaps.SnapshotV1().VolumeSnapshots(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return 0, err
		}
		if st := s.Status; st != nil {
			if st.ReadyToUse != nil && *st.ReadyToUse {
				if st.RestoreSize != nil {
					return st.RestoreSize.Value(), nil
				}
				return 0, nil
			}
			if st.Error != nil && st.Error.Message != nil {
				return 0, errors.New(*st.Error.Message)
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("not ready after %s", m.opts.StartTimeout)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return 0, err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// waitPod follows the mover pod until it ends and reads its result.
func (m *Mover) waitPod(ctx context.Context, ns, name, key string, st *volumeState) (*volumedata.MoverResult, error) {
	fail := func(code string, format string, args ...any) error {
		return &Error{Code: code, Volume: key, Err: fmt.Errorf(format, args...)}
	}
	deadline := time.Now().Add(m.opts.StartTimeout)
	following := false
	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	for {
		p, err := m.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil, fail(v1alpha1.CodeVolumeMoverFailed, "mover pod %s/%s was deleted before it finished", ns, name)
		case err != nil && ctx.Err() != nil:
			return nil, context.Cause(ctx)
		case err != nil:
			return nil, fail(v1alpha1.CodeVolumeMoverFailed, "read mover pod %s/%s: %v", ns, name, err)
		}
		if p.DeletionTimestamp != nil {
			return nil, fail(v1alpha1.CodeVolumeMoverFailed, "mover pod %s/%s was deleted before it finished (by someone else than the mover)", ns, name)
		}
		term := terminated(p)
		switch {
		case p.Status.Phase == corev1.PodSucceeded && term != nil:
			var res volumedata.MoverResult
			if err := json.Unmarshal([]byte(term.Message), &res); err != nil || res.RecoveryPoint == "" {
				return nil, fail(v1alpha1.CodeVolumeMoverFailed, "mover pod %s/%s succeeded but its result (termination message %q) does not read: %v", ns, name, clip(term.Message), err)
			}
			return &res, nil
		case p.Status.Phase == corev1.PodFailed:
			return nil, podFailure(p, term, key)
		case p.Status.Phase == corev1.PodRunning && !following:
			following = true
			go m.follow(followCtx, ns, name, st)
		case p.Status.Phase == corev1.PodPending && time.Now().After(deadline):
			why := "still Pending"
			for _, c := range p.Status.Conditions {
				if c.Status == corev1.ConditionFalse && c.Message != "" {
					why += ": " + c.Message
				}
			}
			for _, cs := range p.Status.ContainerStatuses {
				if w := cs.State.Waiting; w != nil && w.Reason != "" {
					why += fmt.Sprintf(" (container %s: %s %s)", cs.Name, w.Reason, w.Message)
				}
			}
			return nil, fail(v1alpha1.CodeVolumeMoverFailed, "mover pod %s/%s did not start within %s: %s", ns, name, m.opts.StartTimeout, why)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return nil, err
		}
	}
}

func terminated(p *corev1.Pod) *corev1.ContainerStateTerminated {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == ContainerName && cs.State.Terminated != nil {
			return cs.State.Terminated
		}
	}
	return nil
}

// podFailure names why a mover pod failed.
func podFailure(p *corev1.Pod, term *corev1.ContainerStateTerminated, key string) error {
	where := p.Namespace + "/" + p.Name
	if p.Spec.NodeName != "" {
		where += " on node " + p.Spec.NodeName
	}
	switch {
	case p.Status.Reason == "Evicted":
		return &Error{Code: v1alpha1.CodeVolumeMoverEvicted, Volume: key, Err: fmt.Errorf("mover pod %s was evicted: %s", where, p.Status.Message)}
	case term != nil && term.Reason == "OOMKilled":
		return &Error{Code: v1alpha1.CodeVolumeMoverOOMKilled, Volume: key, Err: fmt.Errorf(
			"mover pod %s was killed for exceeding its memory limit (exit code %d); raise the extension's --mover-memory-limit", where, term.ExitCode)}
	case term != nil:
		msg := strings.TrimSpace(term.Message)
		if msg == "" {
			msg = term.Reason
		}
		if term.ExitCode > 128 {
			msg += fmt.Sprintf(" (killed by signal %d)", term.ExitCode-128)
		}
		return &Error{Code: v1alpha1.CodeVolumeMoverFailed, Volume: key, Err: fmt.Errorf("mover pod %s failed with exit code %d: %s", where, term.ExitCode, clip(msg))}
	default:
		return &Error{Code: v1alpha1.CodeVolumeMoverFailed, Volume: key, Err: fmt.Errorf("mover pod %s failed: %s %s", where, p.Status.Reason, p.Status.Message)}
	}
}

func clip(s string) string {
	if len(s) > 500 {
		return s[:500] + "…"
	}
	return s
}

// follow reads the pod's progress lines from its log.
func (m *Mover) follow(ctx context.Context, ns, name string, st *volumeState) {
	rc, err := m.cs.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Container: ContainerName, Follow: true}).Stream(ctx)
	if err != nil {
		return
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var l volumedata.MoverProgressLine
		if json.Unmarshal(line, &l) == nil && l.Progress != nil {
			st.done.Store(l.Progress.Bytes)
			// A file system's used bytes may count more than the volume
			// (a shared disk): the claim's size bounds the estimate.
			if t := l.Progress.TotalBytes; t > 0 && (st.total.Load() <= 0 || t < st.total.Load()) {
				st.total.Store(t)
			}
		}
	}
}

// deleteObjects deletes one volume's temporary objects: the pod first
// (waiting until it is gone, so the claim is released), then the claim,
// the snapshot and the content. It runs even when ctx is cancelled.
func (m *Mover) deleteObjects(ctx context.Context, ns, name string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	var errs []error
	ignore := func(what string, err error) {
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s %s: %w", what, name, err))
		}
	}
	ignore("pod", m.cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}))
	for {
		_, err := m.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("pod %s/%s not gone: %w", ns, name, ctx.Err()))
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	ignore("claim", m.cs.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, name, metav1.DeleteOptions{}))
	ignore("volume snapshot", m.snaps.SnapshotV1().VolumeSnapshots(ns).Delete(ctx, name, metav1.DeleteOptions{}))
	ignore("volume snapshot content", m.snaps.SnapshotV1().VolumeSnapshotContents().Delete(ctx, name, metav1.DeleteOptions{}))
	return errors.Join(errs...)
}

// Cleanup deletes every temporary object of the data mover (label
// arca.io/data-mover) in namespace ns and every such content: what a
// previous extension left when it stopped mid-move. Call it when no move
// runs (the extension does when it becomes the leader). It returns how
// many objects it deleted.
func Cleanup(ctx context.Context, cfg *rest.Config, ns string) (int, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return 0, err
	}
	snaps, err := snapclient.NewForConfig(cfg)
	if err != nil {
		return 0, err
	}
	sel := metav1.ListOptions{LabelSelector: v1alpha1.LabelDataMover}
	n := 0
	var errs []error
	del := func(what string, names []string, fn func(name string) error) {
		for _, name := range names {
			if err := fn(name); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete %s %s: %w", what, name, err))
				continue
			}
			n++
		}
	}
	if l, err := cs.CoreV1().Pods(ns).List(ctx, sel); err != nil {
		errs = append(errs, err)
	} else {
		del("pod", podNames(l.Items), func(name string) error {
			return cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		})
	}
	if l, err := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, sel); err != nil {
		errs = append(errs, err)
	} else {
		var names []string
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
		del("claim", names, func(name string) error {
			return cs.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, name, metav1.DeleteOptions{})
		})
	}
	// Without the snapshot API there is nothing of the mover's to find.
	if l, err := snaps.SnapshotV1().VolumeSnapshots(ns).List(ctx, sel); err == nil {
		var names []string
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
		del("volume snapshot", names, func(name string) error {
			return snaps.SnapshotV1().VolumeSnapshots(ns).Delete(ctx, name, metav1.DeleteOptions{})
		})
	}
	if l, err := snaps.SnapshotV1().VolumeSnapshotContents().List(ctx, sel); err == nil {
		var names []string
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
		del("volume snapshot content", names, func(name string) error {
			return snaps.SnapshotV1().VolumeSnapshotContents().Delete(ctx, name, metav1.DeleteOptions{})
		})
	}
	return n, errors.Join(errs...)
}

func podNames(ps []corev1.Pod) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}
