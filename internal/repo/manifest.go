package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/arca-backup/arca/internal/storage"
)

// ResourceTree is the tree of one resource type.
type ResourceTree struct {
	Group      string `json:"group"`
	Version    string `json:"version"`
	Resource   string `json:"resource"`
	Kind       string `json:"kind"`
	Namespaced bool   `json:"namespaced"`
	Tree       Tree   `json:"tree"`
}

// Warning is a non-fatal problem met during a backup.
type Warning struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Object  string `json:"object,omitempty"`
}

// Source says what was backed up.
type Source struct {
	Cluster           string `json:"cluster,omitempty"`
	Server            string `json:"server,omitempty"`
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
}

// Summary counts a recovery point's content.
type Summary struct {
	Items    int            `json:"items"`
	Bytes    int64          `json:"bytes"`
	Counts   map[string]int `json:"counts,omitempty"`
	Warnings []Warning      `json:"warnings,omitempty"`
}

// RecoveryPoint is one completed backup; stored as a manifest file.
type RecoveryPoint struct {
	ID        ID                `json:"-"` // filled on Commit/Load: the manifest file's name
	Name      string            `json:"name,omitempty"`
	Started   time.Time         `json:"started"`
	Finished  time.Time         `json:"finished"`
	Tags      map[string]string `json:"tags,omitempty"`
	Source    Source            `json:"source"`
	Config    json.RawMessage   `json:"config,omitempty"`
	Resources []ResourceTree    `json:"resources"`
	Volumes   json.RawMessage   `json:"volumes,omitempty"`
	// VolumeData: volumes' file trees (the vault tier, §15).
	VolumeData []VolumeData `json:"volumeData,omitempty"`
	Summary    Summary      `json:"summary"`
}

const manifestVersion = 1

type manifestJSON struct {
	Version int `json:"version"`
	*RecoveryPoint
}

func encodeManifest(rp *RecoveryPoint) ([]byte, error) {
	return json.Marshal(manifestJSON{Version: manifestVersion, RecoveryPoint: rp})
}

func decodeManifest(b []byte) (*RecoveryPoint, error) {
	m := manifestJSON{RecoveryPoint: &RecoveryPoint{}}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if m.Version != manifestVersion {
		return nil, fmt.Errorf("manifest: unsupported version %d", m.Version)
	}
	for _, rt := range m.Resources {
		if rt.Tree.Count < 0 {
			return nil, errors.New("manifest: negative tree count")
		}
	}
	for _, vd := range m.VolumeData {
		if vd.Tree.Count < 0 {
			return nil, errors.New("manifest: negative file tree count")
		}
	}
	return m.RecoveryPoint, nil
}

// LoadRecoveryPoint loads one manifest.
func (r *Repository) LoadRecoveryPoint(ctx context.Context, id ID) (*RecoveryPoint, error) {
	body, err := r.loadSealed(ctx, storage.RecoveryPointFile, id)
	if err != nil {
		return nil, err
	}
	rp, err := decodeManifest(body)
	if err != nil {
		return nil, &damageError{fmt.Errorf("%s/%s: %w", storage.RecoveryPointFile, id, err)}
	}
	rp.ID = id
	return rp, nil
}

// ListRecoveryPoints loads every manifest, oldest first (by Started, then
// ID). A damaged manifest fails the listing; Check names it.
func (r *Repository) ListRecoveryPoints(ctx context.Context) ([]*RecoveryPoint, error) {
	rps, bad, err := r.listRecoveryPoints(ctx)
	if err != nil {
		return nil, err
	}
	for id, e := range bad {
		return nil, fmt.Errorf("recovery point %s: %w", id.Short(), e)
	}
	return rps, nil
}

// listRecoveryPoints loads all manifests, returning damaged ones separately.
func (r *Repository) listRecoveryPoints(ctx context.Context) ([]*RecoveryPoint, map[ID]error, error) {
	ids, err := r.listIDs(ctx, storage.RecoveryPointFile)
	if err != nil {
		return nil, nil, err
	}
	var (
		mu  sync.Mutex
		out []*RecoveryPoint
		bad = map[ID]error{}
	)
	err = forEachID(slices.Collect(maps.Keys(ids)), 8, func(id ID) error {
		rp, err := r.LoadRecoveryPoint(ctx, id)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			out = append(out, rp)
		case isDamage(err):
			bad[id] = err
		case storage.IsNotExist(err): // forgotten meanwhile
		default:
			return err
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	sortRecoveryPoints(out)
	return out, bad, nil
}

func sortRecoveryPoints(rps []*RecoveryPoint) {
	sort.Slice(rps, func(i, j int) bool {
		if !rps[i].Started.Equal(rps[j].Started) {
			return rps[i].Started.Before(rps[j].Started)
		}
		return rps[i].ID.String() < rps[j].ID.String()
	})
}

// ErrNotFound: no recovery point matches a reference.
var ErrNotFound = errors.New("recovery point not found")

// FindRecoveryPoint resolves a full ID, a unique ID prefix, or "latest"
// (the most recently started).
func (r *Repository) FindRecoveryPoint(ctx context.Context, ref string) (*RecoveryPoint, error) {
	if ref == "latest" {
		rps, err := r.ListRecoveryPoints(ctx)
		if err != nil {
			return nil, err
		}
		if len(rps) == 0 {
			return nil, fmt.Errorf("latest: %w", ErrNotFound)
		}
		return rps[len(rps)-1], nil
	}
	ref = strings.ToLower(ref)
	if len(ref) == 64 {
		id, err := ParseID(ref)
		if err != nil {
			return nil, err
		}
		rp, err := r.LoadRecoveryPoint(ctx, id)
		if storage.IsNotExist(err) {
			return nil, fmt.Errorf("%s: %w", ref, ErrNotFound)
		}
		return rp, err
	}
	if ref == "" {
		return nil, fmt.Errorf("empty reference: %w", ErrNotFound)
	}
	ids, err := r.listIDs(ctx, storage.RecoveryPointFile)
	if err != nil {
		return nil, err
	}
	var match []ID
	for id := range ids {
		if strings.HasPrefix(id.String(), ref) {
			match = append(match, id)
		}
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("%s: %w", ref, ErrNotFound)
	case 1:
		return r.LoadRecoveryPoint(ctx, match[0])
	default:
		return nil, fmt.Errorf("prefix %q matches %d recovery points", ref, len(match))
	}
}
