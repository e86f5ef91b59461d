package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/clusterdriver"
	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/sealed"
	"github.com/arca-backup/arca/internal/storage/local"
	"github.com/arca-backup/arca/internal/trustedaccess"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/server"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
	"github.com/arca-backup/arca/internal/volumedata"
)

// TestRecoveryPointQueriesInCluster is the whole path on a real node: the
// CLI asks the vault (HTTPS, tokens, roles), the vault asks the extension
// pod from the project's image through trusted access (a
// RecoveryPointQuery written by the vault's service account, admitted by
// arca-vault-jobs, sealed to the vault's key), and the extension reads the
// repository on the node. It browses contents, prints one object's YAML
// (a Secret redacted for a Backup Reader, revealed for the Owner), diffs
// against the live cluster, lists the volumes (with the data mover's
// figures) and lists and prints the files of a vault-tier
// point made in the test as the data mover makes one. Refused: a namespace
// outside the owner's ClusterTrustPolicy (and it is hidden from contents),
// a storage location the policy does not allow, a file's content for a
// Backup Reader; in the cluster, the vault's identity may not list or
// change queries, nor write one as another vault, nor delete another
// vault's, and another vault's answer is sealed against it.
func TestRecoveryPointQueriesInCluster(t *testing.T) {
	ic := newInCluster(t)
	ctx := t.Context()
	repoDir := filepath.Join(t.TempDir(), "var", "backups", "arca")
	storage := "file://" + repoDir
	if out, err := ic.arca("extension", "install", "--storage", storage, "--password-file", ic.pw, "--image", ic.image, "--timeout", "4m"); err != nil {
		t.Fatalf("install: %v\n%s\n%s", err, out, ic.extensionLog())
	}
	ic.appNamespace("shop", 3)
	ic.appNamespace("hidden", 1)
	if _, err := ic.cs.CoreV1().Secrets("shop").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		StringData: map[string]string{"password": "hunter2"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ic.apply(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: q-backup, namespace: arca-system}
spec: {storageLocation: default, includedNamespaces: [shop, hidden], tags: {arca.io/vault: qv, arca.io/instance: shop}}
`)
	bj := &v1alpha1.BackupJob{ObjectMeta: metav1.ObjectMeta{Name: "q-backup", Namespace: v1alpha1.ExtensionNamespace}}
	if st := ic.waitJob(bj, 2*time.Minute); st.Phase != v1alpha1.JobCompleted {
		t.Fatalf("backup: %+v\n%s", bj.Status, ic.extensionLog())
	}
	// The live cluster moves on.
	cm, err := ic.cs.CoreV1().ConfigMaps("shop").Get(ctx, "cm-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["v"] = "changed after the backup"
	if _, err := ic.cs.CoreV1().ConfigMaps("shop").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := ic.cs.CoreV1().ConfigMaps("shop").Delete(ctx, "cm-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	volID, files, volSrc, volBytes := writeVolumePoint(t, repoDir, strings.TrimSpace(mustRead(t, ic.pw)))

	// A second storage location in the cluster that the vault's policy
	// leaves out.
	other := filepath.Join(t.TempDir(), "other")
	if err := ic.c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other-creds", Namespace: v1alpha1.ExtensionNamespace},
		StringData: map[string]string{v1alpha1.SecretKeyPassword: "x"}}); err != nil {
		t.Fatal(err)
	}
	ic.apply(fmt.Sprintf("apiVersion: arca.io/v1alpha1\nkind: StorageLocation\nmetadata: {name: other, namespace: arca-system}\nspec: {url: 'file://%s', credentialsSecret: other-creds}\n", other))

	// Trusted access for vaults qv (namespace shop, storage default) and pv.
	ns := []string{"shop"}
	locs := []string{"default"}
	g, err := trustedaccess.Enable(ctx, ic.cp.Config(), trustedaccess.EnableOptions{Vault: "qv", Cluster: "c", TokenTTL: 15 * time.Minute,
		Policy: trustedaccess.PolicyOptions{Namespaces: &ns, StorageLocations: &locs}})
	if err != nil {
		t.Fatal(err)
	}
	gp, err := trustedaccess.Enable(ctx, ic.cp.Config(), trustedaccess.EnableOptions{Vault: "pv", Cluster: "c", TokenTTL: 15 * time.Minute,
		Policy: trustedaccess.PolicyOptions{StorageLocations: &locs}})
	if err != nil {
		t.Fatal(err)
	}

	// The vault: cluster c, instance shop, the two points in its catalog.
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "v.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now().UTC()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.CreateCluster(ctx, &store.Cluster{Name: "c", Server: g.Server, CAData: g.CAData, Namespace: g.Namespace,
		ServiceAccount: g.ServiceAccount, Token: g.Token, TokenExpiresAt: &g.TokenExpiresAt, State: store.ClusterConnected}))
	must(st.CreateVault(ctx, &store.Vault{Name: "qv"}))
	must(st.CreatePolicy(ctx, &store.Policy{Vault: "qv", Name: "p", Schedule: "R/2026-01-01T02:00:00Z/PT4H", Retention: json.RawMessage(`{"default":{"duration":"P7D"}}`)}))
	for _, in := range []*store.Instance{
		{Vault: "qv", Name: "shop", Cluster: "c", Policy: "p", StorageLocation: storage, ProtectionState: store.ProtectionStopped},
		{Vault: "qv", Name: "far", Cluster: "c", Policy: "p", StorageLocation: "other", ProtectionState: store.ProtectionStopped},
	} {
		must(st.CreateInstance(ctx, in))
	}
	for _, rp := range []*store.RecoveryPoint{
		{Vault: "qv", ID: "rp-res", Instance: "shop", Time: now, RepoID: bj.Status.RecoveryPointID, Tag: "default", Datastore: "operational", State: store.RPAvailable},
		{Vault: "qv", ID: "rp-vol", Instance: "shop", Time: now, RepoID: volID, Tag: "default", Datastore: "vault", State: store.RPAvailable},
		{Vault: "qv", ID: "rp-far", Instance: "far", Time: now, RepoID: bj.Status.RecoveryPointID, Tag: "default", Datastore: "operational", State: store.RPAvailable},
	} {
		must(st.CreateRecoveryPoint(ctx, rp))
	}
	for _, a := range []store.RoleAssignment{
		{Principal: rbac.VaultIdentity("qv"), Role: rbac.Reader, Scope: "/"},
		{Principal: rbac.ExtensionIdentity("c"), Role: rbac.StorageContributor, Scope: "/"},
		{Principal: "user:rita", Role: rbac.BackupReader, Scope: rbac.VaultScope("qv")},
	} {
		must(st.CreateRoleAssignment(ctx, &a))
	}
	admin, rita := vaultRunner(t, st, "admin", true), vaultRunner(t, st, "user:rita", false)

	ok := func(run func(...string) (string, error), args ...string) string {
		t.Helper()
		out, err := run(append(args, "--vault", "qv")...)
		if err != nil {
			t.Fatalf("arca %s: %v\n%s\n%s", strings.Join(args, " "), err, out, ic.extensionLog())
		}
		return out
	}
	refused := func(run func(...string) (string, error), code string, args ...string) {
		t.Helper()
		out, err := run(append(args, "--vault", "qv")...)
		if err == nil || !strings.Contains(err.Error(), code) {
			t.Errorf("arca %s: %v, want %s\n%s", strings.Join(args, " "), err, code, out)
		}
	}

	// Contents: shop (and the cluster-scoped Namespace object of shop),
	// not hidden, which is counted as hidden.
	out := ok(rita, "recovery-point", "contents", "rp-res")
	if !strings.Contains(out, "shop ") || strings.Contains(out, "hidden ") || !strings.Contains(out, "objects are hidden") {
		t.Errorf("contents as the vault sees them:\n%s", out)
	}
	out = ok(rita, "recovery-point", "contents", "rp-res", "--namespace", "shop", "--type", "configmaps")
	for _, n := range []string{"cm-0", "cm-1", "cm-2"} {
		if !strings.Contains(out, n) {
			t.Errorf("configmaps of shop lack %s:\n%s", n, out)
		}
	}
	if out = ok(rita, "recovery-point", "contents", "rp-res", "--namespace", "shop", "--type", "secrets", "--name", "db"); !strings.Contains(out, "<redacted: 12 characters>") ||
		strings.Contains(out, "aHVudGVyMg") {
		t.Errorf("the Secret for a Backup Reader:\n%s", out)
	}
	if out = ok(admin, "recovery-point", "contents", "rp-res", "--namespace", "shop", "--type", "secrets", "--name", "db"); !strings.Contains(out, "password: aHVudGVyMg==") {
		t.Errorf("the Secret for the Owner:\n%s", out)
	}
	refused(rita, v1alpha1.CodePolicyDeniesNamespace, "recovery-point", "contents", "rp-res", "--namespace", "hidden")
	refused(rita, v1alpha1.CodePolicyDeniesStorageLocation, "recovery-point", "contents", "rp-far")

	// Diff against the live cluster.
	out = ok(rita, "recovery-point", "diff", "rp-res", "--live")
	if !strings.Contains(out, "~ configmaps shop/cm-1") || !strings.Contains(out, "changed after the backup") || !strings.Contains(out, "- configmaps shop/cm-2") ||
		strings.Contains(out, "hidden/") {
		t.Errorf("diff against the live cluster:\n%s", out)
	}

	// Volumes and files of the vault-tier point.
	out = ok(rita, "recovery-point", "volumes", "rp-vol")
	if !strings.Contains(out, "shop/data") || !strings.Contains(out, "VAULT TIER") || !strings.Contains(out, fmt.Sprintf("%d bytes", volBytes)) {
		t.Errorf("volumes of the vault-tier point:\n%s", out)
	}
	out = ok(rita, "recovery-point", "files", "ls", "--recovery-point", "rp-vol", "--volume", "shop/data", "/")
	if !strings.Contains(out, "/docs") || !strings.Contains(out, "/big") {
		t.Errorf("files ls /:\n%s", out)
	}
	out = ok(admin, "recovery-point", "files", "cat", "--recovery-point", "rp-vol", "--volume", "shop/data", "/big")
	if out != string(files["big"]) {
		t.Errorf("files cat /big: %d bytes, want the %d written", len(out), len(files["big"]))
	}
	refused(rita, service.CodeRoleMissing, "recovery-point", "files", "cat", "--recovery-point", "rp-vol", "/docs/a.txt")
	refused(admin, v1alpha1.CodePathNotFound, "recovery-point", "files", "cat", "--recovery-point", "rp-vol", "/docs/nope.txt")

	// files restore through the vault: a directory, recursively, with
	// modes, owner, mtimes (ns), symlink, hard link and hole, byte for byte.
	restored := filepath.Join(t.TempDir(), "docs")
	out = ok(admin, "recovery-point", "files", "restore", "--recovery-point", "rp-vol", "--volume", "shop/data", "/docs", restored)
	var rres volumedata.RestoreResult
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rres); err != nil || len(rres.Failed) != 0 {
		t.Errorf("files restore through the vault: %v %+v\n%s", err, rres, out)
	}
	want, got := treeState(t, filepath.Join(volSrc, "docs")), treeState(t, restored)
	for n, w := range want {
		if got[n] != w {
			t.Errorf("restored through the vault: %s\n got  %s\n want %s", n, got[n], w)
		}
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			t.Errorf("restored through the vault: %s is not in the volume", n)
		}
	}
	var rootSt, srcSt unix.Stat_t
	must(unix.Stat(restored, &rootSt))
	must(unix.Stat(filepath.Join(volSrc, "docs"), &srcSt))
	if rootSt.Mode != srcSt.Mode || rootSt.Mtim != srcSt.Mtim {
		t.Errorf("the restored directory itself: mode %o mtime %v, want %o %v", rootSt.Mode, rootSt.Mtim, srcSt.Mode, srcSt.Mtim)
	}
	var sparse unix.Stat_t
	must(unix.Stat(filepath.Join(restored, "sparse"), &sparse))
	if sparse.Blocks*512 >= 1<<20 {
		t.Errorf("the sparse file was restored with %d bytes allocated: its hole was filled", sparse.Blocks*512)
	}
	t.Logf("files restore through the vault: %d entries, %d bytes, %s", rres.Files, rres.Bytes, strings.TrimSpace(out))
	// One file into an existing directory.
	one := t.TempDir()
	ok(admin, "recovery-point", "files", "restore", "--recovery-point", "rp-vol", "--volume", "shop/data", "/big", one)
	if b, err := os.ReadFile(filepath.Join(one, "big")); err != nil || !bytes.Equal(b, files["big"]) {
		t.Errorf("files restore /big: %d bytes, %v", len(b), err)
	}
	// The same checks as cat: a Backup Reader may not read content, a
	// missing path is named; and the size limit names --repo.
	refused(rita, service.CodeRoleMissing, "recovery-point", "files", "restore", "--recovery-point", "rp-vol", "/docs", t.TempDir())
	refused(admin, v1alpha1.CodePathNotFound, "recovery-point", "files", "restore", "--recovery-point", "rp-vol", "/nope", t.TempDir())
	tooBig := t.TempDir()
	_, err = admin("recovery-point", "files", "restore", "--recovery-point", "rp-vol", "--volume", "shop/data", "--max-bytes", "100000", "/", tooBig, "--vault", "qv")
	if err == nil || !strings.Contains(err.Error(), CodeFilesRestoreTooLarge) || !strings.Contains(err.Error(), "--repo") || !strings.Contains(err.Error(), "100000 bytes") {
		t.Errorf("files restore over --max-bytes: %v", err)
	}
	if ents, _ := os.ReadDir(tooBig); len(ents) != 0 {
		t.Errorf("a refused restore wrote %d entries", len(ents))
	}

	// In the cluster: what the vault's identity may not do with queries.
	qc := vaultClient(t, g)
	pc := vaultClient(t, gp)
	var l v1alpha1.RecoveryPointQueryList
	if err := qc.List(ctx, &l, client.InNamespace(v1alpha1.ExtensionNamespace)); !apierrors.IsForbidden(err) {
		t.Errorf("vault qv lists queries: %v", err)
	}
	spec := v1alpha1.RecoveryPointQuerySpec{Kind: v1alpha1.QueryContents, RecoveryPoint: bj.Status.RecoveryPointID, StorageLocation: "default"}
	posed := &v1alpha1.RecoveryPointQuery{ObjectMeta: metav1.ObjectMeta{GenerateName: "x-", Namespace: v1alpha1.ExtensionNamespace,
		Labels: map[string]string{v1alpha1.LabelVault: "pv"}}, Spec: spec}
	if err := qc.Create(ctx, posed); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "vault qv may write only jobs labelled") {
		t.Errorf("vault qv writes a query as vault pv: %v", err)
	}
	// pv asks, through its own driver (answer sealed to pv's key).
	pd, err := clusterdriver.New(&rest.Config{Host: gp.Server, BearerToken: gp.Token, TLSClientConfig: rest.TLSClientConfig{CAData: gp.CAData}}, "")
	if err != nil {
		t.Fatal(err)
	}
	pd.Vault = "pv"
	theirs := &v1alpha1.RecoveryPointQuery{ObjectMeta: metav1.ObjectMeta{GenerateName: "pv-", Namespace: v1alpha1.ExtensionNamespace,
		Labels: map[string]string{v1alpha1.LabelVault: "pv"}}, Spec: spec}
	pvKey, err := sealed.NewKey()
	must(err)
	theirs.Spec.RecipientKey = pvKey.Public()
	if err := pc.Create(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		must(qc.Get(ctx, client.ObjectKeyFromObject(theirs), theirs)) // a vault may get a query whose name it knows…
		if theirs.Status.Phase.Terminal() || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if theirs.Status.Phase != v1alpha1.JobCompleted || theirs.Status.Sealed == nil || theirs.Status.Result != nil || bytes.Contains(mustJSON(t, theirs.Status), []byte("cm-0")) {
		t.Errorf("vault pv's answer is readable by vault qv: %+v", theirs.Status)
	}
	if err := qc.Delete(ctx, theirs); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "only its own jobs") {
		t.Errorf("vault qv deletes vault pv's query: %v", err)
	}
	theirs.Spec.Live = true
	if err := qc.Update(ctx, theirs); !apierrors.IsForbidden(err) {
		t.Errorf("vault qv updates a query: %v", err)
	}
	if res, err := pd.Query(ctx, v1alpha1.RecoveryPointQuerySpec{Kind: v1alpha1.QueryContents, RecoveryPoint: bj.Status.RecoveryPointID, StorageLocation: storage}); err != nil ||
		len(res.Namespaces) == 0 {
		t.Errorf("vault pv's own query: %+v, %v", res, err)
	}
	// The vault's driver deletes what it asked.
	var left v1alpha1.RecoveryPointQueryList
	must(ic.c.List(ctx, &left, client.InNamespace(v1alpha1.ExtensionNamespace)))
	for _, q := range left.Items {
		if q.Name != theirs.Name {
			t.Errorf("query %s (%s) left behind", q.Name, q.Labels[v1alpha1.LabelVault])
		}
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func vaultClient(t *testing.T, g *trustedaccess.Grant) client.Client {
	t.Helper()
	c, err := client.New(&rest.Config{Host: g.Server, BearerToken: g.Token, TLSClientConfig: rest.TLSClientConfig{CAData: g.CAData}},
		client.Options{Scheme: extension.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// vaultRunner serves st's API over HTTPS (with trusted access to the
// registered clusters) and returns a runner of the CLI as principal.
func vaultRunner(t *testing.T, st store.Store, principal string, admin bool) func(args ...string) (string, error) {
	t.Helper()
	srv, _ := server.New(st, server.Options{Log: slog.New(slog.DiscardHandler), Clusters: clusterdriver.NewTrustedAccess})
	ts := httptest.NewTLSServer(srv.Handler())
	t.Cleanup(ts.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	var tok string
	var err error
	if admin {
		tok, _, err = server.CreateAdminToken(context.Background(), st, principal, principal)
	} else {
		tok, _, err = server.CreateToken(context.Background(), st, principal, principal, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return func(args ...string) (string, error) {
		root := NewRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(args, "--vault-url", ts.URL, "--token", tok, "--ca-cert", ca))
		err := root.ExecuteContext(context.Background())
		return out.String(), err
	}
}

// writeVolumePoint stores a small volume as a vault-tier recovery point in
// the repository at dir, as the data mover does, and gives the repository
// back to the extension's user.
func writeVolumePoint(t *testing.T, dir, password string) (id string, files map[string][]byte, src string, volBytes int64) {
	t.Helper()
	ctx := context.Background()
	src = t.TempDir()
	files = map[string][]byte{"docs/a.txt": []byte("hello\n"), "big": bytes.Repeat([]byte("0123456789abcdef"), 50000),
		"docs/sub/key": []byte("private\n"), "docs/sub/deep/large": bytes.Repeat([]byte("a window and more; "), 40000)}
	for n, b := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, n)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// For files restore: modes, an owner, a symlink, a hard link, a
	// sparse file, and modification times with nanoseconds.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(filepath.Join(src, "docs/sub/key"), 0o600))
	must(os.Lchown(filepath.Join(src, "docs/sub/key"), 1234, 2345))
	must(os.Chmod(filepath.Join(src, "docs/sub"), 0o750))
	must(os.Symlink("a.txt", filepath.Join(src, "docs/link")))
	must(os.Link(filepath.Join(src, "docs/a.txt"), filepath.Join(src, "docs/hard")))
	sp, err := os.Create(filepath.Join(src, "docs/sparse"))
	must(err)
	_, err = sp.WriteAt([]byte("after a hole of 1 MiB"), 1<<20)
	must(err)
	must(sp.Close())
	for i, n := range []string{"docs/sub/deep/large", "docs/sub/deep", "docs/sub/key", "docs/sub", "docs/link", "docs/a.txt", "docs/sparse", "docs"} {
		ts := unix.NsecToTimespec(time.Date(2026, 3, 1, 10, i, 7, 123456789+i, time.UTC).UnixNano())
		must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(src, n), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
	}
	be, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, password)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := r.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := volumedata.Backup(ctx, w, src, volumedata.BackupOptions{Name: "shop/data"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	pid, err := w.Commit(ctx, &repo.RecoveryPoint{Name: "volume shop/data", Started: now, Finished: now,
		Tags: map[string]string{v1alpha1.TagVolume: "shop/data", v1alpha1.TagVault: "qv", v1alpha1.TagInstance: "shop"}, VolumeData: []repo.VolumeData{res.Volume}})
	if err != nil {
		t.Fatal(err)
	}
	if err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, extension.RunAsUser, extension.RunAsUser)
	}); err != nil {
		t.Fatal(err)
	}
	return pid.String(), files, src, res.Volume.Bytes
}

// treeState describes every entry below root: type, mode, owner, size,
// modification time (ns), symlink target, which entries share an inode,
// and a file's content (holes as zeros) — what a faithful restore keeps.
func treeState(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode=%o uid=%d gid=%d size=%d mtime=%d", st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Nano())
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " link=" + l
		case unix.S_IFREG:
			if first, ok := inodes[st.Ino]; ok {
				desc += " same-inode-as=" + first
			} else {
				inodes[st.Ino] = rel
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" content=%x", sha256.Sum256(b))
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
