package service_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
)

// TestCopyToAuthorized: a policy's copyTo is a storage location like the
// primary. Setting it needs Storage Contributor there (refused, naming
// the assignment, until granted); a bad URL is refused; a backup whose
// point is to be copied needs the cluster's extension to write there, and
// a restore's fallback to the copy needs it to read there.
func TestCopyToAuthorized(t *testing.T) {
	e := setup(t)
	in := withInstance(t, e)
	const second = "s3://dr-bucket/arca"
	alice := service.WithCaller(ctx, "user:alice")
	spec := daily()
	spec.CopyTo = second
	// alice may manage policies but not write to the secondary.
	if _, err := e.svc.AssignRole(ctx, "admin", "user:alice", "Backup Contributor", "/vaults/v"); err != nil {
		t.Fatal(err)
	}
	p, err := e.svc.GetPolicy(ctx, "v", "daily")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.UpdatePolicy(alice, "v", "daily", p.Version, spec)
	if se := wantKind(t, err, service.Forbidden, service.CodeRoleMissing); !strings.Contains(se.Message, rbac.StorageScope(second)) {
		t.Fatalf("refusal does not name the scope: %s", se.Message)
	}
	bad := spec
	bad.CopyTo = "ftp://nowhere"
	_, err = e.svc.UpdatePolicy(alice, "v", "daily", p.Version, bad)
	wantKind(t, err, service.Invalid, "InvalidStorageLocation")
	if _, err := e.svc.AssignRole(ctx, "admin", "user:alice", "Storage Contributor", rbac.StorageScope(second)); err != nil {
		t.Fatal(err)
	}
	if p, err = e.svc.UpdatePolicy(alice, "v", "daily", p.Version, spec); err != nil || p.CopyTo != second {
		t.Fatalf("update with copyTo: %+v %v", p, err)
	}

	// A backup to be copied: extension:prod holds Storage Contributor at
	// "/" (trust), so it passes; without it, refused.
	j := &store.Job{Vault: "v", Type: store.JobScheduledBackup, Instance: in.Name, Params: json.RawMessage(`{"copyTo":"` + second + `"}`)}
	if err := e.svc.AuthorizeBackup(ctx, j, in); err != nil {
		t.Fatalf("backup with copy, extension trusted: %v", err)
	}
	other := *in
	other.Cluster = "edge" // extension:edge has no role anywhere
	if _, err := e.svc.AssignRole(ctx, "admin", "extension:edge", "Storage Contributor", rbac.StorageScope(in.StorageLocation)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.AssignRole(ctx, "admin", "vault:v", "Reader", rbac.ClusterScope("edge")); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.AuthorizeBackup(ctx, &store.Job{Vault: "v", Type: store.JobScheduledBackup, Instance: in.Name}, &other); err != nil {
		t.Fatalf("backup without copy on edge: %v", err)
	}
	err = e.svc.AuthorizeBackup(ctx, j, &other)
	if se := wantKind(t, err, service.Forbidden, service.CodeRoleMissing); !strings.Contains(se.Message, "extension:edge") || !strings.Contains(se.Message, rbac.StorageScope(second)) {
		t.Fatalf("copy refusal: %s", se.Message)
	}
	// The restore's fallback: allowed for prod, refused for edge.
	rj := &store.Job{Vault: "v", Type: store.JobRestore}
	if err := e.svc.AuthorizeFallback(ctx, rj, in, "prod", second); err != nil {
		t.Fatalf("fallback for prod: %v", err)
	}
	wantKind(t, e.svc.AuthorizeFallback(ctx, rj, in, "edge", second), service.Forbidden, service.CodeRoleMissing)
	var _ jobs.FallbackAuthorizer = e.svc
}
