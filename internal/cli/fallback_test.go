package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/arca-backup/arca/internal/kube/kubetest"
	"github.com/arca-backup/arca/internal/testenv"
)

// TestRestoreFromSecondary: back up to S3 (MinIO), copy to a secondary
// (a file repository with its own password), stop MinIO, and restore
// through the real API server: without a fallback the restore fails;
// with --fallback-repo it warns naming both locations and restores from
// the secondary, by the primary's ID, every byte of the objects intact.
func TestRestoreFromSecondary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane and MinIO")
	}
	ctx := context.Background()
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{WithoutControllerManager: true})
	kubeconfig := cp.KubeconfigFile(t)
	c, err := kubetest.New(cp.Config())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureNamespace(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	cms := c.Dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"})
	want := map[string][]byte{}
	for i := 0; i < 5; i++ {
		data := make([]byte, 50_000+i)
		rand.New(rand.NewSource(int64(i))).Read(data)
		name := fmt.Sprintf("blob-%d", i)
		want[name] = data
		obj := map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata":   map[string]any{"name": name, "namespace": "shop"},
			"binaryData": map[string]any{"payload": base64.StdEncoding.EncodeToString(data)}}
		b, _ := json.Marshal(obj)
		if _, err := cms.Namespace("shop").Patch(ctx, name, "application/apply-patch+yaml", b, metav1.PatchOptions{FieldManager: "test"}); err != nil {
			t.Fatal(err)
		}
	}

	m := testenv.StartMinIO(t)
	t.Setenv("AWS_ACCESS_KEY_ID", m.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", m.SecretKey)
	dir := t.TempDir()
	writePw := func(name, p string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(p+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	pwPrimary, pwSecondary := writePw("primary.pw", "primary-pw"), writePw("secondary.pw", "secondary-pw")
	t.Setenv(PasswordEnv, "")
	t.Setenv(FallbackPasswordEnv, "")
	primary := fmt.Sprintf("s3://arca-primary/repo?endpoint=%s&tls=false&region=us-east-1", m.Endpoint)
	secondary := "file://" + filepath.Join(dir, "secondary")
	run := func(args ...string) (string, string, error) {
		root := NewRootCommand()
		var out, errOut bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errOut)
		root.SetArgs(args)
		err := root.ExecuteContext(ctx)
		return out.String(), errOut.String(), err
	}

	out, _, err := run("local", "backup", "--kubeconfig", kubeconfig, "--repo", primary, "--password-file", pwPrimary, "--include-namespaces", "shop")
	if err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	id := strings.TrimSpace(out)
	if out, _, err := run("repo", "copy", "--from", primary, "--from-password-file", pwPrimary, "--to", secondary, "--to-password-file", pwSecondary, "--point", id); err != nil {
		t.Fatalf("copy: %v\n%s", err, out)
	}

	m.Process.Stop() // the primary's storage is down
	restore := func(extra ...string) (string, string, error) {
		args := append([]string{"local", "restore", "--kubeconfig", kubeconfig, "--repo", primary, "--password-file", pwPrimary,
			"--recovery-point", id[:16]}, extra...)
		return run(args...)
	}
	start := time.Now()
	if _, _, err := restore("--namespace-mapping", "shop=never"); err == nil {
		t.Fatal("restore from a primary that is down succeeded without a fallback")
	}
	t.Logf("restore without a fallback failed after %s", time.Since(start).Round(time.Millisecond))

	// A fallback whose password is missing is refused before anything.
	if _, _, err := restore("--fallback-repo", secondary, "--namespace-mapping", "shop=never"); ExitCode(err) != 2 || !strings.Contains(err.Error(), "--fallback-password-file FILE or set "+FallbackPasswordEnv) {
		t.Fatalf("fallback without its password: %v", err)
	}

	start = time.Now()
	out, stderr, err := restore("--fallback-repo", secondary, "--fallback-password-file", pwSecondary, "--namespace-mapping", "shop=shop-dr")
	if err != nil {
		t.Fatalf("restore with a fallback: %v\n%s\n%s", err, out, stderr)
	}
	t.Logf("restore with a fallback took %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(stderr, WarnRestoredFromSecondary) || !strings.Contains(stderr, primary) || !strings.Contains(stderr, secondary) {
		t.Fatalf("no warning naming both locations:\n%s", stderr)
	}
	// --from-fallback reads the secondary without trying the primary.
	out, stderr, err = restore("--fallback-repo", secondary, "--fallback-password-file", pwSecondary, "--from-fallback", "--namespace-mapping", "shop=shop-dr2")
	if err != nil || strings.Contains(stderr, WarnRestoredFromSecondary) {
		t.Fatalf("restore --from-fallback: %v\n%s\n%s", err, out, stderr)
	}
	for _, ns := range []string{"shop-dr", "shop-dr2"} {
		for name, data := range want {
			got, err := cms.Namespace(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("%s/%s: %v", ns, name, err)
			}
			b64, _, _ := unstructuredString(got.Object, "binaryData", "payload")
			b, err := base64.StdEncoding.DecodeString(b64)
			if err != nil || !bytes.Equal(b, data) {
				t.Fatalf("%s/%s: restored payload differs (%d bytes, want %d; %v)", ns, name, len(b), len(data), err)
			}
		}
	}
}

func unstructuredString(obj map[string]any, fields ...string) (string, bool, error) {
	var cur any = obj
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, fmt.Errorf("%s: not an object", f)
		}
		cur = m[f]
	}
	s, ok := cur.(string)
	return s, ok, nil
}
