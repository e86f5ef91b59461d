package jobs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/store"
)

// forgetDriver is a fakeDriver that can expire recovery points; each
// expiry ends in the state given.
type forgetDriver struct {
	*fakeDriver
	end      *jobs.Status
	requests []jobs.ForgetRequest
}

func (f *forgetDriver) StartForget(_ context.Context, req jobs.ForgetRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, req)
	ref := "backupjob/forget-" + req.Key
	f.status[ref] = &jobs.Status{State: store.JobInProgress}
	end := f.end
	go func() { // finishes after a poll or two
		time.Sleep(30 * time.Millisecond)
		f.finish(ref, end)
	}()
	return ref, nil
}

func TestClusterRemover(t *testing.T) {
	e := setup(t)
	fd := &forgetDriver{fakeDriver: e.drv, end: &jobs.Status{State: store.JobCompleted}}
	rm := &jobs.ClusterRemover{Store: e.st, Drivers: jobs.DriverMap{"c1": fd}, Wait: 5 * time.Second, Poll: 10 * time.Millisecond}
	rp := &store.RecoveryPoint{Vault: "v", ID: "rp-1", Instance: "connected", RepoID: "abc"}
	must(t, rm.RemoveRecoveryPoint(ctx, rp))
	if len(fd.requests) != 1 || fd.requests[0].RepoIDs[0] != "abc" || fd.requests[0].StorageLocation != "file:///r" ||
		fd.requests[0].Key != "v/rp-1+prune" || !fd.requests[0].Prune {
		t.Fatalf("forget requests %+v", fd.requests)
	}
	// Pruned less than PruneEvery ago: the next expiry does not prune.
	must(t, rm.RemoveRecoveryPoint(ctx, &store.RecoveryPoint{Vault: "v", ID: "rp-9", Instance: "connected", RepoID: "zzz"}))
	if len(fd.requests) != 2 || fd.requests[1].Prune || fd.requests[1].Key != "v/rp-9" {
		t.Fatalf("second expiry %+v", fd.requests[1])
	}
	// Nothing outside the catalog: nothing to ask.
	must(t, rm.RemoveRecoveryPoint(ctx, &store.RecoveryPoint{Vault: "v", ID: "rp-2", Instance: "connected"}))
	if len(fd.requests) != 2 {
		t.Fatalf("a point without repository ID was sent to the cluster")
	}
	// A failed expiry, an unconnected cluster, a driver that cannot
	// forget, a job that does not finish in time: errors, so the catalog
	// entry is kept.
	fd.end = &jobs.Status{State: store.JobFailed, Errors: []store.Issue{{Code: "ForgetFailed", Message: "boom"}}}
	if err := rm.RemoveRecoveryPoint(ctx, rp); err == nil || !strings.Contains(err.Error(), "ForgetFailed") {
		t.Errorf("failed expiry: %v", err)
	}
	if err := rm.RemoveRecoveryPoint(ctx, &store.RecoveryPoint{Vault: "v", ID: "rp-3", Instance: "lonely", RepoID: "def"}); err == nil ||
		!strings.Contains(err.Error(), jobs.CodeClusterNotConnected) {
		t.Errorf("unconnected cluster: %v", err)
	}
	plain := &jobs.ClusterRemover{Store: e.st, Drivers: jobs.DriverMap{"c1": e.drv}}
	if err := plain.RemoveRecoveryPoint(ctx, rp); err == nil {
		t.Error("a driver without StartForget removed data")
	}
	fd.end = &jobs.Status{State: store.JobInProgress}
	slow := &jobs.ClusterRemover{Store: e.st, Drivers: jobs.DriverMap{"c1": fd}, Wait: 100 * time.Millisecond, Poll: 10 * time.Millisecond}
	if err := slow.RemoveRecoveryPoint(ctx, rp); err == nil || !strings.Contains(err.Error(), "not finished") {
		t.Errorf("unfinished expiry: %v", err)
	}
}
