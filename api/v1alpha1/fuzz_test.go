package v1alpha1

import (
	"strings"
	"testing"
)

func FuzzParseLabelSelectors(f *testing.F) {
	for _, s := range []string{"app=web", "app=web;tier in (a,b)", "env notin (prod),!legacy", "a=(b", "x in ()", ";;", "k==v", "a!=b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseLabelSelectors([]string{s})
		if err != nil {
			if !strings.Contains(err.Error(), "\"") {
				t.Fatalf("error %q does not quote the selector it rejects", err)
			}
			return
		}
		// The parsed selector prints in Kubernetes syntax, which must parse
		// again to the same selector.
		back, err := ParseLabelSelectors([]string{sel.String()})
		if err != nil {
			t.Fatalf("selector %q prints as %q, which does not parse: %v", s, sel.String(), err)
		}
		if back.String() != sel.String() {
			t.Fatalf("selector %q: %q then %q", s, sel.String(), back.String())
		}
	})
}

func FuzzParseTypeRef(f *testing.F) {
	for _, s := range []string{"deployments.apps", "Deployment", "secrets", "Secret.core", "secrets.", "*", "a.b.c", ".apps", "x.-bad-", "Ingress.networking.k8s.io"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseTypeRef(s)
		if err != nil {
			return
		}
		back, err := ParseTypeRef(r.String())
		if err != nil || back != r {
			t.Fatalf("ParseTypeRef(%q) = %+v prints as %q, which parses to %+v, %v", s, r, r.String(), back, err)
		}
	})
}
