package location

import (
	"errors"
	"testing"
)

// Repository URLs come from flags, BackupJob specs and vault storage
// locations. Parse must never panic; a URL it accepts has a canonical form
// that parses back to the same location.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"file:///var/lib/arca/repo", "/tmp/repo", "relative/repo", "azure://acct/container/a/b",
		"azure://acct/container?endpoint=http://127.0.0.1:10000/acct", "s3://bucket/prefix?endpoint=127.0.0.1:9000&tls=false&path-style=true",
		"s3://bucket?region=eu-west-1&insecure-skip-verify=true", "s3:bucket", "s3://Bucket", "azure://a/b", "gs://x/y",
		"s3://bucket?access-key=AKIA", "file://", "s3://bucket/%2e%2e/x", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		l, err := Parse(raw)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Problem == "" {
				t.Fatalf("Parse(%q): error %v does not say what is wrong with the URL", raw, err)
			}
			return
		}
		canon := l.String()
		back, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) = %+v, whose canonical form %q does not parse: %v", raw, l, canon, err)
		}
		if back != l {
			t.Fatalf("Parse(%q) = %+v; canonical %q parses to %+v", raw, l, canon, back)
		}
		if back.String() != canon {
			t.Fatalf("canonical form is not stable: %q then %q", canon, back.String())
		}
	})
}
