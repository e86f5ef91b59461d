package extension_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/testenv"
)

// TestHooksInRealContainers runs hooks through the pods/exec subresource
// in containers on a real node, with a CSI driver that keeps real bytes:
//   - onError Continue (exit code and stderr captured, the next command
//     runs) and a timeout, then onError Fail (no recovery point; the post
//     command still runs);
//   - a hook outside arca-system naming another namespace is refused, and
//     one acting in its own namespace reaches only that namespace's pod;
//   - a pre hook writes a file into the PVC and the post hook deletes it:
//     the file is in the snapshot (read back after the namespace is
//     deleted and restored) and not in the live volume, so the pre hook ran
//     before the cut and the post hook after it; a hook matching no pod
//     gives HookMatchedNoPod;
//   - a restore pre hook runs in an existing pod, and one failing stops the
//     restore before it writes;
//   - a restore post hook runs in the restored pod once it is Ready (the
//     container becomes Ready only seconds after it starts, and the
//     command fails if it runs before) and its output is in the status.
func TestHooksInRealContainers(t *testing.T) {
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{Nodes: 1})
	csi := testenv.StartHostPathCSI(t, cp)
	ctx := context.Background()
	if err := extension.InstallCRDs(ctx, cp.Config()); err != nil {
		t.Fatal(err)
	}
	app := testenv.AppImage(t, cp.Registry)
	cl := newCluster(t, cp, "arca-system")
	dir := filepath.Join(t.TempDir(), "repo")
	cl.storageLocation("default", "file://"+dir, false)
	ex, err := extension.NewPodExecutor(cl.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl.startExtension(extension.Options{Executor: ex})

	// shop: a Deployment whose pod mounts a PVC; it becomes Ready 4 s after
	// it starts. team-a: a bare pod with the same label.
	cl.namespace("shop")
	cl.namespace("team-a")
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "shop"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &csi.StorageClass,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("64Mi")}}}}
	if _, err := cl.cs.CoreV1().PersistentVolumeClaims("shop").Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	grace := int64(1)
	podSpec := corev1.PodSpec{
		TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{{Name: "db", Image: app,
			Command:        []string{"sh", "-c", "sleep 4; touch /tmp/ready; exec sleep 1000000"},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/ready"}}}, PeriodSeconds: 1},
			VolumeMounts:   []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
		Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}},
	}
	one := int32(1)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "db"}}, Spec: podSpec}}}
	if _, err := cl.cs.AppsV1().Deployments("shop").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	teamSpec := *podSpec.DeepCopy()
	teamSpec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	if _, err := cl.cs.CoreV1().Pods("team-a").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db-a", Namespace: "team-a", Labels: map[string]string{"app": "db"}},
		Spec: teamSpec}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	shopPod := cl.readyPod("shop", "app=db", 3*time.Minute)
	cl.readyPod("team-a", "app=db", 3*time.Minute)
	t.Logf("pods ready: shop/%s on %s", shopPod.Name, shopPod.Spec.NodeName)

	backup := func(name, hooks string) *v1alpha1.BackupJob {
		t.Helper()
		cl.mustApply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: BackupJob
metadata: {name: %s, namespace: arca-system}
spec: {storageLocation: default, includedNamespaces: [shop, team-a], backupHookReferences: [%s]}
`, name, hooks))
		return cl.waitBackup(name, 3*time.Minute)
	}

	t.Run("onError and timeout", func(t *testing.T) {
		cl.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupHook
metadata: {name: policies, namespace: arca-system}
spec:
  includedNamespaces: [shop]
  labelSelector: app=db
  pre:
  - {command: [sh, -c, "echo partial; echo broken >&2; exit 7"], onError: Continue}
  - {command: [sh, -c, "sleep 30"], timeout: 2s, onError: Continue}
  - {command: [echo, still-ran]}
`)
		start := time.Now()
		j := backup("policies", "{namespace: arca-system, name: policies}")
		if j.Status.Phase != v1alpha1.JobCompletedWithWarnings || codesOf(j.Status.Warnings) != "HookFailed,HookFailed" {
			t.Fatalf("phase %s, warnings %+v: %s", j.Status.Phase, j.Status.Warnings, j.Status.Message)
		}
		if took := time.Since(start); took > 25*time.Second {
			t.Errorf("backup took %s: the 2s timeout did not stop the 30s command", took)
		}
		h := j.Status.Hooks
		if len(h) != 3 {
			t.Fatalf("hook results %+v", h)
		}
		if h[0].ExitCode == nil || *h[0].ExitCode != 7 || h[0].Stdout != "partial\n" || h[0].Stderr != "broken\n" || h[0].Pod != "shop/"+shopPod.Name || h[0].Phase != "pre" {
			t.Errorf("failing command: %+v", h[0])
		}
		if !strings.Contains(j.Status.Warnings[0].Message, `exited with code 7: broken`) {
			t.Errorf("warning %q does not give the exit code and stderr", j.Status.Warnings[0].Message)
		}
		if h[1].ExitCode != nil || !strings.Contains(h[1].Error, "timed out after 2s") || h[1].Duration.Duration < 2*time.Second || h[1].Duration.Duration > 10*time.Second {
			t.Errorf("timed-out command: %+v", h[1])
		}
		if h[2].Stdout != "still-ran\n" || h[2].ExitCode == nil || *h[2].ExitCode != 0 {
			t.Errorf("command after the failures: %+v", h[2])
		}

		cl.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupHook
metadata: {name: failing, namespace: arca-system}
spec:
  includedNamespaces: [shop]
  labelSelector: app=db
  pre: [{command: [sh, -c, "echo cannot freeze >&2; exit 3"]}]
  post: [{command: [echo, thawed]}]
`)
		before := len(recoveryPoints(t, dir))
		j = backup("failing", "{namespace: arca-system, name: failing}")
		if j.Status.Phase != v1alpha1.JobFailed || !hasCode(j.Status.Errors, v1alpha1.CodePreHookFailed) || !strings.Contains(j.Status.Message, "cannot freeze") {
			t.Fatalf("onError Fail: phase %s, errors %+v", j.Status.Phase, j.Status.Errors)
		}
		if after := len(recoveryPoints(t, dir)); after != before {
			t.Errorf("recovery points %d → %d after a failed pre hook", before, after)
		}
		if len(j.Status.Hooks) != 2 || j.Status.Hooks[1].Phase != "post" || j.Status.Hooks[1].Stdout != "thawed\n" {
			t.Errorf("post command after the failed pre command: %+v", j.Status.Hooks)
		}
	})

	t.Run("namespace rule", func(t *testing.T) {
		cl.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupHook
metadata: {name: reach-shop, namespace: team-a}
spec:
  includedNamespaces: [shop]
  labelSelector: app=db
  pre: [{command: [sh, -c, "echo intruder > /data/intruder"]}]
`)
		cl.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupHook
metadata: {name: own, namespace: team-a}
spec:
  labelSelector: app=db
  pre: [{command: [sh, -c, "echo in $(hostname)"]}]
`)
		j := backup("namespaces", "{namespace: team-a, name: reach-shop}, {namespace: team-a, name: own}")
		if codesOf(j.Status.Warnings) != v1alpha1.CodeHookNamespaceRefused {
			t.Fatalf("warnings %+v, want one HookNamespaceRefused", j.Status.Warnings)
		}
		if w := j.Status.Warnings[0].Message; !strings.Contains(w, `"shop"`) || !strings.Contains(w, "team-a/reach-shop") {
			t.Errorf("refusal %q does not name the hook and the namespace", w)
		}
		// Both hooks select app=db, which the shop pod has too: only team-a's ran.
		if h := j.Status.Hooks; len(h) != 1 || h[0].Pod != "team-a/db-a" || h[0].Stdout != "in db-a\n" {
			t.Errorf("hook results %+v, want one, in team-a/db-a", h)
		}
		if out := cl.execIn(ex, "shop", shopPod.Name, "sh", "-c", "ls /data"); strings.Contains(out, "intruder") {
			t.Errorf("the refused hook wrote into shop's volume: %q", out)
		}
	})

	token := fmt.Sprintf("frozen-%d", time.Now().UnixNano())
	var rpID string
	t.Run("pre hook effect inside the snapshot", func(t *testing.T) {
		cl.mustApply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: BackupHook
metadata: {name: freeze, namespace: arca-system}
spec:
  includedNamespaces: [shop]
  labelSelector: app=db
  pre: [{command: [sh, -c, "echo %s > /data/token && sync && echo froze"]}]
  post: [{command: [sh, -c, "rm /data/token && echo thawed"]}]
`, token))
		cl.mustApply(`
apiVersion: arca.io/v1alpha1
kind: BackupHook
metadata: {name: nobody, namespace: arca-system}
spec:
  labelSelector: app=nothing-has-this
  pre: [{command: ["true"]}]
`)
		j := backup("freeze", "{namespace: arca-system, name: freeze}, {namespace: arca-system, name: nobody}")
		if j.Status.Phase != v1alpha1.JobCompletedWithWarnings || codesOf(j.Status.Warnings) != v1alpha1.CodeHookMatchedNoPod {
			t.Fatalf("phase %s, warnings %+v: %s", j.Status.Phase, j.Status.Warnings, j.Status.Message)
		}
		if w := j.Status.Warnings[0]; w.Object != "arca-system/nobody" || !strings.Contains(w.Message, "app=nothing-has-this") {
			t.Errorf("no-target warning %+v", w)
		}
		h := j.Status.Hooks
		if len(h) != 2 || h[0].Phase != "pre" || h[0].Stdout != "froze\n" || h[1].Phase != "post" || h[1].Stdout != "thawed\n" {
			t.Fatalf("hook results %+v", h)
		}
		if out := cl.execIn(ex, "shop", shopPod.Name, "ls", "/data"); strings.Contains(out, "token") {
			t.Fatalf("the post hook did not remove the file from the live volume: %q", out)
		}
		rpID = j.Status.RecoveryPointID
	})
	if rpID == "" {
		t.Fatal("no recovery point to restore")
	}

	t.Run("restore pre hook in existing pods", func(t *testing.T) {
		cl.mustApply(`
apiVersion: arca.io/v1alpha1
kind: RestoreHook
metadata: {name: before, namespace: team-a}
spec:
  labelSelector: app=db
  pre: [{command: [sh, -c, "echo pre-restore in $(hostname)"]}]
`)
		cl.mustApply(`
apiVersion: arca.io/v1alpha1
kind: RestoreHook
metadata: {name: refuse, namespace: team-a}
spec:
  labelSelector: app=db
  pre: [{command: [sh, -c, "echo not now >&2; exit 1"]}]
`)
		restoreTeam := func(name, hook string) *v1alpha1.RestoreJob {
			cl.mustApply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: %s, namespace: arca-system}
spec:
  recoveryPoint: %s
  storageLocation: default
  includedNamespaces: [team-a]
  restoreHookReferences: [{namespace: team-a, name: %s}]
`, name, rpID, hook))
			return cl.waitRestore(name, 2*time.Minute)
		}
		r := restoreTeam("team-pre", "before")
		if r.Status.Phase != v1alpha1.JobCompleted && r.Status.Phase != v1alpha1.JobCompletedWithWarnings {
			t.Fatalf("restore: %s %+v %+v", r.Status.Phase, r.Status.Errors, r.Status.Warnings)
		}
		if h := r.Status.Hooks; len(h) != 1 || h[0].Phase != "pre" || h[0].Pod != "team-a/db-a" || h[0].Stdout != "pre-restore in db-a\n" {
			t.Errorf("restore pre hook results %+v", h)
		}
		r = restoreTeam("team-refused", "refuse")
		if r.Status.Phase != v1alpha1.JobFailed || !hasCode(r.Status.Errors, v1alpha1.CodePreHookFailed) || !strings.Contains(r.Status.Message, "nothing restored") ||
			!strings.Contains(r.Status.Message, "not now") || len(r.Status.Results) != 0 {
			t.Errorf("failing restore pre hook: %s %q %+v results %v", r.Status.Phase, r.Status.Message, r.Status.Errors, r.Status.Results)
		}
	})

	t.Run("restore post hook in the restored pod", func(t *testing.T) {
		cl.deleteNamespace("shop", 3*time.Minute)
		cl.mustApply(`
apiVersion: arca.io/v1alpha1
kind: RestoreHook
metadata: {name: check, namespace: arca-system}
spec:
  labelSelector: app=db
  post:
  - {command: [sh, -c, "test -f /tmp/ready && cat /data/token"], waitTimeout: 3m, timeout: 20s}
`)
		cl.mustApply(`
apiVersion: arca.io/v1alpha1
kind: RestoreHook
metadata: {name: nobody, namespace: arca-system}
spec:
  labelSelector: app=nothing-has-this
  post: [{command: ["true"], waitTimeout: 3s}]
`)
		cl.mustApply(fmt.Sprintf(`
apiVersion: arca.io/v1alpha1
kind: RestoreJob
metadata: {name: disaster, namespace: arca-system}
spec:
  recoveryPoint: %s
  storageLocation: default
  includedNamespaces: [shop]
  restoreHookReferences: [{namespace: arca-system, name: check}, {namespace: arca-system, name: nobody}]
`, rpID))
		r := cl.waitRestore("disaster", 5*time.Minute)
		if r.Status.Phase != v1alpha1.JobCompletedWithWarnings || codesOf(r.Status.Warnings) != v1alpha1.CodeHookMatchedNoPod {
			t.Fatalf("restore phase %s, warnings %+v: %s", r.Status.Phase, r.Status.Warnings, r.Status.Message)
		}
		h := r.Status.Hooks
		if len(h) != 1 || h[0].Phase != "post" || h[0].Error != "" || strings.TrimSpace(h[0].Stdout) != token {
			t.Fatalf("restore hook results %+v, want the token %s read in the restored pod", h, token)
		}
		pod, err := cl.cs.CoreV1().Pods("shop").Get(ctx, strings.TrimPrefix(h[0].Pod, "shop/"), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the hook's pod %s: %v", h[0].Pod, err)
		}
		if pod.UID == shopPod.UID || metav1.GetControllerOf(pod) == nil || metav1.GetControllerOf(pod).Kind != "ReplicaSet" {
			t.Errorf("hook ran in %s (uid %s), not a pod of the restored Deployment", h[0].Pod, pod.UID)
		}
	})
}

func codesOf(issues []v1alpha1.JobIssue) string {
	var out []string
	for _, i := range issues {
		out = append(out, i.Code)
	}
	return strings.Join(out, ",")
}

// readyPod waits for a Ready pod matching selector in ns and returns it.
func (cl *cluster) readyPod(ns, selector string, timeout time.Duration) *corev1.Pod {
	cl.t.Helper()
	var pod *corev1.Pod
	waitFor(cl.t, "a Ready pod "+selector+" in "+ns, timeout, func() bool {
		l, err := cl.cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false
		}
		for i := range l.Items {
			for _, c := range l.Items[i].Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && l.Items[i].DeletionTimestamp == nil {
					pod = &l.Items[i]
					return true
				}
			}
		}
		return false
	})
	return pod
}

func (cl *cluster) execIn(ex extension.Executor, ns, pod string, cmd ...string) string {
	cl.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, stderr, err := ex.Exec(ctx, types.NamespacedName{Namespace: ns, Name: pod}, "", cmd)
	if err != nil {
		cl.t.Fatalf("exec %v in %s/%s: %v (%s)", cmd, ns, pod, err, stderr)
	}
	return out
}

func (cl *cluster) deleteNamespace(ns string, timeout time.Duration) {
	cl.t.Helper()
	if err := cl.cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}); err != nil {
		cl.t.Fatal(err)
	}
	waitFor(cl.t, "namespace "+ns+" to be gone", timeout, func() bool {
		_, err := cl.cs.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
}
