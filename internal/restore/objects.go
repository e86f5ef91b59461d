package restore

import (
	"encoding/binary"
	"hash/maphash"
	"slices"

	"k8s.io/apimachinery/pkg/types"
)

// What a restore remembers of each object (is it restored, its UID in the
// target, was it created by this run) is kept per object of the recovery
// point, so its size decides how memory grows with the object count. An
// object is therefore named by a 128-bit hash of its key instead of its four
// strings, and a UID is kept as its 16 bytes.
//
// The hash is keyed with random seeds chosen per restore, so names cannot
// be crafted to collide; two keys out of a million collide with probability
// about 2^-89.

// objID is the hash of an objKey.
type objID [2]uint64

type objIDs struct{ seeds [2]maphash.Seed }

func newObjIDs() objIDs {
	return objIDs{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}}
}

func (o objIDs) of(k objKey) objID {
	var id objID
	var n [binary.MaxVarintLen64]byte
	for i, seed := range o.seeds {
		var h maphash.Hash
		h.SetSeed(seed)
		// Length-prefixed: no two keys write the same bytes.
		for _, s := range [4]string{k.group, k.kind, k.namespace, k.name} {
			h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
			h.WriteString(s)
		}
		id[i] = h.Sum64()
	}
	return id
}

// ownerSet is a set of objIDs built once (add, then seal) and then only
// read, concurrently: a sorted slice, 16 bytes per object.
type ownerSet struct{ ids []objID }

func (s *ownerSet) add(id objID) { s.ids = append(s.ids, id) }

func cmpObjID(a, b objID) int {
	switch {
	case a[0] != b[0]:
		if a[0] < b[0] {
			return -1
		}
		return 1
	case a[1] != b[1]:
		if a[1] < b[1] {
			return -1
		}
		return 1
	}
	return 0
}

func (s *ownerSet) seal() {
	slices.SortFunc(s.ids, cmpObjID)
	s.ids = slices.Clip(slices.Compact(s.ids))
}

func (s *ownerSet) has(id objID) bool {
	_, ok := s.index(id)
	return ok
}

func (s *ownerSet) index(id objID) (int, bool) {
	return slices.BinarySearchFunc(s.ids, id, cmpObjID)
}

// objStates holds, per object restored or found existing, its UID in the
// target cluster and whether this run created it (or, in a dry run, would
// have): 18 bytes per object of the owner set, in a slice parallel to it.
// Not safe for concurrent use.
type objStates struct {
	owners *ownerSet
	st     []objState
	// extra holds objects outside the owner set: the target namespaces a
	// restore creates for namespace mappings.
	extra map[objID]objState
	// odd holds UIDs that are not lowercase RFC 4122 text (the API server
	// makes only those, but a UID is just a string).
	odd map[objID]types.UID
}

type objState struct {
	uid     [16]byte
	hasUID  bool
	created bool
}

// newObjStates keeps states for the objects of owners, which must be sealed.
func newObjStates(owners *ownerSet) objStates {
	return objStates{owners: owners, st: make([]objState, len(owners.ids)), extra: map[objID]objState{}, odd: map[objID]types.UID{}}
}

func (o *objStates) get(id objID) objState {
	if i, ok := o.owners.index(id); ok {
		return o.st[i]
	}
	return o.extra[id]
}

func (o *objStates) put(id objID, st objState) {
	if i, ok := o.owners.index(id); ok {
		o.st[i] = st
		return
	}
	o.extra[id] = st
}

func (o *objStates) set(id objID, uid types.UID, created bool) {
	st := o.get(id)
	if uid != "" {
		if b, ok := parseUID(string(uid)); ok {
			st.uid, st.hasUID = b, true
			delete(o.odd, id)
		} else {
			st.hasUID = false
			o.odd[id] = uid
		}
	}
	st.created = st.created || created
	o.put(id, st)
}

func (o *objStates) uid(id objID) (types.UID, bool) {
	if st := o.get(id); st.hasUID {
		return types.UID(formatUID(st.uid)), true
	}
	uid, ok := o.odd[id]
	return uid, ok
}

func (o *objStates) planned(id objID) bool { return o.get(id).created }

const hexDigits = "0123456789abcdef"

// parseUID parses the canonical UUID text xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx
// in lowercase hex; ok is false for any other string.
func parseUID(s string) (b [16]byte, ok bool) {
	if len(s) != 36 {
		return b, false
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return b, false
			}
			i++
			continue
		}
		hi, lo := unhex(s[i]), unhex(s[i+1])
		if hi < 0 || lo < 0 {
			return b, false
		}
		b[j] = byte(hi<<4 | lo)
		j++
		i += 2
	}
	return b, true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

func formatUID(b [16]byte) string {
	out := make([]byte, 0, 36)
	for i, x := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hexDigits[x>>4], hexDigits[x&15])
	}
	return string(out)
}
