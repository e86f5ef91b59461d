package location_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/location"
	"github.com/arca-backup/arca/internal/storage/retry"
	"github.com/arca-backup/arca/internal/testenv"
)

func TestParse(t *testing.T) {
	wd, _ := os.Getwd()
	cases := []struct {
		url  string
		want location.Location
	}{
		{"file:///var/backups/arca", location.Location{Kind: location.File, Path: "/var/backups/arca"}},
		{"file://localhost/srv/r/", location.Location{Kind: location.File, Path: "/srv/r"}},
		{"/abs/path", location.Location{Kind: location.File, Path: "/abs/path"}},
		{"rel/dir", location.Location{Kind: location.File, Path: filepath.Join(wd, "rel/dir")}},
		{"./x", location.Location{Kind: location.File, Path: filepath.Join(wd, "x")}},
		{"azure://acct1/backups", location.Location{Kind: location.Azure, Account: "acct1", Container: "backups"}},
		{"azure://acct1/backups/cluster-a/prod/", location.Location{Kind: location.Azure, Account: "acct1", Container: "backups", Prefix: "cluster-a/prod"}},
		{"azure://devstoreaccount1/c-1?endpoint=http://127.0.0.1:10000/devstoreaccount1",
			location.Location{Kind: location.Azure, Account: "devstoreaccount1", Container: "c-1", Endpoint: "http://127.0.0.1:10000/devstoreaccount1"}},
		{"s3://my-bucket", location.Location{Kind: location.S3, Bucket: "my-bucket"}},
		{"s3://my.bucket/a/b?region=eu-west-1", location.Location{Kind: location.S3, Bucket: "my.bucket", Prefix: "a/b", Region: "eu-west-1"}},
		{"s3://bkt/p?endpoint=127.0.0.1:9000&tls=false&path-style=true&insecure-skip-verify=1",
			location.Location{Kind: location.S3, Bucket: "bkt", Prefix: "p", Endpoint: "127.0.0.1:9000", DisableTLS: true, PathStyle: true, InsecureSkipVerify: true}},
		{"s3://bkt?endpoint=http://minio.local:9000", location.Location{Kind: location.S3, Bucket: "bkt", Endpoint: "minio.local:9000", DisableTLS: true}},
		{"S3://bkt", location.Location{Kind: location.S3, Bucket: "bkt"}},
		{"s3://bkt/p?object-lock=compliance&lock-period=35d",
			location.Location{Kind: location.S3, Bucket: "bkt", Prefix: "p", LockMode: "COMPLIANCE", LockPeriod: 35 * 24 * time.Hour}},
		{"s3://bkt?object-lock=GOVERNANCE&lock-period=90s",
			location.Location{Kind: location.S3, Bucket: "bkt", LockMode: "GOVERNANCE", LockPeriod: 90 * time.Second}},
	}
	for _, c := range cases {
		got, err := location.Parse(c.url)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.url, err)
			continue
		}
		if got != c.want {
			t.Errorf("Parse(%q) =\n %+v, want\n %+v", c.url, got, c.want)
		}
		// The canonical form parses to the same location.
		if again, err := location.Parse(got.String()); err != nil || again != got {
			t.Errorf("Parse(%q).String() = %q does not round-trip: %+v, %v", c.url, got.String(), again, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ url, want string }{
		{"", "empty"},
		{"ftp://host/x", `unsupported scheme "ftp"`},
		{"s3:bucket", `without "//"`},
		{"file://var/backups", "three slashes for an absolute path: file:///var/backups"},
		{"file:///x?y=1", "no query"},
		{"azure://", "account is missing"},
		{"azure://Acct/c", "not a storage account name"},
		{"azure://acct1", "container is missing"},
		{"azure://acct1/", "container is missing"},
		{"azure://acct1/Bad_Name", "not a container name"},
		{"azure://acct1/ab", "not a container name"},
		{"azure://acct1/c--d", "not a container name"},
		{"azure://acct1/-cd", "not a container name"},
		{"azure://acct1/cont/a/../b", `".."`},
		{"azure://acct1/cont?endpoint=127.0.0.1:10000", "not an http(s) URL"},
		{"azure://acct1/cont?key=secret", `unknown query parameter(s) key`},
		{"azure://user:pw@acct1/cont", "contains credentials"},
		{"s3://", "bucket is missing"},
		{"s3://ab", "not a bucket name"},
		{"s3://My_Bucket", "not a bucket name"},
		{"s3://bkt:9000/x", "port belongs to the endpoint"},
		{"s3://bkt/a//b", "empty segment"},
		{"s3://bkt?tls=maybe", `tls="maybe" is not a boolean`},
		{"s3://bkt?endpoit=x", "unknown query parameter(s) endpoit (known: endpoint"},
		{"s3://AKIA:secret@bkt", "contains credentials"},
		{"s3://bkt?object-lock=strict&lock-period=1d", `object-lock="strict" is not a lock mode`},
		{"s3://bkt?object-lock=compliance", "object-lock needs lock-period"},
		{"s3://bkt?lock-period=3d", "lock-period is set without object-lock"},
		{"s3://bkt?object-lock=compliance&lock-period=-3d", `lock-period="-3d": it must be positive`},
		{"s3://bkt?object-lock=compliance&lock-period=week", `lock-period="week": neither days`},
	}
	for _, c := range cases {
		_, err := location.Parse(c.url)
		var pe *location.ParseError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want a ParseError containing %q", c.url, err, c.want)
			continue
		}
		if !storage.IsPermanent(err) {
			t.Errorf("Parse(%q): error is not permanent", c.url)
		}
	}
}

func TestOpenFile(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	_, err := location.Open(ctx, "file://"+dir, location.Credentials{})
	if !storage.IsNotExist(err) || !strings.Contains(err.Error(), "no repository directory") {
		t.Fatalf("Open of a missing directory: %v", err)
	}
	be, err := location.OpenWith(ctx, "file://"+dir, location.Credentials{}, location.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := be.(*retry.Backend); !ok {
		t.Fatalf("backend is %T, want the retry decorator", be)
	}
	if err := be.Save(ctx, storage.Handle{Type: storage.ConfigFile}, 2, strings.NewReader("{}")); err != nil {
		t.Fatal(err)
	}
	be2, err := location.Open(ctx, dir, location.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := storage.ReadAll(ctx, be2, storage.Handle{Type: storage.ConfigFile}); err != nil || string(got) != "{}" {
		t.Fatalf("read back: %q %v", got, err)
	}
	if be2.Location() != "file://"+dir {
		t.Errorf("Location = %s", be2.Location())
	}
}

func clearEnv(t *testing.T) {
	for _, k := range []string{"AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CONNECTION_STRING",
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"} {
		t.Setenv(k, "")
	}
}

func TestOpenAzure(t *testing.T) {
	clearEnv(t)
	az := testenv.StartAzurite(t)
	ctx := context.Background()
	url := "azure://" + az.Account + "/repos/team-a?endpoint=" + az.Endpoint

	_, err := location.Open(ctx, url, location.Credentials{})
	if !storage.IsPermanent(err) || !strings.Contains(err.Error(), "AZURE_STORAGE_KEY") {
		t.Fatalf("Open without credentials: %v", err)
	}
	t.Setenv("AZURE_STORAGE_KEY", az.Key)
	_, err = location.Open(ctx, url, location.Credentials{})
	if !storage.IsPermanent(err) || !strings.Contains(err.Error(), `container "repos" does not exist`) {
		t.Fatalf("Open of a missing container: %v", err)
	}
	be, err := location.OpenWith(ctx, url, location.Credentials{}, location.Options{Create: true})
	if err != nil {
		t.Fatalf("Open with Create: %v", err)
	}
	if err := be.Save(ctx, storage.Handle{Type: storage.KeyFile, Name: "k"}, 1, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	// Flags win over the environment: a connection string flag alone.
	t.Setenv("AZURE_STORAGE_SAS_TOKEN", "sv=bogus")
	be2, err := location.Open(ctx, url, location.Credentials{AzureConnectionString: az.ConnectionString()})
	if err != nil {
		t.Fatalf("Open with a connection string flag: %v", err)
	}
	if _, err := be2.Stat(ctx, storage.Handle{Type: storage.KeyFile, Name: "k"}); err != nil {
		t.Fatal(err)
	}
	// Two kinds from the environment are ambiguous.
	_, err = location.Open(ctx, url, location.Credentials{})
	if !storage.IsPermanent(err) || !strings.Contains(err.Error(), "more than one kind") {
		t.Fatalf("Open with key and SAS in the environment: %v", err)
	}
	t.Setenv("AZURE_STORAGE_SAS_TOKEN", "")
	t.Setenv("AZURE_STORAGE_KEY", "d3Jvbmcga2V5")
	_, err = location.Open(ctx, url, location.Credentials{})
	if !storage.IsPermanent(err) || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("Open with a wrong key: %v", err)
	}
}

func TestOpenS3(t *testing.T) {
	clearEnv(t)
	m := testenv.StartMinIO(t)
	ctx := context.Background()
	url := "s3://arca-repos/cluster-1?endpoint=" + m.Endpoint + "&tls=false"
	_, err := location.Open(ctx, url, location.Credentials{})
	if !storage.IsPermanent(err) || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Fatalf("Open without credentials: %v", err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", m.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", m.SecretKey)
	_, err = location.Open(ctx, url, location.Credentials{})
	if !storage.IsPermanent(err) || !strings.Contains(err.Error(), `bucket "arca-repos" does not exist`) {
		t.Fatalf("Open of a missing bucket: %v", err)
	}
	be, err := location.OpenWith(ctx, url, location.Credentials{}, location.Options{Create: true})
	if err != nil {
		t.Fatalf("Open with Create: %v", err)
	}
	if err := be.Save(ctx, storage.Handle{Type: storage.LockFile, Name: "l"}, 1, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if be.Location() != "s3://arca-repos/cluster-1" {
		t.Errorf("Location = %s", be.Location())
	}
	// Flags win over the environment.
	_, err = location.Open(ctx, url, location.Credentials{AWSAccessKeyID: m.AccessKey, AWSSecretAccessKey: "wrong"})
	if !storage.IsPermanent(err) || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("Open with a wrong secret flag: %v", err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	clearEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "a")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "b")
	t.Setenv("AZURE_STORAGE_KEY", testenv.AzuriteKey)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr := testenv.Addr(testenv.FreePort(t))
	for _, url := range []string{
		"s3://bkt?endpoint=" + addr + "&tls=false",
		"azure://devstoreaccount1/cont?endpoint=http://" + addr + "/devstoreaccount1",
	} {
		start := time.Now()
		_, err := location.Open(ctx, url, location.Credentials{})
		if err == nil || !strings.Contains(err.Error(), "cannot reach storage") {
			t.Errorf("Open(%s): %v, want a cannot-reach error", url, err)
		}
		t.Logf("%s: failed in %s: %v", url, time.Since(start).Round(time.Millisecond), err)
	}
}
