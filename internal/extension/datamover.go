package extension

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// dataMoverImage is the image of the pods that move volume data:
// Options.DataMoverImage, else the image of the extension's own pod (read
// once; the pods run `arca datamover`, which every extension image holds).
func (x *Extension) dataMoverImage(ctx context.Context) (string, error) {
	if x.opts.DataMoverImage != "" {
		return x.opts.DataMoverImage, nil
	}
	if x.opts.PodName == "" || x.opts.PodNamespace == "" {
		return "", fmt.Errorf("the extension runs outside a pod and has no data mover image: start it with a data mover image (extension.Options.DataMoverImage)")
	}
	pod := &corev1.Pod{}
	if err := x.api.Get(ctx, types.NamespacedName{Namespace: x.opts.PodNamespace, Name: x.opts.PodName}, pod); err != nil {
		return "", fmt.Errorf("read the extension's own pod %s/%s for its image: %w", x.opts.PodNamespace, x.opts.PodName, err)
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == ContainerName {
			return c.Image, nil
		}
	}
	if len(pod.Spec.Containers) > 0 {
		return pod.Spec.Containers[0].Image, nil
	}
	return "", fmt.Errorf("the extension's own pod %s/%s has no container", x.opts.PodNamespace, x.opts.PodName)
}
