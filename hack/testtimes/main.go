// Command testtimes reads `go test -json` output and prints where the time
// went: each package's elapsed time and when it started (relative to the
// first event, so a slow package started late shows up as the suite's
// tail), and the slowest top-level tests. docs/testing.md, "Suite
// duration", is made from its output:
//
//	go test -json -count=1 -timeout 40m ./... > /tmp/suite.json
//	go run ./hack/testtimes -n 20 < /tmp/suite.json
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// event is the part of a test2json event this command reads.
type event struct {
	Time    time.Time
	Action  string
	Package string
	Test    string
	Elapsed float64
}

// pkgTime is one package's run: its result, elapsed seconds as go test
// reports them, and its first and last event.
type pkgTime struct {
	Name        string
	Result      string
	Elapsed     float64
	First, Last time.Time
	seen        bool
	resultKnown bool
}

// testTime is one top-level test's result and elapsed seconds.
type testTime struct {
	Package, Name, Result string
	Elapsed               float64
}

// summary is everything read from one run.
type summary struct {
	Packages    []*pkgTime
	Tests       []testTime
	First, Last time.Time
}

// read parses test2json events; lines that are not JSON (a build error
// printed by go test) are skipped.
func read(r io.Reader) (*summary, error) {
	s := &summary{}
	byName := map[string]*pkgTime{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Package == "" {
			continue
		}
		p := byName[e.Package]
		if p == nil {
			p = &pkgTime{Name: e.Package}
			byName[e.Package] = p
			s.Packages = append(s.Packages, p)
		}
		if !e.Time.IsZero() {
			if !p.seen || e.Time.Before(p.First) {
				p.First = e.Time
			}
			if !p.seen || e.Time.After(p.Last) {
				p.Last = e.Time
			}
			p.seen = true
			if s.First.IsZero() || e.Time.Before(s.First) {
				s.First = e.Time
			}
			if e.Time.After(s.Last) {
				s.Last = e.Time
			}
		}
		switch e.Action {
		case "pass", "fail", "skip":
		default:
			continue
		}
		switch {
		case e.Test == "":
			p.Result, p.Elapsed, p.resultKnown = e.Action, e.Elapsed, true
		case !strings.Contains(e.Test, "/"):
			s.Tests = append(s.Tests, testTime{Package: e.Package, Name: e.Test, Result: e.Action, Elapsed: e.Elapsed})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading go test -json output: %w", err)
	}
	if len(s.Packages) == 0 {
		return nil, fmt.Errorf("no go test -json events read: pipe the output of `go test -json ./...` into this command")
	}
	for _, p := range s.Packages {
		if !p.resultKnown {
			// Killed or still running when the output ended.
			p.Result = "none"
			p.Elapsed = p.Last.Sub(p.First).Seconds()
		}
	}
	sort.SliceStable(s.Packages, func(i, j int) bool { return s.Packages[i].Elapsed > s.Packages[j].Elapsed })
	sort.SliceStable(s.Tests, func(i, j int) bool { return s.Tests[i].Elapsed > s.Tests[j].Elapsed })
	return s, nil
}

// write prints the n slowest packages and tests as Markdown tables.
func (s *summary) write(w io.Writer, n int, trim string) {
	short := func(p string) string { return strings.TrimPrefix(p, trim) }
	var sum float64
	for _, p := range s.Packages {
		sum += p.Elapsed
	}
	fmt.Fprintf(w, "Wall time, first to last event: %s; packages: %d; sum of package times: %s\n\n",
		fmtDur(s.Last.Sub(s.First).Seconds()), len(s.Packages), fmtDur(sum))
	fmt.Fprintln(w, "| Package | Elapsed | Started at | Ended at | Result |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for i, p := range s.Packages {
		if i == n {
			break
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", short(p.Name), fmtDur(p.Elapsed),
			fmtDur(p.First.Sub(s.First).Seconds()), fmtDur(p.Last.Sub(s.First).Seconds()), p.Result)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Test | Package | Elapsed | Result |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for i, t := range s.Tests {
		if i == n {
			break
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.Name, short(t.Package), fmtDur(t.Elapsed), t.Result)
	}
}

// fmtDur prints seconds as "7 min 03 s" or "12.3 s".
func fmtDur(sec float64) string {
	if sec < 60 {
		return fmt.Sprintf("%.1f s", sec)
	}
	d := int(sec + 0.5)
	return fmt.Sprintf("%d min %02d s", d/60, d%60)
}

func main() {
	n := flag.Int("n", 20, "how many packages and tests to list")
	trim := flag.String("trim", "github.com/arca-backup/arca/", "prefix removed from package paths")
	flag.Parse()
	s, err := read(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testtimes:", err)
		os.Exit(1)
	}
	s.write(os.Stdout, *n, *trim)
}
