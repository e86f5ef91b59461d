package cli

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/arca-backup/arca/config/crd"
	"github.com/arca-backup/arca/internal/clusterdriver"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/local"
	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/vault/server"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

// validateVault is startTestVault with the store exposed (recovery points
// have no create API).
func validateVault(t *testing.T) (store.Store, func(args ...string) (string, error)) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "vault.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv, _ := server.New(st, server.Options{Log: slog.New(slog.DiscardHandler), Clusters: clusterdriver.NewTrustedAccess})
	ts := httptest.NewTLSServer(srv.Handler())
	t.Cleanup(ts.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, _, err := server.CreateAdminToken(context.Background(), st, "admin", "admin")
	if err != nil {
		t.Fatal(err)
	}
	return st, func(args ...string) (string, error) {
		root := NewRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(args, "--vault-url", ts.URL, "--token", tok, "--ca-cert", ca))
		err := root.ExecuteContext(context.Background())
		return out.String(), err
	}
}

func TestValidateCommands(t *testing.T) {
	ctx := context.Background()
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	csi := testenv.StartCSI(t, cp)
	kc := kubernetes.NewForConfigOrDie(cp.Config())
	kcfg := cp.KubeconfigFile(t)
	st, run := validateVault(t)

	// The extension as `arca extension run` leaves it: CRDs, namespace,
	// heartbeat, a storage location.
	crds, err := crd.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	ax := apiextclient.NewForConfigOrDie(cp.Config())
	for _, c := range crds {
		if _, err := ax.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "arca-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	holder, now := "test", metav1.NewMicroTime(time.Now())
	if _, err := kc.CoordinationV1().Leases("arca-system").Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "arca-extension"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, RenewTime: &now}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	repoDir := t.TempDir()
	url := "file://" + repoDir
	slGVR := schema.GroupVersionResource{Group: "arca.io", Version: "v1alpha1", Resource: "storagelocations"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := dynamic.NewForConfigOrDie(cp.Config()).Resource(slGVR).Namespace("arca-system").Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "arca.io/v1alpha1", "kind": "StorageLocation", "metadata": map[string]any{"name": "default"},
			"spec": map[string]any{"url": url, "credentialsSecret": "arca-storage"}}}, metav1.CreateOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("storage location: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // CRD not established yet
	}

	for _, args := range [][]string{
		{"trusted-access", "enable", "--kubeconfig", kcfg, "--vault", "prod", "--cluster-name", "c1"},
		{"vault", "create", "prod"},
		{"policy", "create", "daily", "--vault", "prod", "--schedule", "R/2026-01-01T02:00:00Z/PT24H", "--retain-default", "P7D"},
	} {
		if out, err := run(args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	// The vault refuses an instance while the trust model's assignments
	// are missing, naming the first and its fix.
	create := []string{"instance", "create", "shop", "--vault", "prod", "--cluster", "c1", "--policy", "daily", "--storage", url,
		"--snapshot-location", csi.SnapshotClass, "--include-namespaces", "shop"}
	if out, err := run(create...); err == nil || !strings.Contains(err.Error(), "RoleAssignmentMissing") ||
		!strings.Contains(err.Error(), "arca role assign --principal vault:prod --role \"Reader\" --scope '/clusters/c1'") {
		t.Fatalf("create without the trust model's roles: %v\n%s", err, out)
	}
	if _, err := st.GetInstance(ctx, "prod", "shop"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused create stored the instance: %v", err)
	}
	// With them it is created; then they are taken away again (as an
	// Owner might), which validation must notice.
	snapScope := "/snapshotLocations/" + csi.SnapshotClass
	trust := [][3]string{{"vault:prod", "Reader", "/clusters/c1"}, {"vault:prod", "Reader", snapScope},
		{"cluster:c1", "Contributor", snapScope}, {"extension:c1", "Storage Contributor", "/"}}
	for _, ra := range trust {
		if out, err := run("role", "assign", "--principal", ra[0], "--role", ra[1], "--scope", ra[2]); err != nil {
			t.Fatalf("%v: %v\n%s", ra, err, out)
		}
	}
	if out, err := run(create...); err != nil {
		t.Fatalf("%v: %v\n%s", create, err, out)
	}
	as, err := st.ListRoleAssignments(ctx, store.RoleAssignmentFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if slices.ContainsFunc(trust, func(ra [3]string) bool { return ra[0] == a.Principal && ra[2] == a.Scope }) {
			if err := st.DeleteRoleAssignment(ctx, a.ID); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The trust model's four assignments are missing: validation fails
	// with exit code 1 and says how to fix each.
	out, err := run("instance", "validate", "shop", "--vault", "prod", "--kubeconfig", kcfg)
	if !errors.Is(err, ErrValidationFailed) || ExitCode(err) != 1 {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	if n := strings.Count(out, "RoleAssignmentMissing"); n != 4 || !strings.Contains(out, "arca role assign --principal vault:prod --role \"Reader\" --scope '/clusters/c1'") {
		t.Fatalf("want 4 missing assignments with remedies:\n%s", out)
	}
	// An old cluster, simulated.
	out, _ = run("instance", "validate", "shop", "--vault", "prod", "--kubeconfig", kcfg, "--kubernetes-version-override", "v1.19.0", "-o", "json")
	if !strings.Contains(out, `"code": "KubernetesVersionUnsupported"`) || !strings.Contains(out, `"passed": false`) {
		t.Fatalf("json with old version:\n%s", out)
	}
	// --assign-missing-roles fixes exactly those four.
	before, _ := st.ListRoleAssignments(ctx, store.RoleAssignmentFilter{})
	out, err = run("instance", "validate", "shop", "--vault", "prod", "--kubeconfig", kcfg, "--assign-missing-roles")
	if err != nil || strings.Count(out, "assigned: ") != 4 || !strings.Contains(out, "all prerequisites met") {
		t.Fatalf("assign missing: %v\n%s", err, out)
	}
	after, _ := st.ListRoleAssignments(ctx, store.RoleAssignmentFilter{})
	if len(after) != len(before)+4 {
		t.Fatalf("assignments %d → %d", len(before), len(after))
	}
	out, err = run("instance", "validate", "shop", "--vault", "prod", "--kubeconfig", kcfg, "--assign-missing-roles")
	if err != nil || !strings.Contains(out, "no role assignment was missing") {
		t.Fatalf("second run: %v\n%s", err, out)
	}

	// Restore validation reads the recovery point: a PVC of storage
	// class "gold", which the target lacks, in namespace shop.
	be, err := local.Create(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(ctx, be, "pw", repo.WithKDF(repo.KDFParams{N: 1 << 10, R: 8, P: 1}))
	if err != nil {
		t.Fatal(err)
	}
	w, err := r.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, err := w.PutBlob(ctx, []byte(`{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"data","namespace":"shop"},"spec":{"storageClassName":"gold"}}`))
	if err != nil {
		t.Fatal(err)
	}
	tw := w.NewTree()
	if err := tw.Add(ctx, repo.TreeEntry{Version: "v1", Resource: "persistentvolumeclaims", Kind: "PersistentVolumeClaim", Namespace: "shop", Name: "data", Blobs: []repo.ID{id}}); err != nil {
		t.Fatal(err)
	}
	tree, err := tw.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rpID, err := w.Commit(ctx, &repo.RecoveryPoint{Started: time.Now(), Finished: time.Now(),
		Resources: []repo.ResourceTree{{Version: "v1", Resource: "persistentvolumeclaims", Kind: "PersistentVolumeClaim", Namespaced: true, Tree: tree}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateRecoveryPoint(ctx, &store.RecoveryPoint{Vault: "prod", ID: "rp-1", Instance: "shop", Time: time.Now(), RepoID: rpID.String(),
		Tag: "ondemand", Datastore: "operational", State: store.RPAvailable}); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err = run("restore", "validate", "--vault", "prod", "--recovery-point", "rp-1", "--target-cluster", "c1", "--kubeconfig", kcfg, "--password-file", pw)
	if !errors.Is(err, ErrValidationFailed) || !strings.Contains(out, "StorageClassMissing") || !strings.Contains(out, "lacks: gold") ||
		!strings.Contains(out, "NamespaceExists") {
		t.Fatalf("restore validate: %v\n%s", err, out)
	}
	out, err = run("restore", "validate", "--vault", "prod", "--recovery-point", "rp-1", "--target-cluster", "c1", "--kubeconfig", kcfg,
		"--password-file", pw, "--namespace-mapping", "shop=shop2", "-o", "json")
	if !errors.Is(err, ErrValidationFailed) || strings.Contains(out, "NamespaceExists") || !strings.Contains(out, `"code": "StorageClassMissing"`) {
		t.Fatalf("restore validate with mapping: %v\n%s", err, out)
	}
}
