package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// VersionVar is the variable `arca version` prints, set at link time.
const VersionVar = "github.com/arca-backup/arca/internal/cli.Version"

// Packages of this module that go into images.
const (
	ArcaPackage  = "./cmd/arca"
	PausePackage = "./hack/pause"
)

// ArcaImageTag is the build tag of the extension image's arca: it leaves
// out the commands that never run in the cluster (the vault server with its
// SQLite and PostgreSQL stores, and the vault's client commands), each of
// which then answers that the full binary has it (internal/cli/root_image.go).
const ArcaImageTag = "extensionimage"

// BuildStatic builds pkg (a package path relative to moduleDir) as a static
// linux/amd64 executable and returns it. The build is reproducible:
// CGO_ENABLED=0, -trimpath (no local paths), -s -w (no symbol tables, whose
// absence also makes the image smaller) and the given -X variables. The
// linker aligns functions to 16 bytes (-funcalign=16, the alignment GCC
// uses on x86-64 and the compiler's loop alignment) instead of Go's 32:
// the padding saved is 0.4 MiB of arca; an assembly function that needs
// more alignment (PCALIGN) still gets it.
func BuildStatic(ctx context.Context, moduleDir, pkg string, xvars map[string]string) ([]byte, error) {
	return buildStatic(ctx, moduleDir, pkg, "", xvars)
}

func buildStatic(ctx context.Context, moduleDir, pkg, tags string, xvars map[string]string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "arca-image-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, filepath.Base(pkg))
	ldflags := []string{"-s", "-w", "-funcalign=16"}
	names := make([]string, 0, len(xvars))
	for k := range xvars {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if strings.ContainsAny(xvars[k], " '\"") {
			return nil, fmt.Errorf("build %s: value %q of %s has spaces or quotes", pkg, xvars[k], k)
		}
		ldflags = append(ldflags, "-X", k+"="+xvars[k])
	}
	args := []string{"build", "-trimpath", "-ldflags", strings.Join(ldflags, " "), "-o", out}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+OS, "GOARCH="+Architecture)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build %s in %s: %w\n%s", pkg, moduleDir, err, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	if err := CheckStaticBinary(b); err != nil {
		return nil, fmt.Errorf("go build %s: %w", pkg, err)
	}
	return b, nil
}

// BuildArca builds the extension image's arca from the module at moduleDir
// with the given version: cmd/arca with the ArcaImageTag build tag.
func BuildArca(ctx context.Context, moduleDir, version string) ([]byte, error) {
	return buildStatic(ctx, moduleDir, ArcaPackage, ArcaImageTag, map[string]string{VersionVar: version})
}

// ModuleDir returns the directory of the go.mod that governs dir: the root
// of the source tree to build images from.
func ModuleDir(dir string) (string, error) {
	cmd := exec.Command("go", "env", "GOMOD")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD in %s: %w", dir, err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside a Go module: run from the arca source tree")
	}
	return filepath.Dir(mod), nil
}
