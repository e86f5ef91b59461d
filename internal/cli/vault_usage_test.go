package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/store"
)

// arca vault usage and arca instance show print the storage used and the
// dedup ratio per instance; an instance whose points have no stored size
// shows "unknown".
func TestVaultUsagePerInstance(t *testing.T) {
	run, st := startTestVaultStore(t)
	must := func(out string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return out
	}
	must(run("vault", "create", "default"))
	must(run("policy", "create", "daily", "--schedule", "0 2 * * *", "--retain-default", "P7D"))
	must(run("role", "assign", "--principal", "vault:default", "--role", "Reader", "--scope", "/clusters/prod-1"))
	must(run("role", "assign", "--principal", "extension:prod-1", "--role", "Storage Contributor", "--scope", "/"))
	must(run("instance", "create", "shop", "--cluster", "prod-1", "--policy", "daily", "--storage", "file:///srv/repo"))
	for _, rp := range []*store.RecoveryPoint{
		{Vault: "default", ID: "rp-1", Instance: "shop", Time: time.Now(), Tag: "default", Bytes: 4000, StoredBytes: 1000},
		{Vault: "default", ID: "rp-2", Instance: "old", Time: time.Now(), Tag: "default", Bytes: 700},
	} {
		if err := st.CreateRecoveryPoint(context.Background(), rp); err != nil {
			t.Fatal(err)
		}
	}
	out := must(run("vault", "usage", "default"))
	if !strings.Contains(out, "DEDUP RATIO") || !lineHas(out, "shop", "1000", "4.00x") || !lineHas(out, "old", "700", "unknown") {
		t.Fatalf("vault usage:\n%s", out)
	}
	if out := must(run("instance", "show", "shop")); !strings.Contains(out, "storage used: 1000 bytes in 1 recovery points (4000 bytes of data), dedup ratio 4.00x") {
		t.Fatalf("instance show:\n%s", out)
	}
}

// lineHas reports whether one line of out starts with first and holds
// every one of rest as a field.
func lineHas(out, first string, rest ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != first {
			continue
		}
		ok := true
		for _, r := range rest {
			ok = ok && strings.Contains(" "+strings.Join(f, " ")+" ", " "+r+" ")
		}
		if ok {
			return true
		}
	}
	return false
}
