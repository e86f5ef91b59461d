// Command crdfix post-processes the CRDs controller-gen writes, for the one
// thing controller-gen cannot express without markers in
// api/v1alpha1/config_types.go: fields of type json.RawMessage (resource
// modifier patch values and merge patches) hold any JSON value, but
// controller-gen describes them as base64 strings. crdfix replaces their
// schema with x-kubernetes-preserve-unknown-fields. Run by hack/generate.sh;
// drop it once those fields carry `+kubebuilder:validation:Schemaless` and
// `+kubebuilder:pruning:PreserveUnknownFields` markers.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

const rawMessageDoc = "RawMessage is a raw encoded JSON value."

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: crdfix DIR")
		os.Exit(2)
	}
	files, err := filepath.Glob(filepath.Join(os.Args[1], "*.yaml"))
	if err != nil || len(files) == 0 {
		fmt.Fprintf(os.Stderr, "crdfix: no CRDs in %s (%v)\n", os.Args[1], err)
		os.Exit(1)
	}
	for _, f := range files {
		if err := fix(f); err != nil {
			fmt.Fprintf(os.Stderr, "crdfix: %s: %v\n", f, err)
			os.Exit(1)
		}
	}
}

func fix(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err
	}
	n := walk(doc)
	if n == 0 {
		return nil
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(file, append([]byte("---\n"), out...), 0o644)
}

// walk rewrites every schema described as a json.RawMessage and returns how
// many it rewrote.
func walk(v any) int {
	n := 0
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			if m, ok := c.(map[string]any); ok && isRawMessage(m) {
				v[k] = map[string]any{"x-kubernetes-preserve-unknown-fields": true, "description": "Any JSON value."}
				n++
				continue
			}
			n += walk(c)
		}
	case []any:
		for _, c := range v {
			n += walk(c)
		}
	}
	return n
}

func isRawMessage(m map[string]any) bool {
	d, _ := m["description"].(string)
	return strings.HasPrefix(d, rawMessageDoc) && m["type"] == "string" && m["format"] == "byte"
}
