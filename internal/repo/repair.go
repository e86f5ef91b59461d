package repo

import (
	"context"
	"fmt"
	"sort"

	"github.com/arca-backup/arca/internal/storage"
)

// RebuildIndexReport says what RebuildIndex did.
type RebuildIndexReport struct {
	Packs             int      `json:"packs"`             // packs indexed
	Blobs             int      `json:"blobs"`             // blobs indexed
	DamagedPacks      []string `json:"damagedPacks"`      // packs whose header is unreadable (left alone)
	IndexFilesRemoved int      `json:"indexFilesRemoved"` // old index files replaced
	IndexFilesWritten int      `json:"indexFilesWritten"`
}

// RebuildIndex replaces every index file by a new index built from the pack
// headers, under an exclusive lock. It heals damaged or missing index files
// (blobs become reachable again if their packs are intact). New index files
// are written before the old ones are removed, so a crash leaves a valid
// repository.
func (r *Repository) RebuildIndex(ctx context.Context) (*RebuildIndexReport, error) {
	hl, err := r.lock(ctx, true)
	if err != nil {
		return nil, err
	}
	defer func() { _ = hl.release(ctx) }()
	oldIdx, err := r.listIDs(ctx, storage.IndexFile)
	if err != nil {
		return nil, err
	}
	packs, err := r.listIDs(ctx, storage.PackFile)
	if err != nil {
		return nil, err
	}
	ids := make([]ID, 0, len(packs))
	for id := range packs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	rep := &RebuildIndexReport{}
	var all []indexPack
	for _, id := range ids {
		hdr, err := r.readPackHeader(ctx, id, packs[id])
		if err != nil {
			if isDamage(err) || storage.IsNotExist(err) {
				rep.DamagedPacks = append(rep.DamagedPacks, "data/"+id.String())
				continue
			}
			return nil, fmt.Errorf("pack %s: %w", id.Short(), err)
		}
		all = append(all, indexPack{ID: id, Entries: hdr})
		rep.Packs++
		rep.Blobs += len(hdr)
	}
	var batch []indexPack
	n := 0
	written := map[ID]bool{}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		id, _, err := r.saveSealed(ctx, storage.IndexFile, encodeIndex(batch), false)
		if err != nil {
			return err
		}
		written[id] = true
		batch, n = nil, 0
		return nil
	}
	for _, p := range all {
		batch = append(batch, p)
		n += len(p.Entries)
		if n >= maxIndexEntries {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	rep.IndexFilesWritten = len(written)
	for id := range oldIdx {
		if written[id] {
			continue
		}
		if err := r.be.Remove(ctx, storage.Handle{Type: storage.IndexFile, Name: id.String()}); err != nil && !storage.IsNotExist(err) {
			return nil, fmt.Errorf("remove index: %w", err)
		}
		rep.IndexFilesRemoved++
	}
	if err := r.refreshIndex(ctx); err != nil {
		return nil, err
	}
	return rep, nil
}
