package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/testenv"
)

// TestVerificationOnNode verifies recovery points with the extension's pod
// on a real node (RestoreJob spec.verification): a clean point is Verified
// (its objects restored into sandbox namespaces, compared one by one, a
// restore hook run as a smoke test in the restored pod, the sandbox
// deleted); a pack of the repository with one byte changed, and then a
// pack deleted, make it VerificationFailed naming the damaged file, with
// the sandbox deleted all the same; a vault's verification is refused by
// the cluster owner's ClusterTrustPolicy unless it allows verification and
// reaches the sandbox namespaces.
func TestVerificationOnNode(t *testing.T) {
	ic := newInCluster(t)
	ctx := t.Context()
	repoDir := filepath.Join(t.TempDir(), "repo")
	if out, err := ic.arca("extension", "install", "--storage", "file://"+repoDir, "--password-file", ic.pw, "--image", ic.image, "--timeout", "4m"); err != nil {
		t.Fatalf("install: %v\n%s\n%s", err, out, ic.extensionLog())
	}
	csi := testenv.StartHostPathCSI(t, ic.cp)
	// shop: 30 ConfigMaps, a Secret, a Service, a claim with real bytes and
	// a Deployment whose pod reads cm-0 from a volume and writes its own
	// name into the claim once; the smoke test cats both in the restored
	// pod, so the claim came back from its snapshot with the original pod's
	// name in it.
	want := ic.appNamespace("shop", 30)
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "shop"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &csi.StorageClass,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("16Mi")}}}}
	if _, err := ic.cs.CoreV1().PersistentVolumeClaims("shop").Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.cs.CoreV1().Secrets("shop").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		StringData: map[string]string{"password": "s3cret"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.cs.CoreV1().Services("shop").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	app := testenv.AppImage(t, ic.cp.Registry)
	one, grace := int32(1), int64(1)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: &grace,
				Containers: []corev1.Container{{Name: "web", Image: app, Command: []string{"sh", "-c", "test -f /data/token || hostname > /data/token; exec sleep 1000000"},
					VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/config"}, {Name: "data", MountPath: "/data"}}}},
				Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "cm-0"}}}},
					{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}}}}}
	if _, err := ic.cs.AppsV1().Deployments("shop").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The original pod's token, once it is written.
	var token string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		pods, err := ic.cs.CoreV1().Pods("shop").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err == nil && len(pods.Items) == 1 && pods.Items[0].Status.Phase == corev1.PodRunning {
			if out, err := execIn(t, ic.cp.Config(), ic.cs, "shop", pods.Items[0].Name, "web", "cat", "/data/token"); err == nil && out == pods.Items[0].Name+"\n" {
				token = out
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the web pod did not write its token: %v", err)
		}
		time.Sleep(time.Second)
	}
	ic.apply(`
apiVersion: arca.io/v1alpha1
kind: RestoreHook
metadata: {name: smoke, namespace: arca-system}
spec:
  labelSelector: app=web
  post: [{command: [cat, /config/v, /data/token], waitTimeout: 3m, timeout: 20s}]
`)
	ic.apply(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: shop, namespace: arca-system}
spec: {storageLocation: default, includedNamespaces: [shop]}
`)
	bj := &v1alpha1.BackupJob{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: v1alpha1.ExtensionNamespace}}
	if st := ic.waitJob(bj, 2*time.Minute); st.Phase != v1alpha1.JobCompleted {
		t.Fatalf("backup: %+v\n%s", bj.Status, ic.extensionLog())
	}
	rpID := bj.Status.RecoveryPointID

	verify := func(t *testing.T, name, extra string) *v1alpha1.RestoreJob {
		t.Helper()
		ic.apply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: %s, namespace: arca-system%s}
spec:
  recoveryPoint: %s
  storageLocation: default
  restoreHookReferences: [{namespace: arca-system, name: smoke}]
  verification: {readDataPercent: 100}
`, name, extra, rpID))
		rj := &v1alpha1.RestoreJob{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: v1alpha1.ExtensionNamespace}}
		ic.waitJob(rj, 4*time.Minute)
		return rj
	}
	// sandboxGone: every sandbox namespace is deleted or being deleted,
	// and shop is as it was.
	sandboxGone := func(t *testing.T, v *v1alpha1.VerificationResult) {
		t.Helper()
		if !v.CleanedUp {
			t.Errorf("cleanedUp is false")
		}
		for _, n := range v.SandboxNamespaces {
			ns, err := ic.cs.CoreV1().Namespaces().Get(ctx, n, metav1.GetOptions{})
			if err == nil && ns.DeletionTimestamp == nil {
				t.Errorf("sandbox namespace %s is still there after the verification", n)
			} else if err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
		}
		cms, err := ic.cs.CoreV1().ConfigMaps("shop").List(ctx, metav1.ListOptions{})
		if err != nil || len(cms.Items) < len(want) {
			t.Fatalf("shop after the verification: %v, %d ConfigMaps", err, len(cms.Items))
		}
	}

	t.Run("a clean point is verified", func(t *testing.T) {
		rj := verify(t, "verify-clean", "")
		v := rj.Status.Verification
		if rj.Status.Phase != v1alpha1.JobCompleted || v == nil || v.Verdict != v1alpha1.VerdictVerified || len(v.Codes) != 0 {
			t.Fatalf("clean verification: %s %s %+v %+v\n%s", rj.Status.Phase, rj.Status.Message, rj.Status.Errors, v, ic.extensionLog())
		}
		// 30 ConfigMaps, the Secret, the Service, the claim, the Deployment
		// and the namespace (the default ServiceAccount and
		// kube-root-ca.crt already exist in a new namespace: skipped, not
		// compared; the ReplicaSet and Pod are the Deployment's: skipped as
		// owned).
		if v.ObjectsCompared != 35 || v.PacksRead != v.PacksChecked || v.PacksRead == 0 {
			t.Fatalf("compared %d objects, read %d of %d packs", v.ObjectsCompared, v.PacksRead, v.PacksChecked)
		}
		sandbox := v1alpha1.VerificationNamespacePrefix
		if len(v.SandboxNamespaces) != 1 || !strings.HasPrefix(v.SandboxNamespaces[0], sandbox) || !strings.HasSuffix(v.SandboxNamespaces[0], "-shop") {
			t.Fatalf("sandbox namespaces %v", v.SandboxNamespaces)
		}
		if h := rj.Status.Hooks; len(h) != 1 || h[0].Stdout != want["cm-0"]+token || !strings.HasPrefix(h[0].Pod, v.SandboxNamespaces[0]+"/web-") {
			t.Fatalf("smoke test in the restored pod: %+v", h)
		}
		if !strings.Contains(rj.Status.Message, "verified") {
			t.Errorf("message %q", rj.Status.Message)
		}
		sandboxGone(t, v)
	})

	packs := repoPacks(t, repoDir)
	victim := packs[len(packs)-1]
	orig, err := os.ReadFile(victim.path)
	if err != nil {
		t.Fatal(err)
	}
	failedWith := func(t *testing.T, rj *v1alpha1.RestoreJob, problem string) {
		t.Helper()
		v := rj.Status.Verification
		if rj.Status.Phase != v1alpha1.JobFailed || v == nil || v.Verdict != v1alpha1.VerdictVerificationFailed ||
			!hasCode(rj.Status.Errors, v1alpha1.CodeVerificationDataDamaged) {
			t.Fatalf("verification of a tampered repository: %s %s %+v %+v", rj.Status.Phase, rj.Status.Message, rj.Status.Errors, v)
		}
		found := false
		for _, d := range v.Differences {
			if d.Object == "data/"+victim.name && strings.Contains(d.Problem, problem) {
				found = true
			}
		}
		if !found {
			t.Fatalf("no difference names data/%s with %q: %+v", victim.name, problem, v.Differences)
		}
		sandboxGone(t, v)
	}

	t.Run("a changed byte in a pack fails verification", func(t *testing.T) {
		bad := append([]byte(nil), orig...)
		bad[len(bad)/3] ^= 0x40
		if err := os.WriteFile(victim.path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = os.WriteFile(victim.path, orig, 0o600) }()
		failedWith(t, verify(t, "verify-changed", ""), "content does not match its name")
	})

	t.Run("a deleted pack fails verification", func(t *testing.T) {
		aside := victim.path + ".aside"
		if err := os.Rename(victim.path, aside); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = os.Rename(aside, victim.path) }()
		failedWith(t, verify(t, "verify-deleted", ""), "pack is missing")
	})

	t.Run("the cluster owner's policy bounds a vault's verification", func(t *testing.T) {
		pol := &v1alpha1.ClusterTrustPolicy{ObjectMeta: metav1.ObjectMeta{Name: "prod"},
			Spec: v1alpha1.ClusterTrustPolicySpec{StorageLocations: []string{"*"}, Namespaces: []string{"*"}, Hooks: true}}
		if err := ic.c.Create(ctx, pol); err != nil {
			t.Fatal(err)
		}
		before := sandboxCount(t, ic)
		rj := verify(t, "vault-verify-refused", ", labels: {arca.io/vault: prod}")
		if rj.Status.Phase != v1alpha1.JobFailed || !hasCode(rj.Status.Errors, v1alpha1.CodePolicyDeniesVerification) ||
			!strings.Contains(rj.Status.Message, "--allow-verification") || rj.Status.Verification != nil {
			t.Fatalf("a vault's verification without spec.verification in its policy: %s %+v", rj.Status.Message, rj.Status.Errors)
		}
		pol.Spec.Verification, pol.Spec.Namespaces = true, []string{"shop"}
		if err := ic.c.Update(ctx, pol); err != nil {
			t.Fatal(err)
		}
		rj = verify(t, "vault-verify-outside", ", labels: {arca.io/vault: prod}")
		if rj.Status.Phase != v1alpha1.JobFailed || !hasCode(rj.Status.Errors, v1alpha1.CodePolicyDeniesNamespace) ||
			!strings.Contains(rj.Status.Message, v1alpha1.VerificationNamespacePrefix) {
			t.Fatalf("a vault's verification into namespaces its policy does not reach: %s %+v", rj.Status.Message, rj.Status.Errors)
		}
		if n := sandboxCount(t, ic); n != before {
			t.Fatalf("a refused verification created sandbox namespaces: %d before, %d after", before, n)
		}
		pol.Spec.Namespaces = []string{"shop", v1alpha1.VerificationNamespacePrefix + "*"}
		if err := ic.c.Update(ctx, pol); err != nil {
			t.Fatal(err)
		}
		rj = verify(t, "vault-verify-allowed", ", labels: {arca.io/vault: prod}")
		if v := rj.Status.Verification; rj.Status.Phase != v1alpha1.JobCompleted || v == nil || v.Verdict != v1alpha1.VerdictVerified {
			t.Fatalf("a vault's verification its policy allows: %s %+v %+v", rj.Status.Message, rj.Status.Errors, v)
		}
	})
}

type packFile struct{ name, path string }

// repoPacks lists the packs of a file repository, smallest first.
func repoPacks(t *testing.T, dir string) []packFile {
	t.Helper()
	var out []packFile
	sizes := map[string]int64{}
	err := filepath.Walk(filepath.Join(dir, "data"), func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || strings.HasPrefix(fi.Name(), ".") {
			return err
		}
		out = append(out, packFile{fi.Name(), p})
		sizes[fi.Name()] = fi.Size()
		return nil
	})
	if err != nil || len(out) == 0 {
		t.Fatalf("packs in %s: %v", dir, err)
	}
	sort.Slice(out, func(i, j int) bool { return sizes[out[i].name] < sizes[out[j].name] })
	return out
}

func sandboxCount(t *testing.T, ic *inCluster) int {
	t.Helper()
	l, err := ic.cs.CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ns := range l.Items {
		if strings.HasPrefix(ns.Name, v1alpha1.VerificationNamespacePrefix) {
			n++
		}
	}
	return n
}

func hasCode(issues []v1alpha1.JobIssue, code string) bool {
	for _, i := range issues {
		if i.Code == code {
			return true
		}
	}
	return false
}
