package extension_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/testenv"
)

// TestS3StorageLocationCredentialsFromSecret: the storage credentials come
// from the location's Secret (keys named like the environment variables);
// a wrong secret key makes the location Unavailable, a right one takes a
// backup. The manager's health endpoints answer.
func TestS3StorageLocationCredentialsFromSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	m := testenv.StartMinIO(t)
	m.MakeBucket(t, "arca")
	a := newCluster(t, cpA, "arca-s3")
	a.namespace("s3-app")
	ctx := context.Background()
	url := fmt.Sprintf("s3://arca/cluster-a?endpoint=%s&tls=false&path-style=true&region=us-east-1", m.Endpoint)
	for name, secretKey := range map[string]string{"good": m.SecretKey, "bad": "not-the-key"} {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: a.ns}, StringData: map[string]string{
			v1alpha1.SecretKeyPassword: password, v1alpha1.SecretKeyAWSAccessKeyID: m.AccessKey, v1alpha1.SecretKeyAWSSecretAccessKey: secretKey}}
		if err := a.c.Create(ctx, sec); err != nil {
			t.Fatal(err)
		}
		if err := a.c.Create(ctx, &v1alpha1.StorageLocation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: a.ns},
			Spec: v1alpha1.StorageLocationSpec{URL: url, CredentialsSecret: name}}); err != nil {
			t.Fatal(err)
		}
	}
	health := testenv.FreePort(t)
	mgr, err := extension.NewManager(a.cfg, extension.Options{Namespace: a.ns, MetricsAddr: "0", ProbeAddr: fmt.Sprintf("127.0.0.1:%d", health),
		StatusInterval: 200 * time.Millisecond, Executor: &recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() { stop(); <-done })

	phase := func(name string) (v1alpha1.StorageLocationPhase, string) {
		l := &v1alpha1.StorageLocation{}
		_ = a.c.Get(ctx, types.NamespacedName{Namespace: a.ns, Name: name}, l)
		return l.Status.Phase, l.Status.Message
	}
	waitFor(t, "storage locations probed", time.Minute, func() bool {
		g, _ := phase("good")
		b, _ := phase("bad")
		return g != "" && b != ""
	})
	if p, msg := phase("good"); p != v1alpha1.StorageAvailable {
		t.Errorf("good: %s %s", p, msg)
	}
	if p, msg := phase("bad"); p != v1alpha1.StorageUnavailable {
		t.Errorf("bad: %s %s", p, msg)
	} else {
		t.Logf("bad credentials: %s", msg)
	}
	a.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: to-s3, namespace: arca-s3}
spec: {storageLocation: good, includedNamespaces: [s3-app]}
`)
	if j := a.waitBackup("to-s3", time.Minute); j.Status.Phase != v1alpha1.JobCompleted {
		t.Fatalf("backup to S3: %+v", j.Status)
	}
	a.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: to-s3-bad, namespace: arca-s3}
spec: {storageLocation: bad, includedNamespaces: [s3-app]}
`)
	if j := a.waitBackup("to-s3-bad", time.Minute); j.Status.Phase != v1alpha1.JobFailed || !hasCode(j.Status.Errors, v1alpha1.CodeRepositoryUnavailable) {
		t.Errorf("backup with bad credentials: %+v", j.Status)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", health, path))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
}

// TestForgetRespectsObjectLock: on a bucket with S3 Object Lock
// (COMPLIANCE, 6 s), an expiry job cannot forget a point whose manifest is
// still retained: it fails with RecoveryPointRetained naming the date, and
// the point stays; after the date the same expiry forgets it.
func TestForgetRespectsObjectLock(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	m := testenv.StartMinIO(t)
	ctx := context.Background()
	if err := m.Client(t).MakeBucket(ctx, "locked", minio.MakeBucketOptions{ObjectLocking: true}); err != nil {
		t.Fatal(err)
	}
	a := newCluster(t, cpA, "arca-lock")
	a.namespace("lock-app")
	a.configMaps("lock-app", 3)
	url := fmt.Sprintf("s3://locked/r?endpoint=%s&tls=false&path-style=true&region=us-east-1&object-lock=compliance&lock-period=6s", m.Endpoint)
	if err := a.c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: a.ns}, StringData: map[string]string{
		v1alpha1.SecretKeyPassword: password, v1alpha1.SecretKeyAWSAccessKeyID: m.AccessKey, v1alpha1.SecretKeyAWSSecretAccessKey: m.SecretKey}}); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Create(ctx, &v1alpha1.StorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "locked", Namespace: a.ns},
		Spec: v1alpha1.StorageLocationSpec{URL: url, CredentialsSecret: "creds"}}); err != nil {
		t.Fatal(err)
	}
	a.startExtension(extension.Options{Namespace: a.ns})
	a.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: locked-backup, namespace: arca-lock}
spec: {storageLocation: locked, includedNamespaces: [lock-app]}
`)
	bj := a.waitBackup("locked-backup", time.Minute)
	if bj.Status.Phase != v1alpha1.JobCompleted {
		t.Fatalf("backup into a locked bucket: %+v", bj.Status)
	}
	written := time.Now()
	forget := func(name string) *v1alpha1.BackupJob {
		a.mustApply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: %s, namespace: arca-lock}
spec: {storageLocation: locked, forgetRecoveryPoints: [%s]}
`, name, bj.Status.RecoveryPointID))
		return a.waitBackup(name, time.Minute)
	}
	j := forget("forget-early")
	if j.Status.Phase != v1alpha1.JobFailed || !hasCode(j.Status.Errors, v1alpha1.CodeRecoveryPointRetained) ||
		!strings.Contains(j.Status.Message, "object lock retains them until") {
		t.Fatalf("forget of a retained point: %s %s %+v", j.Status.Phase, j.Status.Message, j.Status.Errors)
	}
	time.Sleep(time.Until(written.Add(7 * time.Second)))
	j = forget("forget-later")
	if j.Status.Phase != v1alpha1.JobCompleted || j.Status.Counts["recoveryPoints"] != 1 {
		t.Fatalf("forget after the retention passed: %s %s %+v %v", j.Status.Phase, j.Status.Message, j.Status.Errors, j.Status.Counts)
	}
}
