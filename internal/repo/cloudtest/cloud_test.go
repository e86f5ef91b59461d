// Package cloudtest runs the repository end to end on the cloud storage
// backends against local emulators (Azurite, MinIO). It is a package of its
// own so that internal/repo's unit tests do not link the test environment.
package cloudtest

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/location"
	"github.com/arca-backup/arca/internal/testenv"
)

func TestRepositoryOnAzurite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Azurite")
	}
	az := testenv.StartAzurite(t)
	url := fmt.Sprintf("azure://%s/arca-repo/prefix?endpoint=%s", az.Account, az.Endpoint)
	be, err := location.OpenWith(context.Background(), url, location.Credentials{AzureAccountKey: az.Key}, location.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, be)
}

func TestRepositoryOnMinIO(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	m := testenv.StartMinIO(t)
	url := fmt.Sprintf("s3://arca-repo/prefix?endpoint=%s&tls=false&region=us-east-1", m.Endpoint)
	be, err := location.OpenWith(context.Background(), url, location.Credentials{AWSAccessKeyID: m.AccessKey, AWSSecretAccessKey: m.SecretKey}, location.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, be)
}

// exercise: init, two recovery points (the second deduplicated), read back
// through a fresh Open, check --read-data, forget + prune, check again.
func exercise(t *testing.T, be storage.Backend) {
	t.Helper()
	ctx := context.Background()
	kdf := repo.WithKDF(repo.KDFParams{N: 1 << 10, R: 8, P: 1})
	r, err := repo.Init(ctx, be, "pw", kdf, repo.WithPackSize(256<<10))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, seed int) (*repo.RecoveryPoint, map[repo.ID][]byte) {
		w, err := r.NewWriter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		content := map[repo.ID][]byte{}
		tw := w.NewTree()
		for i := 0; i < 500; i++ {
			data := bytes.Repeat([]byte(fmt.Sprintf("object %d/%d ", seed, i)), 100)
			id, err := w.PutBlob(ctx, data)
			if err != nil {
				t.Fatal(err)
			}
			content[id] = data
			if err := tw.Add(ctx, repo.TreeEntry{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespace: "ns", Name: fmt.Sprint(i), Blobs: []repo.ID{id}, Size: int64(len(data))}); err != nil {
				t.Fatal(err)
			}
		}
		tree, err := tw.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rp := &repo.RecoveryPoint{Name: name, Started: time.Date(2026, 11, 1, seed, 0, 0, 0, time.UTC), Resources: []repo.ResourceTree{{Version: "v1", Resource: "configmaps", Tree: tree}}}
		if _, err := w.Commit(ctx, rp); err != nil {
			t.Fatal(err)
		}
		return rp, content
	}
	a, _ := write("a", 1)
	b, cb := write("b", 2)
	r2, err := repo.Open(ctx, be, "pw", kdf)
	if err != nil {
		t.Fatal(err)
	}
	latest, err := r2.FindRecoveryPoint(ctx, "latest")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := r2.WalkTree(ctx, latest.Resources[0].Tree, func(e repo.TreeEntry) error {
		got, err := r2.LoadBlob(ctx, e.Blobs[0])
		if err != nil {
			return err
		}
		if !bytes.Equal(got, cb[e.Blobs[0]]) {
			return fmt.Errorf("%s: content differs", e.Name)
		}
		n++
		return nil
	}); err != nil || n != 500 {
		t.Fatalf("read back %d: %v", n, err)
	}
	_ = b
	if rep, err := r2.Check(ctx, repo.CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("check: %+v %v", rep, err)
	}
	if err := r2.Forget(ctx, []repo.ID{a.ID}); err != nil {
		t.Fatal(err)
	}
	prep, err := r2.Prune(ctx, repo.PruneOptions{})
	if err != nil || prep.BlobsRemoved < 500 {
		t.Fatalf("prune: %+v %v", prep, err)
	}
	if rep, err := r2.Check(ctx, repo.CheckOptions{ReadData: true}); err != nil || !rep.OK() || rep.RecoveryPoints != 1 {
		t.Fatalf("check after prune: %+v %v", rep, err)
	}
}
