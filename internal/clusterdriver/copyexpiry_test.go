package clusterdriver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/clusterdriver"
	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/location"
	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/retention"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

// TestRetentionExpiresCopies: a policy with copyTo, two vault-tier backups
// through the vault, each copied by the extension from one MinIO server
// to another. When the older point expires, retention forgets it in the
// primary and its copy in the secondary, and prunes the secondary: the
// copy's manifest is gone and so is the pack holding what only the copy
// held; the newest point's copy stays whole.
//
// First the secondary's MinIO is stopped: the expiry of the copy fails
// with CopyNotRemoved naming the secondary, the point stays in the catalog
// although the primary has forgotten it, and after MinIO is back the next
// runs finish the job.
//
// The namespace has no claims, so no mover pod runs: the copy and its
// expiry are what is tested (vault-tier volume data in a copy:
// TestVaultTierInCluster).
func TestRetentionExpiresCopies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane and two MinIO servers")
	}
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	cp, c := newCluster(t, "arca-system", "app")
	cfg := cp.Config()

	primary, secondary := testenv.StartMinIO(t), testenv.StartMinIO(t)
	primary.MakeBucket(t, "primary")
	secondary.MakeBucket(t, "secondary")
	url := fmt.Sprintf("s3://primary/repo?endpoint=%s&tls=false&path-style=true&region=us-east-1", primary.Endpoint)
	drURL := fmt.Sprintf("s3://secondary/repo?endpoint=%s&tls=false&path-style=true&region=us-east-1", secondary.Endpoint)
	const pw, drPW = "primary-password", "the-secondary-has-its-own-password"
	for _, l := range []struct {
		name, url, pw string
		m             *testenv.MinIO
	}{{"default", url, pw, primary}, {"dr", drURL, drPW, secondary}} {
		must(c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: l.name + "-creds", Namespace: "arca-system"},
			StringData: map[string]string{v1alpha1.SecretKeyPassword: l.pw,
				v1alpha1.SecretKeyAWSAccessKeyID: l.m.AccessKey, v1alpha1.SecretKeyAWSSecretAccessKey: l.m.SecretKey}}))
		must(c.Create(ctx, &v1alpha1.StorageLocation{ObjectMeta: metav1.ObjectMeta{Name: l.name, Namespace: "arca-system"},
			Spec: v1alpha1.StorageLocationSpec{URL: l.url, CredentialsSecret: l.name + "-creds"}}))
	}
	// Out of a pod the extension needs a mover image for vault-tier
	// backups; with no claims in the namespace no mover pod is created.
	mgr, err := extension.NewManager(cfg, extension.Options{MetricsAddr: "0", ProbeAddr: "0", StatusInterval: 200 * time.Millisecond,
		DataMoverImage: "arca:not-started", Log: logr.Discard()})
	must(err)
	mctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() { stop(); <-done })

	// What only the first point holds: a config map with 256 KiB of its
	// own, deleted before the second backup.
	unique := strings.Repeat("only in the first backup; ", 10000)
	must(c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "unique", Namespace: "app"}, Data: map[string]string{"d": unique}}))
	must(c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept", Namespace: "app"}, Data: map[string]string{"d": "in both"}}))

	st, err := sqlite.Open(ctx, t.TempDir()+"/v.db", nil)
	must(err)
	t.Cleanup(func() { st.Close() })
	bcfg, _ := json.Marshal(v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"app"}})
	must(st.CreateVault(ctx, &store.Vault{Name: "v"}))
	must(st.CreatePolicy(ctx, &store.Policy{Vault: "v", Name: "p", Schedule: "R/2026-01-01T02:00:00Z/PT4H",
		Retention: json.RawMessage(`{"default":{"duration":"P1D"}}`), CopyTo: drURL}))
	must(st.CreateInstance(ctx, &store.Instance{Vault: "v", Name: "app", Cluster: "c1", Policy: "p", Config: bcfg, StorageLocation: url,
		ProtectionState: store.ProtectionConfigured}))
	drv, err := clusterdriver.New(cfg, "")
	must(err)
	drivers := jobs.DriverMap{"c1": drv}
	clk := clock.NewFake(time.Now().UTC())
	remover := &jobs.ClusterRemover{Store: st, Drivers: drivers, Wait: 2 * time.Minute, Poll: 200 * time.Millisecond}
	eng := &retention.Engine{Store: st, Clock: clk, Remover: remover}
	r := &jobs.Runner{Store: st, Clock: clk, Drivers: drivers, Retention: eng}

	var points []*store.RecoveryPoint
	for i := range 2 {
		rp := backupThroughVault(t, st, r, &store.Job{Vault: "v", Type: store.JobOnDemandBackup, Instance: "app", Params: json.RawMessage(`{"vaultTier":true}`)})
		if len(rp.Copies) != 1 || rp.Copies[0].StorageLocation != drURL || rp.Copies[0].RepoID == "" {
			t.Fatalf("point %s copies %+v, want one in %s", rp.ID, rp.Copies, drURL)
		}
		points = append(points, rp)
		if i == 0 {
			must(c.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "unique", Namespace: "app"}}))
		}
		time.Sleep(1100 * time.Millisecond) // distinct backup times
	}
	old, newest := points[0], points[1]

	openRepo := func(m *testenv.MinIO, u, password string) (storage.Backend, *repo.Repository) {
		t.Helper()
		be, err := location.Open(ctx, u, location.Credentials{AWSAccessKeyID: m.AccessKey, AWSSecretAccessKey: m.SecretKey})
		must(err)
		t.Cleanup(func() { be.Close() })
		rep, err := repo.Open(ctx, be, password)
		must(err)
		return be, rep
	}
	packs := func(be storage.Backend) map[string]bool {
		t.Helper()
		out := map[string]bool{}
		must(be.List(ctx, storage.PackFile, func(fi storage.FileInfo) error { out[fi.Name] = true; return nil }))
		return out
	}
	// The blobs of the config map "unique" in the copy of the first point.
	drBE, dr := openRepo(secondary, drURL, drPW)
	oldCopy, err := repo.ParseID(old.Copies[0].RepoID)
	must(err)
	m, err := dr.LoadRecoveryPoint(ctx, oldCopy)
	must(err)
	var uniqueBlobs []repo.ID
	for _, rt := range m.Resources {
		must(dr.WalkTree(ctx, rt.Tree, func(e repo.TreeEntry) error {
			if rt.Resource == "configmaps" && e.Name == "unique" {
				uniqueBlobs = append(uniqueBlobs, e.Blobs...)
			}
			return nil
		}))
	}
	if len(uniqueBlobs) == 0 {
		t.Fatal("the copy of the first point has no config map \"unique\"")
	}
	packsBefore := packs(drBE)

	// The secondary is down: the copy cannot be forgotten.
	secondary.Stop()
	remover.Wait = 20 * time.Second
	clk.Advance(3 * 24 * time.Hour)
	js, err := eng.Run(ctx)
	must(err)
	// The run also expires the newest point's operational tier (its
	// vault tier stays), so the issue may be a warning of a job that
	// did that much.
	if len(js) != 1 {
		t.Fatalf("retention with the secondary down: %d jobs %+v", len(js), js)
	}
	issues := append(append([]store.Issue{}, js[0].Errors...), js[0].Warnings...)
	if len(issues) != 1 || issues[0].Code != jobs.CodeCopyNotRemoved || issues[0].Object != old.ID || !strings.Contains(issues[0].Message, drURL) {
		t.Fatalf("retention with the secondary down: %s %+v", js[0].State, issues)
	}
	t.Logf("with the secondary down: %s", issues[0].Message)
	if _, err := st.GetRecoveryPoint(ctx, "v", old.ID); err != nil {
		t.Fatalf("the point left the catalog while its copy is still there: %v", err)
	}
	_, prim := openRepo(primary, url, pw)
	if _, err := prim.FindRecoveryPoint(ctx, old.RepoID); err == nil {
		t.Error("the primary still has the expired point")
	}

	// Back up: the next runs forget the copy (the running expiry job is
	// followed; one that gave up is started again) and prune.
	secondary.Restart(t)
	remover.Wait = 2 * time.Minute
	deadline := time.Now().Add(8 * time.Minute)
	for {
		js, err := eng.Run(ctx)
		must(err)
		if _, err := st.GetRecoveryPoint(ctx, "v", old.ID); err != nil {
			var res retention.Result
			if len(js) != 1 || js[0].State != store.JobCompleted || json.Unmarshal(js[0].Params, &res) != nil ||
				len(res.Deleted) != 1 || res.Deleted[0] != old.ID {
				t.Fatalf("retention after the secondary came back: %+v", js)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the point is still in the catalog: %+v", js)
		}
		t.Logf("retention again: %+v", js)
		time.Sleep(2 * time.Second)
	}
	if _, err := st.GetRecoveryPoint(ctx, "v", newest.ID); err != nil {
		t.Errorf("newest point: %v", err)
	}

	// In the secondary: the copy's manifest is gone, and so is the pack
	// of what only the copy held; the newest copy is whole.
	drBE, dr = openRepo(secondary, drURL, drPW)
	left, err := dr.ListRecoveryPoints(ctx)
	must(err)
	if len(left) != 1 || left[0].ID.String() != newest.Copies[0].RepoID {
		t.Fatalf("the secondary keeps %d recovery points, want only the newest's copy %s", len(left), newest.Copies[0].RepoID)
	}
	for _, b := range uniqueBlobs {
		if _, err := dr.LoadBlob(ctx, b); err == nil {
			t.Errorf("blob %s, held only by the expired copy, is still in the secondary", b.Short())
		}
	}
	packsAfter := packs(drBE)
	removed := 0
	for p := range packsBefore {
		if !packsAfter[p] {
			removed++
		}
	}
	if removed == 0 {
		t.Errorf("no pack removed from the secondary (%d before, %d after)", len(packsBefore), len(packsAfter))
	}
	objects := 0
	for _, rt := range left[0].Resources {
		must(dr.WalkTree(ctx, rt.Tree, func(e repo.TreeEntry) error {
			for _, b := range e.Blobs {
				if _, err := dr.LoadBlob(ctx, b); err != nil {
					return fmt.Errorf("%s %s/%s in the newest copy: %w", rt.Resource, e.Namespace, e.Name, err)
				}
			}
			objects++
			return nil
		}))
	}
	if objects == 0 {
		t.Error("the newest copy holds no objects")
	}

	// The expiry of the copy ran in the cluster as a BackupJob on the
	// secondary's StorageLocation, and pruned it.
	var bjs v1alpha1.BackupJobList
	must(c.List(ctx, &bjs, client.InNamespace("arca-system"), client.MatchingLabels{v1alpha1.LabelVaultForget: "true"}))
	pruned := false
	for _, b := range bjs.Items {
		if b.Spec.StorageLocation == "dr" && b.Status.Phase == v1alpha1.JobCompleted && b.Spec.Prune {
			if len(b.Spec.ForgetRecoveryPoints) != 1 || b.Spec.ForgetRecoveryPoints[0] != old.Copies[0].RepoID {
				t.Errorf("expiry of the copy forgot %v, want %s", b.Spec.ForgetRecoveryPoints, old.Copies[0].RepoID)
			}
			pruned = b.Status.Counts["prunedPacks"] > 0
		}
	}
	if !pruned {
		t.Errorf("no completed expiry on storage location dr pruned a pack: %+v", bjs.Items)
	}
	t.Logf("secondary: %d packs before, %d after; %d objects in the newest copy", len(packsBefore), len(packsAfter), objects)
}
