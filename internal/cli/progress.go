package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/arca-backup/arca/internal/units"
	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Progress is one observation of a running job. Zero counts are unknown
// (the vault does not report items and bytes for every job).
type Progress struct {
	Phase                 string
	ItemsDone, ItemsTotal int64
	BytesDone, BytesTotal int64
	Elapsed               time.Duration
	// BytesPerSecond and ETA, when the job reports them (vault-tier
	// movers and restore pods), are shown instead of ones computed from
	// Elapsed (which counts from when the watch began).
	BytesPerSecond int64
	ETA            time.Duration
	// Warnings are all warnings so far; renderers print each once.
	Warnings []store.Issue
}

// ProgressRenderer shows a job's progress as it changes.
type ProgressRenderer interface {
	Update(p Progress)
	// Done shows the final state and ends the display.
	Done(p Progress)
}

// NewProgressRenderer picks the live one-line display for a terminal and
// plain lines otherwise.
func NewProgressRenderer(w io.Writer, label string) ProgressRenderer {
	if isTerminal(w) {
		return &termRenderer{w: w, label: label}
	}
	return &plainRenderer{w: w, label: label, every: 10 * time.Second}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// counts formats what is known of items, bytes, rate and ETA.
func (p Progress) counts() string {
	var parts []string
	switch {
	case p.ItemsTotal > 0:
		parts = append(parts, fmt.Sprintf("items %d/%d", p.ItemsDone, p.ItemsTotal))
	case p.ItemsDone > 0:
		parts = append(parts, fmt.Sprintf("items %d", p.ItemsDone))
	}
	switch {
	case p.BytesTotal > 0:
		parts = append(parts, fmt.Sprintf("%s/%s", units.Bytes(p.BytesDone), units.Bytes(p.BytesTotal)))
	case p.BytesDone > 0:
		parts = append(parts, units.Bytes(p.BytesDone))
	}
	secs := p.Elapsed.Seconds()
	if p.BytesPerSecond > 0 {
		parts = append(parts, units.Bytes(p.BytesPerSecond)+"/s")
		if p.BytesTotal > p.BytesDone {
			parts = append(parts, "ETA "+fmtDuration(p.ETA))
		}
	} else if p.BytesDone > 0 && secs > 0 {
		rate := float64(p.BytesDone) / secs
		parts = append(parts, units.Bytes(int64(rate))+"/s")
		if p.BytesTotal > p.BytesDone && rate > 0 {
			parts = append(parts, "ETA "+fmtDuration(time.Duration(float64(p.BytesTotal-p.BytesDone)/rate*float64(time.Second))))
		}
	} else if p.ItemsTotal > p.ItemsDone && p.ItemsDone > 0 && secs > 0 {
		rate := float64(p.ItemsDone) / secs
		parts = append(parts, "ETA "+fmtDuration(time.Duration(float64(p.ItemsTotal-p.ItemsDone)/rate*float64(time.Second))))
	}
	parts = append(parts, "elapsed "+fmtDuration(p.Elapsed))
	return strings.Join(parts, "  ")
}

// totals formats items and bytes only (no rate: a finished job's record).
func (p Progress) totals() string {
	s := fmt.Sprintf("items %d", p.ItemsDone)
	if p.ItemsTotal > 0 {
		s += fmt.Sprintf("/%d", p.ItemsTotal)
	}
	s += ", " + units.Bytes(p.BytesDone)
	if p.BytesTotal > 0 {
		s += "/" + units.Bytes(p.BytesTotal)
	}
	return s
}

func fmtDuration(d time.Duration) string { return d.Round(time.Second).String() }

func formatWarning(x store.Issue) string {
	s := "warning " + x.Code + ": " + x.Message
	if x.Object != "" {
		s += " (" + x.Object + ")"
	}
	return s
}

// plainRenderer prints a line when the phase changes, and at most every
// `every` while counts change, so logs stay short.
type plainRenderer struct {
	w          io.Writer
	label      string
	every      time.Duration
	lastPhase  string
	lastAt     time.Duration
	lastCounts [2]int64
	warned     int
}

func (r *plainRenderer) warnings(p Progress) {
	for ; r.warned < len(p.Warnings); r.warned++ {
		fmt.Fprintf(r.w, "%s: %s\n", r.label, formatWarning(p.Warnings[r.warned]))
	}
}

func (r *plainRenderer) Update(p Progress) {
	r.warnings(p)
	counts := [2]int64{p.ItemsDone, p.BytesDone}
	if p.Phase == r.lastPhase && (counts == r.lastCounts || p.Elapsed-r.lastAt < r.every) {
		return
	}
	r.line(p)
}

func (r *plainRenderer) line(p Progress) {
	fmt.Fprintf(r.w, "%s: %s  %s\n", r.label, p.Phase, p.counts())
	r.lastPhase, r.lastAt, r.lastCounts = p.Phase, p.Elapsed, [2]int64{p.ItemsDone, p.BytesDone}
}

func (r *plainRenderer) Done(p Progress) {
	r.warnings(p)
	r.line(p)
}

// termRenderer redraws one line in place (\r, erase line); warnings are
// printed above it as they come.
type termRenderer struct {
	w      io.Writer
	label  string
	warned int
}

const eraseLine = "\r\x1b[K"

func (r *termRenderer) draw(p Progress) {
	fmt.Fprintf(r.w, "%s%s: %s  %s", eraseLine, r.label, p.Phase, p.counts())
}

func (r *termRenderer) warnings(p Progress) {
	for ; r.warned < len(p.Warnings); r.warned++ {
		fmt.Fprintf(r.w, "%s%s\n", eraseLine, formatWarning(p.Warnings[r.warned]))
	}
}

func (r *termRenderer) Update(p Progress) {
	r.warnings(p)
	r.draw(p)
}

func (r *termRenderer) Done(p Progress) {
	r.warnings(p)
	r.draw(p)
	fmt.Fprintln(r.w)
}

// jobProgress turns a vault job into a Progress: its state, the running
// sub-task, its items and bytes as the cluster reported them, and its
// warnings.
func jobProgress(j *store.Job, elapsed time.Duration) Progress {
	phase := j.State
	for _, s := range j.SubTasks {
		if s.State == store.JobInProgress {
			phase += " (" + s.Name + ")"
			break
		}
	}
	p := Progress{Phase: phase, Elapsed: elapsed, Warnings: j.Warnings}
	if jp := j.Progress; jp != nil {
		p.ItemsDone, p.ItemsTotal, p.BytesDone, p.BytesTotal = jp.ItemsDone, jp.ItemsTotal, jp.BytesDone, jp.BytesTotal
		p.BytesPerSecond, p.ETA = jp.BytesPerSecond, time.Duration(jp.ETASeconds)*time.Second
	}
	return p
}

// watchJob polls a job until it is terminal, showing progress on out for
// the table format (live on a terminal) and the final job for json and
// yaml. A failed or cancelled job is an error (exit 1).
func watchJob(ctx context.Context, c *client.Client, vault, id string, out io.Writer, format string) error {
	start := time.Now()
	var r ProgressRenderer
	for {
		cur, err := c.GetJob(ctx, vault, id)
		if err != nil {
			return err
		}
		if r == nil && format == "table" {
			r = NewProgressRenderer(out, fmt.Sprintf("%s job %s", cur.Type, cur.ID))
		}
		p := jobProgress(cur, time.Since(start))
		if store.JobStateTerminal(cur.State) {
			if r != nil {
				r.Done(p)
				for _, e := range cur.Errors {
					fmt.Fprintf(out, "  error %s: %s %s\n", e.Code, e.Message, e.Object)
				}
			} else if err := printJobDetail(out, format, cur); err != nil {
				return err
			}
			if cur.State == store.JobFailed || cur.State == store.JobCancelled {
				return fmt.Errorf("job %s %s: %s", cur.ID, strings.ToLower(cur.State), vaultIssues(cur.Errors))
			}
			return nil
		}
		if r != nil {
			r.Update(p)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(vaultPollInterval):
		}
	}
}
