package jobs

import (
	"context"
	"fmt"
	"time"

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
	Store   store.Store
	Drivers Drivers
	// Wait bounds how long one removal waits for its cluster job (default
	// 5 minutes); Poll is the status interval (default 1 second).
	Wait, Poll time.Duration
	// Sleep waits between polls (tests); default time.Sleep honouring ctx.
	Sleep func(ctx context.Context, d time.Duration) error
}

var _ retention.DataRemover = (*ClusterRemover)(nil)

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
	ref, err := f.StartForget(ctx, ForgetRequest{Key: rp.Vault + "/" + rp.ID, StorageLocation: in.StorageLocation, RepoIDs: []string{rp.RepoID}})
	if err != nil {
		return fmt.Errorf("start expiry in cluster %q: %w", in.Cluster, err)
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
			return fmt.Errorf("expiry %s in cluster %q: %s", ref, in.Cluster, msg)
		}
		if time.Now().After(deadline) {
			last := "still running"
			if err != nil {
				last = err.Error()
			}
			return fmt.Errorf("expiry %s in cluster %q not finished after %v (%s); the next retention run looks again", ref, in.Cluster, wait, last)
		}
		if err := c.sleep(ctx, poll); err != nil {
			return err
		}
	}
}
