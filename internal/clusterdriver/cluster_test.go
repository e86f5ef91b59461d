package clusterdriver_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/testenv"
)

// newCluster starts a control plane without kube-controller-manager, installs
// the extension's CRDs and creates the given namespaces.
func newCluster(t *testing.T, namespaces ...string) (*testenv.ControlPlane, client.Client) {
	t.Helper()
	ctx := context.Background()
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	cfg := cp.Config()
	if err := extension.InstallCRDs(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: extension.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range namespaces {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	return cp, c
}

// runExtension creates, in arca-system, the StorageLocation "default" for a
// new filesystem repository with its password Secret, and runs the
// extension's manager in-process until the test ends. It returns the
// repository's URL and directory.
func runExtension(t *testing.T, cfg *rest.Config, c client.Client) (url, dir string) {
	t.Helper()
	ctx := context.Background()
	dir = filepath.Join(t.TempDir(), "repo")
	url = "file://" + dir
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "arca-system"}, StringData: map[string]string{"password": "pw"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &v1alpha1.StorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "arca-system"},
		Spec: v1alpha1.StorageLocationSpec{URL: url, CredentialsSecret: "creds"}}); err != nil {
		t.Fatal(err)
	}
	mgr, err := extension.NewManager(cfg, extension.Options{MetricsAddr: "0", ProbeAddr: "0", StatusInterval: 200 * time.Millisecond, Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() { stop(); <-done })
	return url, dir
}
