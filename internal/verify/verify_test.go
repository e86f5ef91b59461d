package verify

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/arca-backup/arca/api/v1alpha1"
)

func TestSandboxName(t *testing.T) {
	if got := SandboxName("ab12c", "shop"); got != "arca-verify-ab12c-shop" {
		t.Fatalf("SandboxName = %q", got)
	}
	long := strings.Repeat("n", 63)
	a, b := SandboxName("ab12c", long), SandboxName("ab12c", long[:62]+"m")
	if len(a) > 63 || !strings.HasPrefix(a, v1alpha1.VerificationNamespacePrefix+"ab12c-") || a == b {
		t.Fatalf("long names: %q (%d) and %q", a, len(a), b)
	}
	if Token("uid-1") == Token("uid-2") || len(Token("uid-1")) != 5 {
		t.Fatalf("tokens %q %q", Token("uid-1"), Token("uid-2"))
	}
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// What the restore and the server change by design compares equal; a
// changed field does not, and is named.
func TestNormalizeAndDiff(t *testing.T) {
	crit := &v1alpha1.RestoreCriteria{NamespaceMappings: map[string]string{"shop": "arca-verify-ab12c-shop"}}
	point := `{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"shop","uid":"u1","resourceVersion":"7",
		"creationTimestamp":"2026-01-01T00:00:00Z","ownerReferences":[{"apiVersion":"v1","kind":"X","name":"o","uid":"u0"}]},
		"spec":{"clusterIP":"10.0.0.7","clusterIPs":["10.0.0.7"],"ports":[{"port":80,"nodePort":30001}],"selector":{"app":"web"}},"status":{"loadBalancer":{}}}`
	restored := `{"metadata":{"name":"web","namespace":"arca-verify-ab12c-shop","uid":"u2","resourceVersion":"99","managedFields":[{}],
		"labels":{"arca.io/recovery-point":"rp","arca.io/restore":"job"},"ownerReferences":[{"apiVersion":"v1","kind":"X","name":"o","uid":"u9"}]},
		"spec":{"clusterIP":"10.0.0.9","clusterIPs":["10.0.0.9"],"ports":[{"port":80,"nodePort":30555}],"selector":{"app":"web"}}}`
	a, b := decode(t, point), decode(t, restored)
	normalize("", "services", a, crit, "rp", "job")
	normalize("", "services", b, crit, "rp", "job")
	if d, err := diffPaths(a, b); err != nil || len(d) != 0 {
		t.Fatalf("a faithful restore differs: %v", d)
	}
	changed := strings.Replace(restored, `"selector":{"app":"web"}`, `"selector":{"app":"evil"}`, 1)
	c := decode(t, changed)
	normalize("", "services", c, crit, "rp", "job")
	d, err := diffPaths(a, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 1 || !strings.Contains(d[0], `spec.selector.app (point "web", sandbox "evil")`) {
		t.Fatalf("diff of a changed selector: %v", d)
	}
	extra := decode(t, strings.Replace(restored, `"spec":{`, `"spec":{"type":"NodePort",`, 1))
	normalize("", "services", extra, crit, "rp", "job")
	if d, err := diffPaths(a, extra); err != nil || len(d) != 1 || !strings.Contains(d[0], "spec.type (only in the sandbox)") {
		t.Fatalf("diff of an added field: %v", d)
	}
	if d, err := diffPaths(extra, a); err != nil || len(d) != 1 || !strings.Contains(d[0], "spec.type (missing in the sandbox)") {
		t.Fatalf("diff of a missing field: %v", d)
	}
}
