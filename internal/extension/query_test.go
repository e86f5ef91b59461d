package extension_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/sealed"
	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/local"
	"github.com/arca-backup/arca/internal/volume"
	"github.com/arca-backup/arca/internal/volumedata"
)

// asker sends RecoveryPointQueries to the extension as the owner (no vault
// label) or as a vault (label arca.io/vault, answer sealed to a fresh key).
type asker struct {
	cl *cluster
}

type answer struct {
	res *v1alpha1.RecoveryPointQueryResult
	st  v1alpha1.RecoveryPointQueryStatus
	q   *v1alpha1.RecoveryPointQuery
}

func (a asker) ask(vault string, key bool, spec v1alpha1.RecoveryPointQuerySpec) answer {
	t := a.cl.t
	t.Helper()
	ctx := context.Background()
	var k *sealed.Key
	if key {
		var err error
		if k, err = sealed.NewKey(); err != nil {
			t.Fatal(err)
		}
		spec.RecipientKey = k.Public()
	}
	q := &v1alpha1.RecoveryPointQuery{ObjectMeta: metav1.ObjectMeta{GenerateName: "q-", Namespace: a.cl.ns, Labels: map[string]string{}}, Spec: spec}
	if vault != "" {
		q.Labels[v1alpha1.LabelVault] = vault
	}
	if err := a.cl.c.Create(ctx, q); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "query "+q.Name, time.Minute, func() bool {
		if err := a.cl.c.Get(ctx, client.ObjectKeyFromObject(q), q); err != nil {
			t.Fatal(err)
		}
		return q.Status.Phase.Terminal()
	})
	out := answer{st: q.Status, res: q.Status.Result, q: q}
	if k != nil && q.Status.Sealed != nil {
		if q.Status.Result != nil {
			t.Errorf("query %s: a sealed answer is also in status.result", q.Name)
		}
		b, err := k.Open(q.Status.Sealed)
		if err != nil {
			t.Fatal(err)
		}
		out.res = &v1alpha1.RecoveryPointQueryResult{}
		if err := json.Unmarshal(b, out.res); err != nil {
			t.Fatal(err)
		}
	}
	if q.Status.Phase == v1alpha1.JobCompleted && out.res == nil {
		t.Fatalf("query %s completed without an answer", q.Name)
	}
	return out
}

func (a answer) ok(t *testing.T) *v1alpha1.RecoveryPointQueryResult {
	t.Helper()
	if a.st.Phase != v1alpha1.JobCompleted {
		t.Fatalf("query %s: %s: %s %+v", a.q.Name, a.st.Phase, a.st.Message, a.st.Errors)
	}
	return a.res
}

func (a answer) refused(t *testing.T, code string, says ...string) {
	t.Helper()
	if a.st.Phase != v1alpha1.JobFailed || len(a.st.Errors) != 1 || a.st.Errors[0].Code != code {
		t.Errorf("query %s: %s %+v; want Failed with %s", a.q.Name, a.st.Phase, a.st.Errors, code)
		return
	}
	if a.st.Result != nil || a.st.Sealed != nil {
		t.Errorf("query %s failed but carries an answer", a.q.Name)
	}
	for _, s := range says {
		if !strings.Contains(a.st.Errors[0].Message, s) {
			t.Errorf("query %s: %q does not say %q", a.q.Name, a.st.Errors[0].Message, s)
		}
	}
}

func names(cs []v1alpha1.QueryCount) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// TestRecoveryPointQueries asks an extension on a real API server about
// recovery points it backed up: contents level by level with paging, one
// object's YAML with a Secret's data redacted (and revealed when asked),
// a diff against another point and against the live cluster, and the
// files of a vault-tier volume (written as the data mover writes it):
// listing with paging, a file read in windows, a missing path and a
// corrupt pack named. As a vault, the owner's ClusterTrustPolicy hides
// namespaces and refuses storage locations, another vault is not trusted,
// a query without a key is refused, and the answer is sealed to the key.
func TestRecoveryPointQueries(t *testing.T) {
	ctx := context.Background()
	a := newCluster(t, cpA, "arca-query")
	dir, theirs := filepath.Join(t.TempDir(), "qmine"), filepath.Join(t.TempDir(), "qtheirs")
	a.storageLocation("qmine", "file://"+dir, false)
	a.storageLocation("qtheirs", "file://"+theirs, false)
	a.namespace("q-shop")
	a.configMaps("q-shop", 3)
	a.namespace("q-hidden")
	a.configMaps("q-hidden", 1)
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "q-shop",
		Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"stringData":{"password":"hunter2"}}`}},
		StringData: map[string]string{"password": "hunter2"}}
	if err := a.c.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	// Owner's (unlabelled) queries need the admission binding while a
	// vault is trusted.
	a.admissionBound()
	pol := &v1alpha1.ClusterTrustPolicy{ObjectMeta: metav1.ObjectMeta{Name: "qv"},
		Spec: v1alpha1.ClusterTrustPolicySpec{StorageLocations: []string{"qmine"}, Namespaces: []string{"q-shop"}}}
	if err := a.c.Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.c.Delete(context.Background(), pol) })
	a.startExtension(extension.Options{})

	backup := func(name string) string {
		t.Helper()
		a.mustApply("apiVersion: arca.io/v1alpha1\nkind: BackupJob\nmetadata: {name: " + name + ", namespace: arca-query}\n" +
			"spec: {storageLocation: qmine, includedNamespaces: [q-shop, q-hidden]}\n")
		j := a.waitBackup(name, time.Minute)
		if j.Status.RecoveryPointID == "" {
			t.Fatalf("backup %s: %s %s %+v", name, j.Status.Phase, j.Status.Message, j.Status.Errors)
		}
		return j.Status.RecoveryPointID
	}
	rp1 := backup("q-one")
	// The live cluster moves on: one changed, one deleted, one new object
	// in q-shop, and a change in q-hidden that a vault must not see.
	cm := &corev1.ConfigMap{}
	if err := a.c.Get(ctx, client.ObjectKey{Namespace: "q-shop", Name: "cm-000"}, cm); err != nil {
		t.Fatal(err)
	}
	cm.Data["k"] = "changed"
	if err := a.c.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "q-shop", Name: "cm-001"}}); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "q-shop", Name: "cm-new"}, Data: map[string]string{"a": "b"}}); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "q-hidden", Name: "cm-000"}}); err != nil {
		t.Fatal(err)
	}
	sec.StringData = map[string]string{"password": "hunter3"}
	if err := a.c.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	rp2 := backup("q-two")
	rpv, files := volumePoint(t, dir)

	as := asker{cl: a}
	spec := func(kind v1alpha1.QueryKind, rp string) v1alpha1.RecoveryPointQuerySpec {
		return v1alpha1.RecoveryPointQuerySpec{Kind: kind, RecoveryPoint: rp, StorageLocation: "qmine"}
	}

	// Contents, as the owner: every namespace of the point.
	res := as.ask("", false, spec(v1alpha1.QueryContents, rp1)).ok(t)
	if got := names(res.Namespaces); !slices.Contains(got, "q-shop") || !slices.Contains(got, "q-hidden") || !slices.Contains(got, v1alpha1.ClusterScopedNamespace) {
		t.Errorf("owner's namespaces: %v", got)
	}
	// As vault qv: q-shop only (and its Namespace object), the rest hidden
	// and counted; the answer is sealed.
	vres := as.ask("qv", true, spec(v1alpha1.QueryContents, rp1))
	res = vres.ok(t)
	if got := names(res.Namespaces); !slices.Equal(got, []string{v1alpha1.ClusterScopedNamespace, "q-shop"}) || res.Hidden < 2 {
		t.Errorf("vault's namespaces: %v, hidden %d; want [- q-shop] and q-hidden's objects hidden", got, res.Hidden)
	}
	if vres.st.Result != nil || vres.st.Sealed == nil || bytes.Contains(vres.st.Sealed.Ciphertext, []byte("q-shop")) {
		t.Errorf("a vault's answer is not sealed: %+v", vres.st)
	}
	other, _ := sealed.NewKey()
	if _, err := other.Open(vres.st.Sealed); err == nil {
		t.Error("another key opened the vault's answer")
	}
	s := spec(v1alpha1.QueryContents, rp1)
	s.Namespace = "q-shop"
	res = as.ask("qv", true, s).ok(t)
	if got := names(res.Types); !slices.Contains(got, "configmaps") || !slices.Contains(got, "secrets") {
		t.Errorf("types of q-shop: %v", got)
	}
	// Objects, two per page.
	s.Type, s.Limit = "configmaps", 2
	var objs []string
	for page := 0; ; page++ {
		res = as.ask("qv", true, s).ok(t)
		for _, o := range res.Objects {
			objs = append(objs, o.Name)
		}
		if len(res.Objects) > 2 || page > 5 {
			t.Fatalf("page of %d objects with limit 2", len(res.Objects))
		}
		if res.Continue == "" {
			break
		}
		s.Continue = res.Continue
	}
	if want := []string{"cm-000", "cm-001", "cm-002", "kube-root-ca.crt"}; !slices.Equal(objs, want) && !slices.Equal(objs, want[:3]) {
		t.Errorf("configmaps of q-shop page by page: %v", objs)
	}
	// One object's YAML; a Secret's values only when revealed.
	s = spec(v1alpha1.QueryContents, rp1)
	s.Namespace, s.Type, s.Name = "q-shop", "configmaps", "cm-000"
	if res = as.ask("qv", true, s).ok(t); !strings.Contains(res.Object, "name: cm-000") || !strings.Contains(res.Object, "k: vvvv") {
		t.Errorf("cm-000's YAML:\n%s", res.Object)
	}
	s.Type, s.Name = "secrets", "db"
	res = as.ask("qv", true, s).ok(t)
	if !strings.Contains(res.Object, "password: '<redacted: 12 characters>'") || strings.Contains(res.Object, "hunter2") || strings.Contains(res.Object, "aHVudGVyMg") {
		t.Errorf("secret's YAML is not redacted:\n%s", res.Object)
	}
	s.RevealSecrets = true
	if res = as.ask("qv", true, s).ok(t); !strings.Contains(res.Object, "password: aHVudGVyMg==") {
		t.Errorf("revealed secret's YAML:\n%s", res.Object)
	}
	s.Name = "nope"
	as.ask("qv", true, s).refused(t, v1alpha1.CodeObjectNotFound, "secrets q-shop/nope", rp1[:12])

	// Refusals of the vault's policy and of trust.
	s = spec(v1alpha1.QueryContents, rp1)
	s.Namespace = "q-hidden"
	as.ask("qv", true, s).refused(t, v1alpha1.CodePolicyDeniesNamespace, `namespace "q-hidden"`, "ClusterTrustPolicy")
	s = spec(v1alpha1.QueryContents, rp1)
	s.StorageLocation = "qtheirs"
	as.ask("qv", true, s).refused(t, v1alpha1.CodePolicyDeniesStorageLocation, `storage location "qtheirs"`, "--allow-storage-locations qtheirs")
	as.ask("ghost", true, spec(v1alpha1.QueryContents, rp1)).refused(t, v1alpha1.CodeVaultNotTrusted, `vault "ghost" is not trusted`)
	as.ask("qv", false, spec(v1alpha1.QueryContents, rp1)).refused(t, v1alpha1.CodeQueryKeyRequired, "spec.recipientKey")

	// Diff against the live cluster and against the later point: the
	// same three changes in q-shop; q-hidden's deletion is hidden from the
	// vault; the Secret's change is shown without its values.
	for _, against := range []string{"live", rp2} {
		s = spec(v1alpha1.QueryDiff, rp1)
		if against == "live" {
			s.Live = true
		} else {
			s.Against = against
		}
		res = as.ask("qv", true, s).ok(t)
		got := map[string]string{}
		for _, c := range res.Changes {
			got[c.Object] = c.Type
			if strings.HasPrefix(c.Object, "secrets") {
				for _, f := range c.Fields {
					if strings.Contains(f.Old+f.New, "aHVudGVy") || strings.Contains(f.Old+f.New, "hunter") {
						t.Errorf("diff against %s shows the Secret's data: %+v", against, f)
					}
				}
			}
			if strings.Contains(c.Object, "q-hidden") {
				t.Errorf("diff against %s shows hidden %s", against, c.Object)
			}
		}
		if got["configmaps q-shop/cm-000"] != "Changed" || got["configmaps q-shop/cm-001"] != "Removed" || got["configmaps q-shop/cm-new"] != "Added" ||
			got["secrets q-shop/db"] != "Changed" || res.Hidden == 0 {
			t.Errorf("diff against %s: %v (hidden %d)", against, got, res.Hidden)
		}
	}

	// Volumes of the vault-tier point: the owner sees its three claims
	// (records, the skipped one, the vault-tier data's figures); the vault
	// qv only those in q-shop, q-hidden's counted as hidden. A point
	// without volumes answers none.
	res = as.ask("", false, spec(v1alpha1.QueryVolumes, rpv)).ok(t)
	var vnames []string
	for _, v := range res.Volumes {
		vnames = append(vnames, v.Name)
	}
	if !slices.Equal(vnames, []string{"q-hidden/logs", "q-shop/cache", "q-shop/data"}) || res.Hidden != 0 {
		t.Errorf("owner's volumes: %v, hidden %d", vnames, res.Hidden)
	}
	res = as.ask("qv", true, spec(v1alpha1.QueryVolumes, rpv)).ok(t)
	if len(res.Volumes) != 2 || res.Hidden != 1 {
		t.Fatalf("vault's volumes: %+v, hidden %d; want q-shop's two, q-hidden/logs hidden", res.Volumes, res.Hidden)
	}
	cache, data := res.Volumes[0], res.Volumes[1]
	if cache.Name != "q-shop/cache" || cache.SkippedCode != "NoSnapshotClass" || cache.Data != nil || cache.SnapshotHandle != "" {
		t.Errorf("skipped claim: %+v", cache)
	}
	var total int64
	for _, b := range files {
		total += int64(len(b))
	}
	if data.Name != "q-shop/data" || data.PV != "pv-data" || data.Driver != "hostpath.csi.k8s.io" || data.StorageClass != "csi-hostpath" ||
		data.Size != 1<<30 || data.SnapshotHandle != "snap-data" || data.Content != "arca-q-vol-data" || data.SnapshotTime == nil ||
		data.Data == nil || data.Data.Files < int64(len(files)) || data.Data.Bytes != total || data.Data.NewBytes == 0 {
		t.Errorf("q-shop/data: %+v data %+v (want %d files, %d bytes)", data, data.Data, len(files), total)
	}
	if res = as.ask("qv", true, spec(v1alpha1.QueryVolumes, rp1)).ok(t); len(res.Volumes) != 0 {
		t.Errorf("volumes of a point without any: %+v", res.Volumes)
	}

	// Files of the vault-tier point (as the owner).
	fs := spec(v1alpha1.QueryFiles, rpv)
	fs.Limit = 5
	var listed []string
	for page := 0; ; page++ {
		res = as.ask("", false, fs).ok(t)
		for _, f := range res.Files {
			listed = append(listed, f.Path)
		}
		if res.Continue == "" || page > 10 {
			break
		}
		fs.Continue = res.Continue
	}
	var want []string
	for n := range files {
		if !strings.Contains(n, "/") {
			want = append(want, "/"+n)
		}
	}
	want = append(want, "/docs")
	slices.Sort(want)
	slices.Sort(listed)
	if !slices.Equal(listed, want) {
		t.Errorf("ls / page by page:\n got %v\nwant %v", listed, want)
	}
	fs = spec(v1alpha1.QueryFiles, rpv)
	fs.Path = "/docs"
	if res = as.ask("", false, fs).ok(t); len(res.Files) != 1 || res.Files[0].Path != "/docs/a.txt" || res.Files[0].Size != 6 || res.Files[0].Type != "file" {
		t.Errorf("ls /docs: %+v", res.Files)
	}
	// big, read in windows of 512 KiB.
	fs = spec(v1alpha1.QueryFiles, rpv)
	fs.Path, fs.Read = "/big", true
	var got []byte
	for page := 0; ; page++ {
		res = as.ask("", false, fs).ok(t)
		got = append(got, res.Data...)
		if res.Size != int64(len(files["big"])) || len(res.Data) > v1alpha1.MaxQueryReadBytes {
			t.Fatalf("window at %d: size %d, %d bytes", fs.Offset, res.Size, len(res.Data))
		}
		if res.EOF || page > 5 {
			break
		}
		fs.Offset += int64(len(res.Data))
	}
	if !bytes.Equal(got, files["big"]) {
		t.Errorf("big read in windows: %d bytes, differ from the %d written", len(got), len(files["big"]))
	}
	fs.Path, fs.Offset, fs.Length = "/docs/a.txt", 1, 3
	if res = as.ask("", false, fs).ok(t); string(res.Data) != "ell" || res.EOF {
		t.Errorf("a.txt [1,4): %q eof %v", res.Data, res.EOF)
	}
	fs.Path = "/docs/missing.txt"
	as.ask("", false, fs).refused(t, v1alpha1.CodePathNotFound, "/docs/missing.txt", rpv)
	fs = spec(v1alpha1.QueryFiles, rpv)
	fs.Volume = "q-shop/other"
	as.ask("", false, fs).refused(t, v1alpha1.CodeVolumeNotFound, `no volume "q-shop/other"`, "q-shop/data")
	as.ask("", false, spec(v1alpha1.QueryFiles, rp1)).refused(t, v1alpha1.CodeVolumeNotFound, "holds no volume data")

	// A corrupt pack: reading a file whose data is in it fails naming the
	// file, the point and the pack; the other files still read.
	pack := corruptLargestPack(t, dir)
	var failed, read int
	for n := range files {
		if !strings.HasPrefix(n, "r") {
			continue
		}
		fs = spec(v1alpha1.QueryFiles, rpv)
		fs.Path, fs.Read = "/"+n, true
		ans := as.ask("", false, fs)
		if ans.st.Phase == v1alpha1.JobCompleted {
			read++
			if !bytes.Equal(ans.res.Data, files[n]) {
				t.Errorf("%s read with wrong content", n)
			}
			continue
		}
		failed++
		ans.refused(t, v1alpha1.CodeQueryFailed, "/"+n, rpv, pack[:8])
	}
	if failed == 0 || read == 0 {
		t.Errorf("after corrupting pack %s: %d files failed, %d read; want some of each", pack, failed, read)
	}

	// A finished query goes after its TTL.
	s = spec(v1alpha1.QueryContents, rp1)
	s.TTLSeconds = 1
	q := as.ask("", false, s).q
	waitFor(t, "query "+q.Name+" to be deleted after its TTL", 30*time.Second, func() bool {
		return apierrors.IsNotFound(a.c.Get(ctx, client.ObjectKeyFromObject(q), &v1alpha1.RecoveryPointQuery{}))
	})
}

// volumePoint writes a vault-tier recovery point into the repository in
// dir, as the data mover does (volumedata.Backup, then a point with the
// volume's record), and returns its ID and the files by path.
func volumePoint(t *testing.T, dir string) (string, map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	src := t.TempDir()
	rnd := rand.New(rand.NewSource(15))
	files := map[string][]byte{"docs/a.txt": []byte("hello\n"), "big": make([]byte, 1200<<10)}
	rnd.Read(files["big"])
	for i := range 12 {
		b := make([]byte, 200<<10)
		rnd.Read(b)
		files[fmt.Sprintf("r%02d", i)] = b
	}
	for n, b := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, n)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	be, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, password, repo.WithPackSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := r.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := volumedata.Backup(ctx, w, src, volumedata.BackupOptions{Name: "q-shop/data"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	// Its volume records: the snapshot of q-shop/data, one of a claim in
	// q-hidden (outside the vault's policy) and a claim it skipped.
	recs, err := json.Marshal(volume.Records{Version: volume.RecordsVersion, BackupID: "q-vol", Snapshots: []volume.Record{
		{Namespace: "q-shop", PVC: "data", PV: "pv-data", Driver: "hostpath.csi.k8s.io", SnapshotHandle: "snap-data", RestoreSize: 1 << 30,
			StorageClass: "csi-hostpath", VolumeMode: "Filesystem", Content: "arca-q-vol-data", Snapshot: "arca-q-vol-data", Time: now},
		{Namespace: "q-hidden", PVC: "logs", PV: "pv-logs", Driver: "hostpath.csi.k8s.io", SnapshotHandle: "snap-logs", Time: now}},
		Skipped: []volume.Skipped{{Namespace: "q-shop", PVC: "cache", Code: "NoSnapshotClass", Message: "no VolumeSnapshotClass for its driver"}}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := w.Commit(ctx, &repo.RecoveryPoint{Name: "volume q-shop/data", Started: now, Finished: now,
		Tags: map[string]string{v1alpha1.TagVolume: "q-shop/data"}, Volumes: recs, VolumeData: []repo.VolumeData{res.Volume}})
	if err != nil {
		t.Fatal(err)
	}
	return id.String(), files
}

// corruptLargestPack flips bytes in the largest pack of the repository in
// dir and returns its name.
func corruptLargestPack(t *testing.T, dir string) string {
	t.Helper()
	ctx := context.Background()
	be, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var victim storage.FileInfo
	if err := be.List(ctx, storage.PackFile, func(fi storage.FileInfo) error {
		if fi.Size > victim.Size {
			victim = fi
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	h := storage.Handle{Type: storage.PackFile, Name: victim.Name}
	data, err := storage.ReadAll(ctx, be, h)
	if err != nil {
		t.Fatal(err)
	}
	for i := 100; i < len(data)-4096; i += 50000 {
		data[i] ^= 0x55
	}
	if err := be.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(ctx, h, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return victim.Name
}
