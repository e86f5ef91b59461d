package v1alpha1_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedFilesUpToDate regenerates the deepcopy functions and the CRDs
// into a temporary directory and compares them with the committed files:
// run hack/generate.sh when it fails.
func TestGeneratedFilesUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds controller-gen on first use")
	}
	out := t.TempDir()
	cmd := exec.Command("bash", "../../hack/generate.sh", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/generate.sh: %v\n%s", err, b)
	}
	committed, _ := filepath.Glob("../../config/crd/*.yaml")
	generated, _ := filepath.Glob(filepath.Join(out, "*.yaml"))
	if len(committed) == 0 || len(committed) != len(generated) {
		t.Errorf("config/crd holds %d CRDs, generation gives %d: run hack/generate.sh", len(committed), len(generated))
	}
	pairs := map[string]string{"zz_generated.deepcopy.go": filepath.Join(out, "zz_generated.deepcopy.go")}
	for _, g := range generated {
		pairs[filepath.Join("../../config/crd", filepath.Base(g))] = g
	}
	for have, want := range pairs {
		a, err := os.ReadFile(have)
		if err != nil {
			t.Errorf("%v: run hack/generate.sh", err)
			continue
		}
		b, err := os.ReadFile(want)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s is not what hack/generate.sh produces: run it and commit the result", have)
		}
	}
}
