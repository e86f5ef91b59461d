package diff

import (
	"bytes"
	"strings"
	"testing"
)

func TestFields(t *testing.T) {
	a := []byte(`{"metadata":{"name":"x","resourceVersion":"1","labels":{"app":"web","app.kubernetes.io/name":"x"}},"spec":{"replicas":2,"ports":[{"port":80}]},"status":{"ready":1}}`)
	b := []byte(`{"metadata":{"name":"x","resourceVersion":"2","labels":{"app":"web"}},"spec":{"replicas":3,"ports":[{"port":80},{"port":443}],"paused":true},"status":{"ready":2}}`)
	got, err := Fields(a, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range got {
		paths = append(paths, f.Path)
	}
	want := `metadata.labels["app.kubernetes.io/name"] spec.paused spec.ports[1] spec.replicas`
	if strings.Join(paths, " ") != want {
		t.Errorf("paths %v, want %s", paths, want)
	}
	withStatus, _ := Fields(a, b, Options{IncludeStatus: true})
	if len(withStatus) != len(got)+1 {
		t.Errorf("status not compared: %v", withStatus)
	}
	var buf bytes.Buffer
	Print(&buf, &Report{Changes: []Change{{Type: Changed, Key: Key{"apps", "deployments", "ns", "x"}, Fields: got}}, Modified: 1})
	for _, s := range []string{"~ deployments.apps ns/x", "~ spec.replicas: 2 → 3", "+ spec.paused: true", `- metadata.labels["app.kubernetes.io/name"]: "x"`} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, buf.String())
		}
	}
}
