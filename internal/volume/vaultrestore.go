package volume

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/units"
	"github.com/arca-backup/arca/internal/volumedata"
)

// Restore codes of claims restored from vault-tier data (the item fails
// with the code in its reason, and the restore's warnings carry it).
const (
	// CodeVolumeDataRestoreFailed: the restore pod that writes a claim's
	// vault-tier data failed, timed out or could not be created.
	CodeVolumeDataRestoreFailed = "VolumeDataRestoreFailed"
	// CodeVolumeInUse: vault-tier data would be written into an existing
	// claim (conflictPolicy Patch) that a pod mounts.
	CodeVolumeInUse = "VolumeInUse"
	// CodeVolumeTooSmall: the claim (its request, or an existing claim's
	// capacity) is smaller than the vault-tier data.
	CodeVolumeTooSmall = "VolumeTooSmall"
)

// AnnVolumeData on a claim restored from vault-tier data: "vault <recovery point>".
const AnnVolumeData = "arca.io/volume-data"

// LabelComponent names what an Arca pod does (the restore pods: volume-restore).
const LabelComponent = "arca.io/component"

// ClaimError is a claim that cannot be restored, with a stable code.
type ClaimError struct {
	Code  string
	Claim string // target namespace/name
	Err   error
	// Stop: the restore cannot go on (the repository is unreachable):
	// it stops before the next tier, so that no workload starts on a
	// claim that lacks its data.
	Stop bool
}

func (e *ClaimError) Error() string { return e.Code + ": " + e.Err.Error() }
func (e *ClaimError) Unwrap() error { return e.Err }

// ErrorCode returns the code (the restore engine puts it into a warning).
func (e *ClaimError) ErrorCode() string { return e.Code }

// JobCode is the code of a job that fails with it.
func (e *ClaimError) JobCode() string { return e.Code }

// StopsRestore tells the restore engine to stop before the next tier.
func (e *ClaimError) StopsRestore() bool { return e.Stop }

// repositoryUnavailable: a restore pod gave up on the repository
// (`arca datamover` ended with RepositoryUnavailable).
type repositoryUnavailable struct {
	location, url string
	err           error
}

func (e *repositoryUnavailable) Error() string { return e.err.Error() }
func (e *repositoryUnavailable) Unwrap() error { return e.err }

// VaultVolume is a volume of the recovery point's vault tier
// (repo.VolumeData, named by its source claim "namespace/name").
type VaultVolume struct {
	Name  string
	Bytes int64
	Block bool
}

// RestorePods runs the pods that write vault-tier data into claims: one per
// claim, in the claim's (target) namespace, from the extension's image
// (`arca datamover restore`).
type RestorePods struct {
	// Image is the arca image (entrypoint /arca).
	Image string
	// Location names the StorageLocation; RepoURL is its URL and
	// RecoveryPoint the point's full ID.
	Location, RepoURL, RecoveryPoint string
	// StorageRetry is the pods' `--storage-retry` (zero: the storage's
	// default): how long a storage call is retried before the pod gives
	// up with RepositoryUnavailable.
	StorageRetry time.Duration
	// SecretNamespace/SecretName is the storage location's credentials
	// Secret: it is copied into the claim's namespace for the pod's
	// lifetime (keys as environment variables, `password` as
	// ARCA_PASSWORD), and the copy is deleted with the pod.
	SecretNamespace, SecretName string
	// Timeout bounds one pod, from creation to its end (default 1 h).
	Timeout time.Duration
	// Memory is the pod's memory limit (default 256Mi).
	Memory string
	// Concurrency is how many restore pods of one restore run at once
	// (default 2); the claims beyond wait for a slot.
	Concurrency int
}

// fillPlan is a claim whose data comes from the vault tier.
type fillPlan struct {
	source   string // source claim: the volume's name in the recovery point
	vol      VaultVolume
	block    bool
	existing bool // written into a claim that was there before the restore
}

// choice is where a source claim's data comes from.
type choice int

const (
	fromNothing choice = iota
	fromSnapshot
	fromVault
)

// chooseSource decides, once per source claim, where its data comes from
// (docs/volumes.md): the criteria's choice for the claim, and for Auto the
// snapshot when its content still exists, its driver is installed and the
// (mapped) storage class does not move it to another driver, else the
// vault-tier data, else the snapshot anyway (with the usual warnings).
func (r *Restorer) chooseSource(ctx context.Context, src, mappedClass string) (choice, string) {
	if !r.withData() {
		return fromNothing, ""
	}
	r.mu.Lock()
	if c, ok := r.choices[src]; ok {
		r.mu.Unlock()
		return c.c, c.why
	}
	r.mu.Unlock()
	rec, hasSnap := r.records[src]
	_, hasVault := r.opts.VaultData[src]
	if r.opts.Pods == nil {
		hasVault = false
	}
	var c choice
	var why string
	switch r.opts.sourceFor(src) {
	case v1alpha1.VolumeDataSnapshot:
		c = fromNothing
		if hasSnap {
			c = fromSnapshot
		}
	case v1alpha1.VolumeDataVault:
		c = fromNothing
		if hasVault {
			c, why = fromVault, "volumeDataSource Vault"
		}
	default:
		switch {
		case hasSnap && !hasVault:
			c = fromSnapshot
		case hasSnap:
			if reason := r.snapshotUnusable(ctx, rec, mappedClass); reason != "" {
				c, why = fromVault, reason
			} else {
				c = fromSnapshot
			}
		case hasVault:
			c, why = fromVault, "no snapshot recorded"
		}
	}
	r.mu.Lock()
	r.choices[src] = chosen{c, why}
	r.mu.Unlock()
	return c, why
}

type chosen struct {
	c   choice
	why string
}

// snapshotUnusable says why the snapshot of rec cannot give the claim its
// data in the target ("" when it can).
func (r *Restorer) snapshotUnusable(ctx context.Context, rec Record, mappedClass string) string {
	if rec.Content != "" {
		_, err := r.snaps.SnapshotV1().VolumeSnapshotContents().Get(ctx, rec.Content, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Sprintf("the snapshot's VolumeSnapshotContent %s does not exist in the target cluster", rec.Content)
		}
	}
	if !r.exists(ctx, r.drivers, rec.Driver, r.driverExists) {
		return fmt.Sprintf("the snapshot's CSI driver %s is not installed in the target cluster", rec.Driver)
	}
	if mappedClass != "" && mappedClass != rec.StorageClass {
		sc, err := r.kube.StorageV1().StorageClasses().Get(ctx, mappedClass, metav1.GetOptions{})
		if err == nil && sc.Provisioner != rec.Driver {
			return fmt.Sprintf("storage class %s (mapped from %s) provisions with %s, not the snapshot's driver %s", mappedClass, rec.StorageClass, sc.Provisioner, rec.Driver)
		}
	}
	return ""
}

func (o *RestoreOptions) sourceFor(claim string) v1alpha1.VolumeDataSource {
	c := v1alpha1.RestoreCriteria{VolumeDataSource: o.Source, VolumeDataSources: o.Sources}
	return c.VolumeDataSourceFor(claim)
}

// CheckSources checks the criteria's volume data sources against what the
// recovery point holds, before anything is written: a claim named in
// sources must be one the point knows (a snapshot record, a skipped
// record or vault-tier data), and Vault must find vault-tier data.
func CheckSources(records *Records, vault map[string]VaultVolume, opts RestoreOptions) error {
	if opts.Mode == v1alpha1.RestoreWithoutVolumeData {
		return nil
	}
	known := map[string]bool{}
	if records != nil {
		for _, rec := range records.Snapshots {
			known[rec.Key()] = true
		}
		for _, s := range records.Skipped {
			known[s.Namespace+"/"+s.PVC] = true
		}
	}
	for name := range vault {
		known[name] = true
	}
	list := func(m map[string]bool) string {
		if len(m) == 0 {
			return "none"
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return strings.Join(keys, ", ")
	}
	vaultNames := map[string]bool{}
	for name := range vault {
		vaultNames[name] = true
	}
	var errs []error
	claims := make([]string, 0, len(opts.Sources))
	for c := range opts.Sources {
		claims = append(claims, c)
	}
	sort.Strings(claims)
	for _, c := range claims {
		if !known[c] {
			errs = append(errs, fmt.Errorf("volumeDataSources: the recovery point has no volume of claim %s (claims with volume data or records: %s); name the claim as namespace/name in the source cluster", c, list(known)))
			continue
		}
		if opts.Sources[c] == v1alpha1.VolumeDataVault && !vaultNames[c] {
			errs = append(errs, fmt.Errorf("volumeDataSources: %s asks for Vault, but the recovery point holds no vault-tier data for claim %s (vault-tier volumes: %s); back it up with vaultTier, or choose Snapshot or Auto", c, c, list(vaultNames)))
		}
	}
	if opts.Source == v1alpha1.VolumeDataVault {
		var missing []string
		for c := range known {
			if _, over := opts.Sources[c]; !over && !vaultNames[c] {
				missing = append(missing, c)
			}
		}
		sort.Strings(missing)
		if len(vaultNames) == 0 {
			errs = append(errs, errors.New("volumeDataSource is Vault, but the recovery point holds no vault-tier data (it was backed up without vaultTier): choose Auto or Snapshot"))
		} else if len(missing) > 0 {
			errs = append(errs, fmt.Errorf("volumeDataSource is Vault, but the recovery point holds no vault-tier data for claim(s) %s: set volumeDataSources for them (Snapshot or Auto)", strings.Join(missing, ", ")))
		}
	}
	if opts.Pods == nil && len(vaultNames) > 0 && (opts.Source == v1alpha1.VolumeDataVault || slices.Contains(mapsValues(opts.Sources), v1alpha1.VolumeDataVault)) {
		why := opts.NoPods
		if why == "" {
			why = "this restore runs none: restore through a RestoreJob (the extension)"
		}
		errs = append(errs, fmt.Errorf("vault-tier data is written into claims by restore pods, and %s", why))
	}
	return errors.Join(errs...)
}

func mapsValues(m map[string]v1alpha1.VolumeDataSource) []v1alpha1.VolumeDataSource {
	out := make([]v1alpha1.VolumeDataSource, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// planVault prepares a claim whose data comes from the vault tier
// (RestoreClaim): the claim is provisioned anew, empty, at least as large
// as the data, and FillClaim writes the data once it is created.
func (r *Restorer) planVault(ctx context.Context, src, target, name string, md, spec map[string]any, why string) error {
	claimRef := target + "/" + name
	vol := r.opts.VaultData[src]
	if sc, _ := spec["storageClassName"].(string); sc != "" && !r.exists(ctx, r.classes, sc, r.classExists) {
		return &ClaimError{Code: WarnStorageClassNotFound, Claim: claimRef, Err: fmt.Errorf(
			"claim %s is restored from vault-tier data into storage class %s, which does not exist in the target cluster: nothing was written for it; "+
				"map it to an existing class (--storage-class-mapping %s=CLASS, storageClassMappings) or create the class", claimRef, sc, sc)}
	}
	req := requestOf(spec)
	if rec, ok := r.records[src]; ok && rec.RestoreSize > 0 && (req == nil || req.Value() < rec.RestoreSize) {
		req = resource.NewQuantity(rec.RestoreSize, resource.BinarySI)
	}
	if req != nil && req.Value() < vol.Bytes {
		return &ClaimError{Code: CodeVolumeTooSmall, Claim: claimRef, Err: fmt.Errorf(
			"claim %s requests %s (%d bytes), but its vault-tier data holds %s (%d bytes): refused before writing; request at least %s (a resource modifier on spec.resources.requests.storage)",
			claimRef, req.String(), req.Value(), units.Bytes(vol.Bytes), vol.Bytes, units.Bytes(vol.Bytes))}
	}
	if req != nil {
		setRequest(spec, req.String())
	}
	delete(spec, "volumeName")
	delete(spec, "dataSource")
	delete(spec, "dataSourceRef")
	ann, _ := md["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
		md["annotations"] = ann
	}
	for _, a := range bindAnnotations {
		delete(ann, a)
	}
	ann[AnnVolumeData] = "vault " + r.opts.RecoveryPoint + ": " + why
	mode, _ := spec["volumeMode"].(string)
	r.addPlan(claimRef, fillPlan{source: src, vol: vol, block: mode == string(corev1.PersistentVolumeBlock) || vol.Block})
	return nil
}

// planExisting prepares writing vault-tier data into a claim that exists
// (conflictPolicy Patch): refused when a pod mounts it or it is smaller
// than the data. The prepared object gets the live spec, so that the
// engine's patch changes no immutable field.
func (r *Restorer) planExisting(ctx context.Context, src string, live *corev1.PersistentVolumeClaim, spec map[string]any) error {
	claimRef := live.Namespace + "/" + live.Name
	vol := r.opts.VaultData[src]
	pods, err := r.kube.CoreV1().Pods(live.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list pods that may mount claim %s: %w", claimRef, err)
	}
	var users []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == live.Name {
				users = append(users, fmt.Sprintf("%s/%s (%s)", p.Namespace, p.Name, p.Status.Phase))
			}
		}
	}
	if len(users) > 0 {
		return &ClaimError{Code: CodeVolumeInUse, Claim: claimRef, Err: fmt.Errorf(
			"claim %s exists and is mounted by pod %s: vault-tier data is not written into a volume in use (nothing was written); "+
				"stop the pod (scale its workload to 0) and restore again, restore into another namespace (namespaceMappings), or use conflictPolicy Skip to leave the claim alone",
			claimRef, strings.Join(users, ", "))}
	}
	if q, ok := live.Status.Capacity[corev1.ResourceStorage]; ok && q.Value() < vol.Bytes {
		return &ClaimError{Code: CodeVolumeTooSmall, Claim: claimRef, Err: fmt.Errorf(
			"claim %s holds %s (%d bytes), but its vault-tier data holds %s (%d bytes): refused before writing; expand the claim or restore into another namespace (namespaceMappings)",
			claimRef, q.String(), q.Value(), units.Bytes(vol.Bytes), vol.Bytes)}
	}
	liveSpec, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&live.Spec)
	if err != nil {
		return err
	}
	for k := range spec {
		delete(spec, k)
	}
	for k, v := range liveSpec {
		spec[k] = v
	}
	block := live.Spec.VolumeMode != nil && *live.Spec.VolumeMode == corev1.PersistentVolumeBlock
	r.addPlan(claimRef, fillPlan{source: src, vol: vol, block: block || vol.Block, existing: true})
	return nil
}

// addPlan records a claim to fill and reports the planned bytes.
func (r *Restorer) addPlan(claimRef string, p fillPlan) {
	r.mu.Lock()
	if _, again := r.fills[claimRef]; !again {
		r.planned += p.vol.Bytes
	}
	r.fills[claimRef] = p
	r.mu.Unlock()
	r.report()
}

// report tells opts.Progress how far the restore pods are.
func (r *Restorer) report() {
	if r.opts.Progress == nil || r.opts.DryRun {
		return
	}
	r.mu.Lock()
	p := VaultProgress{BytesDone: r.filled, BytesTotal: r.planned}
	for _, b := range r.writing {
		p.BytesDone += b
	}
	if secs := time.Since(r.podsFrom).Seconds(); !r.podsFrom.IsZero() && secs > 0 && p.BytesDone > 0 {
		p.BytesPerSecond = float64(p.BytesDone) / secs
		p.ETA = time.Duration(float64(max(p.BytesTotal-p.BytesDone, 0)) / p.BytesPerSecond * float64(time.Second))
	}
	r.mu.Unlock()
	r.opts.Progress(p)
}

// follow reads a running restore pod's progress lines (`arca datamover
// restore --progress-json`) from its log until ctx ends, and reports them
// as the claim's bytes written so far. The log is opened again whenever
// it ends early (before the container started, it may end at once); each
// line holds the bytes so far, so reading it again counts nothing twice.
func (r *Restorer) follow(ctx context.Context, ns, pod, claimRef string) {
	for first := true; ctx.Err() == nil; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
		rc, err := r.kube.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: "restore", Follow: true}).Stream(ctx)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(rc)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			var l volumedata.MoverProgressLine
			if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &l) != nil || l.Progress == nil {
				continue
			}
			r.mu.Lock()
			if _, filling := r.writing[claimRef]; filling {
				r.writing[claimRef] = min(l.Progress.Bytes, r.fills[claimRef].vol.Bytes)
			}
			r.mu.Unlock()
			r.report()
		}
		_ = rc.Close()
	}
}

func requestOf(spec map[string]any) *resource.Quantity {
	s, _ := nested(spec, "resources", "requests", "storage").(string)
	if s == "" {
		return nil
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return nil
	}
	return &q
}

func setRequest(spec map[string]any, v string) {
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
	req["storage"] = v
}

// FillClaim writes a claim's vault-tier data once the claim is written
// (restore.ClaimFiller): a restore pod in the claim's namespace mounts it
// and runs `arca datamover restore`; FillClaim returns when the pod has
// ended and is deleted, so the restore creates the workloads that mount
// the claim only after the data is in. A claim without vault-tier data
// returns at once.
func (r *Restorer) FillClaim(ctx context.Context, ns, name string) error {
	claimRef := ns + "/" + name
	r.mu.Lock()
	plan, ok := r.fills[claimRef]
	r.mu.Unlock()
	if !ok || r.opts.DryRun {
		return nil
	}
	// At most Concurrency restore pods at once.
	select {
	case r.podSlots <- struct{}{}:
	case <-ctx.Done():
		return &ClaimError{Code: CodeVolumeDataRestoreFailed, Claim: claimRef, Err: fmt.Errorf("claim %s: vault-tier data not restored: %w", claimRef, ctx.Err())}
	}
	defer func() { <-r.podSlots }()
	r.mu.Lock()
	r.writing[claimRef] = 0
	if r.podsFrom.IsZero() {
		r.podsFrom = time.Now()
	}
	r.mu.Unlock()
	err := r.runRestorePod(ctx, ns, name, plan)
	r.mu.Lock()
	delete(r.writing, claimRef)
	if err == nil {
		r.filled += plan.vol.Bytes
	}
	r.mu.Unlock()
	r.report()
	var ru *repositoryUnavailable
	if errors.As(err, &ru) {
		return &ClaimError{Code: v1alpha1.CodeRepositoryUnavailable, Claim: claimRef, Stop: true, Err: fmt.Errorf(
			"claim %s: vault-tier data of %s not restored: storage location %q (%s) could not be reached: %w; the restore stops before the workloads that mount the claims "+
				"(the claim exists but does not hold all its data: delete it, make the repository reachable and restore again)", claimRef, plan.source, ru.location, ru.url, ru.err)}
	}
	if err != nil {
		return &ClaimError{Code: CodeVolumeDataRestoreFailed, Claim: claimRef, Err: fmt.Errorf(
			"claim %s: vault-tier data of %s not restored: %w (the claim exists but does not hold the data: delete it and restore again)", claimRef, plan.source, err)}
	}
	return nil
}

// Where the restore pod sees the volume.
const (
	restoreMountPath  = "/data"
	restoreDevicePath = "/dev/arca-volume"
)

// secretEnv maps the storage location Secret's keys to the environment
// variables `arca datamover` reads.
var secretEnv = map[string]string{
	v1alpha1.SecretKeyPassword:              "ARCA_PASSWORD",
	v1alpha1.SecretKeyAzureAccountKey:       v1alpha1.SecretKeyAzureAccountKey,
	v1alpha1.SecretKeyAzureSASToken:         v1alpha1.SecretKeyAzureSASToken,
	v1alpha1.SecretKeyAzureConnectionString: v1alpha1.SecretKeyAzureConnectionString,
	v1alpha1.SecretKeyAWSAccessKeyID:        v1alpha1.SecretKeyAWSAccessKeyID,
	v1alpha1.SecretKeyAWSSecretAccessKey:    v1alpha1.SecretKeyAWSSecretAccessKey,
	v1alpha1.SecretKeyAWSSessionToken:       v1alpha1.SecretKeyAWSSessionToken,
}

// RestorePodName is the name of the restore pod (and of its Secret copy)
// for a claim in a restore.
func RestorePodName(restoreName, ns, claim string) string {
	sum := sha256.Sum256([]byte(restoreName + "/" + ns + "/" + claim))
	return truncateName("arca-restore-"+claim, 50) + "-" + hex.EncodeToString(sum[:])[:10]
}

func (r *Restorer) runRestorePod(ctx context.Context, ns, claim string, plan fillPlan) error {
	p := r.opts.Pods
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = time.Hour
	}
	mem := p.Memory
	if mem == "" {
		mem = "256Mi"
	}
	memQ, err := resource.ParseQuantity(mem)
	if err != nil {
		return fmt.Errorf("restore pod memory %q: %w", mem, err)
	}
	name := RestorePodName(r.opts.RestoreName, ns, claim)
	labels := map[string]string{v1alpha1.LabelManagedBy: managedBy, LabelComponent: "volume-restore"}
	if r.opts.RecoveryPoint != "" {
		labels[v1alpha1.LabelRecoveryPoint] = r.opts.RecoveryPoint
	}
	if r.opts.RestoreName != "" {
		labels[v1alpha1.LabelRestore] = r.opts.RestoreName
	}
	// Whatever happens below, the pod and the Secret copy go.
	cleanup := context.WithoutCancel(ctx)
	defer r.deleteRestorePod(cleanup, ns, name)

	src, err := r.kube.CoreV1().Secrets(p.SecretNamespace).Get(ctx, p.SecretName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read the storage location's secret %s/%s: %w", p.SecretNamespace, p.SecretName, err)
	}
	data := map[string][]byte{}
	for k, v := range src.Data {
		if env, ok := secretEnv[k]; ok && len(v) > 0 {
			data[env] = v
		}
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}, Data: data}
	if _, err := r.kube.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{FieldManager: "arca"}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("copy the repository credentials into namespace %s for the restore pod: %w", ns, err)
	}
	target := restoreMountPath
	ctr := corev1.Container{
		Name: "restore", Image: p.Image, ImagePullPolicy: corev1.PullIfNotPresent,
		EnvFrom:                  []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: memQ},
		},
		// Root, to give files their owners back; only the capabilities
		// that writing a file tree needs, all within the Pod Security
		// Standard "baseline" (a "restricted" namespace refuses root: the
		// pod is not created and the claim fails with the API's message).
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: new(int64), RunAsNonRoot: new(false), AllowPrivilegeEscalation: new(false), ReadOnlyRootFilesystem: new(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"},
				Add: []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "MKNOD", "SETFCAP"}},
		},
	}
	if plan.block {
		target = restoreDevicePath
		ctr.VolumeDevices = []corev1.VolumeDevice{{Name: "volume", DevicePath: restoreDevicePath}}
	} else {
		ctr.VolumeMounts = []corev1.VolumeMount{{Name: "volume", MountPath: restoreMountPath}}
	}
	ctr.Args = []string{"datamover", "restore", "--repo", p.RepoURL, "--recovery-point", p.RecoveryPoint, "--volume", plan.source, "--target", target,
		"--progress-json", "--storage-retry", p.StorageRetry.String(), "--result-file", "/dev/termination-log"}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  new(false),
			TerminationGracePeriodSeconds: new(int64(5)),
			EnableServiceLinks:            new(false),
			SecurityContext:               &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers:                    []corev1.Container{ctr},
			Volumes: []corev1.Volume{{Name: "volume", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}},
		},
	}
	if _, err := r.kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{FieldManager: "arca"}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create restore pod %s/%s: %w", ns, name, err)
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The pod's progress, until it ends (followed before returning, so no
	// line counts after the claim is filled).
	var following sync.WaitGroup
	fctx, stopFollow := context.WithCancel(wctx)
	following.Go(func() { r.follow(fctx, ns, name, ns+"/"+claim) })
	defer following.Wait()
	defer stopFollow()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var last *corev1.Pod
	for {
		got, err := r.kube.CoreV1().Pods(ns).Get(wctx, name, metav1.GetOptions{})
		switch {
		case err == nil:
			last = got
			switch got.Status.Phase {
			case corev1.PodSucceeded:
				return nil
			case corev1.PodFailed:
				end := podEnd(got)
				if strings.Contains(end, v1alpha1.CodeRepositoryUnavailable) {
					return &repositoryUnavailable{location: p.Location, url: p.RepoURL, err: fmt.Errorf("restore pod %s/%s failed: %s", ns, name, end)}
				}
				return fmt.Errorf("restore pod %s/%s failed: %s", ns, name, end)
			}
		case apierrors.IsNotFound(err):
			return fmt.Errorf("restore pod %s/%s was deleted before it finished", ns, name)
		case wctx.Err() == nil:
			// A passing API error: ask again.
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return fmt.Errorf("restore pod %s/%s stopped: %w", ns, name, ctx.Err())
			}
			return fmt.Errorf("restore pod %s/%s did not finish within %s: %s", ns, name, timeout, podState(last))
		case <-tick.C:
		}
	}
}

// podEnd describes how a failed pod's container ended: its reason, exit
// code and termination message (the error `arca datamover` printed last).
func podEnd(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil {
			msg := strings.TrimSpace(t.Message)
			if len(msg) > 2000 {
				msg = "…" + msg[len(msg)-2000:]
			}
			return fmt.Sprintf("%s, exit code %d: %s", t.Reason, t.ExitCode, msg)
		}
	}
	if p.Status.Message != "" {
		return p.Status.Reason + ": " + p.Status.Message
	}
	return "no container status"
}

// podState describes a pod that has not finished (for a timeout).
func podState(p *corev1.Pod) string {
	if p == nil {
		return "never seen"
	}
	var parts []string
	parts = append(parts, "phase "+string(p.Status.Phase))
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			parts = append(parts, fmt.Sprintf("%s: %s", c.Type, c.Message))
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			parts = append(parts, fmt.Sprintf("container %s: %s %s", cs.Name, w.Reason, w.Message))
		}
	}
	return strings.Join(parts, "; ")
}

// deleteRestorePod deletes the restore pod and its Secret copy and waits
// (up to 2 min) until the pod is gone, so that the claim is free for the
// workloads restored next.
func (r *Restorer) deleteRestorePod(ctx context.Context, ns, name string) {
	zero := int64(0)
	_ = r.kube.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	_ = r.kube.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{})
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if _, err := r.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}
