// Package chart renders and lints the Helm chart charts/arca-extension with
// Helm's own Go library (helm.sh/helm/v3), the way `helm template`, `helm
// install` and `helm lint` read it. The chart itself is generated from
// internal/extension (ChartFiles, `make chart`); this package is how tests
// check it and how a test installs it onto a node. The arca binary does not
// import it.
package chart

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Load reads the chart in dir.
func Load(dir string) (*chart.Chart, error) {
	c, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", dir, err)
	}
	return c, nil
}

// Render renders the chart in dir as `helm template --namespace namespace
// --include-crds` would with values merged over values.yaml: the CRDs of
// crds/ first, then every template's objects (empty documents dropped).
func Render(dir, namespace string, values map[string]any) ([]*unstructured.Unstructured, error) {
	c, err := Load(dir)
	if err != nil {
		return nil, err
	}
	vals, err := chartutil.ToRenderValues(c, values, chartutil.ReleaseOptions{Name: "arca", Namespace: namespace, IsInstall: true, Revision: 1},
		chartutil.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	rendered, err := engine.Render(c, vals)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, f := range c.CRDObjects() {
		objs, err := decode(f.Name, f.File.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	names := make([]string, 0, len(rendered))
	for n := range rendered {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !strings.HasSuffix(n, ".yaml") {
			continue
		}
		objs, err := decode(n, []byte(rendered[n]))
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

func decode(name string, data []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		m := map[string]any{}
		if err := d.Decode(&m); err != nil {
			if err == io.EOF {
				return out, nil
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// Lint runs Helm's linter (`helm lint --strict` rules: every message at
// warning level or above counts) over the chart in dir with values, and
// returns the messages.
func Lint(dir, namespace string, values map[string]any) []string {
	l := lint.All(dir, values, namespace, true)
	var msgs []string
	for _, m := range l.Messages {
		if m.Severity >= support.WarningSev {
			msgs = append(msgs, m.Error())
		}
	}
	return msgs
}

// Dir finds charts/arca-extension from a working directory inside the
// repository (tests run in their package's directory).
func Dir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "charts", "arca-extension"), nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", wd)
		}
	}
}
