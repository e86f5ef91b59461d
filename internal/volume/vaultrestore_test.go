package volume_test

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/volume"
)

// TestVaultSourceChoice: where each claim's data comes from (Auto,
// Snapshot, Vault), judged against a real API server with the mock CSI
// driver installed, and the refusals before anything is written. The
// restore pods themselves run in internal/extension's node test.
func TestVaultSourceChoice(t *testing.T) {
	ctx := ctxT(t)
	const otherDriver = "other.csi.arca.test"
	if _, err := kc.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "arca-other-driver"},
		Provisioner: otherDriver}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kc.StorageV1().StorageClasses().Delete(ctx, "arca-other-driver", metav1.DeleteOptions{}) })
	rec := func(claim, content string) volume.Record {
		return volume.Record{Namespace: "src", PVC: claim, PV: "pv-" + claim, Driver: csi.DriverName, SnapshotHandle: "handle-" + claim,
			StorageClass: csi.StorageClass, Content: content, RestoreSize: 1 << 20}
	}
	movedRec := rec("moved", "")
	movedRec.StorageClass = "moved-class"
	records := &volume.Records{Version: volume.RecordsVersion, Snapshots: []volume.Record{
		rec("gone", "snapcontent-that-was-deleted"), // Auto: content gone -> vault
		rec("keep", ""), // Auto: usable -> snapshot
		movedRec,        // Auto, mapped to another driver's class -> vault
		rec("forced", "snapcontent-that-was-deleted"),
	}}
	vault := map[string]volume.VaultVolume{}
	for _, c := range []string{"gone", "keep", "moved", "forced", "big", "only-vault"} {
		vault["src/"+c] = volume.VaultVolume{Name: "src/" + c, Bytes: 4096}
	}
	vault["src/big"] = volume.VaultVolume{Name: "src/big", Bytes: 3 << 30}
	pods := &volume.RestorePods{Image: "arca:test", RepoURL: "s3://bucket", RecoveryPoint: "rp", SecretNamespace: "arca-system", SecretName: "creds"}
	newRestorer := func(opts volume.RestoreOptions) *volume.Restorer {
		opts.VaultData, opts.Pods, opts.RecoveryPoint, opts.DryRun = vault, pods, "rp", true
		return volume.NewRestorerFor(kc, snaps, records, opts)
	}
	claimMap := func(ns, name, class, size string) map[string]any {
		c := claim(name, class, size, nil)
		c.Namespace = ns
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(c)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	dataSource := func(m map[string]any) any {
		spec, _ := m["spec"].(map[string]any)
		return spec["dataSource"]
	}
	annotation := func(m map[string]any) string {
		md, _ := m["metadata"].(map[string]any)
		ann, _ := md["annotations"].(map[string]any)
		s, _ := ann[volume.AnnVolumeData].(string)
		return s
	}

	r := newRestorer(volume.RestoreOptions{NamespaceMappings: map[string]string{"src": "dst"}, StorageClassMappings: map[string]string{"moved-class": "arca-other-driver"}})
	for _, tc := range []struct {
		claim, class string
		vault        bool
		why          string
	}{
		{"gone", csi.StorageClass, true, "snapcontent-that-was-deleted does not exist in the target cluster"},
		{"keep", csi.StorageClass, false, ""},
		{"moved", "moved-class", true, "provisions with " + otherDriver + ", not the snapshot's driver " + csi.DriverName},
		{"only-vault", csi.StorageClass, true, "no snapshot recorded"},
	} {
		pvc := claimMap("dst", tc.claim, tc.class, "1Mi")
		if _, err := r.RestoreClaim(ctx, "src", pvc); err != nil {
			t.Fatalf("%s: %v", tc.claim, err)
		}
		got := annotation(pvc)
		if tc.vault && (dataSource(pvc) != nil || !strings.Contains(got, tc.why)) {
			t.Errorf("%s: data source %v, annotation %q; want from the vault tier because %q", tc.claim, dataSource(pvc), got, tc.why)
		}
		if !tc.vault && (dataSource(pvc) == nil || got != "") {
			t.Errorf("%s: data source %v, annotation %q; want from the snapshot", tc.claim, dataSource(pvc), got)
		}
	}
	// The volume of a claim restored from the vault tier is not restored.
	pv := map[string]any{"metadata": map[string]any{"name": "pv-gone"},
		"spec": map[string]any{"claimRef": map[string]any{"namespace": "dst", "name": "gone"}, "persistentVolumeReclaimPolicy": "Delete"}}
	if skip, reason, err := r.RestoreVolume(ctx, pv); err != nil || !skip || !strings.Contains(reason, "vault-tier data") {
		t.Errorf("volume of a vault-tier claim: skip %v, %q, %v", skip, reason, err)
	}

	// Snapshot forced for a claim whose content is gone: the snapshot (and its usual path).
	r = newRestorer(volume.RestoreOptions{Sources: map[string]v1alpha1.VolumeDataSource{"src/forced": v1alpha1.VolumeDataSnapshot}})
	pvc := claimMap("dst", "forced", csi.StorageClass, "1Mi")
	if _, err := r.RestoreClaim(ctx, "src", pvc); err != nil || dataSource(pvc) == nil {
		t.Errorf("Snapshot for src/forced: data source %v, %v", dataSource(pvc), err)
	}
	// Vault for a claim whose snapshot is usable.
	r = newRestorer(volume.RestoreOptions{Source: v1alpha1.VolumeDataVault})
	pvc = claimMap("dst", "keep", csi.StorageClass, "1Mi")
	if _, err := r.RestoreClaim(ctx, "src", pvc); err != nil || dataSource(pvc) != nil || !strings.Contains(annotation(pvc), "volumeDataSource Vault") {
		t.Errorf("Vault for src/keep: data source %v, annotation %q, %v", dataSource(pvc), annotation(pvc), err)
	}

	// A claim smaller than its data: refused, naming both sizes.
	var ce *volume.ClaimError
	_, err := r.RestoreClaim(ctx, "src", claimMap("dst", "big", csi.StorageClass, "1Gi"))
	if !errors.As(err, &ce) || ce.Code != volume.CodeVolumeTooSmall || !strings.Contains(err.Error(), "1Gi") || !strings.Contains(err.Error(), "3.0 GiB") {
		t.Errorf("claim smaller than its data: %v", err)
	}
	// A class that does not exist: refused (an empty claim binding later would lack its data).
	_, err = r.RestoreClaim(ctx, "src", claimMap("dst", "gone", "no-such-class", "1Mi"))
	if !errors.As(err, &ce) || ce.Code != volume.WarnStorageClassNotFound || !strings.Contains(err.Error(), "no-such-class") {
		t.Errorf("missing class: %v", err)
	}

	// An existing claim a pod mounts, conflictPolicy Patch: VolumeInUse naming the pod.
	createNS(t, ctx, "vault-in-use")
	createPVC(t, ctx, "vault-in-use", claim("gone", csi.StorageClass, "1Mi", nil))
	if _, err := kc.CoreV1().Pods("vault-in-use").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "db", Image: "db"}},
		Volumes:    []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "gone"}}}},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r = newRestorer(volume.RestoreOptions{Conflict: v1alpha1.ConflictPatch})
	_, err = r.RestoreClaim(ctx, "src", claimMap("vault-in-use", "gone", csi.StorageClass, "1Mi"))
	if !errors.As(err, &ce) || ce.Code != volume.CodeVolumeInUse || !strings.Contains(err.Error(), "vault-in-use/db") {
		t.Errorf("claim in use: %v", err)
	}
	// With Skip the existing claim is left alone.
	r = newRestorer(volume.RestoreOptions{})
	if _, err := r.RestoreClaim(ctx, "src", claimMap("vault-in-use", "gone", csi.StorageClass, "1Mi")); err != nil {
		t.Errorf("existing claim, Skip: %v", err)
	}

	// Criteria checked against the point before anything is written.
	for _, tc := range []struct {
		opts volume.RestoreOptions
		want string
	}{
		{volume.RestoreOptions{Sources: map[string]v1alpha1.VolumeDataSource{"src/nope": v1alpha1.VolumeDataVault}}, "no volume of claim src/nope"},
		{volume.RestoreOptions{Sources: map[string]v1alpha1.VolumeDataSource{"src/none": v1alpha1.VolumeDataVault}}, "no vault-tier data for claim src/none"},
		{volume.RestoreOptions{Source: v1alpha1.VolumeDataVault}, "no vault-tier data for claim(s) src/none"},
		{volume.RestoreOptions{Source: v1alpha1.VolumeDataVault, NoPods: "storage location \"x\" is file storage"}, "restore pods, and storage location \"x\" is file storage"},
	} {
		recs := &volume.Records{Snapshots: append([]volume.Record{rec("none", "")}, records.Snapshots...)}
		err := volume.CheckSources(recs, vault, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckSources(%+v): %v, want %q", tc.opts, err, tc.want)
		}
	}
	if err := volume.CheckSources(records, nil, volume.RestoreOptions{Source: v1alpha1.VolumeDataVault}); err == nil || !strings.Contains(err.Error(), "holds no vault-tier data") {
		t.Errorf("Vault without any vault-tier data: %v", err)
	}
	if err := volume.CheckSources(records, vault, volume.RestoreOptions{Sources: map[string]v1alpha1.VolumeDataSource{"src/keep": v1alpha1.VolumeDataSnapshot}}); err != nil {
		t.Errorf("valid sources: %v", err)
	}
}
