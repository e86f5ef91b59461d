package chart

import (
	"fmt"
	"github.com/go-logr/logr"
	"path/filepath"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/testenv"
)

// TestChartInstallOnNode installs the chart, rendered by Helm's engine, onto
// a cluster with a real node: the extension's pod from the image in the
// node's registry becomes Ready and runs a BackupJob into file storage on
// the node.
func TestChartInstallOnNode(t *testing.T) {
	ctrllog.SetLogger(logr.Discard())
	ctx := t.Context()
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{Nodes: 1})
	img := testenv.ExtensionImage(t, cp.Registry)
	const ns = "arca-helm"
	repo := filepath.Join(t.TempDir(), "repo")
	objs, err := Render(chartDir(t), ns, map[string]any{
		"image":   img,
		"storage": map[string]any{"url": "file://" + repo, "hostPath": repo, "credentials": map[string]any{v1alpha1.SecretKeyPassword: "helm-password"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cs := cp.Clientset(t)
	// `helm install --create-namespace`.
	for _, n := range []string{ns, "app"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := extension.Apply(ctx, cp.Config(), objs); err != nil {
		t.Fatal(err)
	}
	r, err := extension.WaitReady(ctx, cp.Config(), ns, extension.WaitOptions{Timeout: 4 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if r.Node != cp.Nodes[0].Name {
		t.Fatalf("extension pod %s on node %q", r.Pod, r.Node)
	}
	for i := range 5 {
		if _, err := cs.CoreV1().ConfigMaps("app").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i)},
			Data: map[string]string{"i": fmt.Sprint(i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.New(cp.Config(), client.Options{Scheme: extension.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	bj := &v1alpha1.BackupJob{ObjectMeta: metav1.ObjectMeta{Name: "first", Namespace: ns},
		Spec: v1alpha1.BackupJobSpec{StorageLocation: extension.DefaultStorageLocation}}
	bj.Spec.IncludedNamespaces = []string{"app"}
	if err := c.Create(ctx, bj); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !bj.Status.Phase.Terminal() {
		if time.Now().After(deadline) {
			t.Fatalf("backup not finished: %+v", bj.Status)
		}
		time.Sleep(300 * time.Millisecond)
		if err := c.Get(ctx, client.ObjectKeyFromObject(bj), bj); err != nil {
			t.Fatal(err)
		}
	}
	if bj.Status.Phase != v1alpha1.JobCompleted || bj.Status.RecoveryPointID == "" {
		t.Fatalf("backup: %+v", bj.Status)
	}
	t.Logf("chart install: pod %s on %s, backup %s", r.Pod, r.Node, bj.Status.RecoveryPointID[:12])
}
