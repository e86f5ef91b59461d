package extension

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/arca-backup/arca/api/v1alpha1"
)

func deploymentOf(t *testing.T, objs []*unstructured.Unstructured) corev1.PodSpec {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == "Deployment" {
			ps := corev1.PodSpec{}
			m, _, _ := unstructured.NestedMap(u.Object, "spec", "template", "spec")
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &ps); err != nil {
				t.Fatal(err)
			}
			return ps
		}
	}
	t.Fatal("no Deployment")
	return corev1.PodSpec{}
}

func kinds(objs []*unstructured.Unstructured) string {
	var ks []string
	for _, u := range objs {
		if u.GetKind() != "CustomResourceDefinition" {
			ks = append(ks, u.GetKind())
		}
	}
	return strings.Join(ks, ",")
}

// TestManifestsFileStorageVolume: a file:// location is mounted from a PVC
// or a node directory at the URL's path, handed to the extension's user by
// an init container with CAP_CHOWN alone; without a volume, or with one
// that does not fit the URL, Manifests says which flag to use.
func TestManifestsFileStorageVolume(t *testing.T) {
	const url = "file:///var/backups/arca"
	t.Run("hostPath", func(t *testing.T) {
		objs, err := Manifests(InstallOptions{StorageURL: url, StorageHostPath: "/srv/arca"})
		if err != nil {
			t.Fatal(err)
		}
		ps := deploymentOf(t, objs)
		if len(ps.Volumes) != 1 || ps.Volumes[0].HostPath == nil || ps.Volumes[0].HostPath.Path != "/srv/arca" ||
			*ps.Volumes[0].HostPath.Type != corev1.HostPathDirectoryOrCreate {
			t.Fatalf("volumes %+v", ps.Volumes)
		}
		c := ps.Containers[0]
		if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/var/backups/arca" {
			t.Fatalf("mounts %+v", c.VolumeMounts)
		}
		if *c.SecurityContext.RunAsUser != RunAsUser || !*c.SecurityContext.RunAsNonRoot || !*c.SecurityContext.ReadOnlyRootFilesystem {
			t.Fatalf("extension security context %+v", c.SecurityContext)
		}
		if len(ps.InitContainers) != 1 {
			t.Fatalf("init containers %+v", ps.InitContainers)
		}
		ic := ps.InitContainers[0]
		if got := ic.SecurityContext.Capabilities; len(got.Add) != 1 || got.Add[0] != "CHOWN" || len(got.Drop) != 1 || got.Drop[0] != "ALL" ||
			*ic.SecurityContext.AllowPrivilegeEscalation || strings.Join(ic.Args, " ") != "extension chown-storage --uid 65532 /var/backups/arca" {
			t.Fatalf("init container %+v %+v", ic.Args, ic.SecurityContext)
		}
		if k := kinds(objs); strings.Contains(k, "PersistentVolumeClaim") {
			t.Fatalf("hostPath install creates a claim: %s", k)
		}
	})
	t.Run("claim created", func(t *testing.T) {
		objs, err := Manifests(InstallOptions{StorageURL: url, StorageClaim: "backups", StorageClaimSize: "20Gi", StorageClass: "fast"})
		if err != nil {
			t.Fatal(err)
		}
		ps := deploymentOf(t, objs)
		if ps.Volumes[0].PersistentVolumeClaim == nil || ps.Volumes[0].PersistentVolumeClaim.ClaimName != "backups" {
			t.Fatalf("volumes %+v", ps.Volumes)
		}
		var pvc *corev1.PersistentVolumeClaim
		for _, u := range objs {
			if u.GetKind() == "PersistentVolumeClaim" {
				pvc = &corev1.PersistentVolumeClaim{}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, pvc); err != nil {
					t.Fatal(err)
				}
			}
		}
		if pvc == nil || pvc.Name != "backups" || pvc.Namespace != v1alpha1.ExtensionNamespace || *pvc.Spec.StorageClassName != "fast" ||
			!pvc.Spec.Resources.Requests[corev1.ResourceStorage].Equal(resource.MustParse("20Gi")) {
			t.Fatalf("claim %+v", pvc)
		}
	})
	t.Run("claim existing", func(t *testing.T) {
		objs, err := Manifests(InstallOptions{StorageURL: url, StorageClaim: "backups"})
		if err != nil {
			t.Fatal(err)
		}
		if k := kinds(objs); strings.Contains(k, "PersistentVolumeClaim") {
			t.Fatalf("an existing claim is re-applied: %s", k)
		}
	})
	t.Run("s3 needs no volume", func(t *testing.T) {
		objs, err := Manifests(InstallOptions{StorageURL: "s3://bucket/arca?endpoint=10.0.0.1:9000"})
		if err != nil {
			t.Fatal(err)
		}
		if ps := deploymentOf(t, objs); len(ps.Volumes) != 0 || len(ps.InitContainers) != 0 {
			t.Fatalf("s3 install has volumes %+v", ps)
		}
	})
	for _, tc := range []struct {
		name string
		o    InstallOptions
		want string
	}{
		{"no volume", InstallOptions{StorageURL: url}, "--storage-claim NAME"},
		{"both", InstallOptions{StorageURL: url, StorageClaim: "c", StorageHostPath: "/x"}, "exclude each other"},
		{"claim for s3", InstallOptions{StorageURL: "s3://bucket/p", StorageClaim: "c"}, "not a file:// URL"},
		{"relative host path", InstallOptions{StorageURL: url, StorageHostPath: "srv"}, "absolute path"},
		{"size without claim", InstallOptions{StorageURL: url, StorageHostPath: "/srv", StorageClaimSize: "1Gi"}, "needs --storage-claim"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Manifests(tc.o)
			var ve *VolumeError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) || ve.Code() != v1alpha1.CodeFileStorageNeedsVolume {
				t.Fatalf("got %v, want a VolumeError containing %q", err, tc.want)
			}
		})
	}
}

// TestManifestsDownwardAPIAndPullSecrets: the pod learns its own name (for
// the OOM check) and pulls with the named Secrets.
func TestManifestsDownwardAPIAndPullSecrets(t *testing.T) {
	objs, err := Manifests(InstallOptions{StorageURL: "s3://b/p", ImagePullSecrets: []string{"regcred", "other"}})
	if err != nil {
		t.Fatal(err)
	}
	ps := deploymentOf(t, objs)
	if len(ps.ImagePullSecrets) != 2 || ps.ImagePullSecrets[0].Name != "regcred" || ps.ImagePullSecrets[1].Name != "other" {
		t.Fatalf("pull secrets %+v", ps.ImagePullSecrets)
	}
	env := map[string]string{}
	for _, e := range ps.Containers[0].Env {
		env[e.Name] = e.ValueFrom.FieldRef.FieldPath
	}
	if env[EnvPodName] != "metadata.name" || env[EnvPodNamespace] != "metadata.namespace" {
		t.Fatalf("env %+v", ps.Containers[0].Env)
	}
	c := ps.Containers[0]
	if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.StartupProbe == nil {
		t.Fatalf("probes %+v %+v %+v", c.LivenessProbe, c.ReadinessProbe, c.StartupProbe)
	}
}

// TestInterruptedResult: jobs the previous container left InProgress fail
// with ExtensionOOMKilled, naming the limit and the flag, when the pod says
// that container was OOMKilled, and with the restart code otherwise.
func TestInterruptedResult(t *testing.T) {
	pod := &corev1.Pod{
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: ContainerName,
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}}}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerName,
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}}}}},
	}
	x := &Extension{}
	x.exitOnce.Do(func() { x.exit = exitOf(pod) })
	backup := &kind{name: "backup", restartCode: v1alpha1.CodeExtensionRestartedDuringBackup}
	res := x.interruptedResult(t.Context(), backup)
	if res.phase != v1alpha1.JobFailed || len(res.errors) != 1 || res.errors[0].Code != v1alpha1.CodeExtensionOOMKilled ||
		!strings.Contains(res.message, "64Mi") || !strings.Contains(res.message, "--memory-limit 128Mi") {
		t.Fatalf("OOM result %+v", res)
	}

	pod.Status.ContainerStatuses[0].LastTerminationState.Terminated.Reason = "Error"
	y := &Extension{}
	y.exitOnce.Do(func() { y.exit = exitOf(pod) })
	res = y.interruptedResult(t.Context(), backup)
	if res.errors[0].Code != v1alpha1.CodeExtensionRestartedDuringBackup {
		t.Fatalf("restart result %+v", res)
	}
}

// TestRequestsFollowALowerLimit: a limit below the default request takes
// the request down; an explicit request above the limit is refused, naming
// both flags.
func TestRequestsFollowALowerLimit(t *testing.T) {
	objs, err := Manifests(InstallOptions{MemoryLimit: "96Mi", CPULimit: "50m"})
	if err != nil {
		t.Fatal(err)
	}
	r := deploymentOf(t, objs).Containers[0].Resources
	if r.Requests.Memory().String() != "96Mi" || r.Requests.Cpu().String() != "50m" || r.Limits.Memory().String() != "96Mi" {
		t.Fatalf("resources %+v", r)
	}
	_, err = Manifests(InstallOptions{MemoryLimit: "96Mi", MemoryRequest: "200Mi"})
	if err == nil || !strings.Contains(err.Error(), "--memory-request 200Mi is above --memory-limit 96Mi") {
		t.Fatalf("request above limit: %v", err)
	}
}

// TestStorageRetryArgument: --storage-retry reaches `arca extension run`
// in the pod only when set, before --max-concurrent-jobs, so that the
// options read back from the Deployment's arguments (update) keep it apart
// from the extra arguments; a negative budget is refused.
func TestStorageRetryArgument(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    InstallOptions
		want string // the arguments after --leader-elect
	}{
		{"default", InstallOptions{}, "--max-concurrent-jobs=1"},
		{"set", InstallOptions{StorageRetry: 90 * time.Second, MaxConcurrentJobs: 2}, "--storage-retry=1m30s --max-concurrent-jobs=2"},
		{"set, with extra arguments", InstallOptions{StorageRetry: 10 * time.Second, ExtraArgs: []string{"--log-format=json", "--storage-retry=1h"}},
			"--storage-retry=10s --max-concurrent-jobs=1 --log-format=json --storage-retry=1h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := Manifests(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			args := deploymentOf(t, objs).Containers[0].Args
			_, after, _ := strings.Cut(strings.Join(args, " "), "--leader-elect ")
			if after != tc.want {
				t.Fatalf("arguments %q: want %q after --leader-elect", args, tc.want)
			}
			// Read back as update does.
			var got InstallOptions
			readRunArgs(args, &got)
			jobs := tc.o.MaxConcurrentJobs
			if jobs == 0 {
				jobs = 1
			}
			if got.StorageRetry != tc.o.StorageRetry || got.MaxConcurrentJobs != jobs || !slices.Equal(got.ExtraArgs, tc.o.ExtraArgs) {
				t.Errorf("read back: retry %s, jobs %d, extra %q; want %s, %d, %q", got.StorageRetry, got.MaxConcurrentJobs, got.ExtraArgs,
					tc.o.StorageRetry, jobs, tc.o.ExtraArgs)
			}
		})
	}
	if _, err := Manifests(InstallOptions{StorageRetry: -time.Second}); err == nil || !strings.Contains(err.Error(), "--storage-retry -1s") {
		t.Fatalf("negative storage retry: %v", err)
	}
}
