package cli

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/store"
)

// TestRecoveryPointTiersShown: `arca recovery-point list` shows each tier
// with its rule and expiry, a deleted tier, a missing one, and the copies.
func TestRecoveryPointTiersShown(t *testing.T) {
	taken := time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)
	op, v := taken.AddDate(0, 0, 7), taken.AddDate(0, 0, 30)
	rps := []*store.RecoveryPoint{
		{ID: "rp-a", Instance: "shop", Time: taken, Tag: "daily", ExpiresAt: &v,
			Tiers: store.Tiers{Operational: &store.Tier{Rule: "default", ExpiresAt: &op, State: store.TierDeleted},
				Vault: &store.Tier{Rule: "daily", ExpiresAt: &v, State: store.TierAvailable}},
			Copies: []store.Copy{{StorageLocation: "s3://dr/arca", RepoID: "c0py"}}},
		{ID: "rp-b", Instance: "shop", Time: taken, Tag: "default",
			Tiers: store.Tiers{Operational: &store.Tier{Rule: "default", ExpiresAt: &op, State: store.TierAvailable}}},
	}
	var out bytes.Buffer
	if err := printRecoveryPoints(&out, "", rps, rps); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "OPERATIONAL") || !strings.Contains(lines[0], "VAULT") || !strings.Contains(lines[0], "COPIES") {
		t.Fatalf("output:\n%s", out.String())
	}
	a, b := strings.Fields(lines[1]), strings.Fields(lines[2])
	c := slices.Index(strings.Fields(lines[0]), "COPIES")
	if a[4] != "deleted" || a[5] != "daily→2026-01-31T02:00:00Z" || a[c] != "1" {
		t.Errorf("rp-a row %q", lines[1])
	}
	// rp-b is kept forever (no expiry): its tier says so; it has no vault tier.
	if b[4] != "default→never" || b[5] != "-" || b[6] != "never" || b[c] != "0" {
		t.Errorf("rp-b row %q", lines[2])
	}
}
