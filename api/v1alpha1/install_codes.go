package v1alpha1

// Stable codes of `arca extension install|update` failures, named while the
// command waits for the extension's pod (docs/user-guide.md lists them with
// their fixes). The Deployment stays applied when one is reported.
const (
	// CodeExtensionImagePullFailed: the node cannot pull the extension image
	// (ErrImagePull, ImagePullBackOff, InvalidImageName).
	CodeExtensionImagePullFailed = "ExtensionImagePullFailed"
	// CodeExtensionCrashLooping: the extension container keeps exiting
	// (CrashLoopBackOff); the message quotes its last log lines.
	CodeExtensionCrashLooping = "ExtensionCrashLooping"
	// CodeExtensionUnschedulable: no node accepts the pod (the scheduler's
	// PodScheduled condition says why).
	CodeExtensionUnschedulable = "ExtensionUnschedulable"
	// CodeExtensionNotReady: the pod was not Ready within --timeout for
	// another reason.
	CodeExtensionNotReady = "ExtensionNotReady"
	// CodeFileStorageNeedsVolume: a file:// storage location for the
	// in-cluster extension without a volume to hold it.
	CodeFileStorageNeedsVolume = "FileStorageNeedsVolume"
)
