package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/arca-backup/arca/internal/storage"
)

// OriginTag is the tag a copied recovery point carries: the full ID of the
// point it is a copy of, in the repository it was first written to. A
// manifest is encrypted with its repository's master key, so the copy's ID
// (the hash of its stored bytes) differs from the original's; the tag is
// how a second copy knows the point is already there and how a restore
// that falls back to the secondary finds the point the catalog names. A
// copy of a copy keeps the first origin.
const OriginTag = "arca.io/origin"

// Origin returns the ID rp was first written under: its OriginTag if it is
// a copy, otherwise its own ID.
func (rp *RecoveryPoint) Origin() ID {
	if s, ok := rp.Tags[OriginTag]; ok {
		if id, err := ParseID(s); err == nil {
			return id
		}
	}
	return rp.ID
}

// FindOrigin returns the recovery point of r whose origin is id (the point
// itself, or a copy of it), or an error wrapping ErrNotFound.
func FindOrigin(ctx context.Context, r Reader, id ID) (*RecoveryPoint, error) {
	rp, err := r.LoadRecoveryPoint(ctx, id)
	if err == nil {
		return rp, nil
	}
	if !storage.IsNotExist(err) {
		return nil, err
	}
	rps, err := r.ListRecoveryPoints(ctx)
	if err != nil {
		return nil, err
	}
	for _, rp := range rps {
		if rp.Origin() == id {
			return rp, nil
		}
	}
	return nil, fmt.Errorf("%s: %w (neither the point nor a copy of it)", id, ErrNotFound)
}

// CopyOptions tunes Copy.
type CopyOptions struct {
	// Workers load blobs from the source and store them in the target at
	// once (default 8): remote storage answers one read in milliseconds.
	Workers int
	// Progress, if set, is called after each point.
	Progress func(CopiedPoint)
}

// CopiedPoint is what Copy did with one recovery point.
type CopiedPoint struct {
	Source ID `json:"source"`
	Target ID `json:"target"`
	// Skipped: the target already held a copy (or the point itself).
	Skipped bool `json:"skipped,omitempty"`
	// Blobs the point references; of them, NewBlobs were sent, with
	// NewBytes of plaintext.
	Blobs    int64 `json:"blobs"`
	NewBlobs int64 `json:"newBlobs"`
	NewBytes int64 `json:"newBytes"`
	// StoredBytes written to the target: packs, index files, manifest.
	StoredBytes int64 `json:"storedBytes"`
}

// CopyReport says what Copy did.
type CopyReport struct {
	Points      []CopiedPoint `json:"points"`
	Copied      int           `json:"copied"`
	Skipped     int           `json:"skipped"`
	NewBlobs    int64         `json:"newBlobs"`
	NewBytes    int64         `json:"newBytes"`
	StoredBytes int64         `json:"storedBytes"`
}

// Copy copies the recovery points ids of src into dst, sending only the
// blobs dst lacks (compared by blob ID, the hash of the plaintext, so
// deduplication works across copies). Blobs are read and verified with
// src's key and sealed again with dst's: the two repositories share no
// key. Each point is one writer in dst: its packs, then its index, then
// its manifest (format §11 rule 2), so an interrupted copy leaves no
// manifest whose data is missing, and a rerun sends what is still missing.
// A point dst already holds (a copy with the same origin) is skipped.
//
// Copy holds a shared lock on src while it reads (a prune there waits) and
// the writer's shared lock on dst while it writes each point. On error the
// report says what was copied before it.
func Copy(ctx context.Context, src Reader, dst *Repository, ids []ID, opts CopyOptions) (*CopyReport, error) {
	s, err := writerOf(src)
	if err != nil {
		return nil, err
	}
	if s.cfg.ID == dst.cfg.ID {
		return nil, errors.New("copy: the source and the target are the same repository (same repository ID)")
	}
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	hl, err := s.lock(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("copy: lock the source: %w", err)
	}
	defer func() { _ = hl.release(context.WithoutCancel(ctx)) }()

	// What dst holds already, by origin. Damaged manifests are left out:
	// a point behind one is copied again, which is harmless.
	have := map[ID]ID{}
	rps, _, err := dst.listRecoveryPoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("copy: list the target's recovery points: %w", err)
	}
	for _, rp := range rps {
		have[rp.Origin()] = rp.ID
	}

	rep := &CopyReport{Points: []CopiedPoint{}}
	seenTree := map[string]bool{}
	for _, id := range ids {
		cp, err := copyPoint(ctx, s, dst, id, have, seenTree, opts.Workers)
		if err != nil {
			return rep, fmt.Errorf("copy recovery point %s: %w", id, err)
		}
		if cp.Skipped {
			rep.Skipped++
		} else {
			rep.Copied++
			have[id] = cp.Target
		}
		rep.NewBlobs += cp.NewBlobs
		rep.NewBytes += cp.NewBytes
		rep.StoredBytes += cp.StoredBytes
		rep.Points = append(rep.Points, cp)
		if opts.Progress != nil {
			opts.Progress(cp)
		}
	}
	return rep, nil
}

// writerOf returns the repository behind a Reader.
func writerOf(r Reader) (*Repository, error) {
	switch v := r.(type) {
	case *Repository:
		return v, nil
	case readOnly:
		return v.r, nil
	}
	return nil, fmt.Errorf("copy: unsupported source %T", r)
}

func copyPoint(ctx context.Context, src, dst *Repository, id ID, have map[ID]ID, seenTree map[string]bool, workers int) (CopiedPoint, error) {
	cp := CopiedPoint{Source: id}
	body, err := src.loadSealed(ctx, storage.RecoveryPointFile, id)
	if err != nil {
		return cp, err
	}
	rp, err := decodeManifest(body)
	if err != nil {
		return cp, &damageError{fmt.Errorf("%s/%s: %w", storage.RecoveryPointFile, id, err)}
	}
	rp.ID = id
	origin := rp.Origin()
	if t, ok := have[origin]; ok {
		cp.Target, cp.Skipped = t, true
		return cp, nil
	}
	manifest, err := withTag(body, OriginTag, origin.String())
	if err != nil {
		return cp, err
	}

	w, err := dst.NewWriter(ctx)
	if err != nil {
		return cp, fmt.Errorf("target: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = w.Abort(context.WithoutCancel(ctx))
		}
	}()

	// Walk the point (the walk prune uses) and send every blob dst lacks.
	// A tree walked for an earlier point of this copy is not walked again:
	// its blobs were sent then.
	var (
		blobs  atomic.Int64
		jobs   = make(chan ID, workers*4)
		wg     sync.WaitGroup
		errMu  sync.Mutex
		werr   error
		wctx   context.Context
		cancel context.CancelFunc
	)
	wctx, cancel = context.WithCancel(ctx)
	defer cancel()
	fail := func(err error) {
		errMu.Lock()
		if werr == nil {
			werr = err
		}
		errMu.Unlock()
		cancel()
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range jobs {
				if wctx.Err() != nil {
					continue
				}
				if err := copyBlob(wctx, src, w, b); err != nil {
					fail(err)
				}
			}
		}()
	}
	seen := map[ID]bool{}
	walkErr := src.walkPointBlobs(wctx, rp, seenTree, func(b ID) {
		if seen[b] {
			return
		}
		seen[b] = true
		blobs.Add(1)
		if dst.idx.Load().has(b) {
			return
		}
		select {
		case jobs <- b:
		case <-wctx.Done():
		}
	})
	close(jobs)
	wg.Wait()
	if werr != nil {
		return cp, werr
	}
	if walkErr != nil {
		return cp, fmt.Errorf("source: %w", walkErr)
	}
	if err := ctx.Err(); err != nil {
		return cp, err
	}
	tid, err := w.commit(ctx, func() ([]byte, error) { return manifest, nil })
	if err != nil {
		return cp, fmt.Errorf("target: %w", err)
	}
	committed = true
	st := w.Stats()
	cp.Target = tid
	cp.Blobs = blobs.Load()
	cp.NewBlobs, cp.NewBytes, cp.StoredBytes = st.NewBlobs, st.NewBytes, st.StoredBytes
	return cp, nil
}

// copyBlob loads one blob from src (verified against its ID) and stores it
// in w with the same type, sealed under w's repository key.
func copyBlob(ctx context.Context, src *Repository, w *Writer, id ID) error {
	loc, _, _, ok := src.idx.Load().lookup(id)
	if !ok {
		// LoadBlob refreshes the index once and reports the blob missing.
		if _, err := src.LoadBlob(ctx, id); err != nil {
			return fmt.Errorf("source: %w", err)
		}
		if loc, _, _, ok = src.idx.Load().lookup(id); !ok {
			return fmt.Errorf("source: blob %s: %w", id, ErrBlobNotFound)
		}
	}
	data, err := src.LoadBlob(ctx, id)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if _, err := w.putBlob(ctx, loc.typ, data); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	return nil
}

// withTag sets tags[key] = value in a manifest's JSON, keeping every other
// field as it is (fields this version does not know included).
func withTag(body []byte, key, value string) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	tags := map[string]string{}
	if raw, ok := m["tags"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &tags); err != nil {
			return nil, fmt.Errorf("manifest tags: %w", err)
		}
	}
	tags[key] = value
	raw, err := json.Marshal(tags)
	if err != nil {
		return nil, err
	}
	m["tags"] = raw
	return json.Marshal(m)
}
