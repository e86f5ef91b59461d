package jobs

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/vault/retention"
	"github.com/arca-backup/arca/internal/vault/store"
)

// ClusterRemover is the retention engine's DataRemover: it has the
// instance's cluster expire the recovery point (the extension deletes the
// retained VolumeSnapshotContents and forgets the point in the repository,
// with the repository credentials it holds) and waits, bounded, for the
// cluster job to finish. A recovery point without a repository ID has no
// data outside the catalog. On any error the catalog entry stays, so the
// next retention run tries again.
type ClusterRemover struct {
	Store   store.InstanceStore
	Drivers Drivers
	// Wait bounds how long one removal waits for its cluster job (default
	// 5 minutes); Poll is the status interval (default 1 second).
	Wait, Poll time.Duration
	// Sleep waits between polls (tests); default time.Sleep honouring ctx.
	Sleep func(ctx context.Context, d time.Duration) error
	// PruneEvery: an expiry also prunes the repository when the last
	// successful prune of that cluster and storage location by this
	// process is older (default 24 hours; negative: never prune). The time
	// is kept in memory: after a restart the first expiry prunes.
	PruneEvery time.Duration

	mu         sync.Mutex
	lastPruned map[string]time.Time
}

func (c *ClusterRemover) pruneDue(key string) bool {
	every := c.PruneEvery
	if every < 0 {
		return false
	}
	if every == 0 {
		every = 24 * time.Hour
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	last, ok := c.lastPruned[key]
	return !ok || time.Since(last) >= every
}

func (c *ClusterRemover) pruned(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastPruned == nil {
		c.lastPruned = map[string]time.Time{}
	}
	c.lastPruned[key] = time.Now()
}

var (
	_ retention.DataRemover     = (*ClusterRemover)(nil)
	_ retention.SnapshotRemover = (*ClusterRemover)(nil)
)

func (c *ClusterRemover) sleep(ctx context.Context, d time.Duration) error {
	if c.Sleep != nil {
		return c.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// RemoveRecoveryPoint implements retention.DataRemover.
func (c *ClusterRemover) RemoveRecoveryPoint(ctx context.Context, rp *store.RecoveryPoint) error {
	return c.remove(ctx, rp, false)
}

// RemoveSnapshots implements retention.SnapshotRemover: the cluster
// deletes the point's retained snapshot contents and keeps the point.
func (c *ClusterRemover) RemoveSnapshots(ctx context.Context, rp *store.RecoveryPoint) error {
	return c.remove(ctx, rp, true)
}

func (c *ClusterRemover) remove(ctx context.Context, rp *store.RecoveryPoint, snapshotsOnly bool) error {
	if rp.RepoID == "" {
		return nil
	}
	in, err := c.Store.GetInstance(ctx, rp.Vault, rp.Instance)
	if err != nil {
		return fmt.Errorf("instance %q of recovery point %s: %w", rp.Instance, rp.ID, err)
	}
	var d ClusterDriver
	ok := false
	if c.Drivers != nil {
		d, ok = c.Drivers.Driver(in.Cluster)
	}
	if !ok {
		return fmt.Errorf("%s: %s", CodeClusterNotConnected, notConnected(in.Cluster))
	}
	f, ok := d.(Forgetter)
	if !ok {
		return fmt.Errorf("the driver of cluster %q cannot remove recovery point data", in.Cluster)
	}
	pruneKey := in.Cluster + " " + in.StorageLocation
	prune := !snapshotsOnly && c.pruneDue(pruneKey)
	key := rp.Vault + "/" + rp.ID
	if prune {
		key += "+prune"
	}
	if snapshotsOnly {
		key += "+snapshots"
	}
	if err := c.expire(ctx, in.Cluster, d, f, ForgetRequest{Key: key, StorageLocation: in.StorageLocation, RepoIDs: []string{rp.RepoID},
		Prune: prune, SnapshotsOnly: snapshotsOnly}); err != nil {
		return err
	}
	if prune {
		c.pruned(pruneKey)
	}
	if snapshotsOnly {
		return nil
	}
	// The point's copies go with it: each is forgotten in its secondary
	// storage location, which is pruned like the primary. The primary's
	// forget is repeated harmlessly (its point is already gone) while a
	// copy is still there, so the catalog entry stays until every copy
	// is forgotten.
	for _, cp := range rp.Copies {
		if cp.RepoID == "" {
			continue
		}
		ck := in.Cluster + " " + cp.StorageLocation
		cprune := c.pruneDue(ck)
		key := rp.Vault + "/" + rp.ID + "/copy/" + cp.StorageLocation
		if cprune {
			key += "+prune"
		}
		if err := c.expire(ctx, in.Cluster, d, f, ForgetRequest{Key: key, StorageLocation: cp.StorageLocation, RepoIDs: []string{cp.RepoID}, Prune: cprune}); err != nil {
			return &CopyNotRemovedError{Point: rp.ID, Location: cp.StorageLocation, CopyID: cp.RepoID, Err: err}
		}
		if cprune {
			c.pruned(ck)
		}
	}
	return nil
}

// CodeCopyNotRemoved: an expired recovery point's copy in a secondary
// storage location could not be forgotten; the point stays in the
// catalog and the next retention run retries.
const CodeCopyNotRemoved = "CopyNotRemoved"

// CopyNotRemovedError is the failure to forget an expired point's copy.
type CopyNotRemovedError struct {
	Point, Location, CopyID string
	Err                     error
}

func (e *CopyNotRemovedError) Error() string {
	return fmt.Sprintf("recovery point %s is forgotten in its primary storage location, but its copy %s in the secondary %s is not: %v; "+
		"the point stays in the catalog and the next retention run retries (check that the cluster's extension reaches %s, "+
		"or forget the copy there with `arca repo forget`)", e.Point, v1alpha1.ShortID(e.CopyID), e.Location, e.Err, e.Location)
}

func (e *CopyNotRemovedError) Unwrap() error { return e.Err }

// JobCode is the retention issue's code.
func (e *CopyNotRemovedError) JobCode() string { return CodeCopyNotRemoved }

// expire starts a cluster expiry job and waits, bounded, for it to end.
func (c *ClusterRemover) expire(ctx context.Context, cluster string, d ClusterDriver, f Forgetter, req ForgetRequest) error {
	ref, err := f.StartForget(ctx, req)
	if err != nil {
		return fmt.Errorf("start expiry in cluster %q: %w", cluster, err)
	}
	wait, poll := c.Wait, c.Poll
	if wait <= 0 {
		wait = 5 * time.Minute
	}
	if poll <= 0 {
		poll = time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		st, err := d.JobStatus(ctx, ref)
		if err == nil && store.JobStateTerminal(st.State) {
			if st.State == store.JobCompleted || st.State == store.JobCompletedWithWarnings {
				return nil
			}
			msg := st.State
			for _, e := range st.Errors {
				msg += "; " + e.Code + ": " + e.Message
			}
			return fmt.Errorf("expiry %s in cluster %q: %s", ref, cluster, msg)
		}
		if time.Now().After(deadline) {
			last := "still running"
			if err != nil {
				last = err.Error()
			}
			return fmt.Errorf("expiry %s in cluster %q not finished after %v (%s); the next retention run looks again", ref, cluster, wait, last)
		}
		if err := c.sleep(ctx, poll); err != nil {
			return err
		}
	}
}
