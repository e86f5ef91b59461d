// Command genchart writes the Helm chart charts/arca-extension from the
// source of `arca extension manifests` (extension.ChartFiles). Run by
// `make chart`; internal/chart's tests fail when the chart is stale.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/arca-backup/arca/internal/extension"
)

func main() {
	dir := flag.String("dir", extension.ChartDir, "chart directory to (re)write")
	version := flag.String("version", "dev", "arca version: the chart's appVersion and default image tag")
	flag.Parse()
	files, err := extension.ChartFiles(*version)
	if err != nil {
		fmt.Fprintln(os.Stderr, "genchart:", err)
		os.Exit(1)
	}
	// Stale templates or CRDs would be rendered too: start clean.
	for _, sub := range []string{"templates", "crds"} {
		if err := os.RemoveAll(filepath.Join(*dir, sub)); err != nil {
			fmt.Fprintln(os.Stderr, "genchart:", err)
			os.Exit(1)
		}
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := filepath.Join(*dir, name)
		err := os.MkdirAll(filepath.Dir(p), 0o755)
		if err == nil {
			err = os.WriteFile(p, files[name], 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "genchart:", err)
			os.Exit(1)
		}
		fmt.Println(p)
	}
}
