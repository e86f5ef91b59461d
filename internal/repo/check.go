package repo

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"

	"github.com/arca-backup/arca/internal/storage"
)

// CheckOptions selects how deep Check goes.
type CheckOptions struct {
	// ReadData reads every pack completely and verifies every blob.
	// Without it, Check verifies structure: index files, manifests, trees,
	// that every referenced blob is indexed, and each pack's header.
	ReadData bool
	// ReadDataShare, between 0 and 1 with ReadData, reads only that share
	// of the packs whole, chosen at random on every run; the others are
	// checked by their headers. 0 (or 1) reads every pack.
	ReadDataShare float64
	// Progress, if set, is called after each pack is checked.
	Progress func(done, total int)
}

// DamagedFile is one file that is missing or fails verification.
type DamagedFile struct {
	File           string `json:"file"` // "data/<id>", "index/<id>", "points/<id>"
	Problem        string `json:"problem"`
	RecoveryPoints []ID   `json:"recoveryPoints"` // affected recovery points
}

// CheckReport is the result of Check.
type CheckReport struct {
	RecoveryPoints    int           `json:"recoveryPoints"`
	IndexFiles        int           `json:"indexFiles"`
	Packs             int           `json:"packs"`
	Blobs             int           `json:"blobs"`
	UnreferencedPacks int           `json:"unreferencedPacks"` // not damage: prune removes them
	PacksRead         int           `json:"packsRead"`         // read whole and verified blob by blob
	Damaged           []DamagedFile `json:"damaged"`
	Affected          []ID          `json:"affectedRecoveryPoints"`
}

// OK reports whether nothing is damaged.
func (c *CheckReport) OK() bool { return len(c.Damaged) == 0 }

// checker holds the state of one Check run.
type checker struct {
	mu      sync.Mutex // guards damaged, order, badPacks while packs are checked in parallel
	r       *Repository
	opts    CheckOptions
	damaged map[string]*DamagedFile
	order   []string
	// where each indexed blob is: pack IDs
	locs map[ID][]ID
	// packs with problems: pack file name → blobs known bad (nil = all)
	badPacks map[ID]map[ID]bool
	badIndex []string
	trees    map[string][]string // tree key → damaged files it depends on
}

func (c *checker) damage(file, problem string) *DamagedFile {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.damageLocked(file, problem)
}

func (c *checker) damageLocked(file, problem string) *DamagedFile {
	if d, ok := c.damaged[file]; ok {
		if problem != "" && !strings.Contains(d.Problem, problem) {
			d.Problem += "; " + problem
		}
		return d
	}
	d := &DamagedFile{File: file, Problem: problem}
	c.damaged[file] = d
	c.order = append(c.order, file)
	return d
}

// Check verifies the repository and reports damaged files and the recovery
// points they affect. It takes no lock and writes nothing. The error is for
// failures to perform the check (storage unreachable), not for damage.
func (r *Repository) Check(ctx context.Context, opts CheckOptions) (*CheckReport, error) {
	c := &checker{r: r, opts: opts, damaged: map[string]*DamagedFile{}, locs: map[ID][]ID{},
		badPacks: map[ID]map[ID]bool{}, trees: map[string][]string{}}
	rep := &CheckReport{}

	// 1. Index files.
	idxIDs, err := r.listIDs(ctx, storage.IndexFile)
	if err != nil {
		return nil, err
	}
	rep.IndexFiles = len(idxIDs)
	packEntries := map[ID][]packEntry{}
	for id := range idxIDs {
		packs, err := r.loadIndexFile(ctx, id)
		if err != nil {
			if !isDamage(err) && !storage.IsNotExist(err) {
				return nil, err
			}
			f := "index/" + id.String()
			c.damage(f, err.Error())
			c.badIndex = append(c.badIndex, f)
			continue
		}
		for _, p := range packs {
			packEntries[p.ID] = append(packEntries[p.ID], p.Entries...)
			for _, e := range p.Entries {
				c.locs[e.ID] = appendUnique(c.locs[e.ID], p.ID)
			}
		}
	}
	// The repository's own index may miss files written since Open.
	if err := r.refreshIndex(ctx); err != nil {
		return nil, err
	}
	rep.Blobs = len(c.locs)

	// 2. Packs.
	packFiles, err := r.listIDs(ctx, storage.PackFile)
	if err != nil {
		return nil, err
	}
	rep.Packs = len(packFiles)
	for id := range packFiles {
		if _, ok := packEntries[id]; !ok {
			rep.UnreferencedPacks++
		}
	}
	packIDs := make([]ID, 0, len(packEntries))
	for id := range packEntries {
		packIDs = append(packIDs, id)
	}
	sort.Slice(packIDs, func(i, j int) bool { return packIDs[i].String() < packIDs[j].String() })
	// Packs are checked by a few goroutines: reads from cloud storage are
	// latency-bound.
	var (
		wg      sync.WaitGroup
		work    = make(chan ID)
		errMu   sync.Mutex
		firstEr error
		done    int
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				var err error
				read := opts.ReadData && (opts.ReadDataShare <= 0 || opts.ReadDataShare >= 1 || rand.Float64() < opts.ReadDataShare)
				if size, ok := packFiles[id]; !ok {
					c.markPack(id, "pack is missing")
				} else {
					err = c.checkPack(ctx, id, size, packEntries[id], read)
				}
				errMu.Lock()
				if read {
					rep.PacksRead++
				}
				if err != nil && firstEr == nil {
					firstEr = err
				}
				done++
				if opts.Progress != nil {
					opts.Progress(done, len(packIDs))
				}
				errMu.Unlock()
			}
		}()
	}
	for _, id := range packIDs {
		if ctx.Err() != nil {
			break
		}
		work <- id
	}
	close(work)
	wg.Wait()
	if firstEr != nil {
		return nil, firstEr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// 3. Manifests and trees.
	rps, bad, err := r.listRecoveryPoints(ctx)
	if err != nil {
		return nil, err
	}
	rep.RecoveryPoints = len(rps) + len(bad)
	affected := map[ID]bool{}
	for id, e := range bad {
		d := c.damage("points/"+id.String(), e.Error())
		d.RecoveryPoints = append(d.RecoveryPoints, id)
		affected[id] = true
	}
	for _, rp := range rps {
		files := map[string]bool{}
		for _, ref := range rp.trees() {
			deps, err := c.checkTree(ctx, ref)
			if err != nil {
				return nil, err
			}
			for _, f := range deps {
				files[f] = true
			}
		}
		for f := range files {
			d := c.damaged[f]
			d.RecoveryPoints = append(d.RecoveryPoints, rp.ID)
			affected[rp.ID] = true
		}
	}
	for _, f := range c.order {
		rep.Damaged = append(rep.Damaged, *c.damaged[f])
	}
	sort.Slice(rep.Damaged, func(i, j int) bool { return rep.Damaged[i].File < rep.Damaged[j].File })
	for id := range affected {
		rep.Affected = append(rep.Affected, id)
	}
	sort.Slice(rep.Affected, func(i, j int) bool { return rep.Affected[i].String() < rep.Affected[j].String() })
	return rep, nil
}

func appendUnique(ids []ID, id ID) []ID {
	for _, x := range ids {
		if x == id {
			return ids
		}
	}
	return append(ids, id)
}

// checkPack verifies one pack's header against the index and, with
// readData, every blob.
func (c *checker) checkPack(ctx context.Context, id ID, size int64, indexed []packEntry, readData bool) error {
	file := "data/" + id.String()
	if !readData {
		hdr, err := c.r.readPackHeader(ctx, id, size)
		if err != nil {
			if storage.IsNotExist(err) || isDamage(err) {
				c.markPack(id, err.Error())
				return nil
			}
			return err
		}
		c.compareHeader(id, hdr, indexed)
		return nil
	}
	var data []byte
	err := c.r.be.Load(ctx, storage.Handle{Type: storage.PackFile, Name: id.String()}, 0, 0, func(rd io.Reader) error {
		var err error
		data, err = io.ReadAll(rd)
		return err
	})
	if err != nil {
		if storage.IsNotExist(err) {
			c.markPack(id, "pack is missing")
			return nil
		}
		return err
	}
	if c.r.packID(data) != id {
		c.damage(file, "content does not match its name")
	}
	hdr, herr := c.r.parsePackTail(data, int64(len(data)))
	if herr != nil {
		c.damage(file, herr.Error())
	} else {
		c.compareHeader(id, hdr, indexed)
	}
	// Verify every blob the index names (the header may be the damaged part).
	for _, e := range indexed {
		end := int64(e.Offset) + int64(e.Length)
		if end > int64(len(data)) {
			c.markBlob(id, e.ID, fmt.Sprintf("blob %s extends past the end of the pack", e.ID.Short()))
			continue
		}
		if _, err := c.r.openBlob(data[e.Offset:end], e.ID, e.RawLen); err != nil {
			c.markBlob(id, e.ID, fmt.Sprintf("blob %s: %v", e.ID.Short(), err))
		}
	}
	return nil
}

// markPack records that a whole pack is unusable.
func (c *checker) markPack(pack ID, problem string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.badPacks[pack] = nil
	c.damageLocked("data/"+pack.String(), problem)
}

func (c *checker) markBlob(pack, blob ID, problem string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.badPacks[pack]
	if ok && m == nil {
		return // whole pack already bad
	}
	if m == nil {
		m = map[ID]bool{}
		c.badPacks[pack] = m
	}
	m[blob] = true
	c.damageLocked("data/"+pack.String(), problem)
}

func (c *checker) compareHeader(id ID, hdr []packEntry, indexed []packEntry) {
	byID := make(map[ID]packEntry, len(hdr))
	for _, e := range hdr {
		byID[e.ID] = e
	}
	for _, e := range indexed {
		h, ok := byID[e.ID]
		if !ok || h.Offset != e.Offset || h.Length != e.Length || h.RawLen != e.RawLen || h.Type != e.Type {
			c.markBlob(id, e.ID, fmt.Sprintf("index entry for blob %s does not match the pack header", e.ID.Short()))
		}
	}
}

// blobProblem returns the damaged files that make blob unavailable, or nil.
func (c *checker) blobProblem(blob ID) []string {
	packs, ok := c.locs[blob]
	if !ok {
		if len(c.badIndex) > 0 {
			return c.badIndex
		}
		d := c.damage("index", "referenced blobs are in no index file")
		_ = d
		return []string{"index"}
	}
	var files []string
	for _, p := range packs {
		m, bad := c.badPacks[p]
		if !bad || (m != nil && !m[blob]) {
			return nil // one good copy suffices
		}
		files = append(files, "data/"+p.String())
	}
	return files
}

// checkTree checks a tree's blobs, walks it, and checks each entry's blobs.
// Results are cached per tree: unchanged trees recur in every recovery point.
func (c *checker) checkTree(ctx context.Context, ref treeRef) ([]string, error) {
	t := ref.tree
	var key strings.Builder
	for _, id := range t.Blobs {
		key.Write(id[:])
	}
	fmt.Fprintf(&key, "/%d/%t", t.Count, ref.file)
	if deps, ok := c.trees[key.String()]; ok {
		return deps, nil
	}
	deps := map[string]bool{}
	treeOK := true
	for _, b := range t.Blobs {
		for _, f := range c.blobProblem(b) {
			deps[f] = true
			treeOK = false
		}
	}
	if treeOK {
		err := c.r.walkRef(ctx, ref, func(blobs []ID, _ int64) {
			for _, b := range blobs {
				for _, f := range c.blobProblem(b) {
					deps[f] = true
				}
			}
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			// A tree blob failed to load or parse although its pack looked
			// fine (damage found without ReadData), or the stream is bad.
			found := false
			for _, b := range t.Blobs {
				if _, lerr := c.r.LoadBlob(ctx, b); lerr != nil {
					if l, pack, _, ok := c.r.idx.Load().lookup(b); ok {
						_ = l
						c.markBlob(pack, b, fmt.Sprintf("tree blob %s: %v", b.Short(), lerr))
						deps["data/"+pack.String()] = true
						found = true
					}
				}
			}
			if !found {
				f := "tree " + t.Blobs[0].Short()
				c.damage(f, err.Error())
				deps[f] = true
			}
		}
	}
	out := make([]string, 0, len(deps))
	for f := range deps {
		out = append(out, f)
	}
	sort.Strings(out)
	c.trees[key.String()] = out
	return out, nil
}
