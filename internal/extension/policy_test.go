package extension_test

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/extension"
)

// TestTrustPolicyRefusals runs jobs labelled as a vault's through an
// extension on a real API server: each one the vault's ClusterTrustPolicy
// does not allow fails with its code and a message naming the field and
// the flag that widen it, and did nothing (no repository written, no
// object restored, no hook run, no point forgotten); jobs inside the bound
// run.
func TestTrustPolicyRefusals(t *testing.T) {
	ctx := context.Background()
	a := newCluster(t, cpA, "arca-trust")
	mine, theirs := filepath.Join(t.TempDir(), "mine"), filepath.Join(t.TempDir(), "theirs")
	a.storageLocation("mine", "file://"+mine, false)
	a.storageLocation("theirs", "file://"+theirs, false)
	a.namespace("trust-shop")
	a.configMaps("trust-shop", 3)
	a.namespace("trust-other")
	a.configMaps("trust-other", 1)
	a.pod("trust-shop", "db-0", map[string]string{"app": "db"})
	pol := &v1alpha1.ClusterTrustPolicy{ObjectMeta: metav1.ObjectMeta{Name: "tv"},
		Spec: v1alpha1.ClusterTrustPolicySpec{StorageLocations: []string{"mine"}, Namespaces: []string{"trust-shop", "trust-shop-*"}}}
	if err := a.c.Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.c.Delete(context.Background(), pol) })
	rec := &recorder{}
	a.startExtension(extension.Options{Executor: rec})

	refused := func(kind, name, code string, says ...string) {
		t.Helper()
		var st v1alpha1.JobStatusCommon
		if kind == "backup" {
			st = a.waitBackup(name, time.Minute).Status.JobStatusCommon
		} else {
			st = a.waitRestore(name, time.Minute).Status.JobStatusCommon
		}
		if st.Phase != v1alpha1.JobFailed || len(st.Errors) != 1 || st.Errors[0].Code != code {
			t.Errorf("%s %s: phase %s, errors %+v; want Failed with %s", kind, name, st.Phase, st.Errors, code)
			return
		}
		for _, s := range says {
			if !strings.Contains(st.Errors[0].Message, s) {
				t.Errorf("%s %s: message %q does not say %q", kind, name, st.Errors[0].Message, s)
			}
		}
	}
	backup := func(name, vault, spec string) {
		t.Helper()
		labels := ""
		if vault != "" {
			labels = "\n  labels: {arca.io/vault: " + vault + "}"
		}
		a.mustApply("apiVersion: arca.io/v1alpha1\nkind: BackupJob\nmetadata:\n  name: " + name + "\n  namespace: arca-trust" + labels + "\nspec:\n" + spec)
	}
	restoreJob := func(name, spec string) {
		t.Helper()
		a.mustApply("apiVersion: arca.io/v1alpha1\nkind: RestoreJob\nmetadata:\n  name: " + name + "\n  namespace: arca-trust\n  labels: {arca.io/vault: tv}\nspec:\n" + spec)
	}
	// The storage probe lays out empty directories; a job writes files.
	noRepository := func(dir string) {
		t.Helper()
		var files []string
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, p)
			}
			return nil
		})
		if len(files) > 0 {
			t.Errorf("%s was written: %v", dir, files)
		}
	}

	backup("untrusted", "ghost", "  storageLocation: mine\n  includedNamespaces: [trust-shop]\n")
	refused("backup", "untrusted", v1alpha1.CodeVaultNotTrusted, `vault "ghost" is not trusted`, "arca trusted-access enable --vault ghost")
	backup("their-storage", "tv", "  storageLocation: theirs\n  includedNamespaces: [trust-shop]\n")
	refused("backup", "their-storage", v1alpha1.CodePolicyDeniesStorageLocation, `storage location "theirs"`, "spec.storageLocations", "--allow-storage-locations theirs")
	backup("other-namespace", "tv", "  storageLocation: mine\n  includedNamespaces: [trust-shop, trust-other]\n")
	refused("backup", "other-namespace", v1alpha1.CodePolicyDeniesNamespace, "namespaces [trust-other] are outside", "spec.namespaces", "--allow-namespaces")
	backup("everything", "tv", "  storageLocation: mine\n")
	refused("backup", "everything", v1alpha1.CodePolicyDeniesNamespace, "trust-other")
	a.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupHook
metadata: {name: freeze, namespace: arca-trust}
spec:
  labelSelector: app=db
  pre: [{command: [fsfreeze, freeze]}]
`)
	backup("with-hooks", "tv", "  storageLocation: mine\n  includedNamespaces: [trust-shop]\n  backupHookReferences: [{namespace: arca-trust, name: freeze}]\n")
	refused("backup", "with-hooks", v1alpha1.CodePolicyDeniesHooks, "spec.hooks", "--allow-hooks")
	// A copy's target is bounded like the storage location: refused
	// before anything is written to either.
	backup("copy-to-theirs", "tv", "  storageLocation: mine\n  copyTo: theirs\n  includedNamespaces: [trust-shop]\n")
	refused("backup", "copy-to-theirs", v1alpha1.CodePolicyDeniesStorageLocation, `storage location "theirs"`, "--allow-storage-locations theirs")
	if calls := rec.Calls(); len(calls) != 0 {
		t.Errorf("hooks ran: %v", calls)
	}
	noRepository(mine)
	noRepository(theirs)

	// Inside the bound: backs up trust-shop.
	backup("allowed", "tv", "  storageLocation: mine\n  includedNamespaces: [trust-shop]\n")
	bj := a.waitBackup("allowed", time.Minute)
	if !bj.Status.Phase.Terminal() || bj.Status.Phase == v1alpha1.JobFailed {
		t.Fatalf("allowed backup: %s %s %+v", bj.Status.Phase, bj.Status.Message, bj.Status.Errors)
	}
	if rps := recoveryPoints(t, mine); len(rps) != 1 {
		t.Fatalf("%d recovery points in mine, want 1", len(rps))
	}
	backup("forget", "tv", "  storageLocation: mine\n  forgetRecoveryPoints: ["+bj.Status.RecoveryPointID+"]\n")
	refused("backup", "forget", v1alpha1.CodePolicyDeniesForget, "spec.forget", "--allow-forget")
	if rps := recoveryPoints(t, mine); len(rps) != 1 {
		t.Errorf("%d recovery points after a refused forget, want 1", len(rps))
	}

	// Restores: mapped into kube-system, with cluster-scoped objects, with
	// modifiers — refused, nothing written; into trust-shop-copy — done.
	rp := bj.Status.RecoveryPointID
	restoreJob("into-kube-system", "  recoveryPoint: "+rp+"\n  storageLocation: mine\n  namespaceMappings: {trust-shop: kube-system}\n")
	refused("restore", "into-kube-system", v1alpha1.CodePolicyDeniesNamespace, "namespaces [kube-system] are outside", "named literally")
	if _, err := a.cs.CoreV1().ConfigMaps("kube-system").Get(ctx, "cm-000", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("cm-000 in kube-system: %v", err)
	}
	restoreJob("cluster-scoped", "  recoveryPoint: "+rp+"\n  storageLocation: mine\n  namespaceMappings: {trust-shop: trust-shop-a}\n  includeClusterScopeResources: true\n")
	refused("restore", "cluster-scoped", v1alpha1.CodePolicyDeniesClusterScoped, "spec.restoreClusterScoped", "--allow-cluster-scoped")
	restoreJob("modifiers", "  recoveryPoint: "+rp+"\n  storageLocation: mine\n  namespaceMappings: {trust-shop: trust-shop-b}\n"+
		"  resourceModifiers: [{conditions: {groupResource: configmaps}, mergePatches: [{data: {k: evil}}]}]\n")
	refused("restore", "modifiers", v1alpha1.CodePolicyDeniesResourceModifiers, "spec.resourceModifiers", "--allow-resource-modifiers")
	for _, ns := range []string{"trust-shop-a", "trust-shop-b"} {
		if _, err := a.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("namespace %s was created by a refused restore: %v", ns, err)
		}
	}
	restoreJob("allowed-restore", "  recoveryPoint: "+rp+"\n  storageLocation: mine\n  namespaceMappings: {trust-shop: trust-shop-copy}\n")
	rj := a.waitRestore("allowed-restore", time.Minute)
	if rj.Status.Phase != v1alpha1.JobCompleted && rj.Status.Phase != v1alpha1.JobCompletedWithWarnings {
		t.Fatalf("allowed restore: %s %s %+v", rj.Status.Phase, rj.Status.Message, rj.Status.Errors)
	}
	if _, err := a.cs.CoreV1().ConfigMaps("trust-shop-copy").Get(ctx, "cm-002", metav1.GetOptions{}); err != nil {
		t.Errorf("restored configmap: %v", err)
	}

	// A job without the vault label, while a vault is trusted but the
	// admission policy that makes vaults label their jobs is missing.
	backup("unlabelled", "", "  storageLocation: mine\n  includedNamespaces: [trust-shop]\n")
	refused("backup", "unlabelled", v1alpha1.CodeVaultAdmissionPolicyMissing, "ValidatingAdmissionPolicyBinding arca-vault-jobs is missing", "arca trusted-access enable")
	a.admissionBound()
	backup("unlabelled-bound", "", "  storageLocation: mine\n  includedNamespaces: [trust-shop]\n")
	if j := a.waitBackup("unlabelled-bound", time.Minute); j.Status.Phase == v1alpha1.JobFailed {
		t.Errorf("an unlabelled (owner's) job with the admission binding in place: %s %+v", j.Status.Message, j.Status.Errors)
	}
}

// TestVaultPointRefusals: in a repository shared by two vaults and by two
// instances of one vault, a vault's RestoreJob, verification and
// RecoveryPointQuery whose spec.vaultPoint names another vault or instance
// than the point's tags are refused with RecoveryPointOfAnotherInstance
// before anything is restored or read (no namespace created, no answer),
// while the point of the right instance restores, a diff may compare with
// another instance of the same vault, and the cluster owner's own job and
// query (no vault, no vaultPoint) still read any point.
func TestVaultPointRefusals(t *testing.T) {
	ctx := context.Background()
	a := newCluster(t, cpA, "arca-vp")
	shared := filepath.Join(t.TempDir(), "shared")
	a.storageLocation("shared", "file://"+shared, false)
	a.namespace("vp-shop")
	a.configMaps("vp-shop", 2)
	// The owner's (unlabelled) jobs need the admission binding while a
	// vault is trusted.
	a.admissionBound()
	pol := &v1alpha1.ClusterTrustPolicy{ObjectMeta: metav1.ObjectMeta{Name: "vp"},
		Spec: v1alpha1.ClusterTrustPolicySpec{StorageLocations: []string{"shared"}, Namespaces: []string{"vp-*", v1alpha1.VerificationNamespacePrefix + "*"},
			Verification: true}}
	if err := a.c.Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.c.Delete(context.Background(), pol) })
	a.startExtension(extension.Options{})

	// Three points of vp-shop, tagged as three backups would tag them.
	backup := func(name, vault, instance string) string {
		t.Helper()
		a.mustApply(fmt.Sprintf("apiVersion: arca.io/v1alpha1\nkind: BackupJob\nmetadata: {name: %s, namespace: arca-vp, labels: {arca.io/vault: vp}}\n"+
			"spec: {storageLocation: shared, includedNamespaces: [vp-shop], tags: {%s: %s, %s: %s}}\n", name, v1alpha1.TagVault, vault, v1alpha1.TagInstance, instance))
		j := a.waitBackup(name, time.Minute)
		if j.Status.RecoveryPointID == "" {
			t.Fatalf("backup %s: %s %s %+v", name, j.Status.Phase, j.Status.Message, j.Status.Errors)
		}
		return j.Status.RecoveryPointID
	}
	mine, otherInstance, otherVault := backup("vp-mine", "vp", "shop"), backup("vp-web", "vp", "web"), backup("vp-west", "west", "shop")

	restore := func(name, rp, extra string) *v1alpha1.RestoreJob {
		t.Helper()
		a.mustApply("apiVersion: arca.io/v1alpha1\nkind: RestoreJob\nmetadata: {name: " + name + ", namespace: arca-vp, labels: {arca.io/vault: vp}}\n" +
			"spec:\n  recoveryPoint: " + rp + "\n  storageLocation: shared\n  vaultPoint: {vault: vp, instance: shop}\n" + extra)
		return a.waitRestore(name, time.Minute)
	}
	refused := func(j *v1alpha1.RestoreJob, says ...string) {
		t.Helper()
		st := j.Status
		if st.Phase != v1alpha1.JobFailed || len(st.Errors) != 1 || st.Errors[0].Code != v1alpha1.CodeRecoveryPointOfAnotherInstance {
			t.Errorf("restore %s: %s %+v; want Failed with %s", j.Name, st.Phase, st.Errors, v1alpha1.CodeRecoveryPointOfAnotherInstance)
			return
		}
		for _, s := range says {
			if !strings.Contains(st.Errors[0].Message, s) {
				t.Errorf("restore %s: %q does not say %q", j.Name, st.Errors[0].Message, s)
			}
		}
	}
	absent := func(ns string) {
		t.Helper()
		if _, err := a.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("namespace %s exists after a refused restore (%v)", ns, err)
		}
	}

	refused(restore("of-west", otherVault, "  namespaceMappings: {vp-shop: vp-from-west}\n"),
		otherVault, `arca.io/vault="west"`, `vault "vp", instance "shop"`, "arca vault sync")
	absent("vp-from-west")
	refused(restore("of-web", otherInstance, "  namespaceMappings: {vp-shop: vp-from-web}\n"), `arca.io/instance="web"`)
	absent("vp-from-web")
	refused(restore("verify-web", otherInstance, "  verification: {readDataPercent: 0}\n"), `arca.io/instance="web"`)
	sandboxes, err := a.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range sandboxes.Items {
		if strings.HasPrefix(ns.Name, v1alpha1.VerificationNamespacePrefix) {
			t.Errorf("sandbox namespace %s exists after a refused verification", ns.Name)
		}
	}
	if j := restore("of-mine", mine, "  namespaceMappings: {vp-shop: vp-from-mine}\n"); j.Status.Phase != v1alpha1.JobCompleted && j.Status.Phase != v1alpha1.JobCompletedWithWarnings {
		t.Errorf("restore of the instance's own point: %s %s %+v", j.Status.Phase, j.Status.Message, j.Status.Errors)
	} else if _, err := a.cs.CoreV1().ConfigMaps("vp-from-mine").Get(ctx, "cm-001", metav1.GetOptions{}); err != nil {
		t.Errorf("restored configmap: %v", err)
	}
	// The owner's own restore (kubectl: no vault label, no vaultPoint)
	// of the other vault's point still works.
	a.mustApply("apiVersion: arca.io/v1alpha1\nkind: RestoreJob\nmetadata: {name: owners, namespace: arca-vp}\n" +
		"spec: {recoveryPoint: " + otherVault + ", storageLocation: shared, namespaceMappings: {vp-shop: vp-owners}}\n")
	if j := a.waitRestore("owners", time.Minute); j.Status.Phase != v1alpha1.JobCompleted && j.Status.Phase != v1alpha1.JobCompletedWithWarnings {
		t.Errorf("the owner's restore: %s %s %+v", j.Status.Phase, j.Status.Message, j.Status.Errors)
	}

	// Queries: the same check on the point asked about; a diff's other
	// side may be another instance's point of the vault, not another
	// vault's.
	as := asker{cl: a}
	vp := &v1alpha1.VaultPoint{Vault: "vp", Instance: "shop"}
	q := func(rp, against string) v1alpha1.RecoveryPointQuerySpec {
		s := v1alpha1.RecoveryPointQuerySpec{Kind: v1alpha1.QueryContents, RecoveryPoint: rp, StorageLocation: "shared", VaultPoint: vp}
		if against != "" {
			s.Kind, s.Against = v1alpha1.QueryDiff, against
		}
		return s
	}
	as.ask("vp", true, q(otherVault, "")).refused(t, v1alpha1.CodeRecoveryPointOfAnotherInstance, `arca.io/vault="west"`)
	as.ask("vp", true, q(otherInstance, "")).refused(t, v1alpha1.CodeRecoveryPointOfAnotherInstance, `arca.io/instance="web"`)
	as.ask("vp", true, q(mine, otherVault)).refused(t, v1alpha1.CodeRecoveryPointOfAnotherInstance, "spec.against", `arca.io/vault="west"`)
	if res := as.ask("vp", true, q(mine, "")).ok(t); !slices.Contains(names(res.Namespaces), "vp-shop") {
		t.Errorf("contents of the instance's own point: %+v", res.Namespaces)
	}
	as.ask("vp", true, q(mine, otherInstance)).ok(t)
	owners := q(otherVault, "")
	owners.VaultPoint = nil
	as.ask("", false, owners).ok(t)
}
