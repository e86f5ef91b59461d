package cli

import (
	"testing"
	"time"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/repo"
)

func TestSyncPointsPicksTheInstancesPoints(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)
	mk := func(b byte, vault, instance, job string, at time.Time) *repo.RecoveryPoint {
		return &repo.RecoveryPoint{ID: repo.ID{b}, Started: at, Tags: map[string]string{v1alpha1.TagVault: vault, v1alpha1.TagInstance: instance, v1alpha1.TagJob: job},
			Summary: repo.Summary{Items: int(b), Bytes: int64(b) * 10}}
	}
	rps := []*repo.RecoveryPoint{
		mk(1, "v", "shop", "j2", t0.Add(4*time.Hour)),
		mk(2, "v", "other", "j3", t0),
		mk(3, "w", "shop", "j4", t0),
		mk(4, "v", "shop", "j1", t0),
		{ID: repo.ID{5}, Started: t0, Name: "shop"}, // a local backup: no vault tags
	}
	got := syncPoints(rps, "v", "shop")
	if len(got) != 2 || got[0].JobID != "j1" || got[1].JobID != "j2" || got[0].RepositoryID != (repo.ID{4}).String() ||
		got[0].Items != 4 || got[0].Bytes != 40 || !got[0].Time.Equal(t0) {
		t.Fatalf("sync points %+v", got)
	}
}
