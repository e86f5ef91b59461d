//go:build !extensionimage

package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arca-backup/arca/internal/vault/server"
)

func TestVaultInitCommand(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := RunVaultInit(context.Background(), &VaultServerOptions{DataDir: dir}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), server.TokenPrefix) || !strings.Contains(out.String(), filepath.Join(dir, "tls", "tls.crt")) {
		t.Fatalf("init output:\n%s", out.String())
	}
	if err := RunVaultInit(context.Background(), &VaultServerOptions{DataDir: dir}, &out); err == nil {
		t.Fatal("second init must refuse")
	}
}
