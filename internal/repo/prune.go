package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/arca-backup/arca/internal/storage"
)

// PruneOptions tunes Prune.
type PruneOptions struct {
	// MaxUnusedFraction: packs whose unused share of blob bytes exceeds it
	// are repacked. 0 repacks every partly used pack.
	MaxUnusedFraction float64
	// DryRun computes the report without changing anything (no lock either).
	DryRun bool
}

// PruneReport says what Prune did (or would do).
type PruneReport struct {
	PacksBefore       int   `json:"packsBefore"`
	PacksAfter        int   `json:"packsAfter"`
	PacksRemoved      int   `json:"packsRemoved"`  // unused or orphaned packs deleted
	PacksRepacked     int   `json:"packsRepacked"` // partly used packs rewritten and deleted
	PacksWritten      int   `json:"packsWritten"`
	BlobsUsed         int   `json:"blobsUsed"`
	BlobsRemoved      int   `json:"blobsRemoved"`
	BlobsRepacked     int   `json:"blobsRepacked"`
	BytesBefore       int64 `json:"bytesBefore"` // pack bytes
	BytesAfter        int64 `json:"bytesAfter"`
	IndexFilesRemoved int   `json:"indexFilesRemoved"`
	IndexFilesWritten int   `json:"indexFilesWritten"`
	// On storage with object lock: unused packs and replaced index files
	// the storage still retains, left for a later prune (the packs an index
	// file left behind names stay with it), and the latest date any of them
	// is retained until.
	PacksRetained      int       `json:"packsRetained,omitempty"`
	IndexFilesRetained int       `json:"indexFilesRetained,omitempty"`
	RetainedUntil      time.Time `json:"retainedUntil,omitzero"`
}

func (rep *PruneReport) retained(err error) {
	var re *storage.RetainedError
	if errors.As(err, &re) && re.Until.After(rep.RetainedUntil) {
		rep.RetainedUntil = re.Until
	}
}

// ErrPruneRefused: prune found damage and changed nothing.
var ErrPruneRefused = errors.New("prune refused: the repository has damage; run check")

// usedBlobs walks every recovery point and returns the IDs of all blobs they
// reference. Damage makes it fail: deleting data is only safe when every
// reference is known.
func (r *Repository) usedBlobs(ctx context.Context) (map[ID]bool, int, error) {
	rps, bad, err := r.listRecoveryPoints(ctx)
	if err != nil {
		return nil, 0, err
	}
	for id, e := range bad {
		return nil, 0, fmt.Errorf("%w: recovery point %s: %v", ErrPruneRefused, id.Short(), e)
	}
	used := map[ID]bool{}
	seenTree := map[string]bool{}
	for _, rp := range rps {
		err := r.walkPointBlobs(ctx, rp, seenTree, func(id ID) { used[id] = true })
		if err != nil {
			if ctx.Err() != nil {
				return nil, 0, ctx.Err()
			}
			return nil, 0, fmt.Errorf("%w: recovery point %s: %v", ErrPruneRefused, rp.ID.Short(), err)
		}
	}
	return used, len(rps), nil
}

// walkPointBlobs calls fn for every blob rp references: the blobs of each
// of its trees (resource trees and volume file trees) and of every entry in
// them. It is the one reachability walk:
// prune keeps what it finds, copy sends it. A tree whose blobs are already
// in seenTree (an unchanged resource type recurs in every point) is not
// walked again.
func (r *Repository) walkPointBlobs(ctx context.Context, rp *RecoveryPoint, seenTree map[string]bool, fn func(ID)) error {
	for _, ref := range rp.trees() {
		var key strings.Builder
		for _, id := range ref.tree.Blobs {
			key.Write(id[:])
			fn(id)
		}
		if seenTree[key.String()] {
			continue
		}
		seenTree[key.String()] = true
		err := r.walkRef(ctx, ref, func(blobs []ID, _ int64) {
			for _, b := range blobs {
				fn(b)
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Prune removes blobs no recovery point references, under an exclusive lock,
// in the order of docs/repository-format.md §11 rule 6, so that a crash at
// any step leaves a valid repository.
func (r *Repository) Prune(ctx context.Context, opts PruneOptions) (*PruneReport, error) {
	var hl *heldLock
	if !opts.DryRun {
		var err error
		if hl, err = r.lock(ctx, true); err != nil {
			return nil, err
		}
		defer func() { _ = hl.release(ctx) }()
	}
	rep := &PruneReport{}

	// (a) Read all index files (refusing damage) and find used blobs.
	idxIDs, err := r.listIDs(ctx, storage.IndexFile)
	if err != nil {
		return nil, err
	}
	packEntries := map[ID][]packEntry{}
	for id := range idxIDs {
		packs, err := r.loadIndexFile(ctx, id)
		if err != nil {
			if isDamage(err) {
				return nil, fmt.Errorf("%w: %v", ErrPruneRefused, err)
			}
			return nil, err
		}
		for _, p := range packs {
			packEntries[p.ID] = append(packEntries[p.ID], p.Entries...)
		}
	}
	// A pack described by several index files (an index file left by an
	// interrupted prune, or retained by object lock) is listed once per
	// blob: a repack must copy each blob once.
	for pid, es := range packEntries {
		packEntries[pid] = dedupEntries(es)
	}
	if err := r.refreshIndex(ctx); err != nil {
		return nil, err
	}
	used, _, err := r.usedBlobs(ctx)
	if err != nil {
		return nil, err
	}
	rep.BlobsUsed = len(used)
	packFiles, err := r.listIDs(ctx, storage.PackFile)
	if err != nil {
		return nil, err
	}
	rep.PacksBefore = len(packFiles)
	for _, s := range packFiles {
		rep.BytesBefore += s
	}

	// Choose one existing copy of every used blob.
	chosen := map[ID]ID{} // blob → pack
	packIDs := make([]ID, 0, len(packEntries))
	for id := range packEntries {
		packIDs = append(packIDs, id)
	}
	sort.Slice(packIDs, func(i, j int) bool { return packIDs[i].String() < packIDs[j].String() })
	for _, pid := range packIDs {
		if _, ok := packFiles[pid]; !ok {
			continue
		}
		for _, e := range packEntries[pid] {
			if used[e.ID] {
				if _, ok := chosen[e.ID]; !ok {
					chosen[e.ID] = pid
				}
			}
		}
	}
	for id := range used {
		if _, ok := chosen[id]; !ok {
			return nil, fmt.Errorf("%w: used blob %s is in no existing pack", ErrPruneRefused, id.Short())
		}
	}

	// Classify packs.
	var keep, repack, remove []ID
	for _, pid := range packIDs {
		if _, ok := packFiles[pid]; !ok {
			continue // missing pack: its entries are dropped with the old index
		}
		var usedB, total int64
		nUsed := 0
		for _, e := range packEntries[pid] {
			total += int64(e.Length)
			if chosen[e.ID] == pid {
				usedB += int64(e.Length)
				nUsed++
			}
		}
		switch {
		case nUsed == 0:
			remove = append(remove, pid)
			rep.BlobsRemoved += len(packEntries[pid])
		case total > 0 && float64(total-usedB)/float64(total) > opts.MaxUnusedFraction:
			repack = append(repack, pid)
			rep.BlobsRepacked += nUsed
			rep.BlobsRemoved += len(packEntries[pid]) - nUsed
		default:
			keep = append(keep, pid)
		}
	}
	var orphans []ID
	for pid := range packFiles {
		if _, ok := packEntries[pid]; !ok {
			orphans = append(orphans, pid)
		}
	}
	rep.PacksRemoved = len(remove) + len(orphans)
	rep.PacksRepacked = len(repack)
	if opts.DryRun {
		rep.PacksAfter = len(keep) + len(repack) // approximation: repacked blobs need about as many packs
		for _, pid := range keep {
			rep.BytesAfter += packFiles[pid]
		}
		return rep, nil
	}
	nothingToDo := len(remove) == 0 && len(repack) == 0 && len(orphans) == 0 && len(idxIDs) <= 1
	if nothingToDo {
		rep.PacksAfter = rep.PacksBefore
		rep.BytesAfter = rep.BytesBefore
		return rep, nil
	}

	// (b) Write new packs holding the used blobs of the repacked packs.
	w := r.newWriter(ctx, nil)
	for _, pid := range repack {
		var data []byte
		err := r.be.Load(ctx, storage.Handle{Type: storage.PackFile, Name: pid.String()}, 0, 0, func(rd io.Reader) error {
			var err error
			data, err = io.ReadAll(rd)
			return err
		})
		if err != nil {
			_ = w.Abort(ctx)
			return nil, fmt.Errorf("repack %s: %w", pid.Short(), err)
		}
		for _, e := range packEntries[pid] {
			if chosen[e.ID] != pid {
				continue
			}
			end := int64(e.Offset) + int64(e.Length)
			if end > int64(len(data)) {
				_ = w.Abort(ctx)
				return nil, fmt.Errorf("%w: pack %s is shorter than its index says", ErrPruneRefused, pid.Short())
			}
			sealed := data[e.Offset:end]
			if _, err := r.openBlob(sealed, e.ID, e.RawLen); err != nil {
				_ = w.Abort(ctx)
				return nil, fmt.Errorf("%w: pack %s: blob %s: %v", ErrPruneRefused, pid.Short(), e.ID.Short(), err)
			}
			if err := w.appendSealed(ctx, e.Type, e.ID, sealed, int(e.RawLen)); err != nil {
				_ = w.Abort(ctx)
				return nil, err
			}
		}
	}
	if err := w.flush(); err != nil {
		return nil, fmt.Errorf("prune: write packs: %w", err)
	}
	w.cancel()
	rep.PacksWritten = len(w.results)

	// (c) New index files: kept packs (all their entries) and new packs.
	var newIndex []indexPack
	for _, pid := range keep {
		newIndex = append(newIndex, indexPack{ID: pid, Entries: dedupEntries(packEntries[pid])})
	}
	newIndex = append(newIndex, w.results...)
	var batch []indexPack
	n := 0
	var written []ID
	flushBatch := func() error {
		if len(batch) == 0 {
			return nil
		}
		id, _, err := r.saveSealed(ctx, storage.IndexFile, encodeIndex(batch), false)
		if err != nil {
			return fmt.Errorf("prune: %w", err)
		}
		written = append(written, id)
		batch, n = nil, 0
		return nil
	}
	for _, p := range newIndex {
		batch = append(batch, p)
		n += len(p.Entries)
		if n >= maxIndexEntries {
			if err := flushBatch(); err != nil {
				return nil, err
			}
		}
	}
	if err := flushBatch(); err != nil {
		return nil, err
	}
	rep.IndexFilesWritten = len(written)

	// (d) Remove the old index files.
	newSet := map[ID]bool{}
	for _, id := range written {
		newSet[id] = true
	}
	// An index file the storage still retains stays, and so do the packs
	// it names: an index entry must never point at a removed pack.
	namedByRetained := map[ID]bool{}
	for id := range idxIDs {
		if newSet[id] { // identical content: same name, keep it
			continue
		}
		err := r.be.Remove(ctx, storage.Handle{Type: storage.IndexFile, Name: id.String()})
		switch {
		case storage.IsRetained(err):
			rep.IndexFilesRetained++
			rep.retained(err)
			packs, lerr := r.loadIndexFile(ctx, id)
			if lerr != nil {
				return nil, fmt.Errorf("prune: index file %s is retained and cannot be read: %w", id.Short(), lerr)
			}
			for _, p := range packs {
				namedByRetained[p.ID] = true
			}
			continue
		case err != nil && !storage.IsNotExist(err):
			return nil, fmt.Errorf("prune: remove index: %w", err)
		}
		rep.IndexFilesRemoved++
	}

	// (e) Remove packs no longer referenced.
	for _, list := range [][]ID{remove, repack, orphans} {
		for _, pid := range list {
			if namedByRetained[pid] {
				rep.PacksRetained++
				continue
			}
			err := r.be.Remove(ctx, storage.Handle{Type: storage.PackFile, Name: pid.String()})
			switch {
			case storage.IsRetained(err):
				rep.PacksRetained++
				rep.retained(err)
			case err != nil && !storage.IsNotExist(err):
				return nil, fmt.Errorf("prune: remove pack: %w", err)
			}
		}
	}

	// Rebuild the in-memory index from what now exists.
	idx := newMemIndex()
	idx.add(newIndex)
	r.mu.Lock()
	r.idx.Store(idx)
	r.indexFiles = map[ID]bool{}
	for _, id := range written {
		r.indexFiles[id] = true
	}
	r.indexErrs = map[ID]error{}
	r.mu.Unlock()
	r.cache.Store(newBlockCache(r.opts.cacheBytes))

	after, err := r.listIDs(ctx, storage.PackFile)
	if err != nil {
		return nil, err
	}
	rep.PacksAfter = len(after)
	for _, s := range after {
		rep.BytesAfter += s
	}
	return rep, nil
}

func dedupEntries(es []packEntry) []packEntry {
	seen := make(map[ID]bool, len(es))
	out := make([]packEntry, 0, len(es))
	for _, e := range es {
		if !seen[e.ID] {
			seen[e.ID] = true
			out = append(out, e)
		}
	}
	return out
}
