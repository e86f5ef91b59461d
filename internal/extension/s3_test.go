package extension_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

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
