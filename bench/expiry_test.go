package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/postgres"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
	"github.com/arca-backup/arca/internal/vault/store/sqlstore"
)

// BenchmarkStopProtectionExpiries times what stop protection
// (retain-forever) and resume do to an instance's recovery points inside
// their request: clearing every expiry one point (and one commit) at a
// time, as before issue 14, against one statement
// (ClearRecoveryPointExpiries), and setting them again in one transaction
// (SetRecoveryPointExpiries). ARCA_BENCH_EXPIRY_POINTS sets the number of
// points (default 20,000: hourly backups kept for 2.3 years).
//
//	go test ./bench -run '^$' -bench StopProtectionExpiries -benchtime 1x
func BenchmarkStopProtectionExpiries(b *testing.B) {
	n := envInt(b, "ARCA_BENCH_EXPIRY_POINTS", 20000)
	pg := testenv.StartPostgres(b)
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			ctx := context.Background()
			var st *sqlstore.Store
			var err error
			if kind == "postgres" {
				st, err = postgres.Open(ctx, pg.CreateDatabase(b, "expiries"), nil)
			} else {
				st, err = sqlite.Open(ctx, filepath.Join(b.TempDir(), "vault.db"), nil)
			}
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			exp := t0.AddDate(1, 0, 0)
			ids := make([]int, n)
			for i := range ids {
				ids[i] = i
			}
			parallel(b, ids, 8, func(i int) error {
				return st.CreateRecoveryPoint(ctx, &store.RecoveryPoint{Vault: "v", ID: fmt.Sprintf("rp-%06d", i), Instance: "shop",
					Time: t0.Add(time.Duration(i) * time.Hour), Tag: "default", Datastore: "operational", ExpiresAt: &exp})
			})
			for range b.N {
				rps, err := st.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: "v", Instance: "shop"})
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				for _, rp := range rps { // before: a point at a time
					rp.ExpiresAt = nil
					if err := st.UpdateRecoveryPoint(ctx, rp); err != nil {
						b.Fatal(err)
					}
				}
				perPoint := time.Since(start)
				all := map[string]*time.Time{}
				for _, rp := range rps {
					all[rp.ID] = &exp
				}
				start = time.Now()
				if err := st.SetRecoveryPointExpiries(ctx, "v", all); err != nil {
					b.Fatal(err)
				}
				oneTx := time.Since(start)
				start = time.Now()
				if got, err := st.ClearRecoveryPointExpiries(ctx, "v", "shop"); err != nil || got != int64(n) {
					b.Fatalf("cleared %d of %d: %v", got, n, err)
				}
				oneStatement := time.Since(start)
				b.Logf("%s, %d points: clear one at a time %v; clear in one statement %v; set in one transaction (resume) %v",
					kind, n, perPoint.Round(time.Millisecond), oneStatement.Round(time.Millisecond), oneTx.Round(time.Millisecond))
				if err := st.SetRecoveryPointExpiries(ctx, "v", all); err != nil { // for the next round
					b.Fatal(err)
				}
			}
		})
	}
}
