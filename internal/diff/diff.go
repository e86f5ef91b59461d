// Package diff compares two sets of Kubernetes objects — two recovery
// points, or a recovery point and the live cluster — and reports added,
// removed and changed objects with a readable field-level diff.
package diff

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"

	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/internal/backup"
	"github.com/arca-backup/arca/internal/kube"
	"github.com/arca-backup/arca/internal/repo"
)

// Key identifies an object across both sides (the version is not part of
// it: the same object may be read in another version).
type Key struct {
	Group, Resource, Namespace, Name string
}

func (k Key) String() string {
	s := kube.GroupResource(k.Group, k.Resource) + " "
	if k.Namespace != "" {
		s += k.Namespace + "/"
	}
	return s + k.Name
}

// Side is one set of objects.
type Side interface {
	// Digests returns a content digest per object.
	Digests(ctx context.Context) (map[Key][32]byte, error)
	// Load returns one object's JSON.
	Load(ctx context.Context, k Key) ([]byte, error)
}

// Reader is what a recovery point side reads.
type Reader interface {
	LoadBlob(ctx context.Context, id repo.ID) ([]byte, error)
	WalkTree(ctx context.Context, t repo.Tree, fn func(repo.TreeEntry) error) error
}

// RecoveryPoint is a recovery point as a Side.
func RecoveryPoint(rp *repo.RecoveryPoint, rd Reader) Side {
	return &rpSide{rp: rp, rd: rd}
}

type rpSide struct {
	rp      *repo.RecoveryPoint
	rd      Reader
	entries map[Key][]repo.ID
}

func (s *rpSide) Digests(ctx context.Context) (map[Key][32]byte, error) {
	s.entries = map[Key][]repo.ID{}
	out := map[Key][32]byte{}
	for _, t := range s.rp.Resources {
		err := s.rd.WalkTree(ctx, t.Tree, func(e repo.TreeEntry) error {
			k := Key{t.Group, t.Resource, e.Namespace, e.Name}
			s.entries[k] = e.Blobs
			if len(e.Blobs) == 1 {
				out[k] = e.Blobs[0] // blob IDs are SHA-256 of the content
			} else {
				h := sha256.New()
				for _, id := range e.Blobs {
					h.Write(id[:])
				}
				var d [32]byte
				copy(d[:], h.Sum(nil))
				out[k] = d
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *rpSide) Load(ctx context.Context, k Key) ([]byte, error) {
	var data []byte
	for _, id := range s.entries[k] {
		b, err := s.rd.LoadBlob(ctx, id)
		if err != nil {
			return nil, err
		}
		data = append(data, b...)
	}
	return data, nil
}

// Cluster is the live cluster as a Side, selected by the backup
// configuration (use the recovery point's own configuration to compare
// like with like). Objects are serialised exactly as a backup would.
func Cluster(cfg *rest.Config, opts backup.Options) Side {
	return &clusterSide{cfg: cfg, opts: opts}
}

type clusterSide struct {
	cfg  *rest.Config
	opts backup.Options
	mu   sync.Mutex
	data map[Key][]byte
}

func (s *clusterSide) Digests(ctx context.Context) (map[Key][32]byte, error) {
	p, err := backup.Prepare(ctx, s.cfg, s.opts)
	if err != nil {
		return nil, err
	}
	out := map[Key][32]byte{}
	s.data = map[Key][]byte{}
	_, err = p.Scan(ctx, func(res kube.Resource, obj *kube.Object, data []byte) error {
		k := Key{res.Group, res.Resource, obj.GetNamespace(), obj.GetName()}
		sum := sha256.Sum256(data)
		s.mu.Lock()
		out[k] = sum
		s.data[k] = data // kept for Load; a diff against the live cluster holds the selection in memory
		s.mu.Unlock()
		return nil
	})
	return out, err
}

func (s *clusterSide) Load(_ context.Context, k Key) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.data[k]
	if !ok {
		return nil, fmt.Errorf("%s: not in the cluster", k)
	}
	return d, nil
}

// ChangeType says how an object differs.
type ChangeType string

const (
	Added   ChangeType = "Added"
	Removed ChangeType = "Removed"
	Changed ChangeType = "Changed"
)

// Change is one object that differs.
type Change struct {
	Type   ChangeType    `json:"type"`
	Key    Key           `json:"key"`
	Fields []FieldChange `json:"fields,omitempty"`
}

// FieldChange is one field that differs. Old is absent for an added field,
// New for a removed one.
type FieldChange struct {
	Path string          `json:"path"`
	Old  json.RawMessage `json:"old,omitempty"`
	New  json.RawMessage `json:"new,omitempty"`
}

// Options tune the comparison.
type Options struct {
	// IncludeStatus compares status too; by default it is ignored (it
	// changes without anyone changing the object).
	IncludeStatus bool
}

// Report is the result of a comparison.
type Report struct {
	Changes                  []Change `json:"changes"`
	Added, Removed, Modified int      `json:"-"`
	Unchanged                int      `json:"unchanged"`
}

// Compare compares old with new.
func Compare(ctx context.Context, oldSide, newSide Side, opts Options) (*Report, error) {
	a, err := oldSide.Digests(ctx)
	if err != nil {
		return nil, fmt.Errorf("read first side: %w", err)
	}
	b, err := newSide.Digests(ctx)
	if err != nil {
		return nil, fmt.Errorf("read second side: %w", err)
	}
	rep := &Report{}
	for k, da := range a {
		db, ok := b[k]
		if !ok {
			rep.Changes = append(rep.Changes, Change{Type: Removed, Key: k})
			continue
		}
		if da == db {
			rep.Unchanged++
			continue
		}
		x, err := oldSide.Load(ctx, k)
		if err != nil {
			return nil, err
		}
		y, err := newSide.Load(ctx, k)
		if err != nil {
			return nil, err
		}
		fields, err := Fields(x, y, opts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		if len(fields) == 0 {
			rep.Unchanged++
			continue
		}
		rep.Changes = append(rep.Changes, Change{Type: Changed, Key: k, Fields: fields})
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			rep.Changes = append(rep.Changes, Change{Type: Added, Key: k})
		}
	}
	sort.Slice(rep.Changes, func(i, j int) bool {
		x, y := rep.Changes[i].Key, rep.Changes[j].Key
		if x.Group != y.Group {
			return x.Group < y.Group
		}
		if x.Resource != y.Resource {
			return x.Resource < y.Resource
		}
		if x.Namespace != y.Namespace {
			return x.Namespace < y.Namespace
		}
		return x.Name < y.Name
	})
	for _, c := range rep.Changes {
		switch c.Type {
		case Added:
			rep.Added++
		case Removed:
			rep.Removed++
		case Changed:
			rep.Modified++
		}
	}
	return rep, nil
}

// ignored fields change on every write or are never meaningful to compare.
func ignored(path string, opts Options) bool {
	switch path {
	case "metadata.resourceVersion", "metadata.managedFields", "metadata.generation":
		return true
	}
	return !opts.IncludeStatus && (path == "status" || strings.HasPrefix(path, "status.") || strings.HasPrefix(path, "status["))
}

// Fields returns the differing fields of two JSON objects, in path order.
func Fields(a, b []byte, opts Options) ([]FieldChange, error) {
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &y); err != nil {
		return nil, err
	}
	var out []FieldChange
	walk("", x, y, opts, &out)
	return out, nil
}

func raw(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	if strings.ContainsAny(key, ".[]") {
		return path + "[" + strconv.Quote(key) + "]"
	}
	return path + "." + key
}

func walk(path string, x, y any, opts Options, out *[]FieldChange) {
	if path != "" && ignored(path, opts) {
		return
	}
	switch xv := x.(type) {
	case map[string]any:
		yv, ok := y.(map[string]any)
		if !ok {
			break
		}
		keys := map[string]bool{}
		for k := range xv {
			keys[k] = true
		}
		for k := range yv {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			p := join(path, k)
			a, inA := xv[k]
			b, inB := yv[k]
			switch {
			case inA && !inB:
				if !ignored(p, opts) {
					*out = append(*out, FieldChange{Path: p, Old: raw(a)})
				}
			case !inA && inB:
				if !ignored(p, opts) {
					*out = append(*out, FieldChange{Path: p, New: raw(b)})
				}
			default:
				walk(p, a, b, opts, out)
			}
		}
		return
	case []any:
		yv, ok := y.([]any)
		if !ok {
			break
		}
		n := len(xv)
		if len(yv) > n {
			n = len(yv)
		}
		for i := 0; i < n; i++ {
			p := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case i >= len(yv):
				*out = append(*out, FieldChange{Path: p, Old: raw(xv[i])})
			case i >= len(xv):
				*out = append(*out, FieldChange{Path: p, New: raw(yv[i])})
			default:
				walk(p, xv[i], yv[i], opts, out)
			}
		}
		return
	}
	if !bytes.Equal(raw(x), raw(y)) {
		*out = append(*out, FieldChange{Path: path, Old: raw(x), New: raw(y)})
	}
}

// Print writes the report for people.
func Print(w io.Writer, rep *Report) {
	for _, c := range rep.Changes {
		switch c.Type {
		case Added:
			fmt.Fprintf(w, "+ %s\n", c.Key)
		case Removed:
			fmt.Fprintf(w, "- %s\n", c.Key)
		case Changed:
			fmt.Fprintf(w, "~ %s\n", c.Key)
			for _, f := range c.Fields {
				switch {
				case f.Old == nil:
					fmt.Fprintf(w, "    + %s: %s\n", f.Path, short(f.New))
				case f.New == nil:
					fmt.Fprintf(w, "    - %s: %s\n", f.Path, short(f.Old))
				default:
					fmt.Fprintf(w, "    ~ %s: %s → %s\n", f.Path, short(f.Old), short(f.New))
				}
			}
		}
	}
	fmt.Fprintf(w, "%d added, %d removed, %d changed, %d unchanged\n", rep.Added, rep.Removed, rep.Modified, rep.Unchanged)
}

func short(m json.RawMessage) string {
	s := string(m)
	if len(s) > 120 {
		return s[:117] + "..."
	}
	return s
}
