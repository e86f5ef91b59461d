package repo

import (
	"context"
	"strings"

	"github.com/arca-backup/arca/internal/storage"
)

// RepoStats summarises a repository.
type RepoStats struct {
	RecoveryPoints int `json:"recoveryPoints"`
	Packs          int `json:"packs"`
	IndexFiles     int `json:"indexFiles"`
	Blobs          int `json:"blobs"`
	DataBlobs      int `json:"dataBlobs"`
	TreeBlobs      int `json:"treeBlobs"`
	Keys           int `json:"keys"`
	// LogicalBytes: object sizes and tree bytes summed over every recovery
	// point, as if each were stored alone.
	LogicalBytes int64 `json:"logicalBytes"`
	// UniqueBytes: plaintext of distinct blobs.
	UniqueBytes int64 `json:"uniqueBytes"`
	// BlobBytes: stored (compressed, encrypted) bytes of distinct blobs.
	BlobBytes int64 `json:"blobBytes"`
	// StoredBytes: all packs, index files and manifests.
	StoredBytes      int64   `json:"storedBytes"`
	DedupRatio       float64 `json:"dedupRatio"`       // LogicalBytes / UniqueBytes
	CompressionRatio float64 `json:"compressionRatio"` // UniqueBytes / BlobBytes
}

// Stats computes repository statistics. It reads every manifest and tree.
func (r *Repository) Stats(ctx context.Context) (*RepoStats, error) {
	if err := r.refreshIndex(ctx); err != nil {
		return nil, err
	}
	st := &RepoStats{}
	for _, t := range []storage.FileType{storage.PackFile, storage.IndexFile, storage.RecoveryPointFile, storage.KeyFile} {
		files, err := r.listIDs(ctx, t)
		if err != nil {
			return nil, err
		}
		for _, s := range files {
			if t != storage.KeyFile {
				st.StoredBytes += s
			}
		}
		switch t {
		case storage.PackFile:
			st.Packs = len(files)
		case storage.IndexFile:
			st.IndexFiles = len(files)
		case storage.RecoveryPointFile:
			st.RecoveryPoints = len(files)
		case storage.KeyFile:
			st.Keys = len(files)
		}
	}
	idx := r.idx.Load()
	idx.mu.RLock()
	for _, l := range idx.blobs {
		st.Blobs++
		if l.typ == TreeBlob {
			st.TreeBlobs++
		} else {
			st.DataBlobs++
		}
		st.UniqueBytes += int64(l.rawLen)
		st.BlobBytes += int64(l.length)
	}
	idx.mu.RUnlock()

	rps, err := r.ListRecoveryPoints(ctx)
	if err != nil {
		return nil, err
	}
	treeSize := map[string]int64{}
	for _, rp := range rps {
		for _, ref := range rp.trees() {
			var key strings.Builder
			for _, id := range ref.tree.Blobs {
				key.Write(id[:])
			}
			k := key.String()
			sz, ok := treeSize[k]
			if !ok {
				for _, id := range ref.tree.Blobs {
					if l, _, _, ok := r.idx.Load().lookup(id); ok {
						sz += int64(l.rawLen)
					}
				}
				err := r.walkRef(ctx, ref, func(_ []ID, size int64) { sz += size })
				if err != nil {
					return nil, err
				}
				treeSize[k] = sz
			}
			st.LogicalBytes += sz
		}
	}
	if st.UniqueBytes > 0 {
		st.DedupRatio = float64(st.LogicalBytes) / float64(st.UniqueBytes)
	}
	if st.BlobBytes > 0 {
		st.CompressionRatio = float64(st.UniqueBytes) / float64(st.BlobBytes)
	}
	return st, nil
}
