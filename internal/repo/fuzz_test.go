package repo

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"testing"
	"time"

	"github.com/restic/chunker"
)

// The decoders of every on-disk structure must never panic, whatever the
// input. Seeds are real encodings. The plaintext decoders are fuzzed
// directly: random bytes never pass authentication, so fuzzing only the
// envelope would not reach them.

func seedEntries() []packEntry {
	return []packEntry{
		{Type: DataBlob, ID: Hash([]byte("a")), Offset: 0, Length: 100, RawLen: 80},
		{Type: TreeBlob, ID: Hash([]byte("b")), Offset: 100, Length: 41, RawLen: 0},
	}
}

func FuzzPackHeader(f *testing.F) {
	f.Add(encodePackHeader(nil, seedEntries()), int64(141))
	f.Add([]byte{1}, int64(0))
	f.Fuzz(func(t *testing.T, body []byte, dataEnd int64) {
		es, err := decodePackHeader(body, dataEnd)
		if err == nil {
			if got := encodePackHeader(nil, es); !bytes.Equal(got, body) {
				t.Fatalf("re-encoding differs")
			}
		}
	})
}

func FuzzPackTail(f *testing.F) {
	c, _ := newCrypter(make([]byte, 32), true)
	r := &Repository{crypt: c}
	pack := make([]byte, 141)
	pack = c.seal(pack, encodePackHeader(nil, seedEntries()), flagRaw, kindPackHeader)
	pack = binary.LittleEndian.AppendUint32(pack, uint32(len(pack)-141))
	f.Add(pack)
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, tail []byte) {
		_, _ = r.parsePackTail(tail, int64(len(tail)))
	})
}

func FuzzIndex(f *testing.F) {
	f.Add(encodeIndex([]indexPack{{ID: Hash([]byte("p")), Entries: seedEntries()}}))
	f.Add(encodeIndex(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		packs, err := decodeIndex(b)
		if err == nil {
			if got := encodeIndex(packs); !bytes.Equal(got, b) {
				// Non-minimal varints decode but re-encode shorter; only
				// check that decoding the re-encoding gives the same.
				again, err := decodeIndex(got)
				if err != nil || len(again) != len(packs) {
					t.Fatalf("re-encoding does not decode: %v", err)
				}
			}
		}
	})
}

func FuzzKeyFile(f *testing.F) {
	kb, err := newKeyFile(make([]byte, 32), "pw", KDFParams{N: 2, R: 1, P: 1}, time.Unix(0, 0))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(kb)
	f.Add([]byte(`{"version":1,"kdf":"scrypt","n":4194304,"r":1024,"p":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		kf, err := decodeKeyFile(b)
		if err != nil {
			return
		}
		// Keep the fuzzer fast: only unwrap with cheap parameters.
		if kf.N <= 1<<8 && kf.R*kf.P <= 8 {
			_, _ = kf.unwrap("pw")
		}
	})
}

func FuzzConfig(f *testing.F) {
	pol, _ := chunker.RandomPolynomial()
	cb, _ := json.Marshal(Config{Version: 1, ID: Hash([]byte("x")), ChunkerPolynomial: pol})
	f.Add(cb)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeConfig(b)
	})
}

func FuzzManifest(f *testing.F) {
	rp := &RecoveryPoint{Name: "n", Started: time.Unix(1, 0).UTC(), Tags: map[string]string{"a": "b"},
		Resources: []ResourceTree{{Group: "apps", Version: "v1", Resource: "deployments", Kind: "Deployment", Namespaced: true, Tree: Tree{Blobs: []ID{Hash(nil)}, Count: 3}}},
		Summary:   Summary{Items: 3, Warnings: []Warning{{Code: "W1", Message: "m"}}}}
	mb, _ := encodeManifest(rp)
	f.Add(mb)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeManifest(b)
	})
}

func FuzzLock(f *testing.F) {
	lb, _ := json.Marshal(lockJSON{Version: 1, Exclusive: true, Time: time.Unix(5, 0).UTC(), Hostname: "h", PID: 1})
	f.Add(lb)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeLock(b)
	})
}

func FuzzTreeStream(f *testing.F) {
	s := []byte{treeVersion}
	s = appendTreeEntry(s, &TreeEntry{Group: "apps", Version: "v1", Resource: "deployments", Kind: "Deployment", Namespace: "ns", Name: "web", Blobs: []ID{Hash([]byte("x"))}, Size: 1234})
	s = appendTreeEntry(s, &TreeEntry{Version: "v1", Resource: "namespaces", Kind: "Namespace", Name: "ns"})
	f.Add(s)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var again []byte
		n, err := decodeTreeStream(bytes.NewReader(b), func(e TreeEntry) error {
			if len(again) == 0 {
				again = append(again, treeVersion)
			}
			again = appendTreeEntry(again, &e)
			return nil
		})
		if err == nil && n > 0 {
			// A valid stream decodes again to the same entries.
			m, err := decodeTreeStream(bytes.NewReader(again), func(TreeEntry) error { return nil })
			if err != nil || m != n {
				t.Fatalf("re-encoded stream: %d vs %d, %v", m, n, err)
			}
		}
	})
}

func FuzzEnvelope(f *testing.F) {
	c, _ := newCrypter(make([]byte, 32), true)
	c.s2 = true
	f.Add(c.seal(nil, bytes.Repeat([]byte("abc"), 100), flagZstd, kindBlob))
	f.Add(c.seal(nil, bytes.Repeat([]byte("abc"), 100), flagS2, kindBlob))
	f.Add(c.seal(nil, []byte("x"), flagRaw, kindManifest))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = c.open(nil, b, 0, kindBlob)
		_, _ = c.open(nil, b, 0, kindManifest)
	})
}

func FuzzBody(f *testing.F) {
	c, _ := newCrypter(make([]byte, 32), true)
	c.s2 = true
	for _, comp := range []byte{flagZstd, flagS2, flagRaw} {
		sealed := c.seal(nil, bytes.Repeat([]byte("abcdef"), 100), comp, kindBlob)
		pt, err := c.aead.Open(nil, sealed[:nonceSize], sealed[nonceSize:], c.ad(kindBlob))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(pt)
	}
	f.Fuzz(func(t *testing.T, pt []byte) {
		_, _ = decodeBody(nil, pt, 0, true)
		if len(pt) > 0 && pt[0] == flagS2 {
			if _, err := decodeBody(nil, pt, 0, false); err == nil {
				t.Fatal("flag 2 (S2) decoded in a repository before format v3")
			}
		}
	})
}

func TestKDFLimits(t *testing.T) {
	// {N: 1 << 20, R: 8, P: 1} (1 GiB) was accepted up to format v1's
	// limits; the caps are now 128 MiB of memory (the extension runs in
	// 512 MiB).
	for _, p := range []KDFParams{{N: 1 << 22, R: 1024, P: 1}, {N: 1 << 22, R: 8, P: 1}, {N: 1 << 20, R: 8, P: 8}, {N: 3, R: 1, P: 1}, {N: 0, R: 1, P: 1},
		{N: 1 << 20, R: 8, P: 1}, {N: 1 << 18, R: 8, P: 1}, {N: 1 << 17, R: 8, P: 64}, {N: 2, R: 1 << 30, P: 1 << 30}} {
		if err := p.validate(); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
	for _, p := range []KDFParams{DefaultKDF, {N: 1 << 17, R: 8, P: 1}, {N: 1 << 17, R: 8, P: 4}, {N: 2, R: 1, P: 1}} {
		if err := p.validate(); err != nil {
			t.Errorf("%+v rejected: %v", p, err)
		}
	}
}
