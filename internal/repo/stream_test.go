package repo

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"sync"
	"testing"
)

func TestPutStreamRoundTrip(t *testing.T) {
	r, _, _ := newTestRepo(t)
	ctx := context.Background()
	rnd := rand.New(rand.NewSource(1))
	data := make([]byte, 20<<20)
	rnd.Read(data[:10<<20])
	copy(data[10<<20:], data[:10<<20]) // a duplicated region
	w, err := r.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids, n, err := w.PutStream(ctx, bytes.NewReader(data))
	if err != nil || n != int64(len(data)) || len(ids) < 2 {
		t.Fatalf("PutStream: %d ids, %d bytes, %v", len(ids), n, err)
	}
	if _, err := w.Commit(ctx, &RecoveryPoint{Name: "s"}); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, id := range ids {
		b, err := r.LoadBlob(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("stream content differs")
	}
	if st := w.Stats(); st.NewBytes >= int64(len(data)) {
		t.Fatalf("duplicated region not deduplicated: %+v", st)
	}
}

func TestPutBlobConcurrent(t *testing.T) {
	r, be, clk := newTestRepo(t)
	ctx := context.Background()
	w, err := r.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	ids := make([][]ID, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 400; i++ {
				// Every goroutine writes the same 400 objects: each stored once.
				id, err := w.PutBlob(ctx, object(i, 1500))
				if err != nil {
					t.Error(err)
					return
				}
				ids[g] = append(ids[g], id)
			}
		}()
	}
	wg.Wait()
	if _, err := w.Commit(ctx, &RecoveryPoint{}); err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	if st.NewBlobs != 400 || st.DuplicateBlobs != 7*400 {
		t.Fatalf("stats %+v", st)
	}
	r2 := reopen(t, be, clk)
	for i, id := range ids[0] {
		b, err := r2.LoadBlob(ctx, id)
		if err != nil || !bytes.Equal(b, object(i, 1500)) {
			t.Fatalf("blob %d: %v", i, err)
		}
	}
}

func TestTreeChunkingStable(t *testing.T) {
	// Changing one object in a large tree rewrites only a few tree blobs.
	r, _, _ := newTestRepo(t)
	ctx := context.Background()
	build := func(changed int) Tree {
		w, err := r.NewWriter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tw := w.NewTree()
		for i := 0; i < 20000; i++ {
			sz := int64(1000)
			if i == changed {
				sz = 999
			}
			if err := tw.Add(ctx, TreeEntry{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespace: "default", Name: fmt.Sprintf("cm-%06d", i), Blobs: []ID{Hash([]byte(fmt.Sprint(i)))}, Size: sz}); err != nil {
				t.Fatal(err)
			}
		}
		tree, err := tw.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Commit(ctx, &RecoveryPoint{}); err != nil {
			t.Fatal(err)
		}
		return tree
	}
	a, b := build(-1), build(10000)
	if len(a.Blobs) < 10 {
		t.Fatalf("tree of 20000 entries has only %d blobs", len(a.Blobs))
	}
	same := map[ID]bool{}
	for _, id := range a.Blobs {
		same[id] = true
	}
	diff := 0
	for _, id := range b.Blobs {
		if !same[id] {
			diff++
		}
	}
	if diff > 2 {
		t.Fatalf("one changed entry changed %d of %d tree blobs", diff, len(b.Blobs))
	}
	n := 0
	if err := r.WalkTree(ctx, b, func(e TreeEntry) error {
		if e.Name != fmt.Sprintf("cm-%06d", n) {
			return fmt.Errorf("entry %d is %q", n, e.Name)
		}
		n++
		return nil
	}); err != nil || n != 20000 {
		t.Fatalf("walk: %d %v", n, err)
	}
}

func TestLoadBlobConcurrent(t *testing.T) {
	r, be, clk := newTestRepo(t)
	rp, content, _ := writeBackup(t, r, backupSpec{types: 2, objects: 400}, "a")
	r2 := reopen(t, be, clk)
	ctx := context.Background()
	var entries []TreeEntry
	for _, rt := range rp.Resources {
		if err := r2.WalkTree(ctx, rt.Tree, func(e TreeEntry) error { entries = append(entries, e); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < len(entries); i += 3 {
				got, err := r2.LoadBlob(ctx, entries[i].Blobs[0])
				if err != nil || !bytes.Equal(got, content[entries[i].Name]) {
					t.Errorf("%s: %v", entries[i].Name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
