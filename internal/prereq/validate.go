package prereq

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/selection"
	"github.com/arca-backup/arca/internal/storage"
)

// OpenStorage opens a storage location (location.Open with the caller's
// credentials, in the CLI).
type OpenStorage func(ctx context.Context, url string) (storage.Backend, error)

// BackupInput is what ValidateBackup checks.
type BackupInput struct {
	Vault            string
	Instance         string
	Cluster          Cluster
	Config           v1alpha1.BackupConfiguration
	StorageLocation  string
	SnapshotLocation string

	OpenStorage OpenStorage // nil: storage probe skipped
	Access      Access      // nil: role checks skipped
	Connections Connections // nil: trusted-access check skipped
	Now         func() time.Time
}

// ValidateBackup runs every backup prerequisite. It never stops at the
// first failure: the report lists them all.
func ValidateBackup(ctx context.Context, in BackupInput) *Report {
	now := in.Now
	if now == nil {
		now = time.Now
	}
	r := &Report{Operation: "backup", Target: fmt.Sprintf("instance %s/%s on cluster %s", in.Vault, in.Instance, in.Cluster.Name)}
	k, err := newClients(in.Cluster)
	if err != nil {
		r.add(Check{ID: "KubernetesVersion", Name: "cluster reachable", Result: Failed, Code: "ClusterUnreachable", Message: err.Error(),
			Remedy: "check the kubeconfig"})
		return r.finish()
	}
	k.checkVersion(r, in.Cluster)
	crds := k.checkSnapshotCRDs(r)
	k.checkVolumes(ctx, r, &in.Config, crds)
	k.checkSnapshotLocation(ctx, r, in.SnapshotLocation, crds)
	k.checkExtension(ctx, r, in.Cluster.Name, now())
	k.checkTrustedAccess(ctx, r, in.Connections, in.Cluster.Name, now())
	k.checkVelero(ctx, r)
	k.checkStorageLocationCR(ctx, r, in.StorageLocation, true)
	probeStorage(ctx, r, in.OpenStorage, in.StorageLocation, true)
	if !in.Cluster.AsVault {
		k.checkCallerClusterOwner(ctx, r, in.Cluster.Name)
	}
	roleChecks(ctx, r, in.Access, in.Vault, in.Cluster.Name, in.StorageLocation, in.SnapshotLocation)
	return r.finish()
}

// probeStorage writes and deletes a probe file, then tells an initialised
// repository from an empty location (which the first backup initialises).
func probeStorage(ctx context.Context, r *Report, open OpenStorage, url string, needWrite bool) {
	ch := r.add(Check{ID: "StorageLocation", Name: "storage location reachable and writable"})
	if !needWrite {
		ch.Name = "storage location reachable"
	}
	if open == nil {
		ch.Result, ch.Message = Skipped, "no storage credentials given"
		return
	}
	be, err := open(ctx, url)
	if err != nil {
		ch.Result, ch.Code = Failed, "StorageUnreachable"
		ch.Message = fmt.Sprintf("cannot open %s: %v", url, err)
		ch.Remedy = "check the URL, the network path and the credentials (--azure-* / --aws-* flags or AZURE_STORAGE_* / AWS_* variables); the container or bucket must exist"
		return
	}
	defer be.Close()
	_, err = be.Stat(ctx, storage.Handle{Type: storage.ConfigFile})
	initialised := err == nil
	if err != nil && !storage.IsNotExist(err) {
		ch.Result, ch.Code = Failed, "StorageUnreachable"
		ch.Message = fmt.Sprintf("cannot read %s: %v", be.Location(), err)
		ch.Remedy = "check the network path and that the credentials may read the location"
		return
	}
	state := "repository initialised"
	if !initialised {
		state = "no repository yet: the first backup initialises it"
		if !needWrite {
			ch.Result, ch.Code = Failed, "RepositoryNotFound"
			ch.Message = "no repository at " + be.Location()
			ch.Remedy = "point at the storage location the recovery point was written to"
			return
		}
	}
	if needWrite {
		var b [8]byte
		_, _ = rand.Read(b[:])
		h := storage.Handle{Type: storage.LockFile, Name: "arca-validate-probe-" + hex.EncodeToString(b[:])}
		data := []byte("arca prerequisite probe; safe to delete\n")
		if err := be.Save(ctx, h, int64(len(data)), bytes.NewReader(data)); err != nil {
			ch.Result, ch.Code = Failed, "StorageNotWritable"
			ch.Message = fmt.Sprintf("probe write to %s failed: %v", be.Location(), err)
			ch.Remedy = "grant write access (Storage Contributor / Storage Blob Data Contributor, s3:PutObject and s3:DeleteObject, or a writable directory) to the identity the extension uses"
			return
		}
		if err := be.Remove(ctx, h); err != nil {
			ch.Result, ch.Code = Failed, "StorageNotWritable"
			ch.Message = fmt.Sprintf("probe delete from %s failed: %v (remove %s by hand)", be.Location(), err, h)
			ch.Remedy = "grant delete access too: retention and locks need it"
			return
		}
	}
	ch.Result, ch.Message = Passed, be.Location()+": "+state
}

// roleChecks: the assignments of the trust model, then the caller's own.
func roleChecks(ctx context.Context, r *Report, a Access, vault, cluster, storageURL, snapshotLoc string) {
	type need struct {
		id   string
		who  Identity
		role string
		at   Scope
	}
	needs := []need{
		{"RoleVaultReaderOnCluster", Identity{VaultIdentity, vault}, RoleReader, Scope{ClusterScope, cluster}},
		{"RoleVaultReaderOnSnapshotLocation", Identity{VaultIdentity, vault}, RoleReader, Scope{SnapshotLocationScope, snapshotLoc}},
		{"RoleClusterContributorOnSnapshotLocation", Identity{ClusterIdentity, cluster}, RoleContributor, Scope{SnapshotLocationScope, snapshotLoc}},
		{"RoleExtensionStorageContributor", Identity{ExtensionIdentity, cluster}, RoleStorageContributor, Scope{StorageLocationScope, storageURL}},
	}
	for _, n := range needs {
		ch := r.add(Check{ID: n.id, Name: fmt.Sprintf("%s for %s on %s", n.role, n.who, n.at)})
		switch {
		case a == nil:
			ch.Result, ch.Message = Skipped, "no vault to ask"
			continue
		case n.at.Name == "":
			ch.Result, ch.Message = Skipped, "the instance names no "+n.at.Kind
			continue
		}
		ok, err := a.HasRole(ctx, n.who, n.role, n.at)
		switch {
		case err != nil:
			ch.Result, ch.Code, ch.Message = Failed, "RoleCheckFailed", err.Error()
			ch.Remedy = "you need Reader (roleAssignments/read) at " + n.at.String() + " to check its assignments"
		case !ok:
			ch.Result, ch.Code = Failed, "RoleAssignmentMissing"
			ch.Message = fmt.Sprintf("%s holds no %s at %s", n.who, n.role, n.at)
			ch.Remedy = a.AssignCommand(n.who, n.role, n.at) + "  (or rerun with --assign-missing-roles)"
			ch.Fix = &RoleFix{Who: n.who, Role: n.role, At: n.at}
		default:
			ch.Result, ch.Message = Passed, "assigned"
		}
	}
	// The caller's own roles. The vault refuses a backup or a restore
	// without the last three (Backup Operator at the cluster, Storage
	// Contributor at the storage location, Contributor at the snapshot
	// location: service.BackupRequirements), so their absence fails the
	// check; Backup Contributor on the vault only limits what else the
	// caller may change (a warning).
	mine := []need{
		{"CallerBackupContributor", Identity{}, RoleBackupContributor, Scope{VaultScope, vault}},
		{"CallerBackupOperatorOnCluster", Identity{}, RoleBackupOperator, Scope{ClusterScope, cluster}},
		{"CallerStorageContributor", Identity{}, RoleStorageContributor, Scope{StorageLocationScope, storageURL}},
		{"CallerSnapshotContributor", Identity{}, RoleContributor, Scope{SnapshotLocationScope, snapshotLoc}},
	}
	for i, n := range mine {
		ch := r.add(Check{ID: n.id, Name: fmt.Sprintf("you are %s on %s", n.role, n.at)})
		switch {
		case a == nil:
			ch.Result, ch.Message = Skipped, "no vault to ask"
			continue
		case n.at.Name == "":
			ch.Result, ch.Message = Skipped, "the instance names no "+n.at.Kind
			continue
		}
		ok, err := a.CallerHasRole(ctx, n.role, n.at)
		switch {
		case err != nil:
			ch.Result, ch.Code, ch.Message = Failed, "RoleCheckFailed", err.Error()
		case !ok && i == 0:
			ch.Result, ch.Code = Warning, "CallerRoleMissing"
			ch.Message = fmt.Sprintf("you do not hold %s at %s", n.role, n.at)
			ch.Remedy = "ask an Owner of that scope: " + a.AssignCommand(Identity{Kind: "user", Name: "<you>"}, n.role, n.at)
		case !ok:
			ch.Result, ch.Code = Failed, "CallerRoleMissing"
			ch.Message = fmt.Sprintf("you do not hold %s at %s", n.role, n.at)
			ch.Remedy = "ask an Owner of that scope: " + a.AssignCommand(Identity{Kind: "user", Name: "<you>"}, n.role, n.at)
		default:
			ch.Result, ch.Message = Passed, "held"
		}
	}
}

// Assignment is one role assignment --assign-missing-roles made or could
// not make.
type Assignment struct {
	Check  string   `json:"check"`
	Fix    *RoleFix `json:"fix"`
	Done   bool     `json:"done"`
	Reason string   `json:"reason,omitempty"` // why it was not made
}

// AssignMissing creates the assignment of every failed role check the
// caller may create (Owner at the scope), marks those checks Passed, and
// explains the others.
func AssignMissing(ctx context.Context, r *Report, a Access) []Assignment {
	var out []Assignment
	for i := range r.Checks {
		ch := &r.Checks[i]
		if ch.Result != Failed || ch.Fix == nil {
			continue
		}
		res := Assignment{Check: ch.ID, Fix: ch.Fix}
		owner, err := a.CallerHasRole(ctx, RoleOwner, ch.Fix.At)
		switch {
		case err != nil:
			res.Reason = err.Error()
		case !owner:
			res.Reason = fmt.Sprintf("you are not Owner at %s; ask its Owner to run: %s", ch.Fix.At, a.AssignCommand(ch.Fix.Who, ch.Fix.Role, ch.Fix.At))
		default:
			if err := a.Assign(ctx, ch.Fix.Who, ch.Fix.Role, ch.Fix.At); err != nil {
				res.Reason = err.Error()
			} else {
				res.Done = true
				ch.Result, ch.Code, ch.Remedy = Passed, "", ""
				ch.Message = "assigned now (--assign-missing-roles)"
				ch.Fix = nil
			}
		}
		out = append(out, res)
	}
	r.finish()
	return out
}

// ---- restore ----

// GVR names a resource type of a recovery point.
type GVR struct{ Group, Version, Resource string }

func (g GVR) String() string {
	if g.Group == "" {
		return g.Version + "/" + g.Resource
	}
	return g.Group + "/" + g.Version + "/" + g.Resource
}

// Content is what restore validation needs to know of a recovery point.
type Content struct {
	Namespaces     []string // namespaces of its namespaced objects
	StorageClasses []string // storage classes its PVCs name
	Resources      []GVR    // resource types it holds
	CRDs           []string // CustomResourceDefinitions it holds (their names)
}

// RestoreInput is what ValidateRestore checks.
type RestoreInput struct {
	Vault           string
	RecoveryPoint   string
	Target          Cluster
	Criteria        v1alpha1.RestoreCriteria
	StorageLocation string
	Content         *Content // nil: content checks skipped (no repository access)

	OpenStorage OpenStorage
	Access      Access
	Connections Connections
	Now         func() time.Time
}

// ValidateRestore runs every restore prerequisite on the target cluster.
func ValidateRestore(ctx context.Context, in RestoreInput) *Report {
	now := in.Now
	if now == nil {
		now = time.Now
	}
	r := &Report{Operation: "restore", Target: fmt.Sprintf("recovery point %s to cluster %s", in.RecoveryPoint, in.Target.Name)}
	k, err := newClients(in.Target)
	if err != nil {
		r.add(Check{ID: "KubernetesVersion", Name: "cluster reachable", Result: Failed, Code: "ClusterUnreachable", Message: err.Error()})
		return r.finish()
	}
	k.checkVersion(r, in.Target)
	withData := in.Criteria.PersistentVolumeRestoreMode != v1alpha1.RestoreWithoutVolumeData
	if withData {
		k.checkSnapshotCRDs(r)
	}
	k.checkExtension(ctx, r, in.Target.Name, now())
	k.checkTrustedAccess(ctx, r, in.Connections, in.Target.Name, now())
	k.checkVelero(ctx, r)
	k.checkStorageLocationCR(ctx, r, in.StorageLocation, false)
	probeStorage(ctx, r, in.OpenStorage, in.StorageLocation, false)
	k.checkRestoreContent(ctx, r, in)
	if !in.Target.AsVault {
		k.checkCallerClusterOwner(ctx, r, in.Target.Name)
	}
	// The target's trust model: the vault reads the target cluster, the
	// target's extension reads the storage location.
	roleChecks(ctx, r, in.Access, in.Vault, in.Target.Name, in.StorageLocation, "")
	return r.finish()
}

func (k *clients) checkRestoreContent(ctx context.Context, r *Report, in RestoreInput) {
	r.add(Check{ID: "NamespaceConflicts", Name: "target namespaces"})
	r.add(Check{ID: "StorageClasses", Name: "storage classes of restored PVCs exist on the target"})
	r.add(Check{ID: "APIVersionsServed", Name: "resource versions of the recovery point served by the target"})
	ns, sc, api := &r.Checks[len(r.Checks)-3], &r.Checks[len(r.Checks)-2], &r.Checks[len(r.Checks)-1]
	if in.Content == nil {
		for _, c := range []*Check{ns, sc, api} {
			c.Result, c.Message = Skipped, "recovery point content not read"
			c.Remedy = "pass --repo and --password-file to check what the recovery point holds"
		}
		return
	}
	c := in.Content
	// Namespaces, after mapping and the criteria's filters.
	var conflicts []string
	sel, err := selection.NewNamespaces(in.Criteria.IncludedNamespaces, in.Criteria.ExcludedNamespaces, false)
	if err != nil {
		ns.Result, ns.Code, ns.Message = Failed, "InvalidRestoreCriteria", err.Error()
		return
	}
	for _, src := range c.Namespaces {
		if !sel.Includes(src) {
			continue
		}
		dst := src
		if m, ok := in.Criteria.NamespaceMappings[src]; ok {
			dst = m
		}
		if _, err := k.cs.CoreV1().Namespaces().Get(ctx, dst, metav1.GetOptions{}); err == nil {
			conflicts = append(conflicts, dst)
		}
	}
	sort.Strings(conflicts)
	policy := in.Criteria.ConflictPolicy
	if policy == "" {
		policy = v1alpha1.ConflictSkip
	}
	if len(conflicts) > 0 {
		ns.Result, ns.Code = Warning, "NamespaceExists"
		ns.Message = fmt.Sprintf("already exist on the target: %s; with conflict policy %s existing objects are %s", strings.Join(conflicts, ", "), policy,
			map[v1alpha1.ConflictPolicy]string{v1alpha1.ConflictSkip: "kept unchanged", v1alpha1.ConflictPatch: "patched"}[policy])
		ns.Remedy = "restore into new namespaces with --namespace-mapping old=new, or choose --conflict patch|skip deliberately"
	} else {
		ns.Result, ns.Message = Passed, "no restored namespace exists on the target"
	}

	// The class a restored PVC asks for is its recorded class after the
	// criteria's storageClassMappings: a mapped-away class need not exist
	// on the target, the class it maps to must.
	var missing []string
	var readErr error
	for _, name := range c.StorageClasses {
		want, mapped := name, ""
		if to, ok := in.Criteria.StorageClassMappings[name]; ok {
			want, mapped = to, " (mapped from "+name+")"
		}
		_, err := k.cs.StorageV1().StorageClasses().Get(ctx, want, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			missing = append(missing, want+mapped)
		} else if err != nil {
			readErr = fmt.Errorf("reading storage class %s: %v", want, err)
			break
		}
	}
	switch {
	case readErr != nil:
		sc.Result, sc.Code, sc.Message = Failed, "ClusterReadFailed", readErr.Error()
		sc.Remedy = "the identity running the check needs get on storageclasses.storage.k8s.io"
	case len(missing) > 0:
		sc.Result, sc.Code = Failed, "StorageClassMissing"
		sc.Message = "restored PVCs would name storage classes the target lacks: " + strings.Join(missing, ", ")
		sc.Remedy = "create them on the target, or map them to a class it has with --storage-class-mapping old=new (storageClassMappings)"
	default:
		sc.Result, sc.Message = Passed, fmt.Sprintf("%d storage class(es) present", len(c.StorageClasses))
	}

	crdInRP := map[string]bool{}
	for _, n := range c.CRDs {
		crdInRP[n] = true
	}
	served := map[string]map[string]bool{}
	var notServed []string
	for _, g := range c.Resources {
		gv := g.Version
		if g.Group != "" {
			gv = g.Group + "/" + g.Version
		}
		if _, ok := served[gv]; !ok {
			m, err := k.servedResources(gv)
			if err != nil {
				m = nil
			}
			served[gv] = m
		}
		if served[gv][g.Resource] {
			continue
		}
		// A CRD restored with the recovery point serves it, unless the
		// target already has that CRD without this version.
		name := g.Resource + "." + g.Group
		if crdInRP[name] {
			if _, err := k.dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{}); err != nil {
				continue
			}
		}
		notServed = append(notServed, g.String())
	}
	sort.Strings(notServed)
	if len(notServed) > 0 {
		api.Result, api.Code = Failed, "APIVersionNotServed"
		api.Message = "the target does not serve: " + strings.Join(notServed, ", ")
		api.Remedy = "install the CRDs (or the API versions) on the target first, or exclude these types with --exclude-types"
	} else {
		api.Result, api.Message = Passed, fmt.Sprintf("%d resource type(s) served", len(c.Resources))
	}
}
