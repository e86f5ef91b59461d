package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// HookErrorMode says what a failing hook does to its job.
// +kubebuilder:validation:Enum=Continue;Fail
type HookErrorMode string

const (
	// HookContinue records a warning and goes on.
	HookContinue HookErrorMode = "Continue"
	// HookFail stops: a failing pre-hook fails the job before anything is
	// captured or written.
	HookFail HookErrorMode = "Fail"
)

// DefaultHookTimeout bounds one hook command when Timeout is not set.
const DefaultHookTimeout = 30 // seconds

// DefaultHookWaitTimeout bounds, when WaitTimeout is not set, how long a
// restore post hook waits for the restored pods to appear and be Ready.
const DefaultHookWaitTimeout = 120 // seconds

// Hook phases, as HookResult.Phase says them.
const (
	HookPhasePre  = "pre"
	HookPhasePost = "post"
)

// MaxHookOutput bounds the stdout and the stderr of one hook command kept
// in HookResult (the last bytes are kept: errors come at the end).
const MaxHookOutput = 2048

// MaxHookResults bounds JobStatusCommon.Hooks, so a job whose hooks match
// many pods still fits an object; the commands beyond it run all the same.
const MaxHookResults = 50

// ExecHook runs one command in a container of each matching pod.
type ExecHook struct {
	// Container is the container to run in (default: the pod's first container).
	// +optional
	Container string `json:"container,omitempty"`
	// Command is the command and its arguments (no shell unless you name one).
	// +kubebuilder:validation:MinItems=1
	Command []string `json:"command"`
	// OnError is Fail (default) or Continue.
	// +optional
	// +kubebuilder:default=Fail
	OnError HookErrorMode `json:"onError,omitempty"`
	// Timeout bounds the command once it runs (the exec timeout; default
	// 30s). On timeout the exec stream is closed and the hook fails; the
	// command may go on in the container (Kubernetes cannot stop it).
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// WaitTimeout, for restore post hooks only, bounds the wait for the
	// restored pods to appear and become Ready before the command runs
	// (default 2m). Elsewhere it is refused.
	// +optional
	WaitTimeout *metav1.Duration `json:"waitTimeout,omitempty"`
}

// HookResult is one hook command run in one container: what a user needs
// to see that it ran, and its output.
type HookResult struct {
	// Hook is the BackupHook or RestoreHook, namespace/name.
	Hook string `json:"hook"`
	// Phase is pre or post.
	Phase string `json:"phase"`
	// Pod is namespace/name.
	Pod       string   `json:"pod"`
	Container string   `json:"container,omitempty"`
	Command   []string `json:"command"`
	// ExitCode is the command's exit status, when it ran to an end.
	// +optional
	ExitCode *int32 `json:"exitCode,omitempty"`
	// Stdout and Stderr are the last MaxHookOutput bytes of each.
	// +optional
	Stdout string `json:"stdout,omitempty"`
	// +optional
	Stderr string `json:"stderr,omitempty"`
	// Truncated says that Stdout or Stderr lost earlier bytes.
	// +optional
	Truncated bool `json:"truncated,omitempty"`
	// Error is why the hook failed (empty: it succeeded).
	// +optional
	Error     string      `json:"error,omitempty"`
	StartTime metav1.Time `json:"startTime"`
	// Duration is how long the command ran (with a restore post hook's
	// wait for its pod not included).
	Duration metav1.Duration `json:"duration"`
}

// HookSpec selects pods and says what runs in them before and after the
// job touches them.
type HookSpec struct {
	// IncludedNamespaces narrow the namespaces whose pods the hook acts
	// in. A hook in the extension's namespace may name any namespace or
	// glob pattern the job covers (empty: all of them); a hook in any other
	// namespace acts only in its own namespace (restore: the namespace that
	// one is restored into), and other entries are refused with a
	// HookNamespaceRefused warning. docs/extension.md has the rule.
	// +optional
	IncludedNamespaces []string `json:"includedNamespaces,omitempty"`
	// +optional
	ExcludedNamespaces []string `json:"excludedNamespaces,omitempty"`
	// LabelSelector selects pods, in the syntax of labelSelectors (`app=db,tier!=cache`).
	// +optional
	LabelSelector string `json:"labelSelector,omitempty"`
	// Pre hooks run in order just before the snapshots of the pod's
	// volumes are cut (backup), or before the restore writes, in pods that
	// exist then (restore).
	// +optional
	Pre []ExecHook `json:"pre,omitempty"`
	// Post hooks run in order right after the pod's volume snapshots are
	// cut (backup; also when the backup failed, so that a frozen
	// application is thawed), or in the restored pods once they are Ready
	// (restore).
	// +optional
	Post []ExecHook `json:"post,omitempty"`
}

// BackupHook holds the exec hooks a BackupJob names in backupHookReferences.
// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=arca
type BackupHook struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              HookSpec `json:"spec"`
}

// BackupHookList is a list of BackupHooks.
// +kubebuilder:object:root=true
type BackupHookList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BackupHook `json:"items"`
}

// RestoreHook holds the exec hooks a RestoreJob names in restoreHookReferences.
// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=arca
type RestoreHook struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              HookSpec `json:"spec"`
}

// RestoreHookList is a list of RestoreHooks.
// +kubebuilder:object:root=true
type RestoreHookList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RestoreHook `json:"items"`
}
