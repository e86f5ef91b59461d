package extension_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/testenv"
)

// Two API servers: the source cluster (A) and an alternate restore target
// (B). No kube-controller-manager: nothing here needs garbage collection.
var cpA, cpB *testenv.ControlPlane

func TestMain(m *testing.M) {
	t, cleanup := testenv.NewMainT("extension")
	cpA = testenv.StartControlPlane(t, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	cpB = testenv.StartControlPlane(t, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	for _, cp := range []*testenv.ControlPlane{cpA, cpB} {
		if err := extension.InstallCRDs(context.Background(), cp.Config()); err != nil {
			t.Fatalf("install CRDs: %v", err)
		}
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

const password = "extension-test-password"

// cluster is a test's view of one API server and one extension namespace.
type cluster struct {
	t   *testing.T
	cfg *rest.Config
	ns  string
	c   client.Client
	cs  kubernetes.Interface
	dyn dynamic.Interface
}

func newCluster(t *testing.T, cp *testenv.ControlPlane, ns string) *cluster {
	t.Helper()
	cfg := cp.Config()
	c, err := client.New(cfg, client.Options{Scheme: extension.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	cl := &cluster{t: t, cfg: cfg, ns: ns, c: c, cs: kubernetes.NewForConfigOrDie(cfg), dyn: dynamic.NewForConfigOrDie(cfg)}
	cl.namespace(ns)
	return cl
}

func (cl *cluster) namespace(name string) {
	cl.t.Helper()
	_, err := cl.cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		cl.t.Fatal(err)
	}
	// No kube-controller-manager: make the default service account pods need.
	_, err = cl.cs.CoreV1().ServiceAccounts(name).Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		cl.t.Fatal(err)
	}
}

// storageLocation creates the Secret and the StorageLocation "default".
func (cl *cluster) storageLocation(name, url string, readOnly bool) {
	cl.t.Helper()
	ctx := context.Background()
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-creds", Namespace: cl.ns}, StringData: map[string]string{v1alpha1.SecretKeyPassword: password}}
	if err := cl.c.Create(ctx, sec); err != nil {
		cl.t.Fatal(err)
	}
	loc := &v1alpha1.StorageLocation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: cl.ns},
		Spec: v1alpha1.StorageLocationSpec{URL: url, CredentialsSecret: sec.Name, ReadOnly: readOnly}}
	if err := cl.c.Create(ctx, loc); err != nil {
		cl.t.Fatal(err)
	}
}

// apply creates the objects of a kubectl-style YAML document, with strict
// field validation (kubectl's default): unknown fields are errors.
func (cl *cluster) apply(doc string) error {
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		cl.t.Fatal(err)
	}
	plural := strings.ToLower(u.GetKind()) + "s"
	gvr := v1alpha1.GroupVersion.WithResource(plural)
	_, err := cl.dyn.Resource(gvr).Namespace(u.GetNamespace()).Create(context.Background(), u, metav1.CreateOptions{FieldValidation: "Strict"})
	return err
}

func (cl *cluster) mustApply(doc string) {
	cl.t.Helper()
	if err := cl.apply(doc); err != nil {
		cl.t.Fatal(err)
	}
}

func (cl *cluster) backupJob(name string) *v1alpha1.BackupJob {
	cl.t.Helper()
	j := &v1alpha1.BackupJob{}
	if err := cl.c.Get(context.Background(), types.NamespacedName{Namespace: cl.ns, Name: name}, j); err != nil {
		cl.t.Fatal(err)
	}
	return j
}

func (cl *cluster) restoreJob(name string) *v1alpha1.RestoreJob {
	cl.t.Helper()
	j := &v1alpha1.RestoreJob{}
	if err := cl.c.Get(context.Background(), types.NamespacedName{Namespace: cl.ns, Name: name}, j); err != nil {
		cl.t.Fatal(err)
	}
	return j
}

// waitJob polls a job until cond holds and returns its last status.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (cl *cluster) waitBackup(name string, timeout time.Duration) *v1alpha1.BackupJob {
	cl.t.Helper()
	var j *v1alpha1.BackupJob
	waitFor(cl.t, "backup job "+name+" to finish", timeout, func() bool { j = cl.backupJob(name); return j.Status.Phase.Terminal() })
	return j
}

func (cl *cluster) waitRestore(name string, timeout time.Duration) *v1alpha1.RestoreJob {
	cl.t.Helper()
	var j *v1alpha1.RestoreJob
	waitFor(cl.t, "restore job "+name+" to finish", timeout, func() bool { j = cl.restoreJob(name); return j.Status.Phase.Terminal() })
	return j
}

// runningExtension is an out-of-cluster extension started by a test.
type runningExtension struct {
	metrics string
	stop    func()
}

func (cl *cluster) startExtension(opts extension.Options) *runningExtension {
	cl.t.Helper()
	opts.Namespace = cl.ns
	port := testenv.FreePort(cl.t)
	opts.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", port)
	opts.ProbeAddr = "0"
	if opts.StatusInterval == 0 {
		opts.StatusInterval = 200 * time.Millisecond
	}
	if opts.Executor == nil {
		opts.Executor = &recorder{}
	}
	opts.Log = logr.Discard()
	mgr, err := extension.NewManager(cl.cfg, opts)
	if err != nil {
		cl.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					cl.t.Errorf("extension: %v", err)
				}
			case <-time.After(time.Minute):
				cl.t.Errorf("extension did not stop within a minute")
			}
		})
	}
	cl.t.Cleanup(stop)
	return &runningExtension{metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", port), stop: stop}
}

func (e *runningExtension) scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(e.metrics)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// recorder is an Executor that records calls; block, when set, is called
// and may hold a call; fail makes matching commands fail.
type recorder struct {
	mu    sync.Mutex
	calls []string
	block func(ctx context.Context, call string) error
}

func (r *recorder) Exec(ctx context.Context, pod types.NamespacedName, container string, command []string) (string, string, error) {
	call := pod.String() + " " + strings.Join(command, " ")
	r.mu.Lock()
	r.calls = append(r.calls, call)
	block := r.block
	r.mu.Unlock()
	if block != nil {
		if err := block(ctx, call); err != nil {
			return "", "exit status 1", err
		}
	}
	return "", "", nil
}

func (r *recorder) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// pod creates a pod (it stays Pending: no scheduler, no kubelet).
func (cl *cluster) pod(ns, name string, labels map[string]string) {
	cl.t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}}}}
	if _, err := cl.cs.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		cl.t.Fatal(err)
	}
}

func (cl *cluster) configMaps(ns string, n int) {
	cl.t.Helper()
	for i := range n {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%03d", i), Namespace: ns, Labels: map[string]string{"app": "shop"}},
			Data: map[string]string{"k": strings.Repeat("v", 100)}}
		if _, err := cl.cs.CoreV1().ConfigMaps(ns).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
			cl.t.Fatal(err)
		}
	}
}

// admissionBound creates the ValidatingAdmissionPolicyBinding that makes
// vaults label their jobs (bound to a policy that does not exist, so it
// refuses nothing here), until the test ends: while a vault is trusted,
// the extension refuses the owner's unlabelled jobs and queries without
// it (VaultAdmissionPolicyMissing).
func (cl *cluster) admissionBound() {
	cl.t.Helper()
	bind := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.VaultJobsAdmissionPolicy},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: "arca-test-absent",
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}}}
	if err := cl.c.Create(context.Background(), bind); err != nil && !apierrors.IsAlreadyExists(err) {
		cl.t.Fatal(err)
	}
	cl.t.Cleanup(func() { _ = cl.c.Delete(context.Background(), bind) })
}

func hasCode(issues []v1alpha1.JobIssue, code string) bool {
	for _, i := range issues {
		if i.Code == code {
			return true
		}
	}
	return false
}
