// Package clusterdriver implements the vault's jobs.ClusterDriver on top of
// the extension's custom resources: a vault job becomes a BackupJob or
// RestoreJob in the cluster's extension namespace, and the job's status is
// read back and mapped to the vault's job states. It reaches the cluster
// only through a rest.Config (in production, the trusted-access identity),
// and never imports the extension's code: the CRDs are the contract.
package clusterdriver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/storage/location"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Driver starts and follows jobs in one cluster.
type Driver struct {
	c         client.Client
	namespace string
	// Vault, when set, labels every job arca.io/vault=Vault: the name of
	// the trusted-access identity the driver acts as (its service account
	// arca-vault-Vault), which admission requires and the cluster owner's
	// ClusterTrustPolicy of that name bounds.
	Vault string
}

// labels are a job's labels: the vault job label and, acting as a vault's
// identity, the vault label.
func (d *Driver) labels(key, value string) map[string]string {
	l := map[string]string{key: value}
	if d.Vault != "" {
		l[v1alpha1.LabelVault] = d.Vault
	}
	return l
}

var (
	_ jobs.ClusterDriver = (*Driver)(nil)
	_ jobs.Canceller     = (*Driver)(nil)
	_ jobs.Forgetter     = (*Driver)(nil)
)

// New returns a driver for the extension in namespace (default arca-system)
// of the cluster of cfg.
func New(cfg *rest.Config, namespace string) (*Driver, error) {
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		return nil, err
	}
	if namespace == "" {
		namespace = v1alpha1.ExtensionNamespace
	}
	return &Driver{c: c, namespace: namespace}, nil
}

var notName = regexp.MustCompile(`[^a-z0-9-]+`)

// jobName makes a resource name from a vault job ID: the same ID always
// gives the same name, so that starting twice is harmless.
func jobName(jobID string) string {
	n := strings.Trim(notName.ReplaceAllString(strings.ToLower(jobID), "-"), "-")
	if len(n) > 57 {
		n = n[:57]
	}
	return "vault-" + n
}

// Refs are kind/name: backupjob/NAME or restorejob/NAME.
func ref(kind, name string) string { return kind + "/" + name }

func parseRef(r string) (kind, name string, err error) {
	kind, name, ok := strings.Cut(r, "/")
	if !ok || (kind != "backupjob" && kind != "restorejob") || name == "" {
		return "", "", fmt.Errorf("cluster job reference %q: want backupjob/NAME or restorejob/NAME", r)
	}
	return kind, name, nil
}

// storageLocation finds the StorageLocation for the vault's storage
// location: a StorageLocation of that name, or one whose URL it is.
func (d *Driver) storageLocation(ctx context.Context, want string, write bool) (string, error) {
	l := &v1alpha1.StorageLocationList{}
	if err := d.c.List(ctx, l, client.InNamespace(d.namespace)); err != nil {
		return "", fmt.Errorf("list storage locations in %s: %w", d.namespace, err)
	}
	for _, sl := range l.Items {
		if sl.Name == want || sameURL(sl.Spec.URL, want) {
			if write && sl.Spec.ReadOnly {
				continue
			}
			return sl.Name, nil
		}
	}
	return "", fmt.Errorf("no %sstorage location for %q in namespace %s of the cluster: install the extension with --storage %s",
		map[bool]string{true: "writable ", false: ""}[write], want, d.namespace, want)
}

// sameURL compares repository URLs in their canonical form, so that query
// parameter order or a trailing slash do not matter.
func sameURL(a, b string) bool {
	if a == b {
		return true
	}
	la, err1 := location.Parse(a)
	lb, err2 := location.Parse(b)
	return err1 == nil && err2 == nil && la.String() == lb.String()
}

// StartBackup implements jobs.ClusterDriver.
func (d *Driver) StartBackup(ctx context.Context, req jobs.BackupRequest) (string, error) {
	var cfg v1alpha1.BackupConfiguration
	if len(req.Config) > 0 {
		if err := json.Unmarshal(req.Config, &cfg); err != nil {
			return "", fmt.Errorf("backup configuration: %w", err)
		}
	}
	loc, err := d.storageLocation(ctx, req.StorageLocation, true)
	if err != nil {
		return "", err
	}
	j := &v1alpha1.BackupJob{
		ObjectMeta: metav1.ObjectMeta{Name: jobName(req.JobID), Namespace: d.namespace, Labels: d.labels(v1alpha1.LabelVaultJob, labelValue(req.JobID))},
		Spec: v1alpha1.BackupJobSpec{BackupConfiguration: cfg, StorageLocation: loc, RecoveryPointName: req.Instance, SnapshotClasses: splitList(req.SnapshotLocation),
			Tags:      map[string]string{v1alpha1.TagVault: req.Vault, v1alpha1.TagInstance: req.Instance, v1alpha1.TagJob: req.JobID},
			VaultTier: req.VaultTier},
	}
	if req.CopyTo != "" {
		if j.Spec.CopyTo, err = d.storageLocation(ctx, req.CopyTo, true); err != nil {
			return "", fmt.Errorf("the policy's copyTo: %w", err)
		}
	}
	if err := d.c.Create(ctx, j); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create BackupJob %s: %w", j.Name, err)
	}
	return ref("backupjob", j.Name), nil
}

// StartRestore implements jobs.ClusterDriver.
func (d *Driver) StartRestore(ctx context.Context, req jobs.RestoreRequest) (string, error) {
	var crit v1alpha1.RestoreCriteria
	if len(req.Criteria) > 0 {
		if err := json.Unmarshal(req.Criteria, &crit); err != nil {
			return "", fmt.Errorf("restore criteria: %w", err)
		}
	}
	if req.RecoveryPoint == nil || req.RecoveryPoint.RepoID == "" {
		return "", fmt.Errorf("restore job %s: the recovery point has no repository ID", req.JobID)
	}
	loc, err := d.storageLocation(ctx, req.StorageLocation, false)
	if err != nil {
		return "", err
	}
	j := &v1alpha1.RestoreJob{
		ObjectMeta: metav1.ObjectMeta{Name: jobName(req.JobID), Namespace: d.namespace, Labels: d.labels(v1alpha1.LabelVaultJob, labelValue(req.JobID))},
		Spec:       v1alpha1.RestoreJobSpec{RecoveryPoint: req.RecoveryPoint.RepoID, StorageLocation: loc, RestoreCriteria: crit},
	}
	if req.Vault != "" && req.RecoveryPoint.Instance != "" {
		// The extension restores the point only if its tags name them.
		j.Spec.VaultPoint = &v1alpha1.VaultPoint{Vault: req.Vault, Instance: req.RecoveryPoint.Instance}
	}
	if req.FallbackStorageLocation != "" {
		// A cluster without the secondary location restores from the
		// primary alone, as before.
		if fb, err := d.storageLocation(ctx, req.FallbackStorageLocation, false); err == nil {
			j.Spec.FallbackStorageLocation = fb
		}
	}
	if v := req.Verification; v != nil {
		j.Spec.Verification = &v1alpha1.VerificationSpec{ReadDataPercent: int32(v.ReadDataPercent), SkipVolumes: v.SkipVolumes}
	}
	if err := d.c.Create(ctx, j); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create RestoreJob %s: %w", j.Name, err)
	}
	return ref("restorejob", j.Name), nil
}

// StartForget implements jobs.Forgetter: a BackupJob with
// spec.forgetRecoveryPoints, which the extension runs as an expiry (delete
// the retained snapshot contents, forget in the repository). Its name is
// derived from the request's key, so that starting twice is harmless.
func (d *Driver) StartForget(ctx context.Context, req jobs.ForgetRequest) (string, error) {
	if len(req.RepoIDs) == 0 {
		return "", fmt.Errorf("forget %s: no repository IDs", req.Key)
	}
	loc, err := d.storageLocation(ctx, req.StorageLocation, true)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(req.Key))
	j := &v1alpha1.BackupJob{
		ObjectMeta: metav1.ObjectMeta{Name: "vault-forget-" + hex.EncodeToString(sum[:12]), Namespace: d.namespace,
			Labels: d.labels(v1alpha1.LabelVaultForget, "true")},
		Spec: v1alpha1.BackupJobSpec{StorageLocation: loc, ForgetRecoveryPoints: req.RepoIDs, Prune: req.Prune},
	}
	if req.SnapshotsOnly {
		j.Spec.ForgetRecoveryPoints, j.Spec.Prune, j.Spec.ExpireSnapshotsOf = nil, false, req.RepoIDs
	}
	err = d.c.Create(ctx, j)
	if apierrors.IsAlreadyExists(err) {
		// A failed or cancelled earlier attempt is replaced, so that the
		// next retention run really retries; a running or finished one
		// is followed.
		old := &v1alpha1.BackupJob{}
		if gerr := d.c.Get(ctx, client.ObjectKeyFromObject(j), old); gerr != nil {
			return "", fmt.Errorf("read BackupJob %s: %w", j.Name, gerr)
		}
		if p := old.Status.Phase; p == v1alpha1.JobFailed || p == v1alpha1.JobCancelled {
			if derr := d.c.Delete(ctx, old, client.Preconditions{UID: &old.UID}); derr != nil && !apierrors.IsNotFound(derr) {
				return "", fmt.Errorf("delete failed BackupJob %s: %w", j.Name, derr)
			}
			return "", fmt.Errorf("earlier expiry %s %s and was deleted; the next retention run starts it again", j.Name, strings.ToLower(string(p)))
		}
		err = nil
	}
	if err != nil {
		return "", fmt.Errorf("create BackupJob %s: %w", j.Name, err)
	}
	return ref("backupjob", j.Name), nil
}

// splitList reads the vault's snapshot location: VolumeSnapshotClass names,
// comma-separated.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func labelValue(s string) string {
	v := regexp.MustCompile(`[^A-Za-z0-9._-]+`).ReplaceAllString(s, "-")
	if len(v) > 63 {
		v = v[:63]
	}
	return strings.Trim(v, "-._")
}

// JobStatus implements jobs.ClusterDriver. A job still Queued in the
// cluster (waiting for the extension's job slot) is InProgress for the
// vault, with a Queued sub-task.
func (d *Driver) JobStatus(ctx context.Context, r string) (*jobs.Status, error) {
	kind, name, err := parseRef(r)
	if err != nil {
		return nil, err
	}
	key := types.NamespacedName{Namespace: d.namespace, Name: name}
	var st *v1alpha1.JobStatusCommon
	var out jobs.Status
	switch kind {
	case "backupjob":
		j := &v1alpha1.BackupJob{}
		if err := d.c.Get(ctx, key, j); err != nil {
			return nil, err
		}
		st = &j.Status.JobStatusCommon
		if j.Status.RecoveryPointID != "" && (st.Phase == v1alpha1.JobCompleted || st.Phase == v1alpha1.JobCompletedWithWarnings) {
			info := &jobs.RecoveryPointInfo{RepoID: j.Status.RecoveryPointID, CopyRepoID: j.Status.CopiedRecoveryPointID}
			if st.StartTime != nil {
				info.Time = st.StartTime.Time
			}
			if st.Progress != nil {
				info.Items, info.Bytes = st.Progress.ItemsDone, st.Progress.BytesDone
			}
			info.StoredBytes = j.Status.Counts[v1alpha1.CountStoredBytes]
			out.RecoveryPoint = info
		}
		out.Progress = progress(st.Progress, j.Status.Counts)
	default:
		j := &v1alpha1.RestoreJob{}
		if err := d.c.Get(ctx, key, j); err != nil {
			return nil, err
		}
		st = &j.Status.JobStatusCommon
		out.Progress = progress(st.Progress, j.Status.Results)
		if v := j.Status.Verification; v != nil && st.Phase.Terminal() {
			out.Verification = verification(v)
		}
	}
	out.State = vaultState(st.Phase)
	sub := string(st.Phase)
	if sub == "" {
		sub = string(v1alpha1.JobQueued)
	}
	out.SubTasks = []store.SubTask{{Name: strings.TrimSuffix(kind, "job"), State: sub}}
	for _, h := range st.Hooks {
		out.SubTasks = append(out.SubTasks, hookSubTask(h))
	}
	for _, w := range st.Warnings {
		out.Warnings = append(out.Warnings, store.Issue{Code: w.Code, Message: w.Message, Object: w.Object})
	}
	for _, e := range st.Errors {
		out.Errors = append(out.Errors, store.Issue{Code: e.Code, Message: e.Message, Object: e.Object})
	}
	return &out, nil
}

// hookSubTask shows one hook command the cluster job ran as a vault
// sub-task, so that `arca job show` tells where it ran and how it ended:
// "hook arca-system/db-freeze pre in shop/db-0" → "Completed (exit 0): <first
// line of its output>", or "Failed (exit 7): <its error or stderr>".
func hookSubTask(h v1alpha1.HookResult) store.SubTask {
	name := fmt.Sprintf("hook %s %s in %s", h.Hook, h.Phase, h.Pod)
	exit := "no exit code"
	if h.ExitCode != nil {
		exit = fmt.Sprintf("exit %d", *h.ExitCode)
	}
	firstLine := func(s string) string {
		s = strings.TrimSpace(s)
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[:i] + " …"
		}
		if len(s) > 200 {
			s = s[:200] + "…"
		}
		return s
	}
	if h.Error == "" && h.ExitCode != nil && *h.ExitCode == 0 {
		state := store.JobCompleted + " (" + exit + ")"
		if out := firstLine(h.Stdout); out != "" {
			state += ": " + out
		}
		return store.SubTask{Name: name, State: state}
	}
	why := firstLine(h.Error)
	if why == "" {
		why = firstLine(h.Stderr)
	}
	state := store.JobFailed + " (" + exit + ")"
	if why != "" {
		state += ": " + why
	}
	return store.SubTask{Name: name, State: state}
}

// progress maps a cluster job's progress and counts (a backup's objects
// per resource type, a restore's objects per action) to the vault's.
func progress(p *v1alpha1.JobProgress, counts map[string]int64) *store.JobProgress {
	if p == nil && len(counts) == 0 {
		return nil
	}
	out := &store.JobProgress{}
	if p != nil {
		out.ItemsDone, out.ItemsTotal, out.BytesDone, out.BytesTotal = p.ItemsDone, p.ItemsTotal, p.BytesDone, p.BytesTotal
		out.BytesPerSecond, out.ETASeconds = p.BytesPerSecond, p.ETASeconds
	}
	if len(counts) > 0 {
		out.Counts = make(map[string]int64, len(counts))
		for k, v := range counts {
			out.Counts[k] = v
		}
	}
	return out
}

func vaultState(p v1alpha1.JobPhase) string {
	switch p {
	case v1alpha1.JobCompleted:
		return store.JobCompleted
	case v1alpha1.JobCompletedWithWarnings:
		return store.JobCompletedWithWarnings
	case v1alpha1.JobFailed:
		return store.JobFailed
	case v1alpha1.JobCancelled:
		return store.JobCancelled
	}
	return store.JobInProgress
}

// CancelJob implements jobs.Canceller: it sets spec.cancel; the extension
// stops the job and reports Cancelled.
func (d *Driver) CancelJob(ctx context.Context, r string) error {
	kind, name, err := parseRef(r)
	if err != nil {
		return err
	}
	var obj client.Object = &v1alpha1.BackupJob{}
	if kind == "restorejob" {
		obj = &v1alpha1.RestoreJob{}
	}
	obj.SetNamespace(d.namespace)
	obj.SetName(name)
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"cancel":true}}`))
	if err := d.c.Patch(ctx, obj, patch); err != nil {
		return fmt.Errorf("cancel %s: %w", r, err)
	}
	return nil
}

// verification is a RestoreJob's verdict in the vault's terms.
func verification(v *v1alpha1.VerificationResult) *store.Verification {
	out := &store.Verification{Verdict: v.Verdict, Codes: v.Codes, ObjectsCompared: v.ObjectsCompared, PacksRead: v.PacksRead,
		PacksChecked: v.PacksChecked, SandboxNamespaces: v.SandboxNamespaces, CleanedUp: v.CleanedUp}
	for _, d := range v.Differences {
		out.Differences = append(out.Differences, store.Issue{Object: d.Object, Message: d.Problem})
	}
	return out
}
