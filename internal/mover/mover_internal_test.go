package mover

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/volumedata"
)

// TestPodSpec: the mover pod reads the volume read-only (a block volume as
// a device), reaches no API server, holds only CAP_DAC_READ_SEARCH, has a
// memory limit of 256 MiB with the Go heap bounded below it, and takes the
// repository's password and credentials from the storage location's Secret.
func TestPodSpec(t *testing.T) {
	loc := &v1alpha1.StorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "s3", Namespace: "arca-system"},
		Spec: v1alpha1.StorageLocationSpec{URL: "s3://b/p", CredentialsSecret: "s3-creds"}}
	m := &Mover{opts: Options{Location: loc, Image: "registry/arca:1", HolderJob: "cluster-uid/job-uid"}, mem: resource.MustParse(DefaultMemoryLimit), cpu: resource.MustParse(DefaultCPULimit)}
	labels := map[string]string{v1alpha1.LabelDataMover: "abc"}
	p := m.pod("arca-mover-abc-0", "arca-system", labels, "shop/data", "abc", false)
	c := p.Spec.Containers[0]
	// The holder names its backup and its cluster and job.
	if args := strings.Join(c.Args, " "); !strings.Contains(args, "--tag "+v1alpha1.TagVolumeHolder+"=abc") ||
		!strings.Contains(args, "--tag "+v1alpha1.TagVolumeHolderJob+"=cluster-uid/job-uid") {
		t.Errorf("mover args %q: want both holder tags", args)
	}
	if p.Spec.AutomountServiceAccountToken == nil || *p.Spec.AutomountServiceAccountToken || p.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("pod spec %+v: want no service account token and no restarts", p.Spec)
	}
	sc := c.SecurityContext
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem ||
		len(sc.Capabilities.Add) != 1 || sc.Capabilities.Add[0] != "DAC_READ_SEARCH" || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("security context %+v", sc)
	}
	if lim := c.Resources.Limits[corev1.ResourceMemory]; lim.Value() != 256<<20 {
		t.Errorf("memory limit %s", lim.String())
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e := env["ARCA_PASSWORD"]; e.ValueFrom == nil || e.ValueFrom.SecretKeyRef.Name != "s3-creds" || e.ValueFrom.SecretKeyRef.Key != v1alpha1.SecretKeyPassword || *e.ValueFrom.SecretKeyRef.Optional {
		t.Errorf("password env %+v", e)
	}
	if e := env["AWS_ACCESS_KEY_ID"]; e.ValueFrom == nil || !*e.ValueFrom.SecretKeyRef.Optional {
		t.Errorf("S3 key env %+v: want optional, from the secret", e)
	}
	if env["GOMEMLIMIT"].Value != "201326592" {
		t.Errorf("GOMEMLIMIT %q, want 3/4 of the limit", env["GOMEMLIMIT"].Value)
	}
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"datamover backup", "--repo s3://b/p", "--source /mnt/volume", "--volume shop/data", "--tag arca.io/volume-holder=abc", "--result-file /dev/termination-log", "--progress-json"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	var data *corev1.Volume
	for i := range p.Spec.Volumes {
		if p.Spec.Volumes[i].Name == "volume" {
			data = &p.Spec.Volumes[i]
		}
	}
	if data == nil || data.PersistentVolumeClaim.ClaimName != "arca-mover-abc-0" || !data.PersistentVolumeClaim.ReadOnly {
		t.Errorf("volume %+v: want the temporary claim, read-only", data)
	}
	ro := false
	for _, vm := range c.VolumeMounts {
		ro = ro || (vm.Name == "volume" && vm.ReadOnly && vm.MountPath == sourceDir)
	}
	if !ro || len(c.VolumeDevices) != 0 {
		t.Errorf("mounts %+v devices %+v", c.VolumeMounts, c.VolumeDevices)
	}

	b := m.pod("arca-mover-abc-1", "arca-system", labels, "shop/raw", "abc", true)
	bc := b.Spec.Containers[0]
	if len(bc.VolumeDevices) != 1 || bc.VolumeDevices[0].DevicePath != sourceDevice || !strings.Contains(strings.Join(bc.Args, " "), "--source "+sourceDevice) {
		t.Errorf("block volume: devices %+v args %q", bc.VolumeDevices, bc.Args)
	}
	for _, vm := range bc.VolumeMounts {
		if vm.Name == "volume" {
			t.Errorf("block volume mounted as a file system: %+v", vm)
		}
	}
}

// TestPodFailure: how a mover pod ended gives the job's code.
func TestPodFailure(t *testing.T) {
	pod := func(reason string, term *corev1.ContainerStateTerminated) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: "arca-system"}, Spec: corev1.PodSpec{NodeName: "node-0"},
			Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: reason, Message: "The node was low on resource: memory."}}
		return p
	}
	for _, tc := range []struct {
		reason string
		term   *corev1.ContainerStateTerminated
		code   string
		want   string
	}{
		{"Evicted", nil, v1alpha1.CodeVolumeMoverEvicted, "was evicted: The node was low"},
		{"", &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}, v1alpha1.CodeVolumeMoverOOMKilled, "--mover-memory-limit"},
		{"", &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 1, Message: "back up /mnt/volume: open repository: wrong password"}, v1alpha1.CodeVolumeMoverFailed, "exit code 1: back up /mnt/volume: open repository: wrong password"},
		{"", &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 137}, v1alpha1.CodeVolumeMoverFailed, "killed by signal 9"},
	} {
		err := podFailure(pod(tc.reason, tc.term), tc.term, "shop/data")
		var me *Error
		if !errors.As(err, &me) || me.JobCode() != tc.code || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "node-0") ||
			!strings.HasPrefix(err.Error(), "volume shop/data: ") {
			t.Errorf("%s/%+v: %v (code %v), want %s and %q", tc.reason, tc.term, err, me, tc.code, tc.want)
		}
	}
}

// TestResultFits: a result with many warnings fits a termination message,
// counting what it left out.
func TestResultFits(t *testing.T) {
	r := volumedata.MoverResult{RecoveryPoint: strings.Repeat("a", 64)}
	for range 200 {
		r.Warnings = append(r.Warnings, volumedata.Warning{Path: strings.Repeat("p", 40), Message: "listxattr: operation not supported"})
	}
	b, err := r.Fit(volumedata.MaxResultBytes)
	if err != nil || len(b) > volumedata.MaxResultBytes || !strings.Contains(string(b), `"warningsOmitted":`) {
		t.Fatalf("fit: %d bytes, %v", len(b), err)
	}
}
