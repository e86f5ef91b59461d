package retention_test

import (
	"context"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/retention"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

var ctx = context.Background()

func mustPolicy(t *testing.T, r policy.RetentionSpec) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(policy.Spec{Schedule: "R/2026-01-01T02:00:00Z/PT4H", Retention: r})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestClassifyPriority(t *testing.T) {
	all := mustPolicy(t, policy.RetentionSpec{
		Default: &policy.RuleSpec{Duration: "P2D"}, Daily: &policy.RuleSpec{Duration: "P7D"},
		Weekly: &policy.RuleSpec{Duration: "P4W"}, Monthly: &policy.RuleSpec{Duration: "P12M"}, Yearly: &policy.RuleSpec{Duration: "P10Y", Datastore: "vault"},
	})
	noYear := mustPolicy(t, policy.RetentionSpec{Default: &policy.RuleSpec{Duration: "P2D"}, Daily: &policy.RuleSpec{Duration: "P7D"}, Weekly: &policy.RuleSpec{Duration: "P4W"}})
	cases := []struct {
		p       *policy.Policy
		t       string
		earlier []string
		want    string
	}{
		{all, "2026-01-01T02:00:00Z", nil, "yearly"},                                // first ever: first of everything
		{noYear, "2026-01-01T02:00:00Z", nil, "weekly"},                             // Thu, but first of its ISO week
		{all, "2026-01-01T06:00:00Z", []string{"2026-01-01T02:00:00Z"}, "default"},  // second of the day
		{all, "2026-01-02T02:00:00Z", []string{"2026-01-01T02:00:00Z"}, "daily"},    // Fri: same week, month, year
		{all, "2026-01-05T02:00:00Z", []string{"2026-01-02T02:00:00Z"}, "weekly"},   // Monday
		{all, "2026-02-01T02:00:00Z", []string{"2026-01-31T02:00:00Z"}, "monthly"},  // Sunday, same ISO week as Jan 31
		{noYear, "2026-02-01T02:00:00Z", []string{"2026-01-31T02:00:00Z"}, "daily"}, // monthly not configured
		{all, "2027-01-01T02:00:00Z", []string{"2026-12-31T02:00:00Z"}, "yearly"},   // Fri, same ISO week
		{all, "2026-01-02T02:00:00Z", []string{"2026-01-03T02:00:00Z"}, "yearly"},   // later points are ignored: first of all
	}
	for _, c := range cases {
		var earlier []time.Time
		for _, e := range c.earlier {
			earlier = append(earlier, at(e))
		}
		if got := retention.Classify(c.p, at(c.t), earlier).Name; got != c.want {
			t.Errorf("Classify(%s after %v) = %s, want %s", c.t, c.earlier, got, c.want)
		}
	}
}

func TestExpiredNeverLast(t *testing.T) {
	now := at("2026-02-01T00:00:00Z")
	past := at("2026-01-15T00:00:00Z")
	rps := []*store.RecoveryPoint{
		{Vault: "v", Instance: "a", ID: "a1", Time: at("2026-01-01T00:00:00Z"), ExpiresAt: &past},
		{Vault: "v", Instance: "a", ID: "a2", Time: at("2026-01-02T00:00:00Z"), ExpiresAt: &past},
		{Vault: "v", Instance: "b", ID: "b1", Time: at("2026-01-01T00:00:00Z")},                  // retain forever
		{Vault: "v", Instance: "b", ID: "b0", Time: at("2025-01-01T00:00:00Z"), ExpiresAt: &now}, // expires exactly now
	}
	var got []string
	for _, rp := range retention.Expired(now, rps) {
		got = append(got, rp.ID)
	}
	if len(got) != 2 || got[0] != "a1" || got[1] != "b0" {
		t.Fatalf("expired %v, want [a1 b0] (a2 is a's newest, b1 has no expiry)", got)
	}
}

// TestSixtyDays runs a 4-hourly schedule (02:00, 06:00, …, 22:00 UTC) from
// Thursday 2026-01-01 to Sunday 2026-03-01 (60 days) with rules default
// P2D, daily P7D, weekly P4W, expiring after every backup, and checks what
// is left at 2026-03-01T22:00Z, right after the last backup.
//
// The expectation is worked out by hand, not by the code under test:
//   - The first backup of an ISO week (Monday–Sunday) is tagged weekly. The
//     very first backup, Thu 1 Jan 02:00, is first of its week; after that,
//     every Monday 02:00: 5, 12, 19, 26 Jan, 2, 9, 16, 23 Feb. Kept while
//     t + 28 days > 1 Mar 22:00, i.e. t after 1 Feb 22:00:
//     2, 9, 16, 23 Feb 02:00.
//   - The other 02:00 backups are first of their day: daily, kept while
//     t + 7 days > 1 Mar 22:00, i.e. t after 22 Feb 22:00: 24, 25, 26, 27,
//     28 Feb and 1 Mar 02:00 (23 Feb is Monday: weekly, counted above).
//   - Everything else is default, kept while t + 2 days > 1 Mar 22:00,
//     i.e. t after 27 Feb 22:00: 28 Feb and 1 Mar 06:00–22:00.
//
// A second instance "gone" backed up three times on 1 Jan only (weekly
// 02:00 expiring 29 Jan, default 06:00 and 10:00 expiring 3 Jan): only its
// newest, 10:00, survives, because the last point of an instance is never
// deleted.
func TestSixtyDays(t *testing.T) {
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "v.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p := mustPolicy(t, policy.RetentionSpec{
		Default: &policy.RuleSpec{Duration: "P2D"}, Daily: &policy.RuleSpec{Duration: "P7D"}, Weekly: &policy.RuleSpec{Duration: "P4W"},
	})
	clk := clock.NewFake(at("2026-01-01T00:00:00Z"))
	eng := &retention.Engine{Store: st, Clock: clk}
	backup := func(instance string, taken time.Time) {
		t.Helper()
		clk.Set(taken)
		rp := &store.RecoveryPoint{Vault: "v", Instance: instance, Time: taken}
		if err := eng.Apply(ctx, p, rp); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateRecoveryPoint(ctx, rp); err != nil {
			t.Fatal(err)
		}
		for _, in := range []string{"live", "gone"} {
			if _, err := eng.ExpireInstance(ctx, "v", in); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, h := range []string{"02", "06", "10"} {
		backup("gone", at("2026-01-01T"+h+":00:00Z"))
	}
	n := 0
	for taken := at("2026-01-01T02:00:00Z"); !taken.After(at("2026-03-01T22:00:00Z")); taken = taken.Add(4 * time.Hour) {
		backup("live", taken)
		n++
	}
	if n != 360 {
		t.Fatalf("simulated %d backups, want 60 days × 6", n)
	}

	want := map[string]string{
		"2026-02-02T02:00:00Z": "weekly", "2026-02-09T02:00:00Z": "weekly", "2026-02-16T02:00:00Z": "weekly", "2026-02-23T02:00:00Z": "weekly",
		"2026-02-24T02:00:00Z": "daily", "2026-02-25T02:00:00Z": "daily", "2026-02-26T02:00:00Z": "daily", "2026-02-27T02:00:00Z": "daily",
		"2026-02-28T02:00:00Z": "daily", "2026-03-01T02:00:00Z": "daily",
	}
	for _, day := range []string{"2026-02-28", "2026-03-01"} {
		for _, h := range []string{"06", "10", "14", "18", "22"} {
			want[day+"T"+h+":00:00Z"] = "default"
		}
	}
	rps, err := st.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: "v", Instance: "live"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, rp := range rps {
		got[rp.Time.Format(time.RFC3339)] = rp.Tag
	}
	if len(got) != len(want) || len(want) != 20 {
		t.Errorf("kept %d recovery points, want %d", len(got), len(want))
	}
	for k, tag := range want {
		if got[k] != tag {
			t.Errorf("recovery point %s: kept with tag %q, want %q", k, got[k], tag)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("recovery point %s (tag %s) kept but expected expired", k, got[k])
		}
	}
	if t.Failed() {
		keys := make([]string, 0, len(got))
		for k := range got {
			keys = append(keys, k+"="+got[k])
		}
		sort.Strings(keys)
		t.Logf("kept: %v", keys)
	}

	gone, err := st.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: "v", Instance: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	if len(gone) != 1 || !gone[0].Time.Equal(at("2026-01-01T10:00:00Z")) {
		t.Fatalf("stopped instance kept %d points, want only its newest (10:00)", len(gone))
	}
}

func TestRetainForeverAndReapply(t *testing.T) {
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "v.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p := mustPolicy(t, policy.RetentionSpec{Default: &policy.RuleSpec{Duration: "P2D"}, Daily: &policy.RuleSpec{Duration: "P7D"}})
	clk := clock.NewFake(at("2026-01-01T00:00:00Z"))
	eng := &retention.Engine{Store: st, Clock: clk}
	for _, ts := range []string{"2026-01-01T02:00:00Z", "2026-01-01T06:00:00Z", "2026-01-01T10:00:00Z"} {
		rp := &store.RecoveryPoint{Vault: "v", Instance: "i", Time: at(ts)}
		if err := eng.Apply(ctx, p, rp); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateRecoveryPoint(ctx, rp); err != nil {
			t.Fatal(err)
		}
	}
	if err := eng.RetainForever(ctx, "v", "i"); err != nil {
		t.Fatal(err)
	}
	clk.Set(at("2027-01-01T00:00:00Z"))
	res, err := eng.ExpireInstance(ctx, "v", "i")
	if err != nil || len(res.Deleted) != 0 {
		t.Fatalf("retain-forever points expired: %v %v", res, err)
	}
	if err := eng.Reapply(ctx, p, "v", "i"); err != nil {
		t.Fatal(err)
	}
	res, err = eng.ExpireInstance(ctx, "v", "i")
	if err != nil || len(res.Deleted) != 2 {
		t.Fatalf("after resume, want the 2 older points expired (the newest kept): %+v %v", res, err)
	}
	res, err = eng.DeleteAll(ctx, "v", "i")
	if err != nil || len(res.Deleted) != 1 {
		t.Fatalf("delete-data must remove the last point too: %+v %v", res, err)
	}
}
