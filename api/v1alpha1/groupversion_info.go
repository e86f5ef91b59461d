// +kubebuilder:object:generate=true
// +groupName=arca.io

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is arca.io/v1alpha1, the group and version of the extension's
// custom resources.
var GroupVersion = schema.GroupVersion{Group: GroupName, Version: Version}

var (
	// SchemeBuilder registers the custom resource kinds.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds the kinds of this group version to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&BackupJob{}, &BackupJobList{},
		&RestoreJob{}, &RestoreJobList{},
		&BackupHook{}, &BackupHookList{},
		&RestoreHook{}, &RestoreHookList{},
		&StorageLocation{}, &StorageLocationList{},
		&ClusterTrustPolicy{}, &ClusterTrustPolicyList{},
		&RecoveryPointQuery{}, &RecoveryPointQueryList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
