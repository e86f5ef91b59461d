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
	// Timeout bounds the command (default 30s).
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// HookSpec selects pods and says what runs in them before and after the
// job touches them.
type HookSpec struct {
	// IncludedNamespaces are namespaces or glob patterns (empty: all the
	// job includes).
	// +optional
	IncludedNamespaces []string `json:"includedNamespaces,omitempty"`
	// +optional
	ExcludedNamespaces []string `json:"excludedNamespaces,omitempty"`
	// LabelSelector selects pods, in the syntax of labelSelectors (`app=db,tier!=cache`).
	// +optional
	LabelSelector string `json:"labelSelector,omitempty"`
	// Pre hooks run in order before the pods' objects and volumes are
	// captured (backup) or before the restore writes (restore).
	// +optional
	Pre []ExecHook `json:"pre,omitempty"`
	// Post hooks run in order after capture (backup, also when it failed,
	// so that a frozen application is thawed) or after the restore.
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
