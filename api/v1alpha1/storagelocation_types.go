package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Keys of a StorageLocation's credentials Secret. Only the repository
// password is required; the others are used by the URL's kind of storage
// and, when absent, fall back to the extension's environment.
const (
	SecretKeyPassword              = "password"
	SecretKeyAzureAccountKey       = "AZURE_STORAGE_KEY"
	SecretKeyAzureSASToken         = "AZURE_STORAGE_SAS_TOKEN"
	SecretKeyAzureConnectionString = "AZURE_STORAGE_CONNECTION_STRING"
	SecretKeyAWSAccessKeyID        = "AWS_ACCESS_KEY_ID"
	SecretKeyAWSSecretAccessKey    = "AWS_SECRET_ACCESS_KEY"
	SecretKeyAWSSessionToken       = "AWS_SESSION_TOKEN"
)

// StorageLocationSpec says where a repository lives.
type StorageLocationSpec struct {
	// URL is file:///path, azure://account/container[/prefix][?endpoint=…]
	// or s3://bucket[/prefix]?endpoint=…; never credentials.
	// +kubebuilder:validation:Pattern=`^(file|azure|s3)://.+`
	URL string `json:"url"`
	// CredentialsSecret names a Secret in the same namespace holding the
	// repository password (key "password") and storage credentials.
	// +kubebuilder:validation:MinLength=1
	CredentialsSecret string `json:"credentialsSecret"`
	// ReadOnly locations serve restores only (a source cluster's repository
	// seen from a restore target); backups into them fail.
	// +optional
	ReadOnly bool `json:"readOnly,omitempty"`
}

// StorageLocationPhase is Available or Unavailable.
// +kubebuilder:validation:Enum=Available;Unavailable
type StorageLocationPhase string

const (
	StorageAvailable   StorageLocationPhase = "Available"
	StorageUnavailable StorageLocationPhase = "Unavailable"
)

// StorageLocationStatus is the result of the last probe.
type StorageLocationStatus struct {
	// +optional
	Phase StorageLocationPhase `json:"phase,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
	// +optional
	LastProbeTime *metav1.Time `json:"lastProbeTime,omitempty"`
	// RecoveryPoints is how many recovery points the repository held at the probe.
	// +optional
	RecoveryPoints int `json:"recoveryPoints,omitempty"`
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// StorageLocation is a repository the extension backs up into or restores from.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=arca
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="Read Only",type=boolean,JSONPath=`.spec.readOnly`
type StorageLocation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec StorageLocationSpec `json:"spec"`
	// +optional
	Status StorageLocationStatus `json:"status,omitempty"`
}

// StorageLocationList is a list of StorageLocations.
// +kubebuilder:object:root=true
type StorageLocationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []StorageLocation `json:"items"`
}
