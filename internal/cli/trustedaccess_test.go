package cli

import (
	"strings"
	"testing"

	"github.com/arca-backup/arca/internal/testenv"
)

func TestTrustedAccessCommands(t *testing.T) {
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	kc := cp.KubeconfigFile(t)
	run := startTestVault(t)
	out, err := run("trusted-access", "enable", "--kubeconfig", kc, "--vault", "prod", "--cluster-name", "prod-1", "--token-ttl", "20m")
	if err != nil || !strings.Contains(out, "arca-system/arca-vault-prod") || !strings.Contains(out, "ClusterRole/arca-backup-operator") {
		t.Fatalf("enable: %v\n%s", err, out)
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
