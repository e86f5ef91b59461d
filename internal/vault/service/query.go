package service

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/store"
)

// ---- what a recovery point holds: contents, diff, volumes, files ----
//
// The vault does not hold the repository's password; the extension of the
// instance's cluster does. So these operations ask it (a
// RecoveryPointQuery, through trusted access: Querier) and return its
// answer, one page at a time. Who may ask what:
//
//   - contents, diff, volumes and file listings: recoveryPoints/read at the vault
//     (Backup Reader and up);
//   - a Secret's data (revealed in contents and diff) and a file's content:
//     also storageLocations/data/read at the point's storage location
//     (Storage Contributor, Owner): whoever may read the repository's data
//     directly. Without it Secrets' values are replaced by their length,
//     and reading a file is refused;
//   - the vault's own identities, as for a restore: the vault reads the
//     cluster (clusters/read), the cluster's extension reads the storage
//     location (storageLocations/data/read).
//
// In the cluster, the owner's ClusterTrustPolicy for the vault decides
// further: the storage location must be allowed, and namespaces outside the
// policy are hidden.

// Querier asks a cluster's extension about a recovery point
// (clusterdriver.TrustedAccess implements it).
type Querier interface {
	QueryRecoveryPoint(ctx context.Context, cluster string, spec v1alpha1.RecoveryPointQuerySpec) (*v1alpha1.RecoveryPointQueryResult, error)
}

// ContentsRequest browses a point: no namespace lists its namespaces
// ("-" stands for cluster-scoped objects), a namespace its types, a type
// its objects, a name one object's YAML.
type ContentsRequest struct {
	Namespace, Type, Name string
	Limit                 int
	Continue              string
}

// DiffRequest compares a point with another point of the vault (Against,
// its vault ID) or with the live cluster (Live); Namespace, Type and Name
// filter the changes.
type DiffRequest struct {
	Against               string
	Live                  bool
	Namespace, Type, Name string
	Limit                 int
	Continue              string
}

// FilesRequest lists a directory of a vault-tier volume (namespace/claim;
// empty when the point holds one), or with Read returns Length bytes (at
// most v1alpha1.MaxQueryReadBytes) of a file from Offset.
type FilesRequest struct {
	Volume, Path   string
	Read           bool
	Offset, Length int64
	Limit          int
	Continue       string
}

// CodeQueryUnavailable: the vault has no way to ask clusters.
const CodeQueryUnavailable = "QueryUnavailable"

func (s *Service) querier() (Querier, error) {
	if s.Queries != nil {
		return s.Queries, nil
	}
	if q, ok := s.Clusters.(Querier); ok {
		return q, nil
	}
	return nil, &Error{Kind: Unavailable, Code: CodeQueryUnavailable,
		Message: "this vault cannot reach clusters (no trusted access configured), so it cannot ask an extension about a recovery point"}
}

// pointFor resolves a point to its instance, checks the vault's own
// identities and fills the query's point and storage location.
func (s *Service) pointFor(ctx context.Context, vault, id string) (*store.RecoveryPoint, *store.Instance, v1alpha1.RecoveryPointQuerySpec, error) {
	var spec v1alpha1.RecoveryPointQuerySpec
	rp, err := s.Store.GetRecoveryPoint(ctx, vault, id)
	if err != nil {
		return nil, nil, spec, err
	}
	if rp.RepoID == "" {
		return nil, nil, spec, Conflictf("RecoveryPointNotInRepository", "recovery point %s has no repository ID (its backup did not finish writing it): there is nothing to read", rp.ID)
	}
	in, err := s.Store.GetInstance(ctx, vault, rp.Instance)
	if err != nil {
		return nil, nil, spec, Conflictf("InstanceNotFound",
			"recovery point %s belongs to instance %q, which no longer exists: the vault no longer knows which cluster's extension can read it; read it with the CLI against the repository (--repo)", rp.ID, rp.Instance)
	}
	why := fmt.Sprintf("to read recovery point %s from %s", rp.ID, in.StorageLocation)
	if err := s.Require(ctx, []Requirement{
		{rbac.VaultIdentity(vault), rbac.ClustersRead, rbac.ClusterScope(in.Cluster), rbac.Reader, why},
		{rbac.ExtensionIdentity(in.Cluster), rbac.StorageRead, rbac.StorageScope(in.StorageLocation), rbac.StorageContributor, why},
	}); err != nil {
		return nil, nil, spec, err
	}
	spec.RecoveryPoint, spec.StorageLocation = rp.RepoID, in.StorageLocation
	// The extension answers only if the point's tags name them.
	spec.VaultPoint = &v1alpha1.VaultPoint{Vault: vault, Instance: rp.Instance}
	return rp, in, spec, nil
}

// mayReadData reports whether caller may read the storage location's data
// (Secrets' values, files' content).
func (s *Service) mayReadData(ctx context.Context, caller string, in *store.Instance) (bool, error) {
	if caller == "" {
		return false, nil
	}
	return s.Can(ctx, caller, rbac.StorageRead, rbac.StorageScope(in.StorageLocation))
}

func checkPage(limit int) error {
	if limit < 0 || limit > v1alpha1.MaxQueryPageItems {
		return InvalidField("InvalidValue", "limit", fmt.Sprint(limit), fmt.Sprintf("0 (the default) to %d", v1alpha1.MaxQueryPageItems))
	}
	return nil
}

// RecoveryPointContents answers a ContentsRequest for caller.
func (s *Service) RecoveryPointContents(ctx context.Context, caller, vault, id string, req ContentsRequest) (*v1alpha1.RecoveryPointQueryResult, error) {
	if err := checkPage(req.Limit); err != nil {
		return nil, err
	}
	if req.Name != "" && (req.Namespace == "" || req.Type == "") {
		return nil, InvalidField("MissingField", "namespace", "", "an object is named by namespace (\"-\" for a cluster-scoped one), type and name")
	}
	if req.Type != "" && req.Namespace == "" {
		return nil, InvalidField("MissingField", "namespace", "", "types are listed per namespace (\"-\" for cluster-scoped objects)")
	}
	q, err := s.querier()
	if err != nil {
		return nil, err
	}
	_, in, spec, err := s.pointFor(ctx, vault, id)
	if err != nil {
		return nil, err
	}
	reveal, err := s.mayReadData(ctx, caller, in)
	if err != nil {
		return nil, err
	}
	spec.Kind, spec.Namespace, spec.Type, spec.Name, spec.Limit, spec.Continue, spec.RevealSecrets =
		v1alpha1.QueryContents, req.Namespace, req.Type, req.Name, req.Limit, req.Continue, reveal
	return q.QueryRecoveryPoint(ctx, in.Cluster, spec)
}

// RecoveryPointDiff answers a DiffRequest for caller. Both points must be
// in the same storage location: one extension reads them both.
func (s *Service) RecoveryPointDiff(ctx context.Context, caller, vault, id string, req DiffRequest) (*v1alpha1.RecoveryPointQueryResult, error) {
	if err := checkPage(req.Limit); err != nil {
		return nil, err
	}
	if req.Live == (req.Against != "") {
		return nil, InvalidField("InvalidValue", "against", req.Against, "either against=ID (another recovery point of the vault) or live=true")
	}
	q, err := s.querier()
	if err != nil {
		return nil, err
	}
	_, in, spec, err := s.pointFor(ctx, vault, id)
	if err != nil {
		return nil, err
	}
	if req.Against != "" {
		_, oin, ospec, err := s.pointFor(ctx, vault, req.Against)
		if err != nil {
			return nil, err
		}
		if oin.StorageLocation != in.StorageLocation {
			return nil, InvalidField("DiffAcrossStorageLocations", "against", req.Against,
				"compare points of the same storage location, or use `arca local diff` against each repository",
				"recovery point %s is in %s and %s in %s: a diff reads both from one repository", id, in.StorageLocation, req.Against, oin.StorageLocation)
		}
		spec.Against = ospec.RecoveryPoint
	}
	reveal, err := s.mayReadData(ctx, caller, in)
	if err != nil {
		return nil, err
	}
	spec.Kind, spec.Live, spec.Namespace, spec.Type, spec.Name, spec.Limit, spec.Continue, spec.RevealSecrets =
		v1alpha1.QueryDiff, req.Live, req.Namespace, req.Type, req.Name, req.Limit, req.Continue, reveal
	return q.QueryRecoveryPoint(ctx, in.Cluster, spec)
}

// RecoveryPointVolumes lists a point's volumes for caller: per claim what
// its snapshot record says and, for a vault-tier point, what its data
// holds (files, bytes). Claims in namespaces outside the cluster owner's
// policy are hidden (result.hidden counts them).
func (s *Service) RecoveryPointVolumes(ctx context.Context, caller, vault, id string) (*v1alpha1.RecoveryPointQueryResult, error) {
	q, err := s.querier()
	if err != nil {
		return nil, err
	}
	_, in, spec, err := s.pointFor(ctx, vault, id)
	if err != nil {
		return nil, err
	}
	spec.Kind = v1alpha1.QueryVolumes
	return q.QueryRecoveryPoint(ctx, in.Cluster, spec)
}

// RecoveryPointFiles answers a FilesRequest for caller; reading a file's
// content needs storageLocations/data/read at the point's storage location.
func (s *Service) RecoveryPointFiles(ctx context.Context, caller, vault, id string, req FilesRequest) (*v1alpha1.RecoveryPointQueryResult, error) {
	if err := checkPage(req.Limit); err != nil {
		return nil, err
	}
	if req.Offset < 0 || req.Length < 0 || req.Length > v1alpha1.MaxQueryReadBytes {
		return nil, InvalidField("InvalidValue", "length", fmt.Sprint(req.Length),
			fmt.Sprintf("offset ≥ 0 and length from 0 (the default, %d) to %d: read a larger file page by page", v1alpha1.MaxQueryReadBytes, v1alpha1.MaxQueryReadBytes))
	}
	p := "/" + strings.Trim(req.Path, "/")
	if path.Clean(p) != p || strings.Contains(req.Path, "\x00") {
		return nil, InvalidField("InvalidPath", "path", req.Path, "an absolute path in the volume without . or .. components")
	}
	if req.Read && p == "/" {
		return nil, InvalidField("InvalidPath", "path", req.Path, "the path of a file to read")
	}
	q, err := s.querier()
	if err != nil {
		return nil, err
	}
	rp, in, spec, err := s.pointFor(ctx, vault, id)
	if err != nil {
		return nil, err
	}
	if req.Read {
		if err := s.Require(ctx, []Requirement{{caller, rbac.StorageRead, rbac.StorageScope(in.StorageLocation), rbac.StorageContributor,
			fmt.Sprintf("to read the content of %s in recovery point %s", p, rp.ID)}}); err != nil {
			return nil, err
		}
	}
	spec.Kind, spec.Volume, spec.Path, spec.Read, spec.Offset, spec.Length, spec.Limit, spec.Continue =
		v1alpha1.QueryFiles, req.Volume, p, req.Read, req.Offset, req.Length, req.Limit, req.Continue
	return q.QueryRecoveryPoint(ctx, in.Cluster, spec)
}
