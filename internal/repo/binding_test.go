package repo

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/arca-backup/arca/internal/storage"
)

// Format v2 binds every envelope to its file type: a lock, the config or an
// index file copied into points/ (under the right name: the hash of its
// bytes) is not a recovery point. Under format v1 the lock and the config
// decoded as empty recovery points.
func TestEnvelopeBoundToFileType(t *testing.T) {
	ctx := context.Background()
	r, be, _ := newTestRepo(t)
	if v := r.Config().Version; v < 2 {
		t.Fatalf("a new repository has format version %d, want a bound format (2 or later)", v)
	}
	writeBackup(t, r, backupSpec{types: 1, objects: 2, seed: 3}, "real")
	hl, err := r.lock(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hl.release(ctx) }()

	copyInto := func(from storage.Handle, to storage.FileType) ID {
		t.Helper()
		b, err := storage.ReadAll(ctx, be, from)
		if err != nil {
			t.Fatal(err)
		}
		id := Hash(b)
		if err := be.Save(ctx, storage.Handle{Type: to, Name: id.String()}, int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		return id
	}
	first := func(ft storage.FileType) storage.Handle {
		ids, err := r.listIDs(ctx, ft)
		if err != nil || len(ids) == 0 {
			t.Fatalf("no %s file: %v", ft, err)
		}
		for id := range ids {
			return storage.Handle{Type: ft, Name: id.String()}
		}
		panic("unreachable")
	}
	for _, from := range []storage.Handle{first(storage.LockFile), {Type: storage.ConfigFile}, first(storage.IndexFile)} {
		id := copyInto(from, storage.RecoveryPointFile)
		_, err := r.LoadRecoveryPoint(ctx, id)
		if err == nil || !isDamage(err) || !errors.Is(err, errDecrypt) {
			t.Errorf("%s copied into points/ loads as a recovery point: %v", from, err)
		}
		if err := be.Remove(ctx, storage.Handle{Type: storage.RecoveryPointFile, Name: id.String()}); err != nil {
			t.Fatal(err)
		}
	}
	// And the other way round: a manifest is neither an index nor a lock.
	m := first(storage.RecoveryPointFile)
	idxID := copyInto(m, storage.IndexFile)
	if _, err := r.loadIndexFile(ctx, idxID); err == nil || !errors.Is(err, errDecrypt) {
		t.Errorf("a manifest copied into index/ loads as an index: %v", err)
	}
	lockID := copyInto(m, storage.LockFile)
	locks, err := r.Locks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range locks {
		if l.ID == lockID && !l.Damaged {
			t.Errorf("a manifest copied into locks/ reads as a lock: %+v", l)
		}
	}
	// Check names the planted index file as damaged.
	rep, err := r.Check(ctx, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Damaged) != 1 || !strings.Contains(rep.Damaged[0].File, idxID.String()) {
		t.Errorf("check reports %+v, want the planted index file", rep.Damaged)
	}
}
