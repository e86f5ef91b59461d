package main

import (
	"strings"
	"testing"
)

const run = `{"Time":"2026-12-02T07:00:00Z","Action":"start","Package":"github.com/arca-backup/arca/internal/fast"}
{"Time":"2026-12-02T07:00:01Z","Action":"run","Package":"github.com/arca-backup/arca/internal/fast","Test":"TestA"}
{"Time":"2026-12-02T07:00:02Z","Action":"pass","Package":"github.com/arca-backup/arca/internal/fast","Test":"TestA","Elapsed":1}
{"Time":"2026-12-02T07:00:02Z","Action":"pass","Package":"github.com/arca-backup/arca/internal/fast","Elapsed":2}
# github.com/arca-backup/arca/internal/broken
{"Time":"2026-12-02T07:00:10Z","Action":"start","Package":"github.com/arca-backup/arca/internal/slow"}
{"Time":"2026-12-02T07:00:11Z","Action":"pass","Package":"github.com/arca-backup/arca/internal/slow","Test":"TestBig/sub","Elapsed":300}
{"Time":"2026-12-02T07:05:11Z","Action":"fail","Package":"github.com/arca-backup/arca/internal/slow","Test":"TestBig","Elapsed":301}
{"Time":"2026-12-02T07:05:12Z","Action":"fail","Package":"github.com/arca-backup/arca/internal/slow","Elapsed":302}
{"Time":"2026-12-02T07:01:00Z","Action":"start","Package":"github.com/arca-backup/arca/internal/killed"}
{"Time":"2026-12-02T07:01:40Z","Action":"output","Package":"github.com/arca-backup/arca/internal/killed","Output":"still going\n"}
`

func TestReadOrdersAndKeepsTopLevelTests(t *testing.T) {
	s, err := read(strings.NewReader(run))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range s.Packages {
		names = append(names, strings.TrimPrefix(p.Name, "github.com/arca-backup/arca/internal/")+" "+p.Result)
	}
	if got, want := strings.Join(names, ","), "slow fail,killed none,fast pass"; got != want {
		t.Fatalf("packages by elapsed: got %q, want %q", got, want)
	}
	if got := s.Packages[1].Elapsed; got != 40 {
		t.Fatalf("a package without a result lasts from its first to its last event: got %v s, want 40", got)
	}
	if len(s.Tests) != 2 || s.Tests[0].Name != "TestBig" || s.Tests[0].Result != "fail" || s.Tests[1].Name != "TestA" {
		t.Fatalf("top-level tests, slowest first, subtests left out: %+v", s.Tests)
	}
	if got := s.Last.Sub(s.First).Seconds(); got != 312 {
		t.Fatalf("wall time: got %v s, want 312", got)
	}
}

func TestWriteTables(t *testing.T) {
	s, err := read(strings.NewReader(run))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	s.write(&out, 2, "github.com/arca-backup/arca/")
	got := out.String()
	for _, want := range []string{
		"Wall time, first to last event: 5 min 12 s; packages: 3; sum of package times: 5 min 44 s",
		"| internal/slow | 5 min 02 s | 10.0 s | 5 min 12 s | fail |",
		"| internal/killed | 40.0 s | 1 min 00 s | 1 min 40 s | none |",
		"| TestBig | internal/slow | 5 min 01 s | fail |",
		"| TestA | internal/fast | 1.0 s | pass |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "| internal/fast | 2.0 s |") {
		t.Errorf("-n 2 listed a third package:\n%s", got)
	}
}

func TestReadRejectsEmptyInput(t *testing.T) {
	_, err := read(strings.NewReader("ok  \tgithub.com/arca-backup/arca/internal/fast\t0.1s\n"))
	if err == nil || !strings.Contains(err.Error(), "go test -json") {
		t.Fatalf("plain go test output: want an error naming go test -json, got %v", err)
	}
}
