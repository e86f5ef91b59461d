package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/location"
	"github.com/arca-backup/arca/internal/testenv"
)

// writePoints writes n recovery points of configmap-like objects (some
// shared between points) into the repository at url and returns the
// points with every object's content by blob ID.
func writePoints(t *testing.T, url, password string, n int, tags map[string]string) ([]*repo.RecoveryPoint, map[repo.ID][]byte) {
	t.Helper()
	ctx := context.Background()
	be, err := location.OpenWith(ctx, url, location.Credentials{}, location.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := repo.OpenOrInit(ctx, be, password)
	if err != nil {
		t.Fatal(err)
	}
	content := map[repo.ID][]byte{}
	var rps []*repo.RecoveryPoint
	for p := 0; p < n; p++ {
		w, err := r.NewWriter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tw := w.NewTree()
		for i := 0; i < 300; i++ {
			data := make([]byte, 2000+i)
			seed := int64(i)
			if i%10 == 0 { // one object in ten changes between points
				seed += int64(p) * 1_000_000
			}
			rand.New(rand.NewSource(seed)).Read(data)
			id, err := w.PutBlob(ctx, data)
			if err != nil {
				t.Fatal(err)
			}
			content[id] = data
			if err := tw.Add(ctx, repo.TreeEntry{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespace: "shop", Name: fmt.Sprintf("cm-%03d", i), Blobs: []repo.ID{id}, Size: int64(len(data))}); err != nil {
				t.Fatal(err)
			}
		}
		tree, err := tw.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rp := &repo.RecoveryPoint{Name: fmt.Sprintf("point-%d", p), Started: time.Now().UTC(), Tags: tags,
			Resources: []repo.ResourceTree{{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespaced: true, Tree: tree}}}
		if _, err := w.Commit(ctx, rp); err != nil {
			t.Fatal(err)
		}
		rps = append(rps, rp)
	}
	return rps, content
}

// verifyCopies opens url with password, checks that it does not open with
// wrong, and compares every object of every copy of rps byte for byte.
func verifyCopies(t *testing.T, url, password, wrong string, rps []*repo.RecoveryPoint, content map[repo.ID][]byte) {
	t.Helper()
	ctx := context.Background()
	be, err := location.OpenWith(ctx, url, location.Credentials{}, location.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Open(ctx, be, wrong); !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("%s opened with another repository's password: %v", url, err)
	}
	r, err := repo.OpenReader(ctx, be, password)
	if err != nil {
		t.Fatalf("open %s with its own password: %v", url, err)
	}
	for _, rp := range rps {
		got, err := repo.FindOrigin(ctx, r, rp.ID)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		n := 0
		err = r.WalkTree(ctx, got.Resources[0].Tree, func(e repo.TreeEntry) error {
			b, err := r.LoadBlob(ctx, e.Blobs[0])
			if err != nil {
				return err
			}
			if !bytes.Equal(b, content[e.Blobs[0]]) {
				return fmt.Errorf("%s: content differs", e.Name)
			}
			n++
			return nil
		})
		if err != nil || n != 300 {
			t.Fatalf("%s, copy of %s: %v (%d objects)", url, rp.ID.Short(), err, n)
		}
	}
	if rep, err := r.Check(ctx, repo.CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("check %s: %v %+v", url, err, rep)
	}
}

func copyJSON(t *testing.T, o *RepoCopyOptions) repo.CopyReport {
	t.Helper()
	o.Output = "json"
	var out bytes.Buffer
	if err := RunRepoCopy(context.Background(), o, &out); err != nil {
		t.Fatalf("copy %s → %s: %v\n%s", o.FromRepo.Repo, o.ToRepo.Repo, err, out.String())
	}
	var rep repo.CopyReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	return rep
}

// TestRepoCopyCLI copies along file → S3 (MinIO) → Azure (Azurite) → file,
// each repository with its own password, and checks the data byte for
// byte at the end; a second copy sends nothing.
func TestRepoCopyCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO and Azurite")
	}
	ctx := context.Background()
	dir := t.TempDir()
	pw := func(name, p string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(p+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	pwFile, pwS3, pwAz := pw("file", "pw-file"), pw("s3", "pw-s3"), pw("az", "pw-az")
	t.Setenv(PasswordEnv, "")
	t.Setenv(ToPasswordEnv, "")

	fileURL := "file://" + filepath.Join(dir, "primary")
	tags := map[string]string{v1alpha1.TagVault: "v1", v1alpha1.TagInstance: "shop"}
	rps, content := writePoints(t, fileURL, "pw-file", 2, tags)
	other, _ := writePoints(t, fileURL, "pw-file", 1, map[string]string{v1alpha1.TagInstance: "other"})

	m := testenv.StartMinIO(t)
	az := testenv.StartAzurite(t)
	t.Setenv("AWS_ACCESS_KEY_ID", m.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", m.SecretKey)
	t.Setenv("AZURE_STORAGE_KEY", az.Key)
	s3URL := fmt.Sprintf("s3://arca-copy/secondary?endpoint=%s&tls=false&region=us-east-1", m.Endpoint)
	azURL := fmt.Sprintf("azure://%s/arca-copy/secondary?endpoint=%s", az.Account, az.Endpoint)
	fileURL2 := "file://" + filepath.Join(dir, "third")

	// Usage errors name the problem and the fix; nothing is created.
	var out bytes.Buffer
	var ue *UsageError
	for _, c := range []struct {
		o    RepoCopyOptions
		want string
	}{
		{RepoCopyOptions{FromRepo: RepoOptions{Repo: fileURL, PasswordFile: pwFile}, ToRepo: RepoOptions{Repo: s3URL, PasswordFile: pwS3}}, "--point ID (repeatable), --all, or --instance NAME"},
		{RepoCopyOptions{FromRepo: RepoOptions{Repo: fileURL, PasswordFile: pwFile}, ToRepo: RepoOptions{Repo: fileURL, PasswordFile: pwS3}, All: true}, "same location"},
		{RepoCopyOptions{FromRepo: RepoOptions{Repo: fileURL, PasswordFile: pwFile}, ToRepo: RepoOptions{Repo: s3URL}, All: true}, "--to-password-file FILE or set " + ToPasswordEnv},
		{RepoCopyOptions{FromRepo: RepoOptions{Repo: fileURL}, ToRepo: RepoOptions{Repo: s3URL, PasswordFile: pwS3}, All: true}, "--from-password-file FILE or set " + PasswordEnv},
		{RepoCopyOptions{FromRepo: RepoOptions{Repo: fileURL, PasswordFile: pwFile}, ToRepo: RepoOptions{Repo: s3URL, PasswordFile: pwS3}, Instance: "nope"}, "tagged arca.io/instance=nope"},
	} {
		c.o.Output = "table"
		err := RunRepoCopy(ctx, &c.o, &out)
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("copy %+v: %v, want a usage error containing %q", c.o, err, c.want)
		}
	}

	// file → S3, by instance: the other instance's point stays behind.
	rep := copyJSON(t, &RepoCopyOptions{FromRepo: RepoOptions{Repo: fileURL, PasswordFile: pwFile}, ToRepo: RepoOptions{Repo: s3URL, PasswordFile: pwS3}, Instance: "shop", Vault: "v1"})
	if rep.Copied != 2 || rep.NewBlobs == 0 {
		t.Fatalf("file → s3: %+v", rep)
	}
	// The second point shares 90% of its objects with the first: the
	// copy sent only what changed.
	if p := rep.Points[1]; p.NewBlobs*5 > p.Blobs {
		t.Errorf("second point sent %d of its %d blobs", p.NewBlobs, p.Blobs)
	}
	// Again: nothing is sent.
	rep = copyJSON(t, &RepoCopyOptions{FromRepo: RepoOptions{Repo: fileURL, PasswordFile: pwFile}, ToRepo: RepoOptions{Repo: s3URL, PasswordFile: pwS3}, All: true})
	if rep.Copied != 1 || rep.Skipped != 2 || rep.Points[2].Source != other[0].ID {
		t.Fatalf("file → s3 again with --all: %+v, want the two copied skipped and the other instance's copied", rep)
	}
	rep = copyJSON(t, &RepoCopyOptions{FromRepo: RepoOptions{Repo: fileURL, PasswordFile: pwFile}, ToRepo: RepoOptions{Repo: s3URL, PasswordFile: pwS3}, All: true})
	if rep.Copied != 0 || rep.Skipped != 3 || rep.NewBlobs != 0 || rep.StoredBytes != 0 {
		t.Fatalf("third copy sent data: %+v", rep)
	}

	// S3 → Azure by point prefix (the copy's own ID in S3), then Azure →
	// file with the target's password from $ARCA_TO_PASSWORD, in a table.
	s3be, _ := location.OpenWith(ctx, s3URL, location.Credentials{}, location.Options{})
	s3r, err := repo.OpenReader(ctx, s3be, "pw-s3")
	if err != nil {
		t.Fatal(err)
	}
	var s3IDs []string
	for _, rp := range rps {
		c, err := repo.FindOrigin(ctx, s3r, rp.ID)
		if err != nil {
			t.Fatal(err)
		}
		s3IDs = append(s3IDs, c.ID.String()[:12])
	}
	rep = copyJSON(t, &RepoCopyOptions{FromRepo: RepoOptions{Repo: s3URL, PasswordFile: pwS3}, ToRepo: RepoOptions{Repo: azURL, PasswordFile: pwAz}, Points: s3IDs})
	if rep.Copied != 2 {
		t.Fatalf("s3 → azure: %+v", rep)
	}
	t.Setenv(ToPasswordEnv, "pw-file2")
	out.Reset()
	o := &RepoCopyOptions{FromRepo: RepoOptions{Repo: azURL, PasswordFile: pwAz}, ToRepo: RepoOptions{Repo: fileURL2}, All: true, Output: "table"}
	if err := RunRepoCopy(ctx, o, &out); err != nil {
		t.Fatalf("azure → file: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "created repository") || !strings.Contains(out.String(), "2 copied, 0 already there") {
		t.Fatalf("azure → file output:\n%s", out.String())
	}

	verifyCopies(t, s3URL, "pw-s3", "pw-file", rps, content)
	verifyCopies(t, azURL, "pw-az", "pw-s3", rps, content)
	verifyCopies(t, fileURL2, "pw-file2", "pw-az", rps, content)
}
