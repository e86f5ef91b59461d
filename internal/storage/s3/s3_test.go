package s3_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/s3"
	"github.com/arca-backup/arca/internal/storage/storagetest"
	"github.com/arca-backup/arca/internal/testenv"
)

var seq atomic.Int64

func config(m *testenv.MinIO, bucket string) s3.Config {
	return s3.Config{Endpoint: m.Endpoint, Bucket: bucket, AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, DisableTLS: true}
}

func open(t *testing.T, cfg s3.Config) *s3.Backend {
	t.Helper()
	be, err := s3.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return be
}

// The suite against MinIO; each subtest gets its own prefix in one bucket.
func TestSuiteMinIO(t *testing.T) {
	m := testenv.StartMinIO(t)
	cfg := config(m, "suite")
	cfg.CreateBucket = true
	open(t, cfg)
	storagetest.RunSuite(t, func(t *testing.T) storage.Backend {
		c := cfg
		c.CreateBucket = false
		c.Prefix = fmt.Sprintf("repos/r%d", seq.Add(1))
		return open(t, c)
	})
}

// The suite again with every file above 1 MiB sent as a multipart upload of
// 5 MiB parts.
func TestSuiteMinIOMultipart(t *testing.T) {
	m := testenv.StartMinIO(t)
	cfg := config(m, "multipart")
	cfg.CreateBucket = true
	cfg.SinglePutLimit = 1 << 20
	cfg.PartSize = 5 << 20
	open(t, cfg)
	storagetest.RunSuite(t, func(t *testing.T) storage.Backend {
		c := cfg
		c.CreateBucket = false
		c.Prefix = fmt.Sprintf("repos/r%d", seq.Add(1))
		return open(t, c)
	})
}

// Concurrent single-PUT Saves of one 11 MiB name: MinIO evaluates
// If-None-Match atomically, so exactly one wins. (With multipart uploads it
// does not; see the package doc.)
func TestConcurrentLargeSameName(t *testing.T) {
	m := testenv.StartMinIO(t)
	cfg := config(m, "race")
	cfg.CreateBucket = true
	be := open(t, cfg)
	ctx := context.Background()
	h := storage.Handle{Type: storage.PackFile, Name: storagetest.RandomName()}
	const n = 3
	datas := make([][]byte, n)
	errs := make([]error, n)
	done := make(chan struct{})
	for i := range n {
		datas[i] = storagetest.RandomData(11<<20 + i)
		go func() {
			errs[i] = be.Save(ctx, h, int64(len(datas[i])), strings.NewReader(string(datas[i])))
			done <- struct{}{}
		}()
	}
	for range n {
		<-done
	}
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("two Saves of one name succeeded (%d and %d)", winner, i)
			}
			winner = i
		case !storage.IsExist(err):
			t.Fatalf("Save %d: %v, want nil or IsExist", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no Save succeeded")
	}
	got, err := storage.ReadAll(ctx, be, h)
	if err != nil || string(got) != string(datas[winner]) {
		t.Fatalf("stored object is not the winner's: %d bytes, %v", len(got), err)
	}
}

func TestOpenErrors(t *testing.T) {
	m := testenv.StartMinIO(t)
	ctx := context.Background()
	wrongKey := config(m, "suite")
	wrongKey.SecretAccessKey = "wrong-secret"
	noKeys := config(m, "bkt")
	noKeys.AccessKeyID = ""
	cases := []struct {
		name string
		cfg  s3.Config
		want string
	}{
		{"missing bucket", config(m, "nope"), `bucket "nope" does not exist`},
		{"wrong secret", wrongKey, "access denied"},
		{"no keys", noKeys, "access key ID and a secret access key"},
		{"no bucket", config(m, ""), "no bucket"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s3.Open(ctx, c.cfg)
			if err == nil || !storage.IsPermanent(err) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open: %v; want a permanent error containing %q", err, c.want)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		cfg := config(m, "bkt")
		cfg.Endpoint = testenv.Addr(testenv.FreePort(t))
		cfg.SDKRetries = 1
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, err := s3.Open(ctx, cfg)
		if err == nil || !strings.Contains(err.Error(), "connect") {
			t.Fatalf("Open of an unreachable endpoint: %v", err)
		}
	})
}
