package service_test

import (
	"math"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/store"
)

// Storage used per instance is the sum of its points' stored bytes,
// soft-deleted points included; the dedup ratio divides the logical bytes
// by the stored bytes of the points that know both, and is unknown (nil)
// for an instance whose points predate the measurement.
func TestVaultUsagePerInstance(t *testing.T) {
	e := setup(t)
	withInstance(t, e)
	for i, p := range []struct {
		id, instance  string
		bytes, stored int64
	}{{"rp-a", "shop", 1000, 200}, {"rp-b", "shop", 500, 0}, {"rp-c", "shop", 600, 100}, {"rp-d", "old", 700, 0}} {
		rp := &store.RecoveryPoint{Vault: "v", ID: p.id, Instance: p.instance, Time: e.clk.Now().Add(-time.Duration(i) * time.Hour),
			Tag: "default", Bytes: p.bytes, StoredBytes: p.stored}
		if err := e.st.CreateRecoveryPoint(ctx, rp); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := e.svc.DeleteRecoveryPoint(ctx, "v", "rp-c", 0); err != nil {
		t.Fatal(err)
	}
	u, err := e.svc.VaultUsage(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	if u.StoredBytes != 300 || u.Bytes != 2800 || len(u.Instances) != 2 {
		t.Fatalf("usage: %+v", u)
	}
	old, shop := u.Instances[0], u.Instances[1]
	if old.Instance != "old" || old.StoredBytes != 0 || old.Bytes != 700 || old.DedupRatio != nil {
		t.Fatalf("instance without stored sizes: %+v", old)
	}
	if shop.Instance != "shop" || shop.RecoveryPoints != 3 || shop.StoredBytes != 300 || shop.Bytes != 2100 ||
		shop.DedupRatio == nil || math.Abs(*shop.DedupRatio-1600.0/300) > 1e-9 {
		t.Fatalf("shop (soft-deleted point counted, unknown point left out of the ratio): %+v ratio %v", shop, shop.DedupRatio)
	}
}
