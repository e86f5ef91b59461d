package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/volume"
)

// TestLocalVolumes: `arca local backup` snapshots a claim, `arca local
// restore --without-volume-data --storage-class-mapping` creates it empty in
// the mapped class, and `arca local forget` deletes the retained snapshot
// content before forgetting the recovery point.
func TestLocalVolumes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	csi := testenv.StartCSI(t, cp)
	cs := cp.Clientset(t)
	snaps := snapclient.NewForConfigOrDie(cp.Config())
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vol"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	class := csi.StorageClass
	_, err := cs.CoreV1().PersistentVolumeClaims("vol").Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bound := func(ns string) *corev1.PersistentVolumeClaim {
		var pvc *corev1.PersistentVolumeClaim
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			pvc, err = cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
			return err == nil && pvc.Status.Phase == corev1.ClaimBound, nil
		}); err != nil {
			t.Fatalf("%s/data not bound: %v", ns, err)
		}
		return pvc
	}
	bound("vol")

	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("secret\n"), 0o600)
	run := func(args ...string) (string, error) {
		root := NewRootCommand()
		var out, errOut bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errOut)
		root.SetArgs(args)
		err := root.ExecuteContext(ctx)
		if err != nil {
			t.Logf("arca %v: %s", args, errOut.String())
		}
		return out.String(), err
	}
	common := []string{"--kubeconfig", cp.KubeconfigFile(t), "--repo", "file://" + filepath.Join(dir, "repo"), "--password-file", pw}

	out, err := run(append([]string{"local", "backup", "--include-namespaces", "vol", "--snapshot-timeout", "1m", "--output", "json"}, common...)...)
	if err != nil {
		t.Fatal(err)
	}
	var b BackupOutput
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		t.Fatal(err)
	}
	r, err := (&RepoOptions{Repo: "file://" + filepath.Join(dir, "repo"), PasswordFile: pw}).Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rp, err := r.FindRecoveryPoint(ctx, b.ID)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	recs, err := volume.Decode(rp.Volumes)
	if err != nil || len(recs.Snapshots) != 1 {
		t.Fatalf("records %+v %v", recs, err)
	}
	content := recs.Snapshots[0].Content
	if c, err := snaps.SnapshotV1().VolumeSnapshotContents().Get(ctx, content, metav1.GetOptions{}); err != nil || c.Labels["arca.io/recovery-point"] != b.ID[:32] {
		t.Errorf("content %s not labelled with the recovery point: %v %v", content, err, c.Labels)
	}

	if _, err := run(append([]string{"local", "restore", "--recovery-point", b.ID, "--namespace-mapping", "vol=vol2",
		"--without-volume-data", "--storage-class-mapping", csi.StorageClass + "=" + csi.StorageClass}, common...)...); err != nil {
		t.Fatal(err)
	}
	if pvc := bound("vol2"); pvc.Spec.DataSource != nil {
		t.Errorf("restored without data, dataSource %+v", pvc.Spec.DataSource)
	}
	if _, err := run(append([]string{"local", "restore", "--recovery-point", b.ID, "--storage-class-mapping", "bad"}, common...)...); ExitCode(err) != 2 {
		t.Errorf("bad --storage-class-mapping: exit %d (%v)", ExitCode(err), err)
	}

	out, err = run(append([]string{"local", "forget", b.ID, "--output", "json"}, common...)...)
	if err != nil {
		t.Fatal(err)
	}
	var f []ForgetOutput
	if err := json.Unmarshal([]byte(out), &f); err != nil || len(f) != 1 || len(f[0].DeletedContents) != 1 || f[0].DeletedContents[0] != content {
		t.Fatalf("forget output %s (%v)", out, err)
	}
	if _, err := snaps.SnapshotV1().VolumeSnapshotContents().Get(ctx, content, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("content %s still exists: %v", content, err)
	}
	r, err = (&RepoOptions{Repo: "file://" + filepath.Join(dir, "repo"), PasswordFile: pw}).Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.FindRecoveryPoint(ctx, b.ID); err == nil {
		t.Error("recovery point not forgotten")
	}
}

// storageClassMappings is a criteria field: from a --config file, overridden
// by --storage-class-mapping, and validated like the rest of the criteria.
func TestLocalRestoreStorageClassMappings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "criteria.yaml")
	if err := os.WriteFile(file, []byte("storageClassMappings: {managed-csi: fast.example.com}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := &LocalRestoreOptions{Config: file}
	c, _, err := o.Criteria()
	if err != nil || len(c.StorageClassMappings) != 1 || c.StorageClassMappings["managed-csi"] != "fast.example.com" {
		t.Fatalf("from file: %v %v", c.StorageClassMappings, err)
	}
	o.volumes.storageClassMapping = []string{"standard=premium"}
	c, _, err = o.Criteria()
	if err != nil || len(c.StorageClassMappings) != 1 || c.StorageClassMappings["standard"] != "premium" {
		t.Fatalf("flag over file: %v %v", c.StorageClassMappings, err)
	}
	for _, bad := range []string{"Bad_Class=x", "old=", "nopair"} {
		o := &LocalRestoreOptions{volumes: volumeRestoreFlags{storageClassMapping: []string{bad}}}
		if _, _, err := o.Criteria(); ExitCode(err) != 2 {
			t.Errorf("--storage-class-mapping %s: exit %d (%v)", bad, ExitCode(err), err)
		}
	}
}
