package cli

import (
	"os"
	"path/filepath"
	"testing"
)

func TestContextClusterName(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
current-context: admin@My_AKS.prod
contexts:
- name: admin@My_AKS.prod
  context: {cluster: My_AKS.prod, user: admin}
- name: other
  context: {cluster: "", user: admin}
clusters:
- name: My_AKS.prod
  cluster: {server: "https://example:443"}
users:
- name: admin
  user: {token: x}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for ctx, want := range map[string]string{"": "my-aks-prod", "other": "cluster", "missing": "cluster"} {
		if got := contextClusterName(kc, ctx); got != want {
			t.Errorf("context %q: %q, want %q", ctx, got, want)
		}
	}
}

func TestQuickstartNeedsStorage(t *testing.T) {
	if _, err := runPlain("quickstart", "--kubeconfig", "x", "--token", "t"); ExitCode(err) != 2 {
		t.Fatalf("quickstart without --storage: %v", err)
	}
}
