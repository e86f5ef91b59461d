package s3_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/s3"
	"github.com/arca-backup/arca/internal/storage/storagetest"
	"github.com/arca-backup/arca/internal/testenv"
)

// Object Lock on the real MinIO: a retained file cannot be removed, not by
// the backend and not by a versioned DELETE of the service's root user; a
// plain DELETE only hides it behind a delete marker; lock files are not
// retained; RetainUntil extends (never shortens); after the date Remove
// works.
func TestObjectLock(t *testing.T) {
	m := testenv.StartMinIO(t)
	ctx := context.Background()
	cfg := config(m, "locked")
	cfg.CreateBucket = true
	cfg.LockMode = "compliance"
	cfg.LockPeriod = 4 * time.Second
	be := open(t, cfg)
	if got := be.RetentionPeriod(storage.PackFile); got != cfg.LockPeriod {
		t.Fatalf("RetentionPeriod(data) = %v", got)
	}
	for _, ft := range []storage.FileType{storage.LockFile, storage.IndexFile} {
		if got := be.RetentionPeriod(ft); got != 0 {
			t.Fatalf("RetentionPeriod(%s) = %v, want 0", ft, got)
		}
	}
	cl := m.Client(t)

	pack := storage.Handle{Type: storage.PackFile, Name: storagetest.RandomName()}
	data := storagetest.RandomData(1000)
	written := time.Now()
	if err := be.Save(ctx, pack, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("save: %v", err)
	}
	key := pack.Key()
	oi, err := cl.StatObject(ctx, "locked", key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mode, until, err := cl.GetObjectRetention(ctx, "locked", key, oi.VersionID)
	if err != nil || mode == nil || *mode != minio.Compliance || until == nil {
		t.Fatalf("retention of a saved pack: %v %v %v", mode, until, err)
	}
	if d := until.Sub(written); d < 3*time.Second || d > 6*time.Second {
		t.Fatalf("retained until %v, %v after the write; want about %v", until, d, cfg.LockPeriod)
	}

	// Remove through the backend is refused with the date.
	err = be.Remove(ctx, pack)
	var re *storage.RetainedError
	if !storage.IsRetained(err) || !storage.IsPermanent(err) || !errors.As(err, &re) || !re.Until.Equal(*until) {
		t.Fatalf("Remove of a retained pack: %v; want a RetainedError until %v", err, until)
	}
	if !strings.Contains(err.Error(), "retained by the storage's object lock until") {
		t.Fatalf("message: %v", err)
	}
	// So is a versioned DELETE by the root user, outside Arca.
	if err := cl.RemoveObject(ctx, "locked", key, minio.RemoveObjectOptions{VersionID: oi.VersionID}); err == nil {
		t.Fatal("MinIO deleted a retained version")
	}
	// A plain DELETE adds a delete marker; the version survives it.
	if err := cl.RemoveObject(ctx, "locked", key, minio.RemoveObjectOptions{}); err != nil {
		t.Fatalf("plain delete: %v", err)
	}
	if _, err := be.Stat(ctx, pack); !storage.IsNotExist(err) {
		t.Fatalf("after a delete marker Stat says %v", err)
	}
	if _, err := cl.StatObject(ctx, "locked", key, minio.StatObjectOptions{VersionID: oi.VersionID}); err != nil {
		t.Fatalf("the retained version is gone after a plain delete: %v", err)
	}
	for v := range cl.ListObjects(ctx, "locked", minio.ListObjectsOptions{Prefix: key, WithVersions: true}) {
		if v.IsDeleteMarker {
			if err := cl.RemoveObject(ctx, "locked", key, minio.RemoveObjectOptions{VersionID: v.VersionID}); err != nil {
				t.Fatalf("remove the delete marker: %v", err)
			}
		}
	}
	got, err := storage.ReadAll(ctx, be, pack)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after removing the marker the pack reads %d bytes, %v", len(got), err)
	}

	// Lock files are not retained: they come and go.
	lock := storage.Handle{Type: storage.LockFile, Name: storagetest.RandomName()}
	if err := be.Save(ctx, lock, 3, strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
	if err := be.Remove(ctx, lock); err != nil {
		t.Fatalf("remove a lock file: %v", err)
	}
	for v := range cl.ListObjects(ctx, "locked", minio.ListObjectsOptions{Prefix: lock.Key(), WithVersions: true}) {
		t.Fatalf("a removed lock file left a version behind: %+v", v)
	}

	// RetainUntil extends, and never shortens.
	later := time.Now().Add(8 * time.Second).Truncate(time.Second)
	if err := be.RetainUntil(ctx, pack, later); err != nil {
		t.Fatalf("RetainUntil: %v", err)
	}
	if err := be.RetainUntil(ctx, pack, time.Now()); err != nil {
		t.Fatalf("RetainUntil an earlier date: %v", err)
	}
	if _, u, err := cl.GetObjectRetention(ctx, "locked", key, oi.VersionID); err != nil || !u.Equal(later) {
		t.Fatalf("retention after extending: %v, %v; want %v", u, err, later)
	}
	time.Sleep(time.Until(until.Add(500 * time.Millisecond)))
	if err := be.Remove(ctx, pack); !storage.IsRetained(err) {
		t.Fatalf("Remove after the first date but before the extended one: %v", err)
	}
	time.Sleep(time.Until(later.Add(500 * time.Millisecond)))
	if err := be.Remove(ctx, pack); err != nil {
		t.Fatalf("Remove after the retention passed: %v", err)
	}
	if _, err := be.Stat(ctx, pack); !storage.IsNotExist(err) {
		t.Fatalf("after Remove: %v", err)
	}
}

// Object lock needs a bucket created with it, and a valid mode and period.
func TestObjectLockOpenErrors(t *testing.T) {
	m := testenv.StartMinIO(t)
	m.MakeBucket(t, "plain")
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		mode   string
		period time.Duration
		want   string
	}{
		{"bucket without object lock", "GOVERNANCE", time.Hour, `bucket "plain" at ` + m.Endpoint + ` does not have Object Lock enabled`},
		{"unknown mode", "strict", time.Hour, `object lock mode "strict": give GOVERNANCE or COMPLIANCE`},
		{"no period", "COMPLIANCE", 0, "needs a positive lock period"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := config(m, "plain")
			cfg.LockMode, cfg.LockPeriod = c.mode, c.period
			_, err := s3.Open(ctx, cfg)
			if err == nil || !storage.IsPermanent(err) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open: %v; want a permanent error containing %q", err, c.want)
			}
		})
	}
}
