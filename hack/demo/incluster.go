package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/testenv"
)

// The sample application of the in-cluster demo writes its data once into
// its volume: orders of growing sizes (random bytes), a catalog, a symbolic
// link and a marker; its readiness probe waits for the marker. The restored
// pod finds the data already there and must not write it again, so the
// checksums before and after compare what the volume held.
const seedScript = `set -e
if [ ! -f /data/.seeded ]; then
  mkdir -p /data/orders
  for i in $(seq 1 24); do dd if=/dev/urandom of=/data/orders/order-$i.bin bs=4096 count=$i 2>/dev/null; done
  printf 'tea,4.20\ncoffee,3.10\n' > /data/catalog.csv
  ln -sf catalog.csv /data/current.csv
  touch /data/.seeded
fi
exec sleep 2147483647`

// checksumScript prints one "sha256  path" line per regular file, sorted.
const checksumScript = `cd /data && find . -type f ! -name .seeded | sort | xargs sha256sum`

// pushExtensionImage pushes the image `make image` built (the archive at
// path) to the cluster's registry, as a user pushes it to theirs, and
// returns its reference.
func pushExtensionImage(t testenv.T, cp *testenv.ControlPlane, path string) (string, error) {
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		return "", fmt.Errorf("read the extension image %s (run `make image`; make demo does): %w", path, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}
	ref := cp.Registry.Push(t, img, "arca-backup/arca:demo")
	fmt.Printf("    pushed %s (%s) to the cluster's registry as %s\n", filepath.Base(path), digest.String()[:19], ref)
	return ref, nil
}

// deployDataApp deploys the sample application of the in-cluster demo: the
// objects deploy() creates, with a real container that writes data into its
// PVC, and waits until the pod is Ready.
func deployDataApp(ctx context.Context, cs kubernetes.Interface, storageClass, appImage string) error {
	if err := deploy(ctx, cs, storageClass); err != nil {
		return err
	}
	dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "shop-web", metav1.GetOptions{})
	if err != nil {
		return err
	}
	dep.Spec.Replicas = ptr.To[int32](1)
	c := &dep.Spec.Template.Spec.Containers[0]
	c.Image = appImage
	c.Command = []string{"sh", "-c", seedScript}
	// sleep as PID 1 ignores SIGTERM: do not wait 30 s when the demo
	// deletes the namespace.
	dep.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](1)
	c.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/data/.seeded"}}},
		PeriodSeconds: 1,
	}
	if _, err := cs.AppsV1().Deployments(ns).Update(ctx, dep, metav1.UpdateOptions{}); err != nil {
		return err
	}
	_, err = readyAppPod(ctx, cs, 3*time.Minute)
	return err
}

// readyAppPod waits for a Ready pod of the sample application.
func readyAppPod(ctx context.Context, cs kubernetes.Interface, timeout time.Duration) (*corev1.Pod, error) {
	var found *corev1.Pod
	var last string
	err := wait.PollUntilContextTimeout(ctx, 300*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(map[string]string{"app": "shop"}).String()})
		if err != nil {
			return false, nil
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.DeletionTimestamp != nil {
				continue
			}
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
					found = p
					return true, nil
				}
			}
			last = fmt.Sprintf("pod %s is %s", p.Name, p.Status.Phase)
			for _, st := range p.Status.ContainerStatuses {
				if w := st.State.Waiting; w != nil {
					last += fmt.Sprintf(" (%s: %s)", w.Reason, w.Message)
				}
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("no Ready pod of the sample application after %s: %s", timeout, last)
	}
	return found, nil
}

// execIn runs cmd in the pod's first container.
func execIn(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface, pod *corev1.Pod, cmd ...string) (string, error) {
	out, _, err := testenv.Exec(ctx, cfg, cs, pod.Namespace, pod.Name, pod.Spec.Containers[0].Name, cmd...)
	return out, err
}

// volumeChecksums returns the checksum lines of the sample application's
// data, read inside its pod.
func volumeChecksums(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface) (string, *corev1.Pod, error) {
	pod, err := readyAppPod(ctx, cs, 3*time.Minute)
	if err != nil {
		return "", nil, err
	}
	out, err := execIn(ctx, cfg, cs, pod, "sh", "-c", checksumScript)
	if err != nil {
		return "", nil, err
	}
	if strings.Count(out, "\n") < 25 {
		return "", nil, fmt.Errorf("the volume of pod %s holds too few files:\n%s", pod.Name, out)
	}
	return out, pod, nil
}

// extensionPod returns the running extension pod, to name it and its node.
func extensionPod(ctx context.Context, cs kubernetes.Interface) (*corev1.Pod, error) {
	pods, err := cs.CoreV1().Pods(v1alpha1.ExtensionNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range pods.Items {
		if pods.Items[i].Status.Phase == corev1.PodRunning {
			return &pods.Items[i], nil
		}
	}
	return nil, fmt.Errorf("no running extension pod in %s", v1alpha1.ExtensionNamespace)
}

// restoreHookName is the RestoreHook the in-cluster demo's restore runs: a
// post hook in the restored pod, once it is Ready, that lists the restored
// data, as a user's smoke test would.
const restoreHookName = "shop-smoke-test"

// createRestoreHook creates the demo's RestoreHook in the extension's
// namespace and writes a restore criteria file that references it.
func createRestoreHook(ctx context.Context, cfg *rest.Config, work string) (string, error) {
	c, err := hookClient(cfg)
	if err != nil {
		return "", err
	}
	hook := &v1alpha1.RestoreHook{
		ObjectMeta: metav1.ObjectMeta{Name: restoreHookName, Namespace: v1alpha1.ExtensionNamespace},
		Spec: v1alpha1.HookSpec{
			IncludedNamespaces: []string{ns},
			LabelSelector:      "app=shop",
			Post: []v1alpha1.ExecHook{{
				Command:     []string{"sh", "-c", "echo restored: $(ls /data/orders | wc -l) orders; sha256sum /data/catalog.csv"},
				OnError:     v1alpha1.HookFail,
				Timeout:     &metav1.Duration{Duration: 30 * time.Second},
				WaitTimeout: &metav1.Duration{Duration: 2 * time.Minute},
			}},
		},
	}
	if err := c.Create(ctx, hook); err != nil {
		return "", fmt.Errorf("create RestoreHook %s/%s: %w", hook.Namespace, hook.Name, err)
	}
	path := filepath.Join(work, "restore-criteria.yaml")
	criteria := fmt.Sprintf("restoreHookReferences:\n- namespace: %s\n  name: %s\n", v1alpha1.ExtensionNamespace, restoreHookName)
	return path, os.WriteFile(path, []byte(criteria), 0o644)
}

// restoreHookResult returns what the restore post hook printed, from the
// newest RestoreJob's status, and fails unless it ran in a restored pod of
// the sample application and succeeded.
func restoreHookResult(ctx context.Context, cfg *rest.Config) (*v1alpha1.HookResult, error) {
	c, err := hookClient(cfg)
	if err != nil {
		return nil, err
	}
	var jobs v1alpha1.RestoreJobList
	if err := c.List(ctx, &jobs, client.InNamespace(v1alpha1.ExtensionNamespace)); err != nil {
		return nil, err
	}
	if len(jobs.Items) == 0 {
		return nil, fmt.Errorf("no RestoreJob in %s", v1alpha1.ExtensionNamespace)
	}
	newest := jobs.Items[0]
	for _, j := range jobs.Items[1:] {
		if j.CreationTimestamp.After(newest.CreationTimestamp.Time) {
			newest = j
		}
	}
	for i := range newest.Status.Hooks {
		h := &newest.Status.Hooks[i]
		if h.Hook != v1alpha1.ExtensionNamespace+"/"+restoreHookName {
			continue
		}
		if h.Error != "" || h.ExitCode == nil || *h.ExitCode != 0 {
			return h, fmt.Errorf("restore post hook in %s failed: %s (stderr %q)", h.Pod, h.Error, h.Stderr)
		}
		if !strings.HasPrefix(h.Pod, ns+"/shop-web-") {
			return h, fmt.Errorf("restore post hook ran in %s, not in a pod of %s", h.Pod, ns)
		}
		return h, nil
	}
	return nil, fmt.Errorf("RestoreJob %s ran no hook %s (status.hooks: %+v)", newest.Name, restoreHookName, newest.Status.Hooks)
}

func hookClient(cfg *rest.Config) (client.Client, error) {
	ctrllog.SetLogger(logr.Discard()) // the client logs nothing the demo needs
	sch := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(sch); err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: sch})
}
