package restore_test

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/backup"
	"github.com/arca-backup/arca/internal/diff"
	"github.com/arca-backup/arca/internal/kube/kubetest"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/restore"
	"github.com/arca-backup/arca/internal/storage/mem"
	"github.com/arca-backup/arca/internal/testenv"
)

// One control plane (with kube-controller-manager, so namespaces really go
// away) for the whole package: starting one costs seconds of two shared cores.
var cp *testenv.ControlPlane

func TestMain(m *testing.M) {
	t, cleanup := testenv.NewMainT("restore")
	cp = testenv.StartControlPlane(t, testenv.ControlPlaneOptions{})
	code := m.Run()
	cleanup()
	os.Exit(code)
}

func cfg() *rest.Config { return cp.Config() }

func newRepo(t *testing.T) *repo.Repository {
	t.Helper()
	r, err := repo.Init(context.Background(), mem.New(), "test-password")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func kc(t *testing.T) *kubetest.Client {
	t.Helper()
	c, err := kubetest.New(cfg())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func load(t *testing.T, file string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kubetest.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func parse(t *testing.T, yaml string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := kubetest.Decode([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func doBackup(t *testing.T, r *repo.Repository, c v1alpha1.BackupConfiguration) *repo.RecoveryPoint {
	t.Helper()
	res, err := backup.Run(context.Background(), cfg(), r, backup.Options{Config: c})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	return res.RecoveryPoint
}

func doRestore(t *testing.T, r *repo.Repository, rp *repo.RecoveryPoint, c v1alpha1.RestoreCriteria) *restore.Result {
	t.Helper()
	res, err := restore.Run(context.Background(), cfg(), rp, r, restore.Options{Criteria: c})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	return res
}

// expectedDifferences are the fields a restore changes by design: identity
// and server-assigned values (docs/engine.md, stripping rules), and the
// restore's own labels.
var expectedDifferences = regexp.MustCompile(`^(` + strings.Join([]string{
	`metadata\.uid`, `metadata\.creationTimestamp`,
	`metadata\.labels\["arca\.io/(recovery-point|restore)"\]`,
	`metadata\.ownerReferences\[\d+\]\.uid`,
	`metadata\.annotations\["pv\.kubernetes\.io/[a-z-]+"\]`,
	`metadata\.annotations\["deployment\.kubernetes\.io/revision"\]`, // set by the controller, maybe after the first backup
	`metadata\.annotations\["volume\.kubernetes\.io/[a-z-]+"\]`,
	`spec\.clusterIPs?(\[\d+\])?`, `spec\.ports\[\d+\]\.nodePort`, `spec\.healthCheckNodePort`,
	`spec\.claimRef\.(uid|resourceVersion)`,
	`spec\.selector\.matchLabels(\["batch\.kubernetes\.io/controller-uid"\]|\.controller-uid)`,
	`spec\.template\.metadata\.labels(\["batch\.kubernetes\.io/controller-uid"\]|\.controller-uid)`,
}, "|") + `)$`)

// ignoredTypes are made by controllers with names of their own choosing or
// timing (pods of ReplicaSets and Jobs), so they are not compared one to one.
var ignoredTypes = map[string]bool{"pods": true, "replicasets.apps": true, "controllerrevisions.apps": true}

// assertSameContent compares two recovery points object by object, allowing
// only the differences a restore makes by design.
func assertSameContent(t *testing.T, r *repo.Repository, before, after *repo.RecoveryPoint) {
	t.Helper()
	rep, err := diff.Compare(context.Background(), diff.RecoveryPoint(before, r), diff.RecoveryPoint(after, r), diff.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, c := range rep.Changes {
		if ignoredTypes[kubeGR(c.Key)] {
			continue
		}
		switch c.Type {
		case diff.Removed:
			t.Errorf("not restored: %s", c.Key)
			bad++
		case diff.Added:
			t.Logf("new after restore (made by the cluster): %s", c.Key)
		case diff.Changed:
			for _, f := range c.Fields {
				if expectedDifferences.MatchString(f.Path) || onlyRestoreLabels(f) {
					continue
				}
				t.Errorf("%s: %s: %s → %s", c.Key, f.Path, f.Old, f.New)
				bad++
			}
		}
	}
	t.Logf("compared: %d unchanged, %d changed, %d removed, %d added; %d unexpected differences", rep.Unchanged, rep.Modified, rep.Removed, rep.Added, bad)
}

func kubeGR(k diff.Key) string {
	if k.Group == "" {
		return k.Resource
	}
	return k.Resource + "." + k.Group
}

func clusterScoped(objs []*unstructured.Unstructured) (namespaces, others []*unstructured.Unstructured) {
	for _, o := range objs {
		switch {
		case o.GetKind() == "Namespace":
			namespaces = append(namespaces, o)
		case o.GetNamespace() == "" && isClusterKind(o.GetKind()):
			others = append(others, o)
		}
	}
	return
}

func isClusterKind(k string) bool {
	switch k {
	case "CustomResourceDefinition", "StorageClass", "IngressClass", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
		"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "PriorityClass":
		return true
	}
	return false
}

func wait(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func unstructuredString(obj map[string]any, fields ...string) (string, bool, error) {
	return unstructured.NestedString(obj, fields...)
}

// onlyRestoreLabels reports whether f adds a labels map holding nothing but
// the restore's own labels (the object had none before).
func onlyRestoreLabels(f diff.FieldChange) bool {
	if (f.Path != "metadata.labels" && f.Path != "metadata.annotations") || f.Old != nil {
		return false
	}
	var m map[string]string
	if json.Unmarshal(f.New, &m) != nil {
		return false
	}
	delete(m, v1alpha1.LabelRecoveryPoint)
	delete(m, v1alpha1.LabelRestore)
	delete(m, "deployment.kubernetes.io/revision")
	return len(m) == 0
}

type repoEntry = repo.TreeEntry

func unstructuredInt(obj map[string]any, fields ...string) (int64, bool, error) {
	return unstructured.NestedInt64(obj, fields...)
}
