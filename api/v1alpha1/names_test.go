package v1alpha1

import (
	"strings"
	"testing"
)

func TestShortID(t *testing.T) {
	full := strings.Repeat("0123456789abcdef", 4)
	for in, want := range map[string]string{
		full:              "0123456789ab",
		full[:13]:         "0123456789ab",
		full[:12]:         "0123456789ab",
		"abc":             "abc",
		"":                "",
		"rp-repo-0123456": "rp-repo-0123",
	} {
		if got := ShortID(in); got != want {
			t.Errorf("ShortID(%q) = %q, want %q", in, got, want)
		}
	}
}
