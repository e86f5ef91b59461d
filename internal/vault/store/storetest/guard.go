package storetest

import (
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/store"
)

// testVaultSettings: soft delete, immutability and the resource guard
// round-trip, and a new vault's immutability is disabled.
func testVaultSettings(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	v := &store.Vault{Name: "v", SoftDeleteDays: 14}
	must(t, s.CreateVault(ctx, v))
	if v.Immutability != store.ImmutabilityDisabled || v.Immutable() {
		t.Fatalf("new vault immutability %q", v.Immutability)
	}
	v.SoftDeleteDays, v.Immutability, v.ResourceGuard = 30, store.ImmutabilityLocked, true
	must(t, s.UpdateVault(ctx, v))
	got, err := s.GetVault(ctx, "v")
	must(t, err)
	if got.SoftDeleteDays != 30 || got.Immutability != store.ImmutabilityLocked || !got.ResourceGuard || !got.Immutable() {
		t.Fatalf("settings did not round-trip: %+v", got)
	}
}

// testSoftDelete: a soft-deleted point leaves the default list, shows in
// the deleted ones, is purgeable only after its time and comes back on
// undelete; an instance soft-deleted takes its points with it and brings
// back only those, not a point deleted on its own before.
func testSoftDelete(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	base := time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)
	var rps []*store.RecoveryPoint
	for i := range 3 {
		rp := &store.RecoveryPoint{Vault: "v", Instance: "i1", Time: base.Add(time.Duration(i) * time.Hour), Tag: "default", Bytes: 10}
		must(t, s.CreateRecoveryPoint(ctx, rp))
		rps = append(rps, rp)
	}
	in := &store.Instance{Vault: "v", Name: "i1", Cluster: "c", Policy: "p", StorageLocation: "file:///b", ProtectionState: store.ProtectionStopped, StopMode: store.StopDeleteData}
	must(t, s.CreateInstance(ctx, in))

	at, purge := base.Add(24*time.Hour), base.Add(15*24*time.Hour)
	wantConflict(t, s.SoftDeleteRecoveryPoint(ctx, "v", rps[0].ID, 99, at, purge))
	must(t, s.SoftDeleteRecoveryPoint(ctx, "v", rps[0].ID, rps[0].Version, at, purge))
	wantConflict(t, s.SoftDeleteRecoveryPoint(ctx, "v", rps[0].ID, 0, at, purge)) // already
	wantErr(t, s.SoftDeleteRecoveryPoint(ctx, "v", "nope", 0, at, purge), store.ErrNotFound)

	count := func(f store.RecoveryPointFilter) int {
		t.Helper()
		l, err := s.ListRecoveryPoints(ctx, f)
		must(t, err)
		return len(l)
	}
	if n, d, all := count(store.RecoveryPointFilter{Vault: "v"}), count(store.RecoveryPointFilter{Vault: "v", OnlyDeleted: true}),
		count(store.RecoveryPointFilter{Vault: "v", IncludeDeleted: true}); n != 2 || d != 1 || all != 3 {
		t.Fatalf("lists: default %d, deleted %d, all %d; want 2, 1, 3", n, d, all)
	}
	got, err := s.GetRecoveryPoint(ctx, "v", rps[0].ID)
	must(t, err)
	if got.State != store.RPSoftDeleted || got.DeletedAt == nil || !got.DeletedAt.Equal(at) || got.PurgeAt == nil || !got.PurgeAt.Equal(purge) {
		t.Fatalf("soft-deleted point: %+v", got)
	}
	if p, err := s.ListPurgeableRecoveryPoints(ctx, purge.Add(-time.Second)); err != nil || len(p) != 0 {
		t.Fatalf("purgeable before its time: %d %v", len(p), err)
	}
	if p, err := s.ListPurgeableRecoveryPoints(ctx, purge); err != nil || len(p) != 1 || p[0].ID != rps[0].ID {
		t.Fatalf("purgeable at its time: %v %v", p, err)
	}
	// Marked Deleting by the purge, it stays listed until it is gone
	// (a failed deletion job is queued again).
	deleting, _ := s.GetRecoveryPoint(ctx, "v", rps[0].ID)
	deleting.State = store.RPDeleting
	must(t, s.UpdateRecoveryPoint(ctx, deleting))
	if p, err := s.ListPurgeableRecoveryPoints(ctx, purge); err != nil || len(p) != 1 || p[0].State != store.RPDeleting {
		t.Fatalf("purgeable while Deleting: %v %v", p, err)
	}
	deleting.State = store.RPSoftDeleted
	must(t, s.UpdateRecoveryPoint(ctx, deleting))
	must(t, s.UndeleteRecoveryPoint(ctx, "v", rps[0].ID))
	wantConflict(t, s.UndeleteRecoveryPoint(ctx, "v", rps[0].ID)) // not deleted
	if got, _ := s.GetRecoveryPoint(ctx, "v", rps[0].ID); got.State != store.RPAvailable || got.DeletedAt != nil || got.PurgeAt != nil {
		t.Fatalf("undeleted point: %+v", got)
	}

	// Point 0 deleted on its own first, then the instance.
	must(t, s.SoftDeleteRecoveryPoint(ctx, "v", rps[0].ID, 0, at, purge))
	at2, purge2 := at.Add(time.Hour), purge.Add(time.Hour)
	in.DeleteInstance = true
	stale := *in
	must(t, s.SoftDeleteInstance(ctx, in, at2, purge2))
	wantConflict(t, s.SoftDeleteInstance(ctx, &stale, at2, purge2))
	gi, err := s.GetInstance(ctx, "v", "i1")
	must(t, err)
	if gi.ProtectionState != store.ProtectionSoftDeleted || !gi.DeleteInstance || gi.PurgeAt == nil || !gi.PurgeAt.Equal(purge2) || gi.Version != in.Version {
		t.Fatalf("soft-deleted instance: %+v (want version %d)", gi, in.Version)
	}
	if n := count(store.RecoveryPointFilter{Vault: "v", Instance: "i1"}); n != 0 {
		t.Fatalf("%d points listed after the instance was soft-deleted", n)
	}
	if p, err := s.ListPurgeableInstances(ctx, purge2); err != nil || len(p) != 1 || p[0].Name != "i1" {
		t.Fatalf("purgeable instances: %v %v", p, err)
	}
	if p, err := s.ListPurgeableInstances(ctx, purge); err != nil || len(p) != 0 {
		t.Fatalf("instance purgeable before its time: %v %v", p, err)
	}
	must(t, s.UndeleteInstance(ctx, gi, store.ProtectionStopped, store.StopRetainForever))
	gi, _ = s.GetInstance(ctx, "v", "i1")
	if gi.ProtectionState != store.ProtectionStopped || gi.StopMode != store.StopRetainForever || gi.DeletedAt != nil || gi.DeleteInstance {
		t.Fatalf("undeleted instance: %+v", gi)
	}
	if n, d := count(store.RecoveryPointFilter{Vault: "v", Instance: "i1"}), count(store.RecoveryPointFilter{Vault: "v", OnlyDeleted: true}); n != 2 || d != 1 {
		t.Fatalf("after undeleting the instance: %d available, %d deleted; want 2 and 1 (the point deleted on its own stays deleted)", n, d)
	}
	wantConflict(t, s.UndeleteInstance(ctx, gi, store.ProtectionStopped, store.StopRetainForever)) // not soft-deleted
}

// testApprovals: requests are created pending, filtered, and an update
// at a stale version (a second approval, a second use) conflicts.
func testApprovals(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	exp := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	a := &store.Approval{Vault: "v", Operation: "deleteRecoveryPoint", Target: "rp-1", Requester: "user:alice", ExpiresAt: exp}
	must(t, s.CreateApproval(ctx, a))
	if a.ID == "" || a.State != store.ApprovalPending || a.Version != 1 {
		t.Fatalf("created: %+v", a)
	}
	must(t, s.CreateApproval(ctx, &store.Approval{Vault: "v", Operation: "deleteVault", Target: "v", Requester: "user:bob", ExpiresAt: exp}))
	l, err := s.ListApprovals(ctx, "v", store.ApprovalFilter{Requester: "user:alice", Operation: "deleteRecoveryPoint", Target: "rp-1"})
	must(t, err)
	if len(l) != 1 || l[0].ID != a.ID {
		t.Fatalf("filtered list: %v", l)
	}
	if l, _ := s.ListApprovals(ctx, "v", store.ApprovalFilter{}); len(l) != 2 {
		t.Fatalf("all: %d", len(l))
	}
	stale := *a
	now := exp.Add(-time.Hour)
	a.State, a.Approver, a.DecidedAt = store.ApprovalApproved, "user:guard", &now
	must(t, s.UpdateApproval(ctx, a))
	stale.State = store.ApprovalRejected
	wantConflict(t, s.UpdateApproval(ctx, &stale))
	got, err := s.GetApproval(ctx, "v", a.ID)
	must(t, err)
	if got.State != store.ApprovalApproved || got.Approver != "user:guard" || got.DecidedAt == nil || !got.ExpiresAt.Equal(exp) {
		t.Fatalf("approved: %+v", got)
	}
	_, err = s.GetApproval(ctx, "other", a.ID)
	wantErr(t, err, store.ErrNotFound)
}

// testNotifications: subscriptions keep their secret and events;
// deliveries are recorded, updated and listed newest first.
func testNotifications(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	sub := &store.Subscription{Vault: "v", URL: "https://hooks.example/arca", Secret: "s3cret", Events: []string{store.EventJobFailed, store.EventScheduleMissed}}
	must(t, s.CreateSubscription(ctx, sub))
	must(t, s.CreateSubscription(ctx, &store.Subscription{Vault: "w", URL: "https://other.example", Secret: "x", Events: []string{store.EventJobWarning}}))
	got, err := s.GetSubscription(ctx, "v", sub.ID)
	must(t, err)
	if got.Secret != "s3cret" || len(got.Events) != 2 || got.URL != sub.URL {
		t.Fatalf("subscription: %+v", got)
	}
	if l, _ := s.ListSubscriptions(ctx, "v"); len(l) != 1 {
		t.Fatalf("subscriptions of v: %d", len(l))
	}
	if l, _ := s.ListSubscriptions(ctx, ""); len(l) != 2 {
		t.Fatalf("every subscription: %d", len(l))
	}
	d := &store.Delivery{Vault: "v", Subscription: sub.ID, Event: store.Event{ID: "e1", Type: store.EventJobFailed, Vault: "v", Job: "j1"}}
	must(t, s.CreateDelivery(ctx, d))
	must(t, s.CreateDelivery(ctx, &store.Delivery{Vault: "v", Subscription: sub.ID, Event: store.Event{ID: "e2", Type: store.EventScheduleMissed, Vault: "v"}}))
	if p, _ := s.PendingDeliveries(ctx); len(p) != 2 {
		t.Fatalf("pending: %d", len(p))
	}
	done := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d.State, d.Attempts, d.LastStatus, d.DeliveredAt = store.DeliveryDelivered, 2, 204, &done
	must(t, s.UpdateDelivery(ctx, d))
	if p, _ := s.PendingDeliveries(ctx); len(p) != 1 || p[0].Event.ID != "e2" {
		t.Fatalf("pending after delivery: %v", p)
	}
	l, err := s.ListDeliveries(ctx, "v", sub.ID, 0)
	must(t, err)
	if len(l) != 2 {
		t.Fatalf("deliveries: %d", len(l))
	}
	var found bool
	for _, x := range l {
		if x.ID == d.ID {
			found = x.State == store.DeliveryDelivered && x.Attempts == 2 && x.LastStatus == 204 && x.Event.Job == "j1"
		}
	}
	if !found {
		t.Fatalf("delivery not recorded: %+v", l)
	}
	if l, _ := s.ListDeliveries(ctx, "v", "", 1); len(l) != 1 {
		t.Fatalf("limit: %d", len(l))
	}
	must(t, s.DeleteSubscription(ctx, "v", sub.ID))
	wantErr(t, s.DeleteSubscription(ctx, "v", sub.ID), store.ErrNotFound)
}
