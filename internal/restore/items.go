package restore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"iter"
	"sort"

	"github.com/arca-backup/arca/internal/kube"
)

// Items are the per-object results of a restore, one per object of the
// recovery point. They are kept compactly, because a restore of 100,000
// objects has 100,000 of them: a record of a few bytes plus the object's
// name, with the resource types, namespaces and common reasons stored once
// (about 20 bytes per object where an Item struct takes over 150). Iterate
// with All; the JSON form is the list of Item.
//
// An Items is not safe for concurrent appends; the restore serialises them.
type Items struct {
	types   []itemType
	typeIdx map[itemType]uint32
	strs    []string // namespaces and repeated reasons
	strIdx  map[string]uint32
	chunks  [][]byte
	n       int
	scratch []byte
}

type itemType struct {
	group, version, resource, kind string
}

const (
	// itemChunk is the size of the byte chunks records are appended to: a
	// chunk is never copied to grow.
	itemChunk = 64 << 10
	// maxInternedReasons bounds the table of interned strings. Reasons of
	// skipped items are made by the restore and repeat; errors (reasons of
	// failed items) name their object and are stored in their record.
	maxInternedReasons = 1024
)

// Len is the number of items.
func (l *Items) Len() int { return l.n }

func (l *Items) intern(s string) uint32 {
	if i, ok := l.strIdx[s]; ok {
		return i
	}
	if l.strIdx == nil {
		l.strIdx = map[string]uint32{}
	}
	l.strs = append(l.strs, s)
	i := uint32(len(l.strs) - 1)
	l.strIdx[s] = i
	return i
}

// Append adds an item.
func (l *Items) Append(it Item) {
	t := itemType{it.Group, it.Version, it.Resource, it.Kind}
	ti, ok := l.typeIdx[t]
	if !ok {
		if l.typeIdx == nil {
			l.typeIdx = map[itemType]uint32{}
		}
		l.types = append(l.types, t)
		ti = uint32(len(l.types) - 1)
		l.typeIdx[t] = ti
	}
	// record := uvarint(type) uvarint(tier) str(action) opt(namespace)
	//           opt(sourceNamespace) str(name) reason
	// opt := 0 (empty) | 1+index of an interned string
	// reason := 0 (empty) | 1 str(reason) | 2+index of an interned reason
	rec := l.scratch[:0]
	rec = binary.AppendUvarint(rec, uint64(ti))
	rec = binary.AppendUvarint(rec, uint64(it.Tier))
	rec = binary.AppendUvarint(rec, uint64(l.intern(string(it.Action))))
	for _, s := range []string{it.Namespace, it.SourceNamespace} {
		if s == "" {
			rec = append(rec, 0)
		} else {
			rec = binary.AppendUvarint(rec, 1+uint64(l.intern(s)))
		}
	}
	rec = appendItemString(rec, it.Name)
	switch i, ok := l.strIdx[it.Reason]; {
	case it.Reason == "":
		rec = append(rec, 0)
	case ok:
		rec = binary.AppendUvarint(rec, 2+uint64(i))
	case len(l.strs) < maxInternedReasons && it.Action != Failed:
		rec = binary.AppendUvarint(rec, 2+uint64(l.intern(it.Reason)))
	default:
		rec = append(rec, 1)
		rec = appendItemString(rec, it.Reason)
	}
	l.scratch = rec
	l.appendRecord(rec)
	l.n++
}

// appendRecord copies a record into the last chunk, or a new one when it
// does not fit: records never span chunks, and chunks never move.
func (l *Items) appendRecord(rec []byte) {
	if k := len(l.chunks); k == 0 || cap(l.chunks[k-1])-len(l.chunks[k-1]) < len(rec) {
		l.chunks = append(l.chunks, make([]byte, 0, max(itemChunk, len(rec))))
	}
	k := len(l.chunks) - 1
	l.chunks[k] = append(l.chunks[k], rec...)
}

func appendItemString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// rawItem is a decoded record whose name and inline reason still point into
// its chunk.
type rawItem struct {
	typ, tier, action, ns, srcNS uint64
	name                         []byte
	reasonTag                    uint64
	reason                       []byte
	size                         int
}

func decodeItem(b []byte) rawItem {
	var r rawItem
	off := 0
	uv := func() uint64 {
		v, n := binary.Uvarint(b[off:])
		off += n
		return v
	}
	str := func() []byte {
		n := int(uv())
		s := b[off : off+n]
		off += n
		return s
	}
	r.typ, r.tier, r.action, r.ns, r.srcNS = uv(), uv(), uv(), uv(), uv()
	r.name = str()
	r.reasonTag = uv()
	if r.reasonTag == 1 {
		r.reason = str()
	}
	r.size = off
	return r
}

func (l *Items) item(r rawItem) Item {
	t := l.types[r.typ]
	it := Item{Group: t.group, Version: t.version, Resource: t.resource, Kind: t.kind, Tier: int(r.tier),
		Action: Action(l.strs[r.action]), Name: string(r.name)}
	if r.ns > 0 {
		it.Namespace = l.strs[r.ns-1]
	}
	if r.srcNS > 0 {
		it.SourceNamespace = l.strs[r.srcNS-1]
	}
	switch {
	case r.reasonTag == 1:
		it.Reason = string(r.reason)
	case r.reasonTag >= 2:
		it.Reason = l.strs[r.reasonTag-2]
	}
	return it
}

// records calls fn with the position and decoded form of every record.
func (l *Items) records(fn func(chunk, off int, r rawItem) bool) {
	for c, b := range l.chunks {
		for off := 0; off < len(b); {
			r := decodeItem(b[off:])
			if !fn(c, off, r) {
				return
			}
			off += r.size
		}
	}
}

// All yields the items in order.
func (l *Items) All() iter.Seq[Item] {
	return func(yield func(Item) bool) {
		l.records(func(_, _ int, r rawItem) bool { return yield(l.item(r)) })
	}
}

// sort orders the items by tier, resource type (resource.group), target
// namespace and name, as a person reads them.
func (l *Items) sort() {
	typeKey := make([]string, len(l.types))
	for i, t := range l.types {
		typeKey[i] = kube.GroupResource(t.group, t.resource)
	}
	pos := make([]uint64, 0, l.n)
	l.records(func(c, off int, _ rawItem) bool {
		pos = append(pos, uint64(c)<<32|uint64(off))
		return true
	})
	at := func(p uint64) rawItem { return decodeItem(l.chunks[p>>32][p&(1<<32-1):]) }
	nsOf := func(r rawItem) string {
		if r.ns == 0 {
			return ""
		}
		return l.strs[r.ns-1]
	}
	sort.SliceStable(pos, func(i, j int) bool {
		a, b := at(pos[i]), at(pos[j])
		if a.tier != b.tier {
			return a.tier < b.tier
		}
		if ta, tb := typeKey[a.typ], typeKey[b.typ]; ta != tb {
			return ta < tb
		}
		if na, nb := nsOf(a), nsOf(b); na != nb {
			return na < nb
		}
		return bytes.Compare(a.name, b.name) < 0
	})
	old := l.chunks
	l.chunks = nil
	for _, p := range pos {
		b := old[p>>32][p&(1<<32-1):]
		l.appendRecord(b[:decodeItem(b).size])
	}
}

// MarshalJSON encodes the items as a JSON list of Item.
func (l Items) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('[')
	enc := json.NewEncoder(&buf)
	first := true
	var err error
	l.records(func(_, _ int, r rawItem) bool {
		if !first {
			buf.WriteByte(',')
		}
		first = false
		err = enc.Encode(l.item(r))
		if err == nil {
			buf.Truncate(buf.Len() - 1) // Encode's newline
		}
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	buf.WriteByte(']')
	return buf.Bytes(), nil
}

// UnmarshalJSON decodes a JSON list of Item.
func (l *Items) UnmarshalJSON(data []byte) error {
	var its []Item
	if err := json.Unmarshal(data, &its); err != nil {
		return err
	}
	*l = Items{}
	for _, it := range its {
		l.Append(it)
	}
	return nil
}
