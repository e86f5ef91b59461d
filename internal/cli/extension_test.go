package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/config/crd"
	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/testenv"
)

// TestExtensionCommands drives install, run (out of cluster, in-process),
// a BackupJob, show, manifests, update, the Velero check and uninstall
// against a real API server.
func TestExtensionCommands(t *testing.T) {
	ctx := context.Background()
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	kubeconfig := cp.KubeconfigFile(t)
	c, err := client.New(cp.Config(), client.Options{Scheme: extension.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("secret\n"), 0o600)
	run := func(args ...string) (string, error) {
		root := NewRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(args)
		err := root.ExecuteContext(ctx)
		return out.String(), err
	}
	k := []string{"--kubeconfig", kubeconfig}
	storage := "file://" + filepath.Join(dir, "repo")

	if _, err := run(append([]string{"extension", "run", "--metrics-addr", "0", "--health-addr", "0"}, k...)...); err == nil || !strings.Contains(err.Error(), "does not serve backupjobs.arca.io") {
		t.Fatalf("run without CRDs: %v", err)
	}
	if _, err := run(append([]string{"extension", "install", "--password-file", pw}, k...)...); ExitCode(err) != 2 || !strings.Contains(err.Error(), "--storage") {
		t.Fatalf("install without --storage: %v", err)
	}
	// file:// storage needs a volume in the pod; this cluster has no node to
	// take the URL's path from.
	if out, err := run(append([]string{"extension", "install", "--storage", storage, "--password-file", pw, "--wait=false"}, k...)...); ExitCode(err) != 2 ||
		!strings.Contains(err.Error(), "--storage-claim") || !strings.Contains(err.Error(), "--storage-host-path") || !strings.Contains(out, "has 0 nodes") {
		t.Fatalf("file storage without a volume: %v\n%s", err, out)
	}
	out, err := run(append([]string{"extension", "install", "--storage", storage, "--password-file", pw, "--memory-limit", "300Mi",
		"--node-selector", "kubernetes.io/os=linux", "--tolerations", "dedicated=backup:NoSchedule", "--storage-host-path", "/var/lib/arca-test",
		"--image-pull-secret", "regcred", "--extension-arg=--log-format=json", "--storage-retry", "45s", "--wait=false"}, k...)...)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	t.Logf("install:\n%s", out)
	dep := &appsv1.Deployment{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "arca-system", Name: v1alpha1.ExtensionName}, dep); err != nil {
		t.Fatal(err)
	}
	ctr := dep.Spec.Template.Spec.Containers[0]
	if ctr.Resources.Limits.Memory().String() != "300Mi" || dep.Spec.Template.Spec.NodeSelector["kubernetes.io/os"] != "linux" ||
		len(dep.Spec.Template.Spec.Tolerations) != 1 || dep.Spec.Template.Spec.ServiceAccountName != v1alpha1.ExtensionName ||
		!strings.Contains(strings.Join(ctr.Args, " "), "--leader-elect") {
		t.Errorf("deployment %+v", dep.Spec.Template.Spec)
	}
	if ps := dep.Spec.Template.Spec; len(ps.Volumes) != 1 || ps.Volumes[0].HostPath == nil || ps.Volumes[0].HostPath.Path != "/var/lib/arca-test" ||
		len(ctr.VolumeMounts) != 1 || ctr.VolumeMounts[0].MountPath != filepath.Join(dir, "repo") ||
		len(ps.ImagePullSecrets) != 1 || ps.ImagePullSecrets[0].Name != "regcred" {
		t.Errorf("storage volume and pull secret: %+v %+v", ps, ctr.VolumeMounts)
	}
	sec := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "arca-system", Name: extension.DefaultStorageSecret}, sec); err != nil || string(sec.Data["password"]) != "secret" {
		t.Fatalf("secret: %v %v", err, sec.Data)
	}

	// The out-of-cluster runner, as in development and the demo.
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := runCtx(rctx, append([]string{"extension", "run", "--metrics-addr", "0", "--health-addr", "0", "--status-interval", "300ms"}, k...)...)
		done <- err
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("extension run: %v", err)
		}
	}()
	job := &v1alpha1.BackupJob{}
	if err := yaml.UnmarshalStrict([]byte(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: first, namespace: arca-system}
spec: {storageLocation: default, includedNamespaces: [arca-system]}
`), job); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for !job.Status.Phase.Terminal() {
		if time.Now().After(deadline) {
			t.Fatalf("job not finished: %+v", job.Status)
		}
		time.Sleep(100 * time.Millisecond)
		if err := c.Get(ctx, client.ObjectKeyFromObject(job), job); err != nil {
			t.Fatal(err)
		}
	}
	if job.Status.Phase != v1alpha1.JobCompleted || job.Status.RecoveryPointID == "" {
		t.Fatalf("job: %+v", job.Status)
	}

	var h extension.Health
	for start := time.Now(); ; {
		out, err = run(append([]string{"extension", "show", "-o", "json"}, k...)...)
		if err != nil {
			t.Fatalf("show: %v", err)
		}
		if err := json.Unmarshal([]byte(out), &h); err != nil {
			t.Fatalf("show output: %v\n%s", err, out)
		}
		if len(h.StorageLocations) == 1 && h.StorageLocations[0].Phase == "Available" && h.Heartbeat != nil || time.Since(start) > 30*time.Second {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !h.Installed || !h.Healthy || h.Heartbeat == nil || len(h.CRDs) != len(crd.Files()) || len(h.StorageLocations) != 1 || h.StorageLocations[0].Phase != "Available" {
		t.Errorf("show: %s", out)
	}
	if out, err = run(append([]string{"extension", "show"}, k...)...); err != nil || !strings.Contains(out, "heartbeat:") || !strings.Contains(out, "default") {
		t.Errorf("show table: %v\n%s", err, out)
	}
	t.Logf("show:\n%s", out)

	// manifests: YAML for GitOps, every image listed.
	if _, err = run("extension", "manifests", "--storage", storage); ExitCode(err) != 2 || !strings.Contains(err.Error(), "--storage-claim") {
		t.Errorf("manifests of file storage without a volume: %v", err)
	}
	out, err = run("extension", "manifests", "--storage", storage, "--image", "registry.internal/arca:1.2.3", "--storage-secret", "mine",
		"--storage-claim", "backups", "--storage-claim-size", "5Gi")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"#   registry.internal/arca:1.2.3", "kind: CustomResourceDefinition", "kind: Deployment", "kind: ClusterRoleBinding", "kind: StorageLocation", "credentialsSecret: mine",
		"kind: PersistentVolumeClaim", "storage: 5Gi", "claimName: backups"} {
		if !strings.Contains(out, want) {
			t.Errorf("manifests lack %q", want)
		}
	}
	if strings.Contains(out, "kind: Secret") {
		t.Errorf("manifests with --storage-secret include a Secret")
	}
	if out, err = run("extension", "manifests", "--images"); err != nil || strings.TrimSpace(out) != extension.DefaultImageRepository+":"+Version {
		t.Errorf("manifests --images: %v %q", err, out)
	}

	// update changes only what it is told.
	if out, err = run(append([]string{"extension", "update", "--image", "registry.internal/arca:2", "--cpu-limit", "2", "--wait=false"}, k...)...); err != nil {
		t.Fatalf("update: %v\n%s", err, out)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(dep), dep); err != nil {
		t.Fatal(err)
	}
	ctr = dep.Spec.Template.Spec.Containers[0]
	if ctr.Image != "registry.internal/arca:2" || ctr.Resources.Limits.Cpu().String() != "2" || ctr.Resources.Limits.Memory().String() != "300Mi" ||
		dep.Spec.Template.Spec.NodeSelector["kubernetes.io/os"] != "linux" || len(ctr.VolumeMounts) != 1 ||
		dep.Spec.Template.Spec.Volumes[0].HostPath.Path != "/var/lib/arca-test" || dep.Spec.Template.Spec.ImagePullSecrets[0].Name != "regcred" ||
		ctr.Args[len(ctr.Args)-1] != "--log-format=json" || !slices.Contains(ctr.Args, "--storage-retry=45s") {
		t.Errorf("after update: %+v", ctr)
	}
	loc := &v1alpha1.StorageLocation{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "arca-system", Name: "default"}, loc); err != nil || loc.Spec.URL != storage {
		t.Errorf("storage location after update: %v %+v", err, loc.Spec)
	}

	// Velero present: install refuses, naming what it found.
	veleroCRD := &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: "backups.velero.io"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{Group: "velero.io", Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "backups", Kind: "Backup"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr.To(true)}}}}}}
	if err := c.Create(ctx, veleroCRD); err != nil {
		t.Fatal(err)
	}
	// The detector reads discovery, which serves the group once the CRD is established.
	disc := cp.Clientset(t).Discovery()
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		_, err := disc.ServerResourcesForGroupVersion("velero.io/v1")
		return err == nil, nil
	}); err != nil {
		t.Fatalf("velero.io/v1 not served: %v", err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "velero"}}); err != nil {
		t.Fatal(err)
	}
	vdep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "velero", Namespace: "velero"}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "velero"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "velero"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "velero", Image: "velero/velero:v1"}}}}}}
	if err := c.Create(ctx, vdep); err != nil {
		t.Fatal(err)
	}
	_, err = run(append([]string{"extension", "install", "--storage", storage, "--password-file", pw, "--storage-host-path", "/var/lib/arca-test", "--wait=false"}, k...)...)
	if ExitCode(err) != 2 || !strings.Contains(err.Error(), "backups.velero.io") || !strings.Contains(err.Error(), "deployment velero/velero") || !strings.Contains(err.Error(), "--allow-velero") {
		t.Fatalf("install with Velero present: %v", err)
	}
	t.Logf("velero: %v", err)
	if out, err := run(append([]string{"extension", "install", "--storage", storage, "--password-file", pw, "--allow-velero", "--storage-host-path", "/var/lib/arca-test", "--wait=false"}, k...)...); err != nil {
		t.Fatalf("install --allow-velero: %v\n%s", err, out)
	}

	// uninstall --keep-crds keeps the CRDs; show then reports nothing installed.
	stop()
	if err := <-done; err != nil {
		t.Errorf("extension run: %v", err)
	}
	done <- nil
	if out, err = run(append([]string{"extension", "uninstall", "--keep-crds"}, k...)...); err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	if !strings.Contains(out, "deleted Deployment arca-system/arca-extension") || strings.Contains(out, "CustomResourceDefinition") {
		t.Errorf("uninstall --keep-crds:\n%s", out)
	}
	out, _ = run(append([]string{"extension", "show", "-o", "json"}, k...)...)
	h = extension.Health{}
	allCRDs, err := crd.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &h); err != nil || h.Installed || len(h.CRDs) != len(allCRDs) {
		t.Errorf("show after uninstall: %v %s", err, out)
	}
	if out, err = run(append([]string{"extension", "uninstall"}, k...)...); err != nil || !strings.Contains(out, "CustomResourceDefinition backupjobs.arca.io") {
		t.Errorf("uninstall: %v\n%s", err, out)
	}
}

func runCtx(ctx context.Context, args ...string) (string, error) {
	root := NewRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

// TestExtensionStorageRetryFlag: --storage-retry of install, update and
// manifests becomes the pod's `arca extension run --storage-retry=…` only
// when given; update keeps the installed budget unless told, and
// --storage-retry 0 takes it back to the default; a negative one is a usage
// error.
func TestExtensionStorageRetryFlag(t *testing.T) {
	ctx := t.Context()
	out, err := runCtx(ctx, "extension", "manifests", "--storage", "s3://b/p", "--storage-retry", "45s")
	if err != nil || !strings.Contains(out, "\n        - --storage-retry=45s\n") {
		t.Fatalf("manifests --storage-retry 45s: %v\n%s", err, out)
	}
	if out, err = runCtx(ctx, "extension", "manifests", "--storage", "s3://b/p"); err != nil || strings.Contains(out, "--storage-retry") {
		t.Fatalf("manifests without --storage-retry: %v; the output names it: %t", err, strings.Contains(out, "--storage-retry"))
	}
	if _, err = runCtx(ctx, "extension", "manifests", "--storage", "s3://b/p", "--storage-retry=-1s"); ExitCode(err) != 2 || !strings.Contains(err.Error(), "--storage-retry -1s") {
		t.Fatalf("negative --storage-retry: %v (exit %d)", err, ExitCode(err))
	}

	// update: the flags merge into the installed options.
	installed := extension.InstallOptions{StorageURL: "s3://b/p", StorageRetry: 30 * time.Second, MaxConcurrentJobs: 2}
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{nil, 30 * time.Second},
		{[]string{"--max-concurrent-jobs", "3"}, 30 * time.Second},
		{[]string{"--storage-retry", "2m"}, 2 * time.Minute},
		{[]string{"--storage-retry", "0"}, 0},
	} {
		o := &ExtensionOptions{}
		fs := pflag.NewFlagSet("update", pflag.ContinueOnError)
		o.addFlags(fs, true)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		o.flags = fs
		got, err := o.installOptions(installed, false)
		if err != nil || got.StorageRetry != tc.want {
			t.Errorf("update %q over an installed 30s: storage retry %s (%v), want %s", tc.args, got.StorageRetry, err, tc.want)
		}
	}
}
