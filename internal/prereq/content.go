package prereq

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/arca-backup/arca/internal/repo"
)

// ContentOf reads what restore validation needs from a recovery point:
// namespaces, resource types, included CRDs, and the storage classes its
// PVCs name (the only objects whose content is loaded).
func ContentOf(ctx context.Context, r repo.Reader, rp *repo.RecoveryPoint) (*Content, error) {
	c := &Content{}
	nss, classes := map[string]bool{}, map[string]bool{}
	for _, rt := range rp.Resources {
		c.Resources = append(c.Resources, GVR{Group: rt.Group, Version: rt.Version, Resource: rt.Resource})
		isPVC := rt.Group == "" && rt.Resource == "persistentvolumeclaims"
		isCRD := rt.Group == "apiextensions.k8s.io" && rt.Resource == "customresourcedefinitions"
		err := r.WalkTree(ctx, rt.Tree, func(e repo.TreeEntry) error {
			if e.Namespace != "" {
				nss[e.Namespace] = true
			}
			if isCRD {
				c.CRDs = append(c.CRDs, e.Name)
			}
			if isPVC && len(e.Blobs) > 0 {
				data, err := r.LoadBlob(ctx, e.Blobs[0])
				if err != nil {
					return fmt.Errorf("load PVC %s/%s: %w", e.Namespace, e.Name, err)
				}
				var pvc struct {
					Spec struct {
						StorageClassName *string `json:"storageClassName"`
					} `json:"spec"`
				}
				if json.Unmarshal(data, &pvc) == nil && pvc.Spec.StorageClassName != nil && *pvc.Spec.StorageClassName != "" {
					classes[*pvc.Spec.StorageClassName] = true
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", rt.Resource, err)
		}
	}
	for n := range nss {
		c.Namespaces = append(c.Namespaces, n)
	}
	for n := range classes {
		c.StorageClasses = append(c.StorageClasses, n)
	}
	sort.Strings(c.Namespaces)
	sort.Strings(c.StorageClasses)
	sort.Strings(c.CRDs)
	return c, nil
}
