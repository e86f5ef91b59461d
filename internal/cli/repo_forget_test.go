package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/local"
)

// `arca repo forget --keep-*` counts per backup instance: two instances
// backing up the same cluster into one repository each keep their own
// newest points, and a point without instance tags is counted with the
// other untagged points of its cluster. (It used to count per cluster, so
// one instance's backups thinned out the other's.)
func TestRepoForgetKeepsPerInstance(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(PasswordEnv, "")
	be, err := local.Create(filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(ctx, be, "pw", repo.WithKDF(repo.KDFParams{N: 1 << 10, R: 8, P: 1}))
	if err != nil {
		t.Fatal(err)
	}
	type point struct {
		name, instance string
		day            int
	}
	points := []point{
		{"shop-1", "shop", 1}, {"shop-2", "shop", 3}, {"shop-3", "shop", 5},
		{"tools-1", "tools", 2}, {"tools-2", "tools", 4},
		{"local-1", "", 1}, {"local-2", "", 6},
	}
	for _, p := range points {
		w, err := r.NewWriter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		started := time.Date(2026, 11, p.day, 2, 0, 0, 0, time.UTC)
		rp := &repo.RecoveryPoint{Name: p.name, Started: started, Finished: started, Source: repo.Source{Cluster: "prod-eastus"}}
		if p.instance != "" {
			rp.Tags = map[string]string{v1alpha1.TagVault: "vault-west", v1alpha1.TagInstance: p.instance}
		}
		if _, err := w.Commit(ctx, rp); err != nil {
			t.Fatal(err)
		}
	}

	out, err := runArca(ctx, "repo", "forget", "--keep-last", "1", "-o", "json", "--repo", filepath.Join(dir, "repo"), "--password-file", pw)
	if err != nil {
		t.Fatalf("forget: %v\n%s", err, out)
	}
	var decisions []struct {
		Keep  bool   `json:"keep"`
		Group string `json:"group"`
	}
	if err := json.Unmarshal([]byte(out), &decisions); err != nil || len(decisions) != len(points) {
		t.Fatalf("forget output: %v\n%s", err, out)
	}
	groups := map[string]bool{}
	for _, d := range decisions {
		groups[d.Group] = true
	}
	if len(groups) != 3 {
		t.Errorf("decisions in %d groups %v, want 3 (two instances, one cluster of untagged points)", len(groups), groups)
	}

	rps, err := r.ListRecoveryPoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, rp := range rps {
		kept = append(kept, rp.Name)
	}
	sort.Strings(kept)
	if got, want := strings.Join(kept, " "), "local-2 shop-3 tools-2"; got != want {
		t.Fatalf("kept %q, want %q: --keep-last 1 must keep the newest point of each instance", got, want)
	}
}
