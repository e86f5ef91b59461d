package trustedaccess

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/store"
)

var (
	backupJobs       = schema.GroupVersionResource{Group: APIGroup, Version: "v1alpha1", Resource: "backupjobs"}
	restoreJobs      = schema.GroupVersionResource{Group: APIGroup, Version: "v1alpha1", Resource: "restorejobs"}
	storageLocations = schema.GroupVersionResource{Group: APIGroup, Version: "v1alpha1", Resource: "storagelocations"}
)

// Drivers gives the job runner a ClusterDriver for every cluster
// registered through trusted access (jobs.Drivers).
type Drivers struct {
	Store store.Store
}

var _ jobs.Drivers = (*Drivers)(nil)

// Driver implements jobs.Drivers. A revoked cluster still gets a driver,
// so that its jobs fail with TrustedAccessRevoked rather than
// ClusterNotConnected.
func (d *Drivers) Driver(cluster string) (jobs.ClusterDriver, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.Store.GetCluster(ctx, cluster)
	if err != nil {
		return nil, false
	}
	return &Driver{Store: d.Store, Cluster: c}, true
}

// Driver starts and follows BackupJobs and RestoreJobs in one cluster
// with the vault's trusted-access identity. Cluster-side jobs are named
// after the vault's job ID, so a repeated start finds the existing one.
type Driver struct {
	Store   store.Store
	Cluster *store.Cluster
}

var (
	_ jobs.ClusterDriver = (*Driver)(nil)
	_ jobs.Canceller     = (*Driver)(nil)
)

func (d *Driver) client() (dynamic.Interface, error) {
	if d.Cluster.State == store.ClusterRevoked {
		return nil, &RevokedError{Cluster: d.Cluster.Name, Err: errors.New(d.Cluster.Message)}
	}
	return dynamic.NewForConfig(RestConfig(d.Cluster))
}

// check turns an API error into a revocation when the cluster rejects
// the identity, recording it in the store.
func (d *Driver) check(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if IsRevocation(err) {
		MarkRevoked(ctx, d.Store, d.Cluster.Name, err)
		return &RevokedError{Cluster: d.Cluster.Name, Err: err}
	}
	return err
}

// storageLocationName finds the StorageLocation in the extension's
// namespace whose URL is the instance's storage location.
func (d *Driver) storageLocationName(ctx context.Context, dc dynamic.Interface, url string) (string, error) {
	l, err := dc.Resource(storageLocations).Namespace(d.Cluster.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", d.check(ctx, fmt.Errorf("list storage locations: %w", err))
	}
	for _, it := range l.Items {
		if u, _, _ := unstructured.NestedString(it.Object, "spec", "url"); u == url {
			return it.GetName(), nil
		}
	}
	return "", fmt.Errorf("no StorageLocation in %s/%s has url %s: create one (arca extension install --storage %s)", d.Cluster.Name, d.Cluster.Namespace, url, url)
}

func toUnstructured(obj any) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	return &unstructured.Unstructured{Object: m}, nil
}

func (d *Driver) create(ctx context.Context, dc dynamic.Interface, gvr schema.GroupVersionResource, obj any) (string, error) {
	u, err := toUnstructured(obj)
	if err != nil {
		return "", err
	}
	_, err = dc.Resource(gvr).Namespace(d.Cluster.Namespace).Create(ctx, u, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		err = nil // a repeated start: the job is already there
	}
	if err := d.check(ctx, err); err != nil {
		return "", err
	}
	return gvr.Resource + "/" + u.GetName(), nil
}

// StartBackup creates BackupJob <job id> in the extension's namespace.
func (d *Driver) StartBackup(ctx context.Context, req jobs.BackupRequest) (string, error) {
	dc, err := d.client()
	if err != nil {
		return "", err
	}
	var cfg v1alpha1.BackupConfiguration
	if len(req.Config) > 0 {
		if err := json.Unmarshal(req.Config, &cfg); err != nil {
			return "", fmt.Errorf("backup configuration: %w", err)
		}
	}
	sl, err := d.storageLocationName(ctx, dc, req.StorageLocation)
	if err != nil {
		return "", err
	}
	bj := &v1alpha1.BackupJob{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "BackupJob"},
		ObjectMeta: metav1.ObjectMeta{Name: req.JobID, Labels: map[string]string{LabelVault: req.Vault, "arca.io/instance": req.Instance}},
		Spec: v1alpha1.BackupJobSpec{BackupConfiguration: cfg, StorageLocation: sl, RecoveryPointName: req.JobID,
			Tags: map[string]string{"vault": req.Vault, "instance": req.Instance, "job": req.JobID}},
	}
	return d.create(ctx, dc, backupJobs, bj)
}

// StartRestore creates RestoreJob <job id> in the extension's namespace.
func (d *Driver) StartRestore(ctx context.Context, req jobs.RestoreRequest) (string, error) {
	dc, err := d.client()
	if err != nil {
		return "", err
	}
	var crit v1alpha1.RestoreCriteria
	if len(req.Criteria) > 0 {
		if err := json.Unmarshal(req.Criteria, &crit); err != nil {
			return "", fmt.Errorf("restore criteria: %w", err)
		}
	}
	sl, err := d.storageLocationName(ctx, dc, req.StorageLocation)
	if err != nil {
		return "", err
	}
	ref := req.RecoveryPoint.RepoID
	if ref == "" {
		return "", fmt.Errorf("recovery point %s has no repository ID", req.RecoveryPoint.ID)
	}
	rj := &v1alpha1.RestoreJob{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "RestoreJob"},
		ObjectMeta: metav1.ObjectMeta{Name: req.JobID, Labels: map[string]string{LabelVault: req.Vault}},
		Spec:       v1alpha1.RestoreJobSpec{RecoveryPoint: ref, StorageLocation: sl, RestoreCriteria: crit},
	}
	return d.create(ctx, dc, restoreJobs, rj)
}

func splitRef(ref string) (schema.GroupVersionResource, string, error) {
	kind, name, ok := strings.Cut(ref, "/")
	switch {
	case ok && kind == backupJobs.Resource:
		return backupJobs, name, nil
	case ok && kind == restoreJobs.Resource:
		return restoreJobs, name, nil
	}
	return schema.GroupVersionResource{}, "", fmt.Errorf("job reference %q: want backupjobs/NAME or restorejobs/NAME", ref)
}

// JobStatus reads the cluster job's status.
func (d *Driver) JobStatus(ctx context.Context, ref string) (*jobs.Status, error) {
	dc, err := d.client()
	if err != nil {
		return nil, err
	}
	gvr, name, err := splitRef(ref)
	if err != nil {
		return nil, err
	}
	u, err := dc.Resource(gvr).Namespace(d.Cluster.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err := d.check(ctx, err); err != nil {
		return nil, err
	}
	var common v1alpha1.JobStatusCommon
	var rpID string
	if gvr == backupJobs {
		var bj v1alpha1.BackupJob
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &bj); err != nil {
			return nil, err
		}
		common, rpID = bj.Status.JobStatusCommon, bj.Status.RecoveryPointID
	} else {
		var rj v1alpha1.RestoreJob
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &rj); err != nil {
			return nil, err
		}
		common = rj.Status.JobStatusCommon
	}
	st := &jobs.Status{State: string(common.Phase)}
	if st.State == "" || st.State == string(v1alpha1.JobQueued) {
		st.State = store.JobInProgress // accepted by the cluster, not yet picked up
	}
	for _, w := range common.Warnings {
		st.Warnings = append(st.Warnings, store.Issue{Code: w.Code, Message: w.Message, Object: w.Object})
	}
	for _, e := range common.Errors {
		st.Errors = append(st.Errors, store.Issue{Code: e.Code, Message: e.Message, Object: e.Object})
	}
	if gvr == backupJobs && rpID != "" && common.Phase.Terminal() {
		info := &jobs.RecoveryPointInfo{RepoID: rpID}
		if common.CompletionTime != nil {
			info.Time = common.CompletionTime.Time
		}
		if common.Progress != nil {
			info.Items, info.Bytes = common.Progress.ItemsDone, common.Progress.BytesDone
		}
		st.RecoveryPoint = info
	}
	return st, nil
}

// CancelJob sets spec.cancel on the cluster job.
func (d *Driver) CancelJob(ctx context.Context, ref string) error {
	dc, err := d.client()
	if err != nil {
		return err
	}
	gvr, name, err := splitRef(ref)
	if err != nil {
		return err
	}
	_, err = dc.Resource(gvr).Namespace(d.Cluster.Namespace).Patch(ctx, name, "application/merge-patch+json",
		[]byte(`{"spec":{"cancel":true}}`), metav1.PatchOptions{})
	return d.check(ctx, err)
}
