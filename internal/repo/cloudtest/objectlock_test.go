package cloudtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/location"
	"github.com/arca-backup/arca/internal/testenv"
)

// The repository on a MinIO bucket with Object Lock (COMPLIANCE, 8 s):
// a recovery point cannot be forgotten nor an unused pack pruned before
// its retention passes (prune leaves and counts them); a newer point that
// reuses packs extends their retention, so they outlive the point that
// wrote them; after the dates, forget and prune remove what is unused and
// the repository checks clean.
func TestObjectLockOnMinIO(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	const period = 8 * time.Second
	m := testenv.StartMinIO(t)
	ctx := context.Background()
	url := fmt.Sprintf("s3://locked/repo?endpoint=%s&tls=false&region=us-east-1&object-lock=compliance&lock-period=%s", m.Endpoint, period)
	be, err := location.OpenWith(ctx, url, location.Credentials{AWSAccessKeyID: m.AccessKey, AWSSecretAccessKey: m.SecretKey}, location.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := storage.RetentionOf(be, storage.PackFile); got != period {
		t.Fatalf("retention through location.Open: %v", got)
	}
	kdf := repo.WithKDF(repo.KDFParams{N: 1 << 10, R: 8, P: 1})
	r, err := repo.Init(ctx, be, "pw", kdf, repo.WithPackSize(16<<10))
	if err != nil {
		t.Fatal(err)
	}
	random := func(n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = make([]byte, 4000)
			_, _ = rand.Read(out[i])
		}
		return out
	}
	shared, onlyA, onlyB, orphan := random(12), random(12), random(12), random(8)
	write := func(name string, sets ...[][]byte) (*repo.RecoveryPoint, repo.WriterStats) {
		w, err := r.NewWriter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tw := w.NewTree()
		i := 0
		for _, set := range sets {
			for _, data := range set {
				id, err := w.PutBlob(ctx, data)
				if err != nil {
					t.Fatal(err)
				}
				if err := tw.Add(ctx, repo.TreeEntry{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespace: "ns", Name: fmt.Sprint(i), Blobs: []repo.ID{id}, Size: int64(len(data))}); err != nil {
					t.Fatal(err)
				}
				i++
			}
		}
		tree, err := tw.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rp := &repo.RecoveryPoint{Name: name, Started: time.Now(), Resources: []repo.ResourceTree{{Version: "v1", Resource: "configmaps", Tree: tree}}}
		if _, err := w.Commit(ctx, rp); err != nil {
			t.Fatal(err)
		}
		return rp, w.Stats()
	}

	t0 := time.Now()
	a, _ := write("a", shared, onlyA)
	w, err := r.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, data := range orphan {
		if _, err := w.PutBlob(ctx, data); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // let the full packs upload
	_ = w.Abort(ctx)        // they stay, unreferenced
	time.Sleep(3 * time.Second)
	b, bst := write("b", shared, onlyB)
	if bst.RetainedPacks == 0 {
		t.Fatalf("b reused a's packs but extended no retention: %+v", bst)
	}

	// Before any date: forget leaves a, prune leaves the unused packs.
	err = r.Forget(ctx, []repo.ID{a.ID})
	var pre *repo.PointsRetainedError
	if !errors.As(err, &pre) || !storage.IsRetained(err) || len(pre.IDs) != 1 || pre.IDs[0] != a.ID ||
		!strings.Contains(err.Error(), "the storage's object lock retains them until") {
		t.Fatalf("forget of a retained point: %v", err)
	}
	if _, err := r.FindRecoveryPoint(ctx, a.ID.String()); err != nil {
		t.Fatalf("a is gone after a refused forget: %v", err)
	}
	packsBefore := listPacks(t, be)
	rep1, err := r.Prune(ctx, repo.PruneOptions{})
	if err != nil {
		t.Fatalf("prune under object lock: %v", err)
	}
	if rep1.PacksRetained == 0 || rep1.RetainedUntil.Before(time.Now()) {
		t.Fatalf("prune did not report the retained orphan packs: %+v", rep1)
	}
	if rep1.IndexFilesRetained != 0 || rep1.IndexFilesRemoved == 0 {
		t.Fatalf("index files are not retained (they are rebuilt from packs), prune replaces them: %+v", rep1)
	}
	for name := range packsBefore {
		if _, err := be.Stat(ctx, storage.Handle{Type: storage.PackFile, Name: name}); err != nil {
			t.Fatalf("pack %s gone after a prune under object lock: %v", name, err)
		}
	}
	if c, err := r.Check(ctx, repo.CheckOptions{ReadData: true}); err != nil || !c.OK() {
		t.Fatalf("check after a prune that left retained files: %+v %v", c, err)
	}

	// After a's files' dates (t0+period), before b's (tB+period).
	time.Sleep(time.Until(t0.Add(period + 700*time.Millisecond)))
	if err := r.Forget(ctx, []repo.ID{a.ID}); err != nil {
		t.Fatalf("forget after the retention passed: %v", err)
	}
	rep2, err := r.Prune(ctx, repo.PruneOptions{})
	if err != nil {
		t.Fatalf("second prune: %v", err)
	}
	// a's own packs and the orphans go; a pack holding both a's blobs and
	// blobs b reuses is repacked, and stays (unreferenced) while b's
	// extension of its retention lasts.
	if rep2.PacksRemoved == 0 || rep2.BlobsRemoved < len(onlyA) || rep2.PacksRetained > rep2.PacksRepacked {
		t.Fatalf("the second prune, after a's date: %+v", rep2)
	}
	if c, err := r.Check(ctx, repo.CheckOptions{ReadData: true}); err != nil || !c.OK() || c.UnreferencedPacks != rep2.PacksRetained {
		t.Fatalf("check after the second prune: %+v %v", c, err)
	}
	// Someone with the storage's root credentials now tries to delete every
	// pack version. The service refuses every one: all that is left is b's,
	// and the packs a wrote (retained until a's date, which has passed) and
	// b reuses had their retention extended to b's date when b was written.
	cl := m.Client(t)
	refused := 0
	for oi := range cl.ListObjects(ctx, "locked", minio.ListObjectsOptions{Prefix: "repo/data/", Recursive: true, WithVersions: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		if err := cl.RemoveObject(ctx, "locked", oi.Key, minio.RemoveObjectOptions{VersionID: oi.VersionID}); err == nil {
			t.Errorf("pack %s (written %v) deleted by force before b's date", oi.Key, oi.LastModified)
		} else {
			refused++
		}
	}
	if refused < int(bst.RetainedPacks) || bst.RetainedPacks == 0 {
		t.Fatalf("%d forced deletes refused; b extended %d reused packs", refused, bst.RetainedPacks)
	}
	rps, err := r.ListRecoveryPoints(ctx)
	if err != nil || len(rps) != 1 || rps[0].ID != b.ID {
		t.Fatalf("recovery points after forget: %v %v", rps, err)
	}
	r, err = repo.Open(ctx, be, "pw", kdf)
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil || !c.OK() {
		t.Fatalf("check after the forced deletes: %+v %v", c, err)
	}
	readB(t, r, b, append(append([][]byte{}, shared...), onlyB...))
}

func readB(t *testing.T, r *repo.Repository, b *repo.RecoveryPoint, want [][]byte) {
	t.Helper()
	got := 0
	if err := r.WalkTree(context.Background(), b.Resources[0].Tree, func(e repo.TreeEntry) error {
		data, err := r.LoadBlob(context.Background(), e.Blobs[0])
		if err != nil {
			return err
		}
		if !bytes.Equal(data, want[got]) {
			return fmt.Errorf("%s differs", e.Name)
		}
		got++
		return nil
	}); err != nil || got != len(want) {
		t.Fatalf("read b back: %d objects, %v", got, err)
	}
}

func listPacks(t *testing.T, be storage.Backend) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	if err := be.List(context.Background(), storage.PackFile, func(fi storage.FileInfo) error {
		out[fi.Name] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
