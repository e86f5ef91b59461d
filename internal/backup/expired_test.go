package backup_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/backup"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/mem"
)

// expiring answers the first `times` continued list requests of config maps
// with the API server's 410 for an expired continue token (as
// kube-apiserver words it after etcd compacted the list's revision); every
// other request reaches the real API server.
type expiring struct {
	next     http.RoundTripper
	times    int64
	injected atomic.Int64
}

func (e *expiring) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/configmaps") && req.URL.Query().Get("continue") != "" && e.injected.Add(1) <= e.times {
		body := `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",` +
			`"message":"The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",` +
			`"reason":"Expired","code":410}`
		return &http.Response{StatusCode: http.StatusGone, Status: "410 Gone", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": []string{"application/json"}}, Body: io.NopCloser(bytes.NewBufferString(body)),
			ContentLength: int64(len(body)), Request: req}, nil
	}
	return e.next.RoundTrip(req)
}

func expiringConfig(cfg *rest.Config, times int64) (*rest.Config, *expiring) {
	e := &expiring{times: times}
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { e.next = rt; return e }
	return cfg, e
}

// TestContinueTokenExpired: a list whose continue token expires mid-type is
// restarted from the beginning into a fresh tree (no duplicate entries),
// with the warning ListRestarted; one that keeps expiring fails the backup
// with ListExpiredError and leaves no recovery point.
func TestContinueTokenExpired(t *testing.T) {
	ctx := context.Background()
	fill(t, shared.Config(), "expire-a", 250)
	c := v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"expire-a"}}

	t.Run("restarted", func(t *testing.T) {
		r, err := repo.Init(ctx, mem.New(), "pw")
		if err != nil {
			t.Fatal(err)
		}
		cfg, e := expiringConfig(shared.Config(), 2)
		res, err := backup.Run(ctx, cfg, r, backup.Options{Config: c, PageSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		if e.injected.Load() < 2 {
			t.Fatalf("only %d 410s injected: the list never continued", e.injected.Load())
		}
		rp := res.RecoveryPoint
		if got := rp.Summary.Counts["configmaps"]; got != 250 {
			t.Errorf("configmaps counted %d, want 250", got)
		}
		if rp.Summary.Items != 251 { // 250 config maps + the namespace
			t.Errorf("items %d, want 251", rp.Summary.Items)
		}
		restarted := 0
		for _, w := range rp.Summary.Warnings {
			if w.Code == backup.WarnListRestarted && w.Object == "configmaps" {
				restarted++
			}
		}
		if restarted != 2 {
			t.Errorf("%d ListRestarted warnings for configmaps, want 2: %+v", restarted, rp.Summary.Warnings)
		}
		// The stored tree holds each config map exactly once.
		seen := map[string]int{}
		for _, rt := range rp.Resources {
			if rt.Resource != "configmaps" {
				continue
			}
			err := r.WalkTree(ctx, rt.Tree, func(e repo.TreeEntry) error {
				seen[e.Namespace+"/"+e.Name]++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if len(seen) != 250 {
			t.Errorf("tree holds %d distinct config maps, want 250", len(seen))
		}
		for k, n := range seen {
			if n != 1 {
				t.Errorf("%s in the tree %d times", k, n)
			}
		}
	})

	t.Run("exhausted", func(t *testing.T) {
		r, err := repo.Init(ctx, mem.New(), "pw")
		if err != nil {
			t.Fatal(err)
		}
		cfg, e := expiringConfig(shared.Config(), 1<<40)
		_, err = backup.Run(ctx, cfg, r, backup.Options{Config: c, PageSize: 100, ListRestarts: 2})
		var le *backup.ListExpiredError
		if !errors.As(err, &le) {
			t.Fatalf("error %v (%T), want *backup.ListExpiredError", err, err)
		}
		if le.Resource != "configmaps" || le.Attempts != 3 || e.injected.Load() != 3 {
			t.Errorf("resource %q attempts %d injected %d, want configmaps, 3, 3", le.Resource, le.Attempts, e.injected.Load())
		}
		if !strings.Contains(err.Error(), backup.CodeListExpired) {
			t.Errorf("error does not name its code: %v", err)
		}
		t.Logf("backup error: %v", err)
		rps, err := r.ListRecoveryPoints(ctx)
		if err != nil || len(rps) != 0 {
			t.Errorf("%d recovery points after a failed backup (%v)", len(rps), err)
		}
	})
}
