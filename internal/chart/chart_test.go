package chart

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/extension"
)

func chartDir(t *testing.T) string {
	t.Helper()
	d, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// appVersion is the arca version the checked-in chart was generated for.
func appVersion(t *testing.T) string {
	t.Helper()
	c, err := Load(chartDir(t))
	if err != nil {
		t.Fatal(err)
	}
	return c.Metadata.AppVersion
}

// TestChartUpToDate fails when charts/arca-extension differs from what
// `make chart` generates from the manifests' source.
func TestChartUpToDate(t *testing.T) {
	dir := chartDir(t)
	want, err := extension.ChartFiles(appVersion(t))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		got[rel] = true
		w, ok := want[rel]
		if !ok {
			t.Errorf("%s is not generated (stale? run make chart)", rel)
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if string(b) != string(w) {
			t.Errorf("%s differs from the generated chart: run make chart", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name := range want {
		if !got[name] {
			t.Errorf("%s missing: run make chart", name)
		}
	}
}

// valueSet is chart values and the install options they stand for.
type valueSet struct {
	name   string
	values string
	opts   extension.InstallOptions
}

func valueSets(version string) []valueSet {
	return []valueSet{
		{name: "defaults", values: `{}`, opts: extension.InstallOptions{}},
		{name: "s3 with image", values: `
image: registry.example:5000/arca:1.2.3
storage: {url: "s3://backups/arca?endpoint=10.0.0.1:9000&tls=false"}
`, opts: extension.InstallOptions{Image: "registry.example:5000/arca:1.2.3", StorageURL: "s3://backups/arca?endpoint=10.0.0.1:9000&tls=false"}},
		{name: "file on the node, everything set", values: `
image: private.example/arca:2
imagePullSecrets: [regcred, mirror]
resources:
  requests: {cpu: 250m, memory: 256Mi}
  limits: {cpu: "2", memory: 1Gi}
nodeSelector: {kubernetes.io/os: linux, backup: "yes"}
tolerations:
- {key: dedicated, operator: Equal, value: backup, effect: NoSchedule}
- {key: spot, operator: Exists}
maxConcurrentJobs: 3
storageRetry: 30s
extraArgs: [--log-format=json, --status-interval=5s]
storage:
  url: file:///var/backups/arca
  readOnly: true
  secret: creds
  credentials: {password: pw, AWS_ACCESS_KEY_ID: ak}
  hostPath: /srv/arca
`, opts: extension.InstallOptions{Image: "private.example/arca:2", ImagePullSecrets: []string{"regcred", "mirror"},
			CPURequest: "250m", MemoryRequest: "256Mi", CPULimit: "2", MemoryLimit: "1Gi",
			NodeSelector: map[string]string{"kubernetes.io/os": "linux", "backup": "yes"},
			Tolerations: []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "backup", Effect: corev1.TaintEffectNoSchedule},
				{Key: "spot", Operator: corev1.TolerationOpExists}},
			MaxConcurrentJobs: 3, StorageRetry: 30 * time.Second, ExtraArgs: []string{"--log-format=json", "--status-interval=5s"}, StorageURL: "file:///var/backups/arca", ReadOnly: true, StorageSecret: "creds",
			SecretData: map[string]string{"password": "pw", "AWS_ACCESS_KEY_ID": "ak"}, StorageHostPath: "/srv/arca"}},
		{name: "file on a claim the chart creates", values: `
storage: {url: file:///data/repo, claim: backups, claimSize: 20Gi, storageClass: fast}
`, opts: extension.InstallOptions{StorageURL: "file:///data/repo", StorageClaim: "backups", StorageClaimSize: "20Gi", StorageClass: "fast"}},
		{name: "file on an existing claim", values: `
storage: {url: file:///data/repo, claim: backups, credentials: {password: pw}}
`, opts: extension.InstallOptions{StorageURL: "file:///data/repo", StorageClaim: "backups", SecretData: map[string]string{"password": "pw"}}},
	}
}

// normalize keys objects by kind/namespace/name, through JSON so that
// numbers compare alike.
func normalize(t *testing.T, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, u := range objs {
		b, err := json.Marshal(u.Object)
		if err != nil {
			t.Fatal(err)
		}
		var m any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		out[u.GetKind()+" "+u.GetNamespace()+"/"+u.GetName()] = m
	}
	return out
}

// TestChartAgreesWithManifests renders the chart with Helm's engine for
// several value sets and compares every object with what `arca extension
// manifests` makes of the same settings (the Namespace aside: Helm's
// release namespace is made by `helm install --create-namespace`).
func TestChartAgreesWithManifests(t *testing.T) {
	dir := chartDir(t)
	version := appVersion(t)
	const ns = "backup-system"
	for _, vs := range valueSets(version) {
		t.Run(vs.name, func(t *testing.T) {
			vals := map[string]any{}
			if err := yaml.Unmarshal([]byte(vs.values), &vals); err != nil {
				t.Fatal(err)
			}
			got, err := Render(dir, ns, vals)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			o := vs.opts
			o.Namespace, o.Version = ns, version
			want, err := extension.Manifests(o)
			if err != nil {
				t.Fatal(err)
			}
			var wantObjs []*unstructured.Unstructured
			for _, u := range want {
				if u.GetKind() != "Namespace" {
					wantObjs = append(wantObjs, u)
				}
			}
			g, w := normalize(t, got), normalize(t, wantObjs)
			var keys []string
			for k := range w {
				keys = append(keys, k)
			}
			for k := range g {
				if _, ok := w[k]; !ok {
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			for _, k := range keys {
				if !reflect.DeepEqual(g[k], w[k]) {
					gy, _ := yaml.Marshal(g[k])
					wy, _ := yaml.Marshal(w[k])
					t.Errorf("%s differs.\nchart:\n%s\nmanifests:\n%s", k, gy, wy)
				}
			}
			if len(g) < 9 {
				t.Errorf("only %d objects rendered", len(g))
			}
		})
	}
}

// TestChartRefusesFileStorageWithoutVolume: the chart fails to render what
// Manifests refuses, naming the values to set.
func TestChartRefusesFileStorageWithoutVolume(t *testing.T) {
	dir := chartDir(t)
	for _, tc := range []struct {
		values map[string]any
		want   string
	}{
		{map[string]any{"storage": map[string]any{"url": "file:///var/backups/arca"}}, v1alpha1.CodeFileStorageNeedsVolume},
		{map[string]any{"storage": map[string]any{"url": "file:///r", "claim": "c", "hostPath": "/h"}}, "exclude each other"},
		{map[string]any{"storage": map[string]any{"url": "s3://b/p", "claim": "c"}}, "not a file:// URL"},
	} {
		_, err := Render(dir, "arca-system", tc.values)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("values %v: got %v, want an error containing %q", tc.values, err, tc.want)
		}
	}
}

// TestChartRefusesBadStorageRetry: a storageRetry the extension's
// --storage-retry would not parse (no unit, negative, not a duration) fails
// the render, naming the value, instead of a crash-looping pod.
func TestChartRefusesBadStorageRetry(t *testing.T) {
	dir := chartDir(t)
	for _, v := range []any{30, "30", "-5s", "soon", "5 m"} {
		_, err := Render(dir, "arca-system", map[string]any{"storageRetry": v})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("storageRetry %v: want a duration with a unit", v)) {
			t.Errorf("storageRetry %#v: got %v, want the value refused", v, err)
		}
	}
	for _, v := range []string{"1h2m3.5s", "500ms", "2m"} {
		objs, err := Render(dir, "arca-system", map[string]any{"storageRetry": v})
		if err != nil {
			t.Errorf("storageRetry %q: %v", v, err)
			continue
		}
		found := false
		for _, u := range objs {
			if u.GetKind() != "Deployment" {
				continue
			}
			cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			args, _, _ := unstructured.NestedStringSlice(cs[0].(map[string]any), "args")
			found = slices.Contains(args, "--storage-retry="+v)
		}
		if !found {
			t.Errorf("storageRetry %q: no --storage-retry=%s argument in the Deployment", v, v)
		}
	}
}

// TestChartLint: Helm's linter (strict) finds nothing, with the default
// values and with each value set.
func TestChartLint(t *testing.T) {
	dir := chartDir(t)
	for _, vs := range valueSets(appVersion(t)) {
		vals := map[string]any{}
		if err := yaml.Unmarshal([]byte(vs.values), &vals); err != nil {
			t.Fatal(err)
		}
		if msgs := Lint(dir, "arca-system", vals); len(msgs) > 0 {
			t.Errorf("helm lint (%s):\n  %s", vs.name, strings.Join(msgs, "\n  "))
		}
	}
}

// TestLintFindsProblems: the linter the test above relies on does report a
// broken chart (a template that does not parse, a Chart.yaml without a
// version).
func TestLintFindsProblems(t *testing.T) {
	src := chartDir(t)
	dst := filepath.Join(t.TempDir(), "arca-extension")
	files, err := extension.ChartFiles(appVersion(t))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		p := filepath.Join(dst, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if msgs := Lint(dst, "arca-system", nil); len(msgs) > 0 {
		t.Fatalf("the copy of %s lints with: %v", src, msgs)
	}
	os.WriteFile(filepath.Join(dst, "templates", "broken.yaml"), []byte("{{ .Values.nothing.here }"), 0o644)
	chartYAML := strings.Replace(string(files["Chart.yaml"]), "\nversion:", "\nunversioned:", 1)
	os.WriteFile(filepath.Join(dst, "Chart.yaml"), []byte(chartYAML), 0o644)
	msgs := Lint(dst, "arca-system", nil)
	if len(msgs) < 2 {
		t.Fatalf("lint of a broken chart: %v", msgs)
	}
	t.Logf("lint of a broken chart: %v", msgs)
}
