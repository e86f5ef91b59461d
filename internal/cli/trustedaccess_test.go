package cli

import (
	"strings"
	"testing"

	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/testenv"
)

func TestTrustedAccessCommands(t *testing.T) {
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	kc := cp.KubeconfigFile(t)
	run := startTestVault(t)
	// The policy's CRD comes with the extension: enable says so without it.
	out, err := run("trusted-access", "enable", "--kubeconfig", kc, "--vault", "prod", "--cluster-name", "prod-1")
	if err == nil || !strings.Contains(err.Error(), "install the extension first (`arca extension install`)") {
		t.Fatalf("enable without the extension's CRDs: %v\n%s", err, out)
	}
	if err := extension.InstallCRDs(t.Context(), cp.Config()); err != nil {
		t.Fatal(err)
	}
	out, err = run("trusted-access", "enable", "--kubeconfig", kc, "--vault", "prod", "--cluster-name", "prod-1", "--token-ttl", "20m")
	if err != nil || !strings.Contains(out, "arca-system/arca-vault-prod") || !strings.Contains(out, "ClusterRole/arca-backup-operator") ||
		!strings.Contains(out, "ValidatingAdmissionPolicy/arca-vault-jobs") ||
		!strings.Contains(out, "namespaces: *\n") || !strings.Contains(out, "restore cluster-scoped: no, RBAC: no, admission: no; resource modifiers: no; hooks: no; forget: yes; prune: yes") {
		t.Fatalf("enable: %v\n%s", err, out)
	}
	// Widening one rule keeps the others.
	out, err = run("trusted-access", "enable", "--kubeconfig", kc, "--vault", "prod", "--cluster-name", "prod-1", "--allow-hooks", "--allow-namespaces", "shop,kube-system")
	if err != nil || !strings.Contains(out, "namespaces: shop,kube-system\n") || !strings.Contains(out, "hooks: yes; forget: yes") {
		t.Fatalf("enable --allow-hooks --allow-namespaces: %v\n%s", err, out)
	}
	out, err = run("trusted-access", "list", "--kubeconfig", kc)
	if err != nil || !strings.Contains(out, "prod-1") || !strings.Contains(out, "Connected") || !strings.Contains(out, "arca-backup-operator") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if _, err := run("trusted-access", "enable", "--kubeconfig", kc, "--vault", "prod"); err == nil || ExitCode(err) != 2 {
		t.Fatalf("enable without --cluster-name must be a usage error: %v", err)
	}
	out, err = run("trusted-access", "disable", "--kubeconfig", kc, "--vault", "prod")
	if err != nil || !strings.Contains(out, "ServiceAccount/arca-system/arca-vault-prod") || !strings.Contains(out, "TrustedAccessRevoked") {
		t.Fatalf("disable: %v\n%s", err, out)
	}
	out, err = run("trusted-access", "list", "--kubeconfig", kc, "-o", "json")
	if err != nil || strings.Contains(out, "arca-vault-prod") {
		t.Fatalf("list after disable: %v\n%s", err, out)
	}
}
