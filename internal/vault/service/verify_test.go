package service_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
)

// A policy with verify: weekly queues one Verification job per instance
// and ISO week, of the instance's latest available point, in its cluster;
// nothing in the same week, nothing for a stopped instance; an unknown
// period is refused.
func TestScheduledVerification(t *testing.T) {
	e := setup(t)
	withInstance(t, e)
	spec := daily()
	spec.Verify = "fortnightly"
	p, _ := e.svc.GetPolicy(ctx, "v", "daily")
	wantKind(t, func() error { _, err := e.svc.UpdatePolicy(ctx, "v", "daily", p.Version, spec); return err }(), service.Invalid, "InvalidValue")
	spec.Verify = "weekly"
	if _, err := e.svc.UpdatePolicy(ctx, "v", "daily", p.Version, spec); err != nil {
		t.Fatal(err)
	}
	if p, _ := e.svc.GetPolicy(ctx, "v", "daily"); p.Verify != "weekly" {
		t.Fatalf("policy verify %q after update", p.Verify)
	}
	// No point yet: nothing to verify.
	if js, err := e.svc.ScheduleVerifications(ctx, e.clk.Now()); err != nil || len(js) != 0 {
		t.Fatalf("without points: %v %v", js, err)
	}
	add := func(id string, at time.Time, repoID string) {
		rp := &store.RecoveryPoint{Vault: "v", ID: id, Instance: "shop", Time: at, RepoID: repoID, Tag: "default", Datastore: policy.Operational, State: store.RPAvailable}
		if err := e.st.CreateRecoveryPoint(ctx, rp); err != nil {
			t.Fatal(err)
		}
	}
	add("rp-old", e.clk.Now().Add(-2*time.Hour), strings.Repeat("a", 64))
	add("rp-new", e.clk.Now().Add(-time.Hour), strings.Repeat("b", 64))
	js, err := e.svc.ScheduleVerifications(ctx, e.clk.Now()) // Thursday 2026-01-01
	if err != nil || len(js) != 1 {
		t.Fatalf("first pass: %v %v", js, err)
	}
	var vp jobs.VerificationParams
	if err := json.Unmarshal(js[0].Params, &vp); err != nil {
		t.Fatal(err)
	}
	if js[0].Type != store.JobVerification || js[0].Instance != "shop" || vp.RecoveryPoint != "rp-new" || vp.TargetCluster != "prod" ||
		vp.ReadDataPercent != service.ScheduledVerificationReadPercent {
		t.Fatalf("queued %+v %+v", js[0], vp)
	}
	e.clk.Set(time.Date(2026, 1, 4, 23, 0, 0, 0, time.UTC)) // Sunday: the same ISO week
	if js, err := e.svc.ScheduleVerifications(ctx, e.clk.Now()); err != nil || len(js) != 0 {
		t.Fatalf("same week: %v %v", js, err)
	}
	e.clk.Set(time.Date(2026, 1, 5, 1, 0, 0, 0, time.UTC)) // Monday: a new week
	if js, err := e.svc.ScheduleVerifications(ctx, e.clk.Now()); err != nil || len(js) != 1 {
		t.Fatalf("next week: %v %v", js, err)
	}
	if _, _, err := e.svc.StopProtection(ctx, "v", "shop", 0, store.StopRetainForever); err != nil {
		t.Fatal(err)
	}
	e.clk.Set(time.Date(2026, 1, 12, 1, 0, 0, 0, time.UTC))
	if js, err := e.svc.ScheduleVerifications(ctx, e.clk.Now()); err != nil || len(js) != 0 {
		t.Fatalf("stopped instance: %v %v", js, err)
	}
}
