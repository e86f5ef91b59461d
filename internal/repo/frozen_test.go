package repo_test

// The frozen repositories (docs/repository-format.md, "Compatibility: frozen
// repositories"): testdata/v1/repo was written once by the format-v1 code,
// testdata/v2/repo by the format-v2 code, and both are committed. Every later
// version of this package must open each with both of its passwords, read
// every recovery point, tree and blob, and find the content stated below. A
// format change adds testdata/v3 beside them; it never rewrites them.
//
// testdata/v1/README.md and testdata/v2/README.md say how they were made.
// testdata/v1 can no longer be made (this code writes format v2). To make
// testdata/v2 again (only when its frozen content must change, which should
// be never):
//
//	go test ./internal/repo -run TestFrozenRepoGenerateV2 -args -regenerate-v2
//
// then update the file IDs in frozenV2 below from the test's log.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/local"
)

var (
	regenerate   = flag.Bool("regenerate", false, "rewrite internal/repo/testdata/v1/repo (TestFrozenRepoGenerate): no longer possible, this code writes format v2")
	regenerateV2 = flag.Bool("regenerate-v2", false, "rewrite internal/repo/testdata/v2/repo (TestFrozenRepoGenerateV2); never needed unless the frozen content changes")
)

const (
	frozenV1Dir = "testdata/v1/repo"
	frozenV2Dir = "testdata/v2/repo"
)

// The two passwords of each frozen repository: each has its own key file
// wrapping the same master key.
const (
	frozenPassword1 = "frozen-v1 first password"
	frozenPassword2 = "frozen-v1 second password"

	frozenV2Password1 = "frozen-v2 first password"
	frozenV2Password2 = "frozen-v2 second password"
)

// frozenKDF is deliberately cheap (128 KiB, about 1 ms) so the test opens the
// repository twice in no time; the key files record their parameters, so a
// reader derives with these whatever its defaults are.
var frozenKDF = repo.KDFParams{N: 1 << 10, R: 8, P: 1}

type frozenObject struct {
	Namespace, Name string
	Content         string
}

type frozenTree struct {
	Group, Version, Resource, Kind string
	Namespaced                     bool
	Objects                        []frozenObject
	// Stream: the single object's content was stored with PutStream (several
	// data blobs for one entry) instead of PutBlob.
	Stream bool
}

type frozenPoint struct {
	ID        string // manifest file ID, filled in after generation
	Name      string
	Started   time.Time
	Finished  time.Time
	Tags      map[string]string
	Source    repo.Source
	Config    string // JSON
	Volumes   string // JSON: volume.Records as internal/volume writes them
	Warnings  []repo.Warning
	Resources []frozenTree
}

// Objects shared by points 1 and 2 (stored once: deduplicated).
const (
	nsShop   = `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","labels":{"team":"web"}}}`
	cmShopV1 = `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"app-config","namespace":"shop"},"data":{"LOG_LEVEL":"info","FEATURE_CART":"off"}}`
	cmShopV2 = `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"app-config","namespace":"shop"},"data":{"LOG_LEVEL":"debug","FEATURE_CART":"on"}}`
	secShop  = `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db-credentials","namespace":"shop"},"type":"Opaque","data":{"password":"czNjcjN0","user":"c2hvcA=="}}`
	pvcShop  = `{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"data","namespace":"shop"},"spec":{"accessModes":["ReadWriteOnce"],"storageClassName":"csi-hostpath","resources":{"requests":{"storage":"1Gi"}},"volumeName":"pvc-5f0c"}}`
	pvcCache = `{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"cache","namespace":"shop"},"spec":{"accessModes":["ReadWriteOnce"],"storageClassName":"local-disk","resources":{"requests":{"storage":"2Gi"}},"volumeName":"pvc-77aa"}}`
	depWeb   = `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop"},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"registry.example/shop/web:1.4.2"}]}}}}`
	depWork  = `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"worker","namespace":"shop"},"spec":{"replicas":1,"selector":{"matchLabels":{"app":"worker"}},"template":{"metadata":{"labels":{"app":"worker"}},"spec":{"containers":[{"name":"worker","image":"registry.example/shop/worker:1.4.2"}]}}}}`
	widget   = `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"gizmo","namespace":"shop"},"spec":{"size":3,"color":"teal"}}`
)

// frozenStreamSHA256 pins frozenStream(): if the function changed, the
// expected content would no longer be what was frozen.
const frozenStreamSHA256 = "65a89207b6aa0b63a03e1b7f75479be30c95df42eaf37c1e7ee187090c14efae"

// frozenStream is the content stored with PutStream in point 3: a large
// ConfigMap (2 MiB) of numbered lines, which compresses well; at 2 MiB the
// chunker (512 KiB minimum, 1 MiB average) cut it into several blobs.
func frozenStream() []byte {
	var b bytes.Buffer
	b.WriteString(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"bundle","namespace":"tools"},"data":{"bundle.txt":"`)
	for i := range 1 << 15 {
		fmt.Fprintf(&b, "line %05d of the frozen bundle, written by format v1\\n", i)
	}
	b.WriteString(`"}}`)
	return b.Bytes()
}

// frozenRepo is what a frozen repository holds.
type frozenRepo struct {
	Version   int       // config.version
	Dir       string    // where it is committed
	Passwords [2]string // of the two key files
	KeyIDs    [2]string // key files: password 1, password 2
	Points    []frozenPoint
	Latest    int // index in Points of the most recently started point
	// What Check reports.
	IndexFiles, Packs, Blobs int
}

var frozenV1 = frozenRepo{
	Version:   1,
	Dir:       frozenV1Dir,
	Passwords: [2]string{frozenPassword1, frozenPassword2},
	KeyIDs: [2]string{
		"9765b29abda83d9cdec44560beacd5ce290316253000d3fae3154a0d5c9d70b5",
		"e6c7c32ce31d33cadf57ad4874847f6020c98fd2661456babef96914e96ff769",
	},
	Points: []frozenPoint{
		{
			ID:       "16ff6301f3044fe857f075c27bbfc08e3eee15bd5e5429e026b38d8b7f03f32a",
			Name:     "shop-prod-20261101-0200",
			Started:  time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC),
			Finished: time.Date(2026, 11, 1, 2, 0, 41, 250_000_000, time.UTC),
			Tags:     map[string]string{"arca.io/vault": "vault-west", "arca.io/instance": "shop-prod", "arca.io/job": "job-0001"},
			Source:   repo.Source{Cluster: "c6f1d2a0-prod-eastus", Server: "https://prod-eastus.example:6443", KubernetesVersion: "v1.34.2"},
			Config:   `{"includedNamespaces":["shop"],"includeClusterScopeResources":true,"snapshotVolumes":true}`,
			Volumes:  `{"version":1,"backupID":"b-0001","snapshots":[{"namespace":"shop","pvc":"data","pv":"pvc-5f0c","driver":"hostpath.csi.k8s.io","snapshotHandle":"snap-0001","restoreSize":1073741824,"snapshotClass":"csi-hostpath-snapclass","volumeHandle":"vol-5f0c","storageClass":"csi-hostpath","volumeMode":"Filesystem","content":"arca-b-0001-shop-data","snapshot":"arca-b-0001-data","time":"2026-11-01T02:00:30Z"}],"firstSnapshot":"2026-11-01T02:00:30Z","lastSnapshot":"2026-11-01T02:00:30Z","spreadMillis":0}`,
			Resources: []frozenTree{
				{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespaced: true, Objects: []frozenObject{{"shop", "app-config", cmShopV1}}},
				{Version: "v1", Resource: "namespaces", Kind: "Namespace", Objects: []frozenObject{{"", "shop", nsShop}}},
				{Version: "v1", Resource: "persistentvolumeclaims", Kind: "PersistentVolumeClaim", Namespaced: true, Objects: []frozenObject{{"shop", "data", pvcShop}}},
				{Version: "v1", Resource: "secrets", Kind: "Secret", Namespaced: true, Objects: []frozenObject{{"shop", "db-credentials", secShop}}},
				{Group: "apps", Version: "v1", Resource: "deployments", Kind: "Deployment", Namespaced: true, Objects: []frozenObject{{"shop", "web", depWeb}}},
				{Group: "example.com", Version: "v1", Resource: "widgets", Kind: "Widget", Namespaced: true, Objects: []frozenObject{{"shop", "gizmo", widget}}},
			},
		},
		{
			ID:       "b7fc3cd646870c9982b8efc6e57bb59f8e6eff94ddba53ebc02e3c7012b0d1d4",
			Name:     "shop-prod-20261102-0200",
			Started:  time.Date(2026, 11, 2, 2, 0, 0, 0, time.UTC),
			Finished: time.Date(2026, 11, 2, 2, 0, 39, 0, time.UTC),
			Tags:     map[string]string{"arca.io/vault": "vault-west", "arca.io/instance": "shop-prod", "arca.io/job": "job-0002"},
			Source:   repo.Source{Cluster: "c6f1d2a0-prod-eastus", Server: "https://prod-eastus.example:6443", KubernetesVersion: "v1.34.2"},
			Config:   `{"includedNamespaces":["shop"],"includeClusterScopeResources":true,"snapshotVolumes":true}`,
			Volumes:  `{"version":1,"backupID":"b-0002","snapshots":[{"namespace":"shop","pvc":"data","pv":"pvc-5f0c","driver":"hostpath.csi.k8s.io","snapshotHandle":"snap-0002","restoreSize":1073741824,"snapshotClass":"csi-hostpath-snapclass","volumeHandle":"vol-5f0c","storageClass":"csi-hostpath","volumeMode":"Filesystem","content":"arca-b-0002-shop-data","snapshot":"arca-b-0002-data","time":"2026-11-02T02:00:31.5Z"}],"firstSnapshot":"2026-11-02T02:00:31.5Z","lastSnapshot":"2026-11-02T02:00:31.5Z","spreadMillis":0,"skipped":[{"namespace":"shop","pvc":"cache","code":"NoSnapshotClassForDriver","message":"no VolumeSnapshotClass for driver local.csi.example"}]}`,
			Warnings: []repo.Warning{{Code: "NoSnapshotClassForDriver", Message: "no VolumeSnapshotClass for driver local.csi.example", Object: "persistentvolumeclaims shop/cache"}},
			Resources: []frozenTree{
				{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespaced: true, Objects: []frozenObject{{"shop", "app-config", cmShopV2}}},
				{Version: "v1", Resource: "namespaces", Kind: "Namespace", Objects: []frozenObject{{"", "shop", nsShop}}},
				{Version: "v1", Resource: "persistentvolumeclaims", Kind: "PersistentVolumeClaim", Namespaced: true, Objects: []frozenObject{{"shop", "cache", pvcCache}, {"shop", "data", pvcShop}}},
				{Version: "v1", Resource: "secrets", Kind: "Secret", Namespaced: true, Objects: []frozenObject{{"shop", "db-credentials", secShop}}},
				{Group: "apps", Version: "v1", Resource: "deployments", Kind: "Deployment", Namespaced: true, Objects: []frozenObject{{"shop", "web", depWeb}, {"shop", "worker", depWork}}},
				{Group: "example.com", Version: "v1", Resource: "widgets", Kind: "Widget", Namespaced: true, Objects: []frozenObject{{"shop", "gizmo", widget}}},
			},
		},
		{
			ID:       "6c4ac1711be62ea4118ff88f1619c2807129024acb7db59600630470a016b500",
			Name:     "tools-dev-20261101-0500",
			Started:  time.Date(2026, 11, 1, 5, 0, 0, 0, time.UTC),
			Finished: time.Date(2026, 11, 1, 5, 0, 12, 0, time.UTC),
			Tags:     map[string]string{"arca.io/vault": "vault-west", "arca.io/instance": "tools-dev", "arca.io/job": "job-0003"},
			Source:   repo.Source{Cluster: "9b3e77c4-dev-westeu", Server: "https://dev-westeu.example:6443", KubernetesVersion: "v1.33.5"},
			Config:   `{"includedNamespaces":["tools"],"snapshotVolumes":false}`,
			Resources: []frozenTree{
				{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespaced: true, Stream: true, Objects: []frozenObject{{"tools", "bundle", ""}}},
				{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles", Kind: "ClusterRole", Objects: []frozenObject{
					{"", "tools-reader", `{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"tools-reader"},"rules":[{"apiGroups":[""],"resources":["configmaps"],"verbs":["get","list"]}]}`},
				}},
				{Version: "v1", Resource: "services", Kind: "Service", Namespaced: true}, // listed, empty: a tree with no blobs
			},
		},
	},
	Latest:     1,
	IndexFiles: 3, Packs: 5, Blobs: 23,
}

// frozenV2 holds the same recovery points as frozenV1 (same names, times,
// tags, objects, volume records), written by the format-v2 code: every
// envelope is bound to its file type. Only the file IDs differ (new keys,
// new nonces) and the counts of what Check sees.
var frozenV2 = func() frozenRepo {
	v := frozenV1
	v.Version, v.Dir = 2, frozenV2Dir
	v.Passwords = [2]string{frozenV2Password1, frozenV2Password2}
	v.KeyIDs = [2]string{
		"60bb7c8ddb0be124a0cb00bb4f8c273d00b68821a56a20ce6c4920b6c490b3c2",
		"3543f606006914e6054087ffaf720e4db721171fc36f60b1cfae87b2475ed115",
	}
	ids := []string{
		"d19aee8c2c5cfad534c2a521c916314f6bc272c0d32c33464e685a2f12761260",
		"be982d95bb0239464346118afcdcec73dd0f72a91c58a377a01fdd0e030d81cc",
		"70c7b3d9d0971517388ee848a48f9410e3fe4b57b6042c6fdb5f7fd3a734d7c6",
	}
	v.Points = make([]frozenPoint, len(frozenV1.Points))
	for i, p := range frozenV1.Points {
		p.ID = ids[i]
		v.Points[i] = p
	}
	v.IndexFiles, v.Packs, v.Blobs = 3, 5, 23
	return v
}()

// content returns an object's expected bytes.
func (tr frozenTree) content(o frozenObject) []byte {
	if tr.Stream {
		return frozenStream()
	}
	return []byte(o.Content)
}

// TestFrozenRepoGenerate wrote testdata/v1/repo (testdata/v1/README.md).
// The code now writes format v2, so testdata/v1 can never be written again:
// it stays as committed.
func TestFrozenRepoGenerate(t *testing.T) {
	if !*regenerate {
		t.Skip("testdata/v1/repo is frozen; this code writes format v2 and cannot make it again")
	}
	if repo.FormatVersion != frozenV1.Version {
		t.Fatalf("this code writes format v%d: it cannot regenerate testdata/v1 (format v1); testdata/v1 stays as committed", repo.FormatVersion)
	}
	generateFrozen(t, frozenV1)
}

// TestFrozenRepoGenerateV2 writes testdata/v2/repo. It runs only with
// -regenerate-v2; see testdata/v2/README.md.
func TestFrozenRepoGenerateV2(t *testing.T) {
	if !*regenerateV2 {
		t.Skip("run with -args -regenerate-v2 to rewrite testdata/v2/repo")
	}
	if repo.FormatVersion != frozenV2.Version {
		t.Fatalf("this code writes format v%d: it cannot regenerate testdata/v2; testdata/v2 stays as committed", repo.FormatVersion)
	}
	generateFrozen(t, frozenV2)
}

// generateFrozen writes want.Dir with want's content (file IDs aside: the
// test logs them, to be pasted into want).
func generateFrozen(t *testing.T, want frozenRepo) {
	ctx := context.Background()
	if err := os.RemoveAll(want.Dir); err != nil {
		t.Fatal(err)
	}
	be, err := local.Create(want.Dir)
	if err != nil {
		t.Fatal(err)
	}
	clock := repo.ClockFunc(func() time.Time { return time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC) })
	// Small packs, so that the repository has several of them.
	opts := []repo.Option{repo.WithKDF(frozenKDF), repo.WithClock(clock), repo.WithPackSize(4 << 10)}
	r, err := repo.Init(ctx, be, want.Passwords[0], opts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddKey(ctx, want.Passwords[1]); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(frozenStream())
	t.Logf("frozenStreamSHA256 = %x", sum)
	for i, p := range want.Points {
		w, err := r.NewWriter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rp := &repo.RecoveryPoint{Name: p.Name, Started: p.Started, Finished: p.Finished, Tags: p.Tags, Source: p.Source,
			Config: json.RawMessage(p.Config), Summary: repo.Summary{Counts: map[string]int{}, Warnings: p.Warnings}}
		if p.Volumes != "" {
			rp.Volumes = json.RawMessage(p.Volumes)
		}
		for _, tr := range p.Resources {
			tw := w.NewTree()
			for _, o := range tr.Objects {
				data := tr.content(o)
				var ids []repo.ID
				if tr.Stream {
					ids, _, err = w.PutStream(ctx, bytes.NewReader(data))
					if err == nil && len(ids) < 2 {
						t.Fatalf("the stream was stored as %d blob(s): run again (the chunker polynomial is random)", len(ids))
					}
				} else {
					var id repo.ID
					id, err = w.PutBlob(ctx, data)
					ids = []repo.ID{id}
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := tw.Add(ctx, repo.TreeEntry{Group: tr.Group, Version: tr.Version, Resource: tr.Resource, Kind: tr.Kind,
					Namespace: o.Namespace, Name: o.Name, Blobs: ids, Size: int64(len(data))}); err != nil {
					t.Fatal(err)
				}
				rp.Summary.Items++
				rp.Summary.Bytes += int64(len(data))
			}
			tree, err := tw.Close(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rp.Resources = append(rp.Resources, repo.ResourceTree{Group: tr.Group, Version: tr.Version, Resource: tr.Resource,
				Kind: tr.Kind, Namespaced: tr.Namespaced, Tree: tree})
			rp.Summary.Counts[groupResource(tr)] = len(tr.Objects)
		}
		id, err := w.Commit(ctx, rp)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("point %d %s: %s", i+1, p.Name, id)
	}
	keys, err := r.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		t.Logf("key %s current=%v", k.ID, k.Current)
	}
	rep, err := r.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("check: %d index files, %d packs, %d blobs, damaged %v", rep.IndexFiles, rep.Packs, rep.Blobs, rep.Damaged)
}

func groupResource(tr frozenTree) string {
	if tr.Group == "" {
		return tr.Resource
	}
	return tr.Resource + "." + tr.Group
}

// errFrozen prefixes every failure of verifyFrozen: the reader of a red
// test learns at once that old repositories no longer read.
var errFrozen = errors.New("a frozen repository can no longer be read as it was written; " +
	"a format change must keep reading every earlier version and add a new frozen repository beside them (docs/repository-format.md, Compatibility: frozen repositories)")

// verifyFrozen opens the repository at dir with password and compares
// everything in it with want. It returns the first difference.
func verifyFrozen(ctx context.Context, dir, password string, want frozenRepo) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w (format v%d, internal/repo/%s): %w", errFrozen, want.Version, want.Dir, fmt.Errorf(format, args...))
	}
	be, err := local.Open(dir)
	if err != nil {
		return fail("open directory: %w", err)
	}
	r, err := repo.Open(ctx, be, password)
	if err != nil {
		return fail("open with password %q: %w", password, err)
	}
	if v := r.Config().Version; v != want.Version {
		return fail("config version %d, want %d", v, want.Version)
	}

	keys, err := r.ListKeys(ctx)
	if err != nil {
		return fail("list keys: %w", err)
	}
	var keyIDs []string
	current := ""
	for _, k := range keys {
		keyIDs = append(keyIDs, k.ID.String())
		if k.Current {
			current = k.ID.String()
		}
	}
	sort.Strings(keyIDs)
	wantKeys := []string{want.KeyIDs[0], want.KeyIDs[1]}
	sort.Strings(wantKeys)
	if !reflect.DeepEqual(keyIDs, wantKeys) {
		return fail("key files %v, want %v", keyIDs, wantKeys)
	}
	wantCurrent := want.KeyIDs[0]
	if password == want.Passwords[1] {
		wantCurrent = want.KeyIDs[1]
	}
	if current != wantCurrent {
		return fail("password %q opened key %q, want %s", password, current, wantCurrent)
	}

	rps, err := r.ListRecoveryPoints(ctx)
	if err != nil {
		return fail("list recovery points: %w", err)
	}
	byID := map[string]*repo.RecoveryPoint{}
	for _, rp := range rps {
		byID[rp.ID.String()] = rp
	}
	if len(rps) != len(want.Points) {
		return fail("%d recovery points, want %d", len(rps), len(want.Points))
	}
	for _, wp := range want.Points {
		rp := byID[wp.ID]
		if rp == nil {
			return fail("recovery point %s (%s) is missing", wp.ID, wp.Name)
		}
		if err := comparePoint(ctx, r, rp, wp); err != nil {
			return fail("recovery point %s (%s): %w", wp.ID[:8], wp.Name, err)
		}
	}
	latest, err := r.FindRecoveryPoint(ctx, "latest")
	if err != nil || latest.ID.String() != want.Points[want.Latest].ID {
		return fail("latest is %v (%v), want %s", latest, err, want.Points[want.Latest].ID)
	}

	rep, err := r.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil {
		return fail("check --read-data: %w", err)
	}
	if len(rep.Damaged) > 0 {
		var b strings.Builder
		for _, d := range rep.Damaged {
			fmt.Fprintf(&b, "; %s: %s", d.File, d.Problem)
		}
		return fail("check --read-data reports %d damaged files%s", len(rep.Damaged), b.String())
	}
	if rep.RecoveryPoints != len(want.Points) || rep.IndexFiles != want.IndexFiles || rep.Packs != want.Packs ||
		rep.Blobs != want.Blobs || rep.UnreferencedPacks != 0 {
		return fail("check counts %d points, %d index files, %d packs (%d unreferenced), %d blobs; want %d, %d, %d (0), %d",
			rep.RecoveryPoints, rep.IndexFiles, rep.Packs, rep.UnreferencedPacks, rep.Blobs,
			len(want.Points), want.IndexFiles, want.Packs, want.Blobs)
	}
	return nil
}

func comparePoint(ctx context.Context, r *repo.Repository, rp *repo.RecoveryPoint, want frozenPoint) error {
	if rp.Name != want.Name || !rp.Started.Equal(want.Started) || !rp.Finished.Equal(want.Finished) {
		return fmt.Errorf("name/started/finished %q %s %s, want %q %s %s", rp.Name, rp.Started, rp.Finished, want.Name, want.Started, want.Finished)
	}
	if !reflect.DeepEqual(rp.Tags, want.Tags) {
		return fmt.Errorf("tags %v, want %v", rp.Tags, want.Tags)
	}
	if rp.Source != want.Source {
		return fmt.Errorf("source %+v, want %+v", rp.Source, want.Source)
	}
	if err := sameJSON("config", rp.Config, want.Config); err != nil {
		return err
	}
	if err := sameJSON("volumes", rp.Volumes, want.Volumes); err != nil {
		return err
	}
	if !reflect.DeepEqual(rp.Summary.Warnings, want.Warnings) {
		return fmt.Errorf("warnings %+v, want %+v", rp.Summary.Warnings, want.Warnings)
	}
	if len(rp.Resources) != len(want.Resources) {
		return fmt.Errorf("%d resource types, want %d", len(rp.Resources), len(want.Resources))
	}
	items, size := 0, int64(0)
	for i, wt := range want.Resources {
		rt := rp.Resources[i]
		if rt.Group != wt.Group || rt.Version != wt.Version || rt.Resource != wt.Resource || rt.Kind != wt.Kind || rt.Namespaced != wt.Namespaced {
			return fmt.Errorf("resource type %d is %s/%s %s (%s, namespaced %v), want %s/%s %s (%s, namespaced %v)", i,
				rt.Group, rt.Version, rt.Resource, rt.Kind, rt.Namespaced, wt.Group, wt.Version, wt.Resource, wt.Kind, wt.Namespaced)
		}
		if rt.Tree.Count != len(wt.Objects) {
			return fmt.Errorf("%s: tree count %d, want %d", groupResource(wt), rt.Tree.Count, len(wt.Objects))
		}
		if n := rp.Summary.Counts[groupResource(wt)]; n != len(wt.Objects) {
			return fmt.Errorf("%s: summary count %d, want %d", groupResource(wt), n, len(wt.Objects))
		}
		var entries []repo.TreeEntry
		if err := r.WalkTree(ctx, rt.Tree, func(e repo.TreeEntry) error {
			entries = append(entries, e)
			return nil
		}); err != nil {
			return fmt.Errorf("%s: walk tree: %w", groupResource(wt), err)
		}
		if len(entries) != len(wt.Objects) {
			return fmt.Errorf("%s: %d tree entries, want %d", groupResource(wt), len(entries), len(wt.Objects))
		}
		for j, o := range wt.Objects {
			e := entries[j]
			name := fmt.Sprintf("%s %s/%s", groupResource(wt), o.Namespace, o.Name)
			if e.Group != wt.Group || e.Version != wt.Version || e.Resource != wt.Resource || e.Kind != wt.Kind ||
				e.Namespace != o.Namespace || e.Name != o.Name {
				return fmt.Errorf("entry %d is %+v, want %s", j, e, name)
			}
			want := wt.content(o)
			if wt.Stream && len(e.Blobs) < 1 || !wt.Stream && len(e.Blobs) != 1 {
				return fmt.Errorf("%s: %d blobs (stream %v)", name, len(e.Blobs), wt.Stream)
			}
			var got []byte
			for _, id := range e.Blobs {
				b, err := r.LoadBlob(ctx, id)
				if err != nil {
					return fmt.Errorf("%s: load blob: %w", name, err)
				}
				got = append(got, b...)
			}
			if !bytes.Equal(got, want) || e.Size != int64(len(want)) {
				return fmt.Errorf("%s: content differs (%d bytes, entry size %d; want %d bytes)", name, len(got), e.Size, len(want))
			}
			items++
			size += int64(len(want))
		}
	}
	if rp.Summary.Items != items || rp.Summary.Bytes != size {
		return fmt.Errorf("summary %d items, %d bytes; want %d, %d", rp.Summary.Items, rp.Summary.Bytes, items, size)
	}
	return nil
}

func sameJSON(what string, got json.RawMessage, want string) error {
	if len(got) == 0 && want == "" {
		return nil
	}
	var g, w bytes.Buffer
	if err := json.Compact(&g, got); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := json.Compact(&w, []byte(want)); err != nil {
		return fmt.Errorf("%s (expected value): %w", what, err)
	}
	if g.String() != w.String() {
		return fmt.Errorf("%s %s, want %s", what, g.String(), w.String())
	}
	return nil
}

// TestFrozenRepoV1 is the compatibility test: every later version must pass
// it unchanged.
func TestFrozenRepoV1(t *testing.T) {
	if sum := sha256.Sum256(frozenStream()); hex.EncodeToString(sum[:]) != frozenStreamSHA256 {
		t.Fatalf("frozenStream() now yields content with SHA-256 %x, want %s: the test's expected content was changed, not the repository", sum, frozenStreamSHA256)
	}
	ctx := context.Background()
	for _, pw := range []string{frozenPassword1, frozenPassword2} {
		if err := verifyFrozen(ctx, frozenV1Dir, pw, frozenV1); err != nil {
			t.Fatal(err)
		}
	}
	be, err := local.Open(frozenV1Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Open(ctx, be, "not the password"); !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("open with a wrong password: %v, want %v", err, repo.ErrWrongPassword)
	}
}

// TestFrozenRepoV2 is the compatibility test of format v2: every later
// version must pass it unchanged. It also shows that testdata/v2 really is
// format v2: its config opens only as an envelope bound to the config type.
func TestFrozenRepoV2(t *testing.T) {
	ctx := context.Background()
	for _, pw := range frozenV2.Passwords {
		if err := verifyFrozen(ctx, frozenV2Dir, pw, frozenV2); err != nil {
			t.Fatal(err)
		}
	}
	be, err := local.Open(frozenV2Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Open(ctx, be, frozenPassword1); !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("open v2 with the v1 password: %v, want %v", err, repo.ErrWrongPassword)
	}
	if err := repo.FrozenConfigIsBound(ctx, be, frozenV2Password1); err != nil {
		t.Fatal(err)
	}
	be1, err := local.Open(frozenV1Dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.FrozenConfigIsBound(ctx, be1, frozenPassword1); err == nil {
		t.Fatal("the v1 config opens as a bound envelope: the check cannot tell the formats apart")
	}
}

// TestFrozenRepoV1DetectsDamage shows that the compatibility test can fail:
// copies of the frozen repository with one byte flipped fail verifyFrozen
// with an error naming the problem, and so does an expectation that differs
// from what is stored.
func TestFrozenRepoV1DetectsDamage(t *testing.T) {
	ctx := context.Background()
	firstFile := func(dir, sub string) string {
		var found string
		_ = filepath.WalkDir(filepath.Join(dir, sub), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && found == "" {
				found = p
			}
			return nil
		})
		if found == "" {
			t.Fatalf("no file under %s/%s", dir, sub)
		}
		return found
	}
	cases := []struct {
		name string
		file func(dir string) string
		at   func(size int) int
		want func(t *testing.T, err error)
	}{
		{"config", func(dir string) string { return filepath.Join(dir, "config") }, func(n int) int { return n / 2 },
			func(t *testing.T, err error) {
				if !errors.Is(err, repo.ErrConfigDamaged) {
					t.Errorf("want %v, got %v", repo.ErrConfigDamaged, err)
				}
			}},
		{"pack", func(dir string) string { return firstFile(dir, "data") }, func(n int) int { return 30 },
			func(t *testing.T, err error) {
				if !errors.Is(err, repo.ErrBlobDamaged) {
					t.Errorf("want %v, got %v", repo.ErrBlobDamaged, err)
				}
			}},
		{"pack header", func(dir string) string { return firstFile(dir, "data") }, func(n int) int { return n - 20 },
			func(t *testing.T, err error) {
				if !strings.Contains(err.Error(), "check --read-data reports") || !strings.Contains(err.Error(), "data/") {
					t.Errorf("want check to name the damaged pack, got %v", err)
				}
			}},
		{"manifest", func(dir string) string { return firstFile(dir, "points") }, func(n int) int { return n / 2 },
			func(t *testing.T, err error) {
				if !strings.Contains(err.Error(), "list recovery points") {
					t.Errorf("want the listing to fail, got %v", err)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "repo")
			if err := os.CopyFS(dir, os.DirFS(frozenV1Dir)); err != nil {
				t.Fatal(err)
			}
			p := c.file(dir)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[c.at(len(b))] ^= 0x01
			if err := os.Chmod(p, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			err = verifyFrozen(ctx, dir, frozenPassword1, frozenV1)
			if err == nil {
				t.Fatalf("flipping a byte of %s went unnoticed", p)
			}
			if !errors.Is(err, errFrozen) {
				t.Errorf("error does not say the frozen repository no longer reads: %v", err)
			}
			t.Logf("%s: %v", c.name, err)
			c.want(t, err)
		})
	}
}

// TestFrozenRepoV1ComparesContent: the verification compares content with
// what the test states, so a reader that returned other bytes (or other
// metadata) would fail it.
func TestFrozenRepoV1ComparesContent(t *testing.T) {
	ctx := context.Background()
	alter := map[string]func(w *frozenRepo){
		"object content": func(w *frozenRepo) {
			w.Points[0].Resources[0].Objects[0].Content = strings.Replace(cmShopV1, "info", "INFO", 1)
		},
		"tag": func(w *frozenRepo) { w.Points[2].Tags = map[string]string{"arca.io/instance": "other"} },
		"volume records": func(w *frozenRepo) {
			w.Points[1].Volumes = strings.Replace(w.Points[1].Volumes, "snap-0002", "snap-9999", 1)
		},
		"object name": func(w *frozenRepo) { w.Points[1].Resources[4].Objects[1].Name = "workers" },
	}
	for name, f := range alter {
		t.Run(name, func(t *testing.T) {
			want := frozenV1
			want.Points = make([]frozenPoint, len(frozenV1.Points))
			for i, p := range frozenV1.Points {
				p.Resources = make([]frozenTree, len(p.Resources))
				for j, tr := range frozenV1.Points[i].Resources {
					tr.Objects = append([]frozenObject(nil), tr.Objects...)
					p.Resources[j] = tr
				}
				want.Points[i] = p
			}
			f(&want)
			err := verifyFrozen(ctx, frozenV1Dir, frozenPassword1, want)
			if !errors.Is(err, errFrozen) {
				t.Fatalf("a changed %s went unnoticed: %v", name, err)
			}
			t.Log(err)
		})
	}
}
