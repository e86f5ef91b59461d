// Package crd embeds the CustomResourceDefinitions generated from
// api/v1alpha1 by hack/generate.sh, for `arca extension install` and tests.
package crd

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

//go:embed *.yaml
var files embed.FS

// Files returns the CRD files by name (arca.io_backupjobs.yaml, …).
func Files() map[string][]byte {
	out := map[string][]byte{}
	names, _ := fs.Glob(files, "*.yaml")
	for _, n := range names {
		b, _ := files.ReadFile(n)
		out[n] = b
	}
	return out
}

// CRDs returns the decoded CRDs, sorted by name.
func CRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var out []*apiextensionsv1.CustomResourceDefinition
	for name, data := range Files() {
		c := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(data, c); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
