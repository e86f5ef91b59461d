package server_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
)

// recordingQuerier stands in for the cluster's extension: it records what
// the vault asked and answers with an object naming it, or fails with err.
// (The extension's side runs for real in internal/extension's
// TestRecoveryPointQueries and in the node test.)
type recordingQuerier struct {
	mu    sync.Mutex
	asked []v1alpha1.RecoveryPointQuerySpec
	on    []string
	err   error
}

func (q *recordingQuerier) QueryRecoveryPoint(_ context.Context, cluster string, spec v1alpha1.RecoveryPointQuerySpec) (*v1alpha1.RecoveryPointQueryResult, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.asked, q.on = append(q.asked, spec), append(q.on, cluster)
	if q.err != nil {
		return nil, q.err
	}
	return &v1alpha1.RecoveryPointQueryResult{Object: "kind: " + string(spec.Kind), Data: []byte("abc"), EOF: true}, nil
}

func (q *recordingQuerier) last(t *testing.T) (string, v1alpha1.RecoveryPointQuerySpec) {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.asked) == 0 {
		t.Fatal("the extension was not asked")
	}
	return q.on[len(q.on)-1], q.asked[len(q.asked)-1]
}

func (q *recordingQuerier) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.asked)
}

// TestRecoveryPointQueryAPI: the contents, diff, volumes and files operations
// through the API and the Go client, on a real store: what the vault asks
// the cluster (the point's repository ID, its storage location, the
// instance's cluster), who may ask (Backup Reader browses; a Secret's
// values and a file's content need storageLocations/data/read at the
// point's storage location), bad input, and the extension's errors passed
// through with their codes.
func TestRecoveryPointQueryAPI(t *testing.T) {
	e := fixture(t)
	q := &recordingQuerier{}
	e.srv.Service.Queries = q
	const loc = "file:///srv/arca/repo"
	repoID := strings.Repeat("ab", 32)
	otherID := strings.Repeat("cd", 32)
	elsewhereID := strings.Repeat("ef", 32)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := e.st.CreateInstance(ctx, &store.Instance{Vault: "a", Name: "far", Cluster: "dr", Policy: "p4h", StorageLocation: "file:///srv/arca/other",
		ProtectionState: store.ProtectionStopped}); err != nil {
		t.Fatal(err)
	}
	for _, rp := range []*store.RecoveryPoint{
		{Vault: "a", ID: "rp-1", Instance: "shop", Time: now, RepoID: repoID, Tag: "default", Datastore: "operational", State: store.RPAvailable},
		{Vault: "a", ID: "rp-2", Instance: "web", Time: now, RepoID: otherID, Tag: "default", Datastore: "operational", State: store.RPAvailable},
		{Vault: "a", ID: "rp-far", Instance: "far", Time: now, RepoID: elsewhereID, Tag: "default", Datastore: "operational", State: store.RPAvailable},
		{Vault: "a", ID: "rp-unwritten", Instance: "shop", Time: now, Tag: "default", Datastore: "operational", State: store.RPAvailable},
	} {
		if err := e.st.CreateRecoveryPoint(ctx, rp); err != nil {
			t.Fatal(err)
		}
	}
	reader := e.as(t, "user:rita", "Backup Reader@/vaults/a")
	storage := e.as(t, "user:sam", "Backup Reader@/vaults/a", "Storage Contributor@"+rbac.StorageScope(loc))
	nobody := e.as(t, "user:nora", "Backup Reader@/vaults/b")

	// Contents: the vault asks prod-1 (the instance's cluster) about the
	// point's repository ID in its storage location; Secrets stay redacted
	// for a Backup Reader and are revealed for a Storage Contributor.
	res, err := reader.c.RecoveryPointContents(ctx, "a", "rp-1", service.ContentsRequest{Namespace: "shop", Type: "secrets", Name: "db"})
	if err != nil || res.Object != "kind: Contents" {
		t.Fatalf("contents as Backup Reader: %+v, %v", res, err)
	}
	cluster, spec := q.last(t)
	if cluster != "prod-1" || spec.RecoveryPoint != repoID || spec.StorageLocation != loc || spec.Kind != v1alpha1.QueryContents ||
		spec.Namespace != "shop" || spec.Type != "secrets" || spec.Name != "db" || spec.RevealSecrets {
		t.Errorf("asked %s: %+v", cluster, spec)
	}
	// The extension answers only if the point's tags name the vault and
	// instance the vault believes it belongs to.
	if vp := spec.VaultPoint; vp == nil || *vp != (v1alpha1.VaultPoint{Vault: "a", Instance: "shop"}) {
		t.Errorf("asked about rp-1 with vaultPoint %+v, want vault a, instance shop", vp)
	}
	if _, err := storage.c.RecoveryPointContents(ctx, "a", "rp-1", service.ContentsRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, spec = q.last(t); !spec.RevealSecrets {
		t.Errorf("a Storage Contributor of %s was not shown Secrets' values: %+v", loc, spec)
	}
	// Another vault's reader, and no access at all.
	n := q.count()
	var ce *client.Error
	if _, err := nobody.c.RecoveryPointContents(ctx, "a", "rp-1", service.ContentsRequest{}); !errors.As(err, &ce) || ce.Status != 403 || ce.Action != rbac.RecoveryPointsRead {
		t.Errorf("contents as a reader of vault b: %v", err)
	}

	// Diff: against a point of the same storage location (its repository
	// ID is sent), or live; not both, not across storage locations.
	if _, err := reader.c.RecoveryPointDiff(ctx, "a", "rp-1", service.DiffRequest{Against: "rp-2"}); err != nil {
		t.Fatal(err)
	}
	n++
	if _, spec = q.last(t); spec.Kind != v1alpha1.QueryDiff || spec.Against != otherID || spec.Live {
		t.Errorf("diff against rp-2 asked %+v", spec)
	}
	if _, err := reader.c.RecoveryPointDiff(ctx, "a", "rp-1", service.DiffRequest{Live: true, Namespace: "shop"}); err != nil {
		t.Fatal(err)
	}
	n++
	if _, spec = q.last(t); !spec.Live || spec.Against != "" || spec.Namespace != "shop" {
		t.Errorf("diff live asked %+v", spec)
	}
	for _, c := range []struct {
		req  service.DiffRequest
		code string
	}{
		{service.DiffRequest{}, "InvalidValue"},
		{service.DiffRequest{Live: true, Against: "rp-2"}, "InvalidValue"},
		{service.DiffRequest{Against: "rp-far"}, "DiffAcrossStorageLocations"},
		{service.DiffRequest{Against: "rp-none"}, "NotFound"},
		{service.DiffRequest{Live: true, Limit: 501}, "InvalidValue"},
	} {
		if _, err := reader.c.RecoveryPointDiff(ctx, "a", "rp-1", c.req); !errors.As(err, &ce) || ce.Code != c.code {
			t.Errorf("diff %+v: %v, want %s", c.req, err, c.code)
		}
	}

	// Volumes: a Backup Reader lists a point's volumes; a reader of
	// another vault may not.
	if _, err := reader.c.RecoveryPointVolumes(ctx, "a", "rp-1"); err != nil {
		t.Fatal(err)
	}
	n++
	if cluster, spec = q.last(t); cluster != "prod-1" || spec.Kind != v1alpha1.QueryVolumes || spec.RecoveryPoint != repoID || spec.StorageLocation != loc {
		t.Errorf("volumes asked %s: %+v", cluster, spec)
	}
	if _, err := nobody.c.RecoveryPointVolumes(ctx, "a", "rp-1"); !errors.As(err, &ce) || ce.Status != 403 || ce.Action != rbac.RecoveryPointsRead {
		t.Errorf("volumes as a reader of vault b: %v", err)
	}
	if _, err := reader.c.RecoveryPointVolumes(ctx, "a", "rp-none"); !errors.As(err, &ce) || ce.Code != "NotFound" {
		t.Errorf("volumes of an unknown point: %v", err)
	}

	// Files: a Backup Reader lists, but may not read a file's content;
	// a Storage Contributor of the location may.
	if _, err := reader.c.RecoveryPointFiles(ctx, "a", "rp-1", service.FilesRequest{Volume: "shop/data", Path: "/www"}); err != nil {
		t.Fatal(err)
	}
	n++
	if _, spec = q.last(t); spec.Kind != v1alpha1.QueryFiles || spec.Volume != "shop/data" || spec.Path != "/www" || spec.Read {
		t.Errorf("files ls asked %+v", spec)
	}
	_, err = reader.c.RecoveryPointFiles(ctx, "a", "rp-1", service.FilesRequest{Path: "/www/index.html", Read: true})
	if !errors.As(err, &ce) || ce.Status != 403 || ce.Code != service.CodeRoleMissing || ce.Action != rbac.StorageRead || ce.Scope != rbac.StorageScope(loc) ||
		!strings.Contains(ce.Message, "/www/index.html") {
		t.Errorf("files cat as Backup Reader: %v", err)
	}
	res, err = storage.c.RecoveryPointFiles(ctx, "a", "rp-1", service.FilesRequest{Path: "www/index.html", Read: true, Offset: 10, Length: 100})
	if err != nil || string(res.Data) != "abc" || !res.EOF {
		t.Fatalf("files cat as Storage Contributor: %+v, %v", res, err)
	}
	n++
	if _, spec = q.last(t); !spec.Read || spec.Path != "/www/index.html" || spec.Offset != 10 || spec.Length != 100 {
		t.Errorf("files cat asked %+v", spec)
	}
	for _, c := range []struct {
		req  service.FilesRequest
		code string
	}{
		{service.FilesRequest{Path: "/www/../etc"}, "InvalidPath"},
		{service.FilesRequest{Path: "/", Read: true}, "InvalidPath"},
		{service.FilesRequest{Path: "/a", Read: true, Length: v1alpha1.MaxQueryReadBytes + 1}, "InvalidValue"},
		{service.FilesRequest{Path: "/a", Read: true, Offset: -1}, "InvalidValue"},
	} {
		if _, err := storage.c.RecoveryPointFiles(ctx, "a", "rp-1", c.req); !errors.As(err, &ce) || ce.Code != c.code {
			t.Errorf("files %+v: %v, want %s", c.req, err, c.code)
		}
	}
	if _, err := reader.c.RecoveryPointContents(ctx, "a", "rp-unwritten", service.ContentsRequest{}); !errors.As(err, &ce) || ce.Code != "RecoveryPointNotInRepository" {
		t.Errorf("contents of a point without repository ID: %v", err)
	}
	if got := q.count(); got != n {
		t.Errorf("the extension was asked %d times, want %d: a refused request reached the cluster", got, n)
	}

	// The extension's errors come back with their code and message.
	q.err = &service.Error{Kind: service.NotFound, Code: v1alpha1.CodePathNotFound, Message: `"/nope" in volume shop/data of recovery point ` + repoID + ": path not found in the volume"}
	if _, err := reader.c.RecoveryPointFiles(ctx, "a", "rp-1", service.FilesRequest{Path: "/nope"}); !errors.As(err, &ce) || ce.Status != 404 ||
		ce.Code != v1alpha1.CodePathNotFound || !strings.Contains(ce.Message, "/nope") || !strings.Contains(ce.Message, repoID) {
		t.Errorf("path not found: %v", err)
	}
	// Without a way to reach clusters, the vault says so.
	e.srv.Service.Queries = nil
	if _, err := reader.c.RecoveryPointContents(ctx, "a", "rp-1", service.ContentsRequest{}); !errors.As(err, &ce) || ce.Status != 503 || ce.Code != service.CodeQueryUnavailable {
		t.Errorf("no querier: %v", err)
	}
}
