package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/store"
)

func TestPlainProgressRenderer(t *testing.T) {
	var buf bytes.Buffer
	r := &plainRenderer{w: &buf, label: "job 1", every: 10 * time.Second}
	warn := []store.Issue{{Code: "VolumeSnapshotSkipped", Message: "no snapshot class", Object: "shop/data"}}
	r.Update(Progress{Phase: "Queued", Elapsed: time.Second})
	r.Update(Progress{Phase: "Queued", Elapsed: 2 * time.Second}) // nothing new
	r.Update(Progress{Phase: "InProgress", ItemsDone: 10, ItemsTotal: 40, BytesDone: 2048, BytesTotal: 8192, Elapsed: 4 * time.Second})
	r.Update(Progress{Phase: "InProgress", ItemsDone: 20, ItemsTotal: 40, BytesDone: 4096, BytesTotal: 8192, Elapsed: 5 * time.Second, Warnings: warn}) // throttled, warning shown
	r.Update(Progress{Phase: "InProgress", ItemsDone: 30, ItemsTotal: 40, BytesDone: 6144, BytesTotal: 8192, Elapsed: 15 * time.Second, Warnings: warn})
	r.Done(Progress{Phase: "CompletedWithWarnings", ItemsDone: 40, ItemsTotal: 40, BytesDone: 8192, BytesTotal: 8192, Elapsed: 20 * time.Second, Warnings: warn})
	want := `job 1: Queued  elapsed 1s
job 1: InProgress  items 10/40  2.0 KiB/8.0 KiB  512 B/s  ETA 12s  elapsed 4s
job 1: warning VolumeSnapshotSkipped: no snapshot class (shop/data)
job 1: InProgress  items 30/40  6.0 KiB/8.0 KiB  409 B/s  ETA 5s  elapsed 15s
job 1: CompletedWithWarnings  items 40/40  8.0 KiB/8.0 KiB  409 B/s  elapsed 20s
`
	if got := buf.String(); got != want {
		t.Errorf("plain renderer:\n%s\nwant:\n%s", got, want)
	}
}

func TestTermProgressRenderer(t *testing.T) {
	var buf bytes.Buffer
	r := &termRenderer{w: &buf, label: "job 1"}
	r.Update(Progress{Phase: "InProgress", ItemsDone: 5, Elapsed: 2 * time.Second})
	r.Update(Progress{Phase: "InProgress", ItemsDone: 6, ItemsTotal: 12, Elapsed: 3 * time.Second,
		Warnings: []store.Issue{{Code: "HookFailed", Message: "exit 1"}}})
	r.Done(Progress{Phase: "Completed", ItemsDone: 12, ItemsTotal: 12, Elapsed: 4 * time.Second, Warnings: []store.Issue{{Code: "HookFailed", Message: "exit 1"}}})
	want := eraseLine + "job 1: InProgress  items 5  elapsed 2s" +
		eraseLine + "warning HookFailed: exit 1\n" +
		eraseLine + "job 1: InProgress  items 6/12  ETA 3s  elapsed 3s" +
		eraseLine + "job 1: Completed  items 12/12  elapsed 4s\n"
	if got := buf.String(); got != want {
		t.Errorf("terminal renderer:\n%q\nwant:\n%q", got, want)
	}
	// One line in place: no newline except after warnings and at the end.
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Errorf("%d newlines, want 2", n)
	}
}

func TestNewProgressRendererNotTerminal(t *testing.T) {
	if _, ok := NewProgressRenderer(&bytes.Buffer{}, "x").(*plainRenderer); !ok {
		t.Error("a buffer should get the plain renderer")
	}
}

func TestJobProgress(t *testing.T) {
	p := jobProgress(&store.Job{State: store.JobInProgress, SubTasks: []store.SubTask{{Name: "snapshots", State: store.JobCompleted}, {Name: "resources", State: store.JobInProgress}}}, time.Second)
	if p.Phase != "InProgress (resources)" {
		t.Errorf("phase %q", p.Phase)
	}
	p = jobProgress(&store.Job{State: store.JobInProgress, Progress: &store.JobProgress{ItemsDone: 3, ItemsTotal: 8, BytesDone: 1024, BytesTotal: 4096}}, 2*time.Second)
	if p.ItemsDone != 3 || p.ItemsTotal != 8 || p.BytesDone != 1024 || p.BytesTotal != 4096 {
		t.Errorf("progress from the vault job: %+v", p)
	}
	if got := p.counts(); !strings.Contains(got, "items 3/8") || !strings.Contains(got, "1.0 KiB/4.0 KiB") {
		t.Errorf("counts %q", got)
	}
	if got := p.totals(); got != "items 3/8, 1.0 KiB/4.0 KiB" {
		t.Errorf("totals %q", got)
	}
	// A rate and ETA the job reports (restore pods, movers) are shown as
	// they are, not computed from the watch's own elapsed time.
	p = jobProgress(&store.Job{State: store.JobInProgress, Progress: &store.JobProgress{BytesDone: 10 << 20, BytesTotal: 40 << 20,
		BytesPerSecond: 5 << 20, ETASeconds: 6}}, time.Hour)
	if got := p.counts(); !strings.Contains(got, "5.0 MiB/s") || !strings.Contains(got, "ETA 6s") {
		t.Errorf("counts with a reported rate %q", got)
	}
	var running bytes.Buffer
	if err := printJobDetail(&running, "table", &store.Job{ID: "j0", Type: store.JobRestore, State: store.JobInProgress,
		Progress: &store.JobProgress{BytesDone: 10 << 20, BytesTotal: 40 << 20, BytesPerSecond: 5 << 20, ETASeconds: 6}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(running.String(), "rate: 5.0 MiB/s, ETA 6s") {
		t.Errorf("job show of a running restore lacks its rate and ETA:\n%s", running.String())
	}
	var buf bytes.Buffer
	if err := printJobDetail(&buf, "table", &store.Job{ID: "j1", Type: store.JobRestore, State: store.JobCompleted,
		Progress: &store.JobProgress{ItemsDone: 4, BytesDone: 2048, Counts: map[string]int64{"Created": 3, "SkippedExists": 1}}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"progress: items 4, 2.0 KiB", "count Created: 3", "count SkippedExists: 1"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("job show lacks %q:\n%s", want, buf.String())
		}
	}
}
